// mount(2) and umount2(2) with the kernel's flag values compiled in.
#include <errno.h>
#include <sys/mount.h>

#include "errors.h"

namespace flint {

// mount(source|null, target, fstype|null, flags, data|null)
static Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool hasSource, hasTarget, hasType, hasData;
  std::string source = ArgOptString(info, 0, "source", &hasSource);
  std::string target = ArgOptString(info, 1, "target", &hasTarget);
  std::string fstype = ArgOptString(info, 2, "fstype", &hasType);
  if (!info[3].IsNumber()) throw Napi::TypeError::New(env, "The \"flags\" argument must be a number");
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  std::string data = ArgOptString(info, 4, "data", &hasData);
  if (!hasTarget) throw Napi::TypeError::New(env, "The \"target\" argument must be a string");
  if (mount(hasSource ? source.c_str() : nullptr, target.c_str(), hasType ? fstype.c_str() : nullptr, flags,
            hasData ? data.c_str() : nullptr) != 0) {
    ThrowErrno(env, errno, "mount");
  }
  return env.Undefined();
}

static Napi::Value Umount2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool hasTarget;
  std::string target = ArgOptString(info, 0, "target", &hasTarget);
  if (!hasTarget) throw Napi::TypeError::New(env, "The \"target\" argument must be a string");
  int flags = ArgInt(info, 1, "flags");
  if (umount2(target.c_str(), flags) != 0) ThrowErrno(env, errno, "umount2");
  return env.Undefined();
}

void InitMount(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
#define FLINT_CONSTANT(name) constants.Set(#name, Napi::Number::New(env, static_cast<double>(name)))
  FLINT_CONSTANT(MS_RDONLY);
  FLINT_CONSTANT(MS_NOSUID);
  FLINT_CONSTANT(MS_NODEV);
  FLINT_CONSTANT(MS_NOEXEC);
  FLINT_CONSTANT(MS_SYNCHRONOUS);
  FLINT_CONSTANT(MS_REMOUNT);
  FLINT_CONSTANT(MS_MANDLOCK);
  FLINT_CONSTANT(MS_DIRSYNC);
  FLINT_CONSTANT(MS_NOSYMFOLLOW);
  FLINT_CONSTANT(MS_NOATIME);
  FLINT_CONSTANT(MS_NODIRATIME);
  FLINT_CONSTANT(MS_BIND);
  FLINT_CONSTANT(MS_MOVE);
  FLINT_CONSTANT(MS_REC);
  FLINT_CONSTANT(MS_SILENT);
  FLINT_CONSTANT(MS_UNBINDABLE);
  FLINT_CONSTANT(MS_PRIVATE);
  FLINT_CONSTANT(MS_SLAVE);
  FLINT_CONSTANT(MS_SHARED);
  FLINT_CONSTANT(MS_RELATIME);
  FLINT_CONSTANT(MS_STRICTATIME);
  FLINT_CONSTANT(MS_LAZYTIME);
  FLINT_CONSTANT(MNT_FORCE);
  FLINT_CONSTANT(MNT_DETACH);
  FLINT_CONSTANT(MNT_EXPIRE);
  FLINT_CONSTANT(UMOUNT_NOFOLLOW);
#undef FLINT_CONSTANT
}

}  // namespace flint
