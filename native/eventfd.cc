// eventfd(2), e.g. for cgroup v1 memory.oom_control notifications.
#include <errno.h>
#include <sys/eventfd.h>

#include "errors.h"

namespace flint {

static Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned int initval = ArgUint(info, 0, "initval");
  int flags = ArgInt(info, 1, "flags");
  int fd = eventfd(initval, flags);
  if (fd < 0) ThrowErrno(env, errno, "eventfd");
  return Napi::Number::New(env, fd);
}

void InitEventfd(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  constants.Set("EFD_CLOEXEC", Napi::Number::New(env, EFD_CLOEXEC));
  constants.Set("EFD_NONBLOCK", Napi::Number::New(env, EFD_NONBLOCK));
  constants.Set("EFD_SEMAPHORE", Napi::Number::New(env, EFD_SEMAPHORE));
}

}  // namespace flint
