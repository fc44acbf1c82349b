// Poller: a uv_poll_t on Node's own event loop, so TypeScript can drive any
// nonblocking fd (vsock, pty, eventfd) that net.Socket cannot wrap.
#include <node_api.h>
#include <uv.h>

#include "errors.h"

namespace flint {

namespace {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller",
                       {
                           InstanceMethod<&Poller::Start>("start"),
                           InstanceMethod<&Poller::Stop>("stop"),
                           InstanceMethod<&Poller::Close>("close"),
                           InstanceMethod<&Poller::RefHandle>("ref"),
                           InstanceMethod<&Poller::UnrefHandle>("unref"),
                       });
  }

  // new Poller(fd, callback(err, events)); the fd stays owned by the caller.
  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    int fd = ArgInt(info, 0, "fd");
    if (!info[1].IsFunction()) throw Napi::TypeError::New(env, "The \"callback\" argument must be a function");
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd);
    if (r < 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowErrno(env, -r, "uv_poll_init");
    }
    handle_->data = this;
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
  }

  ~Poller() override { Release(); }

 private:
  // start(readable, writable): level-triggered; (false, false) stops.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    EnsureOpen(env);
    int events = (info[0].ToBoolean().Value() ? UV_READABLE : 0) | (info[1].ToBoolean().Value() ? UV_WRITABLE : 0);
    if (events == 0) return Stop(info);
    int r = uv_poll_start(handle_, events, OnPoll);
    if (r < 0) ThrowErrno(env, -r, "uv_poll_start");
    Pin(true);
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Pin(false);
    return info.Env().Undefined();
  }

  // close(): stops watching for good; never closes the fd itself. The
  // callback is dropped too: the reference is strong, so a callback whose
  // closure reaches this poller's JS object would otherwise keep both (and
  // all they capture) alive forever.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    Pin(false);
    callback_.Reset();
    return info.Env().Undefined();
  }

  Napi::Value RefHandle(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value UnrefHandle(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  void EnsureOpen(Napi::Env env) {
    if (handle_ != nullptr) return;
    Napi::Error error = Napi::Error::New(env, "Poller is closed");
    error.Set("code", Napi::String::New(env, "ERR_POLLER_CLOSED"));
    throw error;
  }

  // An active poller must outlive JS references to it, or its callback dies with it.
  void Pin(bool on) {
    if (on == pinned_) return;
    pinned_ = on;
    if (on) {
      Ref();
    } else {
      Unref();
    }
  }

  // The handle memory is freed by libuv's close callback, which may run after
  // this object is gone, so it must not point back here.
  void Release() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* handle, int status, int events) {
    Poller* self = static_cast<Poller*>(handle->data);
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // libuv stops the handle itself before reporting an error (POLLERR).
    bool stopped = status < 0;
    Napi::Object receiver = self->Value();
    if (stopped) self->Pin(false);
    // The callback may close the poller (and drop callback_) while it runs.
    Napi::Function callback = self->callback_.Value();
    try {
      Napi::Value err = status < 0 ? ErrnoError(env, -status, "uv_poll").Value() : env.Null();
      callback.MakeCallback(receiver, {err, Napi::Number::New(env, events)});
    } catch (const Napi::Error& e) {
      // Nothing above us can catch it: report it like any other uncaught throw.
      napi_fatal_exception(env, e.Value());
    }
  }

  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
  bool pinned_ = false;
};

}  // namespace

void InitPoller(Napi::Env env, Napi::Object exports, Napi::Object constants) {
  exports.Set("Poller", Poller::Define(env));
  constants.Set("POLL_READABLE", Napi::Number::New(env, UV_READABLE));
  constants.Set("POLL_WRITABLE", Napi::Number::New(env, UV_WRITABLE));
  constants.Set("POLL_DISCONNECT", Napi::Number::New(env, UV_DISCONNECT));
}

}  // namespace flint
