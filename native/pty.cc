// Pseudo-terminals: open a pair, set and read the window size.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "errors.h"

namespace flint {

// openPty() -> { master, slave, name }, both close-on-exec, neither our ctty.
static Napi::Value OpenPty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) ThrowErrno(env, errno, "posix_openpt");
  char name[128];
  const char* failed = nullptr;
  if (grantpt(master) != 0) {
    failed = "grantpt";
  } else if (unlockpt(master) != 0) {
    failed = "unlockpt";
  } else if (ptsname_r(master, name, sizeof name) != 0) {
    failed = "ptsname_r";
  }
  int slave = -1;
  if (failed == nullptr) {
    slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) failed = "open";
  }
  if (failed != nullptr) {
    int err = errno;
    close(master);
    ThrowErrno(env, err, failed);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("master", Napi::Number::New(env, master));
  result.Set("slave", Napi::Number::New(env, slave));
  result.Set("name", Napi::String::New(env, name));
  return result;
}

static Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  int fd = ArgInt(info, 0, "fd");
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(ArgUint(info, 1, "rows"));
  ws.ws_col = static_cast<unsigned short>(ArgUint(info, 2, "cols"));
  if (ioctl(fd, TIOCSWINSZ, &ws) != 0) ThrowErrno(info.Env(), errno, "ioctl");
  return info.Env().Undefined();
}

static Napi::Value GetWinsize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt(info, 0, "fd");
  winsize ws{};
  if (ioctl(fd, TIOCGWINSZ, &ws) != 0) ThrowErrno(env, errno, "ioctl");
  Napi::Object result = Napi::Object::New(env);
  result.Set("rows", Napi::Number::New(env, ws.ws_row));
  result.Set("cols", Napi::Number::New(env, ws.ws_col));
  return result;
}

void InitPty(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("openPty", Napi::Function::New(env, OpenPty, "openPty"));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize, "setWinsize"));
  exports.Set("getWinsize", Napi::Function::New(env, GetWinsize, "getWinsize"));
}

}  // namespace flint
