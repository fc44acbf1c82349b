// Shared helpers: Node-style errno errors and argument readers.
#pragma once

#include <napi.h>

namespace flint {

// An Error shaped like Node's own syscall errors: message "CODE: text, syscall",
// `code` = errno name, `errno` = negative errno (as in Node), `syscall`.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);

// Throws ErrnoError as a C++ exception (node-addon-api turns it into a JS throw).
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall);

// Reads argument i as a 32-bit integer; throws a TypeError otherwise.
int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name);

// Reads argument i as an unsigned 32-bit integer; throws a TypeError otherwise.
uint32_t ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name);

// Reads argument i as a string; null/undefined map to `present = false`.
std::string ArgOptString(const Napi::CallbackInfo& info, size_t i, const char* name, bool* present);

// Each syscall family registers its functions and constants here.
void InitProcess(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitFd(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitSocket(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitVsock(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitFdPass(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitPty(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitPeerCred(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitMount(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitEventfd(Napi::Env env, Napi::Object exports, Napi::Object constants);
void InitPoller(Napi::Env env, Napi::Object exports, Napi::Object constants);

}  // namespace flint
