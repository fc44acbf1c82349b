// SO_PEERCRED: who is on the other end of a unix socket.
#include <errno.h>
#include <sys/socket.h>

#include "errors.h"

namespace flint {

static Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) ThrowErrno(env, errno, "getsockopt");
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, cred.pid));
  result.Set("uid", Napi::Number::New(env, cred.uid));
  result.Set("gid", Napi::Number::New(env, cred.gid));
  return result;
}

void InitPeerCred(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
}

}  // namespace flint
