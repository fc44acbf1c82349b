// Processes: become a child subreaper, reap one pid without blocking, and
// spawn without copying the caller's page tables.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

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

static std::vector<std::string> StringArray(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an array of strings");
  Napi::Array array = info[i].As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t k = 0; k < array.Length(); k++) {
    Napi::Value v = array.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be an array of strings");
    out.push_back(v.As<Napi::String>().Utf8Value());
  }
  return out;
}

static std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// spawn(file, argv, envp, [fd0, fd1, fd2]) -> pid. posix_spawnp, which glibc
// runs as clone(CLONE_VM | CLONE_VFORK): the child shares our memory until it
// execs, where libuv's fork() copies the page tables of the whole (large)
// Node process first. The file is looked up on our PATH. A negative fd gives
// the child /dev/null; every other fd of ours is close-on-exec. The child
// starts with no signal blocked and every handler at its default. A failed
// exec (ENOENT, EACCES...) throws here.
static Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool present = false;
  std::string file = ArgOptString(info, 0, "file", &present);
  if (!present || file.empty()) throw Napi::TypeError::New(env, "file must be a non-empty string");
  std::vector<std::string> argv = StringArray(info, 1, "argv");
  std::vector<std::string> envp = StringArray(info, 2, "envp");
  if (!info[3].IsArray() || info[3].As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(env, "stdio must be [fd0, fd1, fd2]");
  Napi::Array stdio = info[3].As<Napi::Array>();

  // An fd already in 0..2 but meant for another slot would be overwritten by
  // an earlier dup2: such fds are moved above 2 first.
  int fds[3];
  std::vector<int> moved;
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value v = stdio.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "stdio must be [fd0, fd1, fd2]");
    fds[i] = v.As<Napi::Number>().Int32Value();
  }
  for (int i = 0; i < 3; i++) {
    if (fds[i] >= 0 && fds[i] <= 2 && fds[i] != i) {
      int high = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
      if (high < 0) {
        for (int fd : moved) close(fd);
        ThrowErrno(env, errno, "fcntl");
      }
      moved.push_back(high);
      fds[i] = high;
    }
  }

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  for (int i = 0; i < 3; i++) {
    // dup2 onto itself clears close-on-exec (glibc 2.34 and later).
    if (fds[i] >= 0) posix_spawn_file_actions_adddup2(&actions, fds[i], i);
    else posix_spawn_file_actions_addopen(&actions, i, "/dev/null", O_RDWR, 0);
  }
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> cargv = CStrings(argv);
  std::vector<char*> cenvp = CStrings(envp);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, file.c_str(), &actions, &attr, cargv.data(), cenvp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  for (int fd : moved) close(fd);
  if (rc != 0) ThrowErrno(env, rc, "posix_spawnp");
  return Napi::Number::New(env, pid);
}

void InitProcess(Napi::Env env, Napi::Object exports, Napi::Object) {
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper, "setChildSubreaper"));
  exports.Set("waitpidNoHang", Napi::Function::New(env, WaitpidNoHang, "waitpidNoHang"));
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
}

}  // namespace flint
