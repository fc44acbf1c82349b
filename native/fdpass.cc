// File descriptor passing over unix sockets (SCM_RIGHTS), e.g. runc --console-socket.
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "errors.h"

namespace flint {

namespace {
// Room for a spare server's handoff message, which carries start's environment
// (src/shim/spare-protocol.ts MAX_SPARE_HANDOFF_BYTES is half of this).
constexpr size_t kMaxData = 65536;
// Room for a few fds so a sender passing more than one cannot leak into us
// through a truncated control message; all but the first are closed.
constexpr size_t kMaxFds = 8;
}  // namespace

// recvFd(fd) -> { fd, data } (fd = -1 when the message carried none; data empty
// and fd -1 at EOF), or null when nothing is queued.
static Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = ArgInt(info, 0, "fd");
  std::vector<char> data(kMaxData);
  iovec iov{data.data(), data.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return env.Null();
    ThrowErrno(env, errno, "recvmsg");
  }
  int received = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (received < 0) {
        received = fd;
      } else {
        close(fd);
      }
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("fd", Napi::Number::New(env, received));
  result.Set("data", Napi::Buffer<char>::Copy(env, data.data(), static_cast<size_t>(n)));
  return result;
}

// sendFd(sock, fdToSend, data) -> bytes of data sent.
static Napi::Value SendFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = ArgInt(info, 0, "fd");
  int fd = ArgInt(info, 1, "fdToSend");
  if (!info[2].IsBuffer()) throw Napi::TypeError::New(env, "The \"data\" argument must be a Buffer");
  Napi::Buffer<char> buf = info[2].As<Napi::Buffer<char>>();
  // A stream socket drops ancillary data sent with zero bytes, so always send one.
  char zero = 0;
  iovec iov{buf.Length() > 0 ? buf.Data() : &zero, buf.Length() > 0 ? buf.Length() : 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  memset(control, 0, sizeof control);
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do {
    n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowErrno(env, errno, "sendmsg");
  return Napi::Number::New(env, static_cast<double>(n));
}

void InitFdPass(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("recvFd", Napi::Function::New(env, RecvFd, "recvFd"));
  exports.Set("sendFd", Napi::Function::New(env, SendFd, "sendFd"));
}

}  // namespace flint
