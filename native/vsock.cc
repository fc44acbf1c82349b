// AF_VSOCK sockets: listen, start a nonblocking connect, read the local address.
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
// vm_sockets.h needs sockaddr from sys/socket.h first.
#include <linux/vm_sockets.h>

#include "errors.h"

namespace flint {

static int VsockSocket(Napi::Env env) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, errno, "socket");
  return fd;
}

static sockaddr_vm VsockAddr(uint32_t cid, uint32_t port) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = cid;
  addr.svm_port = port;
  return addr;
}

[[noreturn]] static void CloseAndThrow(Napi::Env env, int fd, const char* syscall) {
  int err = errno;
  close(fd);
  ThrowErrno(env, err, syscall);
}

// vsockListen(port, cid, backlog) -> listening fd.
static Napi::Value VsockListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t port = ArgUint(info, 0, "port");
  uint32_t cid = ArgUint(info, 1, "cid");
  int backlog = ArgInt(info, 2, "backlog");
  int fd = VsockSocket(env);
  sockaddr_vm addr = VsockAddr(cid, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) CloseAndThrow(env, fd, "bind");
  if (listen(fd, backlog) != 0) CloseAndThrow(env, fd, "listen");
  return Napi::Number::New(env, fd);
}

// vsockConnect(cid, port) -> fd with the connect under way (check SO_ERROR once writable).
static Napi::Value VsockConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t cid = ArgUint(info, 0, "cid");
  uint32_t port = ArgUint(info, 1, "port");
  int fd = VsockSocket(env);
  sockaddr_vm addr = VsockAddr(cid, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS &&
      errno != EINTR) {
    CloseAndThrow(env, fd, "connect");
  }
  return Napi::Number::New(env, fd);
}

// vsockLocalAddress(fd) -> { cid, port } from getsockname.
static Napi::Value VsockLocalAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  sockaddr_vm addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) ThrowErrno(env, errno, "getsockname");
  if (addr.svm_family != AF_VSOCK) ThrowErrno(env, EAFNOSUPPORT, "getsockname");
  Napi::Object result = Napi::Object::New(env);
  result.Set("cid", Napi::Number::New(env, addr.svm_cid));
  result.Set("port", Napi::Number::New(env, addr.svm_port));
  return result;
}

void InitVsock(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("vsockListen", Napi::Function::New(env, VsockListen, "vsockListen"));
  exports.Set("vsockConnect", Napi::Function::New(env, VsockConnect, "vsockConnect"));
  exports.Set("vsockLocalAddress", Napi::Function::New(env, VsockLocalAddress, "vsockLocalAddress"));
  constants.Set("VMADDR_CID_ANY", Napi::Number::New(env, VMADDR_CID_ANY));
  constants.Set("VMADDR_PORT_ANY", Napi::Number::New(env, VMADDR_PORT_ANY));
  constants.Set("VMADDR_CID_HYPERVISOR", Napi::Number::New(env, VMADDR_CID_HYPERVISOR));
  constants.Set("VMADDR_CID_HOST", Napi::Number::New(env, VMADDR_CID_HOST));
}

}  // namespace flint
