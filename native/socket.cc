// Socket calls used by the poll-based streams and servers.
#include <errno.h>
#include <sys/socket.h>

#include "errors.h"

namespace flint {

// accept4(fd) -> new nonblocking, close-on-exec fd, or null when none is pending.
static Napi::Value Accept4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  for (;;) {
    int conn = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) return Napi::Number::New(env, conn);
    // A connection reset while queued is not the listener's failure.
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, errno, "accept4");
  }
}

// socketError(fd) -> pending SO_ERROR as a positive errno (0 = none).
static Napi::Value SocketError(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) ThrowErrno(info.Env(), errno, "getsockopt");
  return Napi::Number::New(info.Env(), err);
}

static Napi::Value ShutdownWrite(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  if (shutdown(fd, SHUT_WR) != 0) ThrowErrno(info.Env(), errno, "shutdown");
  return info.Env().Undefined();
}

// socketpair() -> [fd, fd]: a connected AF_UNIX stream pair, close-on-exec.
static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) ThrowErrno(env, errno, "socketpair");
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  result.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  return result;
}

void InitSocket(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("accept4", Napi::Function::New(env, Accept4, "accept4"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
  exports.Set("shutdownWrite", Napi::Function::New(env, ShutdownWrite, "shutdownWrite"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
}

}  // namespace flint
