#include "errors.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

#include <string>

namespace flint {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  // libuv's names and texts are what Node itself uses for err.code/message;
  // glibc covers the errnos libuv has no name for (ECHILD, EBADMSG, ...).
  char name[64];
  char text[128];
  uv_err_name_r(-err, name, sizeof name);
  uv_strerror_r(-err, text, sizeof text);
  if (strncmp(name, "Unknown", 7) == 0 && strerrorname_np(err) != nullptr) {
    snprintf(name, sizeof name, "%s", strerrorname_np(err));
    snprintf(text, sizeof text, "%s", strerrordesc_np(err));
  }
  std::string message = std::string(name) + ": " + text + ", " + syscall;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("code", Napi::String::New(env, name));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  throw ErrnoError(env, err, syscall);
}

static void ThrowArgType(Napi::Env env, const char* name, const char* expected) {
  Napi::TypeError error =
      Napi::TypeError::New(env, std::string("The \"") + name + "\" argument must be " + expected);
  error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw error;
}

int32_t ArgInt(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowArgType(info.Env(), name, "a number");
  return info[i].As<Napi::Number>().Int32Value();
}

uint32_t ArgUint(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowArgType(info.Env(), name, "a number");
  return info[i].As<Napi::Number>().Uint32Value();
}

std::string ArgOptString(const Napi::CallbackInfo& info, size_t i, const char* name, bool* present) {
  if (info[i].IsNull() || info[i].IsUndefined()) {
    *present = false;
    return std::string();
  }
  if (!info[i].IsString()) ThrowArgType(info.Env(), name, "a string or null");
  *present = true;
  return info[i].As<Napi::String>().Utf8Value();
}

}  // namespace flint
