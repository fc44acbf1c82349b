// flint.node: thin wrappers over Linux syscalls that Node does not expose.
// All policy lives in TypeScript (src/native/); this file only registers.
#include "errors.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  Napi::Object constants = Napi::Object::New(env);
  flint::InitProcess(env, exports, constants);
  flint::InitFd(env, exports, constants);
  flint::InitSocket(env, exports, constants);
  flint::InitVsock(env, exports, constants);
  flint::InitFdPass(env, exports, constants);
  flint::InitPty(env, exports, constants);
  flint::InitPeerCred(env, exports, constants);
  flint::InitMount(env, exports, constants);
  flint::InitEventfd(env, exports, constants);
  flint::InitPoller(env, exports, constants);
  exports.Set("constants", constants);
  return exports;
}

}  // namespace

NODE_API_MODULE(flint, Init)
