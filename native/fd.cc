// Plain fd calls: pipes, FIFOs and O_NONBLOCK.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <string>
#include <unistd.h>

#include "errors.h"

namespace flint {

// pipe() -> [readFd, writeFd], close-on-exec, blocking.
static Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) ThrowErrno(env, errno, "pipe2");
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(uint32_t(0), Napi::Number::New(env, fds[0]));
  result.Set(uint32_t(1), Napi::Number::New(env, fds[1]));
  return result;
}

static Napi::Value SetNonblocking(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  bool on = info[1].ToBoolean().Value();
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowErrno(env, errno, "fcntl");
  int next = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (next != flags && fcntl(fd, F_SETFL, next) != 0) ThrowErrno(env, errno, "fcntl");
  return env.Undefined();
}

// mkfifo(path, mode): Node has no call to make a named pipe.
static Napi::Value Mkfifo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool present = false;
  std::string path = ArgOptString(info, 0, "path", &present);
  if (!present) {
    Napi::TypeError::New(env, "path must be a string").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int mode = ArgInt(info, 1, "mode");
  if (mkfifo(path.c_str(), static_cast<mode_t>(mode)) != 0) ThrowErrno(env, errno, "mkfifo");
  return env.Undefined();
}

// F_SETPIPE_SZ: a bigger pipe buffer means fewer wake-ups per megabyte
// when output streams through FIFOs. Returns the size the kernel set.
static Napi::Value SetPipeSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int size = ArgInt(info, 1, "size");
  int set = fcntl(fd, F_SETPIPE_SZ, size);
  if (set < 0) ThrowErrno(env, errno, "fcntl");
  return Napi::Number::New(env, set);
}

// FIONREAD: the bytes a pipe or FIFO holds that no reader has taken yet.
static Napi::Value UnreadBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  int unread = 0;
  if (ioctl(fd, FIONREAD, &unread) != 0) ThrowErrno(env, errno, "ioctl");
  return Napi::Number::New(env, unread);
}

// True when poll() says POLLHUP on a FIFO's read end: a writer that opened
// it after this reader did has closed it, and no writer is left. (A reader
// opened before any writer sees no POLLHUP, unlike read(), which says EOF.)
static Napi::Value WritersLeft(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct pollfd p = {ArgInt(info, 0, "fd"), POLLIN, 0};
  int n = poll(&p, 1, 0);
  if (n < 0) ThrowErrno(env, errno, "poll");
  if (p.revents & POLLNVAL) ThrowErrno(env, EBADF, "poll");
  return Napi::Boolean::New(env, n > 0 && (p.revents & POLLHUP) != 0);
}

void InitFd(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("setPipeSize", Napi::Function::New(env, SetPipeSize, "setPipeSize"));
  exports.Set("unreadBytes", Napi::Function::New(env, UnreadBytes, "unreadBytes"));
  exports.Set("writersLeft", Napi::Function::New(env, WritersLeft, "writersLeft"));
  exports.Set("mkfifo", Napi::Function::New(env, Mkfifo, "mkfifo"));
  exports.Set("setNonblocking", Napi::Function::New(env, SetNonblocking, "setNonblocking"));
}

}  // namespace flint
