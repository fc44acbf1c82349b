// Process reaping: become a child subreaper and reap one pid without blocking.
#include <errno.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "errors.h"

namespace flint {

static Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) ThrowErrno(info.Env(), errno, "prctl");
  return info.Env().Undefined();
}

// waitpidNoHang(pid) -> null while running, else { pid, status, signal }
// where status is the exit code or 128+signal for a signal death.
static Napi::Value WaitpidNoHang(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t pid = ArgInt(info, 0, "pid");
  int wstatus = 0;
  pid_t r;
  do {
    r = waitpid(pid, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(env, errno, "waitpid");
  if (r == 0) return env.Null();
  Napi::Object result = Napi::Object::New(env);
  result.Set("pid", Napi::Number::New(env, r));
  if (WIFSIGNALED(wstatus)) {
    result.Set("status", Napi::Number::New(env, 128 + WTERMSIG(wstatus)));
    result.Set("signal", Napi::Number::New(env, WTERMSIG(wstatus)));
  } else {
    result.Set("status", Napi::Number::New(env, WEXITSTATUS(wstatus)));
    result.Set("signal", env.Null());
  }
  return result;
}

void InitProcess(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper, "setChildSubreaper"));
  exports.Set("waitpidNoHang", Napi::Function::New(env, WaitpidNoHang, "waitpidNoHang"));
}

}  // namespace flint
