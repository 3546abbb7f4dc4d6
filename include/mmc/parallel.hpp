// The pool as a library (joblib.Parallel and multiprocessing.Pool natively): mmc::Pool with
// process, thread and serial backends, map/imap/starmap/submit, futures, batching, progress,
// and mmc::Codec, which says how values cross a process boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/pool.hpp"

namespace mmc {
namespace detail {

// The descriptors a message carries beside its bytes (SCM_RIGHTS between processes); an
// encoded value names one by its index in the list. Copies share the descriptors; the last one
// closes them. Not thread-safe for changes; reads of an unchanging list are.
class MessageFds {
 public:
  // Adds a duplicate of `fd` (close-on-exec) unless this list already holds one of the same
  // file; returns its index. Throws Error(Io).
  std::uint64_t add_copy(int fd);
  // Takes ownership of `fd` (appended).
  void adopt(int fd);
  // The descriptor at `index`, open while this list (or a keeper()) lives. Throws
  // Error(Corrupt) when the message carried no such descriptor.
  int at(std::uint64_t index) const;
  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  // Keeps every descriptor of the list open while held.
  std::shared_ptr<const void> keeper() const noexcept { return owned_; }

 private:
  struct Owned;
  std::shared_ptr<Owned> owned_;
};

}  // namespace detail

// Appends bytes to a buffer, and descriptors (ArrayRef's segments) to `fds` when given: a
// Writer without a list cannot encode a value that needs one. Not thread-safe.
class Writer {
 public:
  explicit Writer(Bytes& out, detail::MessageFds* fds = nullptr) : out_(out), fds_(fds) {}
  void raw(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
  }
  void u64(std::uint64_t value) { raw(&value, sizeof value); }
  detail::MessageFds* fds() const noexcept { return fds_; }

 private:
  Bytes& out_;
  detail::MessageFds* fds_;
};

// Reads bytes written by Writer, and the descriptors that came with them. Throws
// Error(Corrupt) when a read runs past the end.
class Reader {
 public:
  explicit Reader(ByteView in, const detail::MessageFds* fds = nullptr) : in_(in), fds_(fds) {}
  const detail::MessageFds* fds() const noexcept { return fds_; }
  const std::byte* take(std::size_t size) {
    if (size > in_.size - pos_) {
      raise(ErrorCode::Corrupt, "codec: a value runs past the end of its " +
                                    std::to_string(in_.size) + "-byte message");
    }
    const std::byte* at = in_.data + pos_;
    pos_ += size;
    return at;
  }
  void raw(void* data, std::size_t size) {
    if (size != 0) std::memcpy(data, take(size), size);
  }
  std::uint64_t u64() {
    std::uint64_t value = 0;
    raw(&value, sizeof value);
    return value;
  }
  bool at_end() const noexcept { return pos_ == in_.size; }

 private:
  ByteView in_;
  const detail::MessageFds* fds_;
  std::size_t pos_ = 0;
};

// Specialize with `static void write(Writer&, const T&)` and `static T read(Reader&)`.
template <class T, class Enable = void>
struct Codec;

// True when T can travel to a worker process and back.
template <class T>
concept Shippable = requires(Writer& w, Reader& r, const T& value) {
  Codec<T>::write(w, value);
  { Codec<T>::read(r) } -> std::convertible_to<T>;
};

// Plain data (and closures that capture only plain data by value) travel as their bytes.
// Pointers inside point into the receiver's copy of memory: see mmc::Pool.
template <class T>
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T>>> {
  static void write(Writer& w, const T& value) { w.raw(&value, sizeof(T)); }
  static T read(Reader& r) {
    // T may lack a default constructor (a closure): copy its bytes into storage, as its
    // trivially copyable type allows.
    alignas(T) unsigned char storage[sizeof(T)];
    r.raw(storage, sizeof(T));
    return *std::launder(reinterpret_cast<T*>(storage));
  }
};

template <>
struct Codec<std::string> {
  static void write(Writer& w, const std::string& s) {
    w.u64(s.size());
    w.raw(s.data(), s.size());
  }
  static std::string read(Reader& r) {
    const std::uint64_t n = r.u64();
    const std::byte* at = r.take(n);
    return std::string(reinterpret_cast<const char*>(at), n);
  }
};

template <class T, class A>
struct Codec<std::vector<T, A>, std::enable_if_t<Shippable<T>>> {
  static void write(Writer& w, const std::vector<T, A>& v) {
    w.u64(v.size());
    if constexpr (std::is_trivially_copyable_v<T>) {
      w.raw(v.data(), v.size() * sizeof(T));
    } else {
      for (const T& item : v) Codec<T>::write(w, item);
    }
  }
  static std::vector<T, A> read(Reader& r) {
    const std::uint64_t n = r.u64();
    std::vector<T, A> v;
    if constexpr (std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>) {
      const std::byte* at = r.take(n * sizeof(T));  // checks the size before allocating
      v.resize(n);
      if (n != 0) std::memcpy(v.data(), at, n * sizeof(T));
    } else {
      for (std::uint64_t i = 0; i < n; ++i) v.push_back(Codec<T>::read(r));
    }
    return v;
  }
};

template <class T>
struct Codec<std::optional<T>,
             std::enable_if_t<!std::is_trivially_copyable_v<std::optional<T>> && Shippable<T>>> {
  static void write(Writer& w, const std::optional<T>& v) {
    w.u64(v ? 1 : 0);
    if (v) Codec<T>::write(w, *v);
  }
  static std::optional<T> read(Reader& r) {
    if (r.u64() == 0) return std::nullopt;
    return Codec<T>::read(r);
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>, std::enable_if_t<!std::is_trivially_copyable_v<std::pair<A, B>> &&
                                               Shippable<A> && Shippable<B>>> {
  static void write(Writer& w, const std::pair<A, B>& p) {
    Codec<A>::write(w, p.first);
    Codec<B>::write(w, p.second);
  }
  static std::pair<A, B> read(Reader& r) {
    A a = Codec<A>::read(r);
    return std::pair<A, B>(std::move(a), Codec<B>::read(r));
  }
};

template <class... T>
struct Codec<std::tuple<T...>, std::enable_if_t<!std::is_trivially_copyable_v<std::tuple<T...>> &&
                                                (Shippable<T> && ...)>> {
  static void write(Writer& w, const std::tuple<T...>& t) {
    std::apply([&w](const T&... item) { (Codec<T>::write(w, item), ...); }, t);
  }
  static std::tuple<T...> read(Reader& r) {
    // Braced initialization evaluates left to right.
    return std::tuple<T...>{Codec<T>::read(r)...};
  }
};

}  // namespace mmc

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <ranges>
#include <typeinfo>
#include <variant>

namespace mmc {

// ---------------------------------------------------------------------------------------------
// Options

// Pool-wide options: the one options type of pool.hpp.
using ParallelOptions = PoolOptions;

// What a progress callback gets, on the thread that drives the call.
struct Progress {
  std::size_t done = 0;
  std::size_t total = 0;  // 0 when the input's length is unknown (imap over a stream)
  double elapsed_s = 0;
  double eta_s = -1;  // -1 when unknown
};
using ProgressCallback = std::function<void(const Progress&)>;

// Options of one map/imap/starmap call.
struct CallOptions {
  std::size_t chunksize = 0;  // items per batch; 0 = joblib's 'auto' (sized by measured time)
  // Batches in flight at once. 0: 2 * n_jobs (joblib's default), allowed to grow up to
  // 64 * n_jobs while batches take under a millisecond each (explicit tiny chunksizes), so the
  // round trip does not bound the rate; read-ahead stays bounded either way.
  std::size_t pre_dispatch = 0;
  double timeout = 0;            // seconds a task may run (a batch: its items' sum); 0 = none
  int verbose = -1;              // -1: the pool's
  bool progress_bar = false;     // a bar with rate and ETA on stderr
  bool progress_json = false;    // a JSON line per batch on stderr, for scripts
  ProgressCallback on_progress;  // after each batch, on the calling thread
};

// Options of one submitted task.
struct TaskOptions {
  double timeout = 0;  // seconds; the process backend kills and replaces the worker past it
};

// The value returned by a task that returns void.
struct Unit {
  friend bool operator==(Unit, Unit) { return true; }
};

// A task's value or its error (map_collect's element).
template <class T>
class TaskResult {
 public:
  explicit TaskResult(T value) : state_(std::move(value)) {}
  explicit TaskResult(Error error) : state_(std::move(error)) {}
  bool ok() const noexcept { return state_.index() == 0; }
  // The value; throws the task's error when it failed.
  const T& value() const {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  // REQUIRES: !ok().
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

namespace detail {

template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, Unit, R>;

// ---------------------------------------------------------------------------------------------
// The type-erased pool underneath: runs batches of encoded items on workers.

// A batch's encoded form starts with the address of its Trampoline. In a forked worker the
// binary sits at the same addresses, so the pointer is valid there.
// `fds`: the descriptors that came with the batch; `out_fds` gets those its results carry.
using Trampoline = void (*)(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds);

struct BatchOutcome {
  bool failed = false;  // the whole batch failed: worker lost, timeout, cancelled, bad message
  ErrorCode code = ErrorCode::Internal;
  std::string message;
  Bytes results;       // per item: u64 status (0 ok, 1 error), then the value or code + message
  MessageFds fds;      // the descriptors the results carry
  double seconds = 0;  // time the worker spent running the batch
};

struct BatchRequest {
  Bytes payload;
  MessageFds fds;  // the descriptors the payload carries (ArrayRef segments)
  // Leading payload bytes that are framing, not the caller's data (run_tasks' batch header):
  // not weighed against max_nbytes, not counted in traffic().
  std::uint32_t envelope = 0;
  std::size_t first_task = 0;  // index of the batch's first item within its call (for messages)
  std::size_t n_items = 0;
  double timeout = 0;  // seconds for the whole batch, from when a worker starts it; 0 = none
  // Called exactly once with the outcome, on the pool's dispatcher or worker thread, or inside
  // submit() (serial backend). Must be quick and must not call into the pool.
  std::function<void(BatchOutcome&)> on_done;
};

// REQUIRES: n_jobs resolved (>= 1). Thread-safe.
class PoolCore {
 public:
  virtual ~PoolCore() = default;
  // Queues a batch; returns its id. Throws Error when the pool is unusable (interrupted, its
  // initializer failed).
  virtual std::uint64_t submit(BatchRequest request) = 0;
  // Fails the batch with `code` now if it is not done: dropped if queued, its worker killed
  // and replaced if running (process backend; a thread cannot be stopped, its result is then
  // dropped). No effect on a finished batch.
  virtual void cancel(std::uint64_t id, ErrorCode code, const std::string& why) = 0;
  // Process backend: the first 8-byte word of `callable` (a callable's bytes) that points into
  // memory mapped after the pool's workers were forked off the caller (their copy has other
  // data or nothing there), or 0. Other backends: 0. See Pool's contract for what is detected.
  // Payload bytes that crossed to and from workers since the core was made (CallStats'
  // transport fields; the rest zero). Complete for every batch whose on_done already ran.
  virtual CallStats traffic() const { return {}; }
  virtual std::uintptr_t late_pointer(ByteView callable) const {
    static_cast<void>(callable);
    return 0;
  }
};

// Resolved options, plus what only a pool uses.
struct CoreOptions : ResolvedOptions {
  std::function<void()> initializer;
  std::size_t maxtasksperchild = 0;
  int verbose = 0;
  // A core made for one run_tasks call: its workers are forked straight from the caller at
  // construction (no fork server; they keep the caller's descriptors, which its closures may
  // use), and a lost worker is not replaced (the call fails).
  bool one_call = false;
};
std::shared_ptr<PoolCore> make_pool_core(const CoreOptions& options);

// The options a pool gets: the explicit ones, then scoped defaults, then the environment.
CoreOptions resolve_options(const PoolOptions& options);

// One argument as Pool::explain sees it.
struct ArgumentNote {
  std::string type;           // demangled C++ type
  std::uint64_t encoded = 0;  // bytes it adds to the task's message
  std::string by_reference;   // how it is shared when it goes by reference; empty otherwise
};
// How a type crosses to a worker; specialized by ArrayRef (shared.hpp).
template <class T, class Enable = void>
struct TransportNote {
  static std::string by_reference(const T&) { return {}; }
};
std::string demangle(const char* mangled);
// Pool::explain's text, from the notes of each argument.
// `late_pointer`: what PoolCore::late_pointer found in the callable (0: nothing).
std::string explain_transport(Backend backend, std::uint64_t max_nbytes, std::uint64_t header,
                              const std::vector<ArgumentNote>& arguments,
                              std::uintptr_t late_pointer);

// Error(InvalidArgument) for a callable holding `address`, a late pointer (see PoolCore).
[[noreturn]] void raise_late_pointer(std::uintptr_t address);

// The late pointer in fn's bytes (callables that travel as their bytes), or 0.
template <class F>
std::uintptr_t late_pointer_of(const PoolCore& core, const F& fn) {
  if constexpr (std::is_trivially_copyable_v<F>) {
    return core.late_pointer({reinterpret_cast<const std::byte*>(&fn), sizeof fn});
  } else {
    return 0;
  }
}

// Refuses, before anything is queued, a callable whose captured pointers the workers cannot
// follow.
template <class F>
void check_captures(const PoolCore& core, const F& fn) {
  if (const std::uintptr_t address = late_pointer_of(core, fn); address != 0) {
    raise_late_pointer(address);
  }
}

// Turns the exception being handled into (code, message). Call only inside a catch block.
void current_failure(ErrorCode* code, std::string* message);

// "task 7" or "tasks 4..9": how messages name a batch's items.
std::string task_range(std::size_t first_task, std::size_t n_items);

// Runs one encoded batch in this process: calls its trampoline.
void run_batch(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds);

// The worker side of a batch: decodes F and each item's arguments, calls, encodes results.
template <class F, class Tuple>
void run_items(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds) {
  Reader in(batch, &fds);
  in.u64();  // the trampoline: us
  const std::uint64_t n = in.u64();
  in.u64();  // first task
  F fn = Codec<F>::read(in);
  Writer w(out, &out_fds);
  using R = decltype(std::apply(fn, std::declval<Tuple&&>()));
  for (std::uint64_t i = 0; i < n; ++i) {
    Tuple args = Codec<Tuple>::read(in);
    try {
      if constexpr (std::is_void_v<R>) {
        std::apply(fn, std::move(args));
        w.u64(0);
      } else {
        R result = std::apply(fn, std::move(args));
        w.u64(0);
        Codec<std::decay_t<R>>::write(w, result);
      }
    } catch (...) {
      ErrorCode code = ErrorCode::TaskFailed;
      std::string message;
      current_failure(&code, &message);
      w.u64(1);
      w.u64(static_cast<std::uint64_t>(code));
      Codec<std::string>::write(w, message);
    }
  }
}

// Decodes the per-item results of a batch into out (appended). A batch-level failure becomes
// every item's error.
template <class T>
void decode_outcome(const BatchOutcome& outcome, std::size_t first, std::size_t n,
                    std::vector<TaskResult<T>>& out) {
  if (outcome.failed) {
    for (std::size_t i = 0; i < n; ++i) out.emplace_back(Error(outcome.code, outcome.message));
    return;
  }
  Reader in({outcome.results.data(), outcome.results.size()}, &outcome.fds);
  for (std::size_t i = 0; i < n; ++i) {
    if (in.u64() == 0) {
      if constexpr (std::is_same_v<T, Unit>) {
        out.emplace_back(Unit{});
      } else {
        out.emplace_back(Codec<T>::read(in));
      }
    } else {
      const auto code = static_cast<ErrorCode>(in.u64());
      const std::string message = Codec<std::string>::read(in);
      out.emplace_back(Error(code, "task " + std::to_string(first + i) + ": " + message));
    }
  }
}

// Drives one map-like call: sizes batches (explicit or joblib's auto), keeps at most
// pre_dispatch of them in flight, reports progress, hands back completed batches.
// Not thread-safe: one caller thread drives it.
class CallDriver {
 public:
  // Encodes up to max_items further items (the batch's first is `first`) after the header
  // already in payload; returns how many, 0 when the input is exhausted.
  using Encode = std::function<std::size_t(Bytes& payload, MessageFds& fds, std::size_t first,
                                           std::size_t max_items)>;
  struct Done {
    std::size_t first = 0;
    std::size_t n = 0;
    BatchOutcome outcome;
  };

  CallDriver(std::shared_ptr<PoolCore> core, int n_jobs, int pool_verbose, CallOptions options,
             std::size_t total, Encode encode);
  ~CallDriver();  // cancels batches still in flight
  CallDriver(const CallDriver&) = delete;
  CallDriver& operator=(const CallDriver&) = delete;

  // Dispatches what pre_dispatch allows and waits for the next completed batch; nothing once
  // every batch was handed back.
  std::optional<Done> next();
  // Fail fast: cancels every batch in flight and dispatches no more.
  void cancel_all();
  // Completed batches the caller still holds (imap's out-of-order ones): they count against
  // pre_dispatch, so read-ahead stays bounded even behind a slow head batch.
  void set_held(std::size_t batches) noexcept { held_ = batches; }

 private:
  struct Shared;
  void dispatch();
  std::size_t next_batch_size();
  void report(std::size_t batch_items);

  std::shared_ptr<PoolCore> core_;
  int n_jobs_;
  int verbose_;
  CallOptions options_;
  std::size_t total_;
  Encode encode_;
  std::shared_ptr<Shared> shared_;
  std::vector<std::uint64_t> in_flight_;
  std::size_t next_first_ = 0;
  std::size_t done_items_ = 0;
  bool exhausted_ = false;
  bool cancelled_ = false;
  std::size_t batch_size_ = 1;
  std::size_t held_ = 0;
  std::size_t dispatch_cap_ = 0;  // batches in flight allowed now (pre_dispatch, or adaptive)
  std::map<std::size_t, std::uint64_t> ids_by_first_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_print_;
  std::chrono::steady_clock::time_point last_bar_{};
  std::size_t last_printed_done_ = ~std::size_t{0};
  bool bar_closed_ = false;
};

// The shared state of a Future.
struct FutureStateBase {
  std::mutex mutex;
  std::condition_variable ready_cv;
  bool done = false;
  std::optional<Error> error;
  std::uint64_t id = 0;
  std::weak_ptr<PoolCore> core;
  std::vector<std::function<void()>> callbacks;  // run once done, outside the lock
};

template <class R>
struct FutureState : FutureStateBase {
  std::optional<stored_t<R>> value;
};

template <class F, class Tuple>
Bytes batch_header(const F& fn, std::size_t first, MessageFds* fds) {
  Bytes payload;
  Writer w(payload, fds);
  const Trampoline trampoline = &run_items<F, Tuple>;
  w.u64(reinterpret_cast<std::uint64_t>(trampoline));
  w.u64(0);  // item count, patched when known
  w.u64(first);
  Codec<F>::write(w, fn);
  return payload;
}

inline void patch_count(Bytes& payload, std::uint64_t n) {
  std::memcpy(payload.data() + sizeof(std::uint64_t), &n, sizeof n);
}

template <class F>
constexpr void check_callable() {
  static_assert(Shippable<F>,
                "mmc::Pool: the callable must be shippable to a worker process: a function "
                "pointer, or a lambda/functor capturing only plain data by value (pointers it "
                "holds point into the worker's copy of memory as of the pool's creation); "
                "otherwise specialize mmc::Codec<F>. The rule holds for every backend so that "
                "switching backends never breaks a call.");
}

template <class T>
constexpr void check_value() {
  static_assert(Shippable<T>,
                "mmc::Pool: arguments and results must be shippable: plain data, std::string, "
                "std::vector/pair/tuple/optional of shippable types, mmc::ArrayRef, or a type "
                "with an mmc::Codec specialization.");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Future

// The eventual result of a submitted task. Copyable handle; thread-safe.
template <class R>
class Future {
 public:
  using value_type = detail::stored_t<R>;

  Future() = default;
  explicit Future(std::shared_ptr<detail::FutureState<R>> state) : state_(std::move(state)) {}

  bool valid() const noexcept { return state_ != nullptr; }
  // True once the task finished (value or error).
  bool ready() const {
    std::lock_guard lock(state_->mutex);
    return state_->done;
  }
  void wait() const {
    std::unique_lock lock(state_->mutex);
    state_->ready_cv.wait(lock, [this] { return state_->done; });
  }
  // True if it finished within `timeout`; the task goes on either way.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    std::unique_lock lock(state_->mutex);
    return state_->ready_cv.wait_for(lock, timeout, [this] { return state_->done; });
  }
  // The value; throws the task's Error (TaskFailed or the code it threw, WorkerLost, Timeout,
  // Cancelled).
  R get() const {
    wait();
    return take();
  }
  // Like get(), but a task not finished within `timeout` is stopped (process backend: its
  // worker is killed and replaced) and Error(Timeout) is thrown.
  template <class Rep, class Period>
  R get(std::chrono::duration<Rep, Period> timeout) const {
    if (!wait_for(timeout)) {
      if (auto core = state_->core.lock()) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
        core->cancel(state_->id, ErrorCode::Timeout,
                     "did not finish within get(timeout) of " + std::to_string(ms) + " ms");
      }
      wait();
    }
    return take();
  }
  // Called once with the value (on_done) or the error (on_error) when the task finishes, on the
  // pool's dispatcher/worker thread, or right here if it already has. Like apply_async's
  // callback and error_callback: keep them quick; they must not wait on the pool.
  void add_done_callback(std::function<void(const value_type&)> on_done,
                         std::function<void(const Error&)> on_error = {}) const {
    auto state = state_;
    std::function<void()> callback = [state, on_done, on_error] {
      if (state->error) {
        if (on_error) on_error(*state->error);
      } else if (on_done) {
        on_done(*state->value);
      }
    };
    {
      std::lock_guard lock(state_->mutex);
      if (!state_->done) {
        state_->callbacks.push_back(std::move(callback));
        return;
      }
    }
    callback();
  }

 private:
  R take() const {
    std::lock_guard lock(state_->mutex);
    if (state_->error) throw *state_->error;
    if constexpr (!std::is_void_v<R>) return *state_->value;
  }
  std::shared_ptr<detail::FutureState<R>> state_;
};

// ---------------------------------------------------------------------------------------------
// Imap: the lazy result of imap / imap_unordered

// An input range of results, computed with bounded read-ahead (pre_dispatch batches). Not
// thread-safe. The items given to imap must outlive it. Destroying it cancels what is left.
template <class T>
class Imap {
 public:
  using Decode = std::function<void(detail::CallDriver::Done&, std::vector<TaskResult<T>>&)>;
  Imap(std::unique_ptr<detail::CallDriver> driver, bool ordered, Decode decode)
      : driver_(std::move(driver)), ordered_(ordered), decode_(std::move(decode)) {}

  // The next result in order (imap) or completion order (imap_unordered); nothing at the end.
  // Throws the first task's error (fail fast: the rest is cancelled).
  std::optional<T> next() {
    for (;;) {
      if (pos_ < ready_.size()) {
        TaskResult<T>& r = ready_[pos_++];
        if (!r.ok()) {
          driver_->cancel_all();
          throw r.error();
        }
        return r.value();
      }
      ready_.clear();
      pos_ = 0;
      if (ordered_) {
        auto it = parked_.find(next_first_);
        if (it != parked_.end()) {
          ready_ = std::move(it->second);
          parked_.erase(it);
          next_first_ += ready_.size();
          continue;
        }
      }
      driver_->set_held(parked_.size());
      std::optional<detail::CallDriver::Done> done = driver_->next();
      if (!done) return std::nullopt;
      std::vector<TaskResult<T>> batch;
      decode_(*done, batch);
      if (ordered_) {
        parked_.emplace(done->first, std::move(batch));
      } else {
        ready_ = std::move(batch);
      }
    }
  }

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Imap* owner) : owner_(owner) { ++*this; }
    const T& operator*() const { return *current_; }
    iterator& operator++() {
      current_ = owner_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !current_.has_value(); }

   private:
    Imap* owner_ = nullptr;
    std::optional<T> current_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::unique_ptr<detail::CallDriver> driver_;
  bool ordered_;
  Decode decode_;
  std::vector<TaskResult<T>> ready_;
  std::size_t pos_ = 0;
  std::map<std::size_t, std::vector<TaskResult<T>>> parked_;
  std::size_t next_first_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Pool

// A persistent pool of n_jobs workers, reused across calls (joblib.Parallel with a reused
// executor; multiprocessing.Pool).
//
// Process backend: a small fork server is forked when the pool is constructed, before the pool
// starts any thread; it forks the workers (and their replacements), so every worker starts from
// the same clean, single-threaded image of the caller as of the pool's construction.
// Consequences:
//  - Callables and arguments travel as bytes (mmc::Codec); a callable is named by the address
//    of a template trampoline, valid in the worker because it runs the same binary. Code loaded
//    with dlopen after the pool was created cannot run in it.
//  - Pointers captured by a lambda point into the worker's copy of memory as it was when the
//    pool was created: data made before the pool is visible (read-only in effect: writes stay
//    in the worker), data made after it is not. Use arguments, or mmc::SharedArray (shared.hpp)
//    for memory both sides see.
//    Detected: submit/map/imap/starmap/map_collect throw Error(InvalidArgument) before queuing
//    anything when a word of the callable's bytes points into memory mapped after the pool
//    was created (the heap grown since, a large malloc's own mapping, a later thread's stack,
//    a later mmap). Not detected: a pointer into memory that already existed then but was
//    freed and reused since (a small malloc reusing a heap chunk; the worker reads the old
//    bytes there), pointers held by arguments, and callables with their own Codec. A number
//    that happens to equal such an address is refused too. explain() says it as well.
//  - Worker processes die with the pool, with the caller (their server gets EOF), or on
//    SIGKILL of the server (PR_SET_PDEATHSIG); none is ever left behind.
// Failures: a task that throws fails its call (map, imap: fail fast, the rest is cancelled) or
// only its item (map_collect, futures) with "task N: <message>" and the code it threw
// (TaskFailed for a std::exception). A worker that dies (signal, exit, OOM killer) fails the
// batch it ran with Error(WorkerLost) naming the signal and the tasks; a task past its timeout
// kills its worker, Error(Timeout). Either way the worker is replaced and the pool stays usable.
// After SIGINT/SIGTERM with install_interrupt_handlers(), all workers are killed and every
// call fails with Error(Cancelled).
// Thread safety: every method may be called from any thread, concurrently.
// Cancelling a task (get(timeout), fail fast, a timeout, destruction) means it never starts if
// it was still queued, even behind a busy worker's task, or its worker is killed (and replaced)
// if it was running; the tasks queued behind it run on. (Past the run board's 256 workers per
// pool, a task queued at a busy worker still runs when cancelled; its result is dropped.)
// Destruction cancels what is still queued or running (futures then throw Cancelled: "the pool
// was destroyed before the task ran", or "cancelled while running: the pool was destroyed";
// the thread backend waits for running tasks instead) and waits for every worker to be reaped.
// Output: stdio is flushed before each fork and by workers after each task and before they
// exit, so nothing is printed twice or lost when stdout is a file or a pipe.
class Pool {
 public:
  Pool() : Pool(ParallelOptions{}) {}
  explicit Pool(const ParallelOptions& options) {
    detail::CoreOptions core = detail::resolve_options(options);
    verbose_ = core.verbose;
    n_jobs_ = core.n_jobs;
    backend_ = core.backend;
    max_nbytes_ = core.max_nbytes;
    core_ = detail::make_pool_core(core);
  }
  Pool(Pool&&) noexcept = default;
  Pool& operator=(Pool&&) noexcept = default;

  int n_jobs() const noexcept { return n_jobs_; }
  Backend backend() const noexcept { return backend_; }
  std::uint64_t max_nbytes() const noexcept { return max_nbytes_; }

  // Says, without running anything, how submit(fn, args...) would move each argument to a
  // worker: its encoded size, whether the task's message goes through the worker's socket or
  // a shared segment (max_nbytes), and which arguments go by reference (ArrayRef, SharedArray:
  // mapped by the worker, never copied, with their mmap mode). One line per argument, and on
  // the process backend a line on the callable's captured pointers (one into memory mapped
  // after the pool was created is named: submit would refuse it).
  template <class F, class... Args>
  std::string explain(const F& fn, const Args&... args) const {
    using Tuple = std::tuple<std::decay_t<Args>...>;
    detail::MessageFds fds;
    const std::uint64_t header = detail::batch_header<F, Tuple>(fn, 0, &fds).size();
    std::vector<detail::ArgumentNote> notes;
    (notes.push_back(note_of(args)), ...);
    return detail::explain_transport(backend_, max_nbytes_, header, notes,
                                     detail::late_pointer_of(*core_, fn));
  }

  // fn(item) for each item, results in input order. Fail fast.
  template <class F, class Range>
  auto map(F fn, const Range& items, const CallOptions& options = {}) {
    using T = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<F&, T&&>;
    auto results = collect<R>(fn, items, options, /*fail_fast=*/true,
                              [](const T& item) { return std::tuple<T>(item); });
    if constexpr (!std::is_void_v<R>) return unwrap(std::move(results));
  }

  // Like map, but never throws for a task's error: each item's value or error, in order. Errors
  // of the pool itself (interrupted) still throw.
  template <class F, class Range>
  auto map_collect(F fn, const Range& items, const CallOptions& options = {}) {
    using T = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<F&, T&&>;
    return collect<R>(fn, items, options, /*fail_fast=*/false,
                      [](const T& item) { return std::tuple<T>(item); });
  }

  // fn(args...) for each tuple (or pair) of arguments, results in order. Fail fast.
  template <class F, class Range>
  auto starmap(F fn, const Range& tuples, const CallOptions& options = {}) {
    using Tup = std::ranges::range_value_t<Range>;
    using Args = decltype(std::apply(
        [](auto&&... a) { return std::tuple<std::decay_t<decltype(a)>...>(a...); },
        std::declval<const Tup&>()));
    using R = decltype(std::apply(std::declval<F&>(), std::declval<Args&&>()));
    auto results = collect<R>(fn, tuples, options, /*fail_fast=*/true, [](const Tup& t) {
      return std::apply([](const auto&... a) { return Args(a...); }, t);
    });
    if constexpr (!std::is_void_v<R>) return unwrap(std::move(results));
  }

  // Lazy map: results in input order as they come, reading at most pre_dispatch batches ahead.
  template <class F, class Range>
  auto imap(F fn, const Range& items, const CallOptions& options = {}) {
    return lazy(fn, items, options, /*ordered=*/true);
  }
  // Lazy map in completion order.
  template <class F, class Range>
  auto imap_unordered(F fn, const Range& items, const CallOptions& options = {}) {
    return lazy(fn, items, options, /*ordered=*/false);
  }

  // Runs fn(args...) on a worker; the future holds its result.
  template <class F, class... Args>
  auto submit(F fn, Args&&... args) {
    return submit_with(TaskOptions{}, std::move(fn), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  auto submit_with(const TaskOptions& options, F fn, Args&&... args) {
    using Tuple = std::tuple<std::decay_t<Args>...>;
    using R = decltype(std::apply(std::declval<F&>(), std::declval<Tuple&&>()));
    detail::check_callable<F>();
    (detail::check_value<std::decay_t<Args>>(), ...);
    if constexpr (!std::is_void_v<R>) detail::check_value<std::decay_t<R>>();
    detail::check_captures(*core_, fn);
    auto state = std::make_shared<detail::FutureState<R>>();
    state->core = core_;
    detail::BatchRequest request;
    request.payload = detail::batch_header<F, Tuple>(fn, 0, &request.fds);
    detail::patch_count(request.payload, 1);
    Writer w(request.payload, &request.fds);
    Codec<Tuple>::write(w, Tuple(std::forward<Args>(args)...));
    request.n_items = 1;
    request.timeout = options.timeout;
    request.on_done = [state](detail::BatchOutcome& outcome) {
      std::vector<TaskResult<detail::stored_t<R>>> results;
      try {
        detail::decode_outcome(outcome, 0, 1, results);
      } catch (const Error& error) {
        results.emplace_back(error);
      }
      std::vector<std::function<void()>> callbacks;
      {
        std::lock_guard lock(state->mutex);
        if (results[0].ok()) {
          state->value.emplace(results[0].value());
        } else {
          state->error.emplace(results[0].error());
        }
        state->done = true;
        callbacks.swap(state->callbacks);
      }
      state->ready_cv.notify_all();
      for (auto& callback : callbacks) callback();
    };
    // The id is set before anyone can cancel: cancel() needs it, and the serial backend
    // completes inside submit.
    const std::uint64_t id = core_->submit(std::move(request));
    {
      std::lock_guard lock(state->mutex);
      state->id = id;
    }
    return Future<R>(std::move(state));
  }

 private:
  template <class A>
  static detail::ArgumentNote note_of(const A& arg) {
    detail::check_value<A>();
    detail::ArgumentNote note;
    note.type = detail::demangle(typeid(A).name());
    Bytes bytes;
    detail::MessageFds fds;
    Writer w(bytes, &fds);
    Codec<A>::write(w, arg);
    note.encoded = bytes.size();
    note.by_reference = detail::TransportNote<A>::by_reference(arg);
    return note;
  }

  template <class T>
  static std::vector<T> unwrap(std::vector<TaskResult<T>>&& results) {
    std::vector<T> values;
    values.reserve(results.size());
    for (auto& r : results) values.push_back(r.value());
    return values;
  }

  template <class F, class Tuple, class Range, class MakeTuple>
  std::unique_ptr<detail::CallDriver> make_driver(F fn, const Range& items,
                                                  const CallOptions& options, MakeTuple make) {
    detail::check_callable<F>();
    detail::check_value<Tuple>();
    detail::check_captures(*core_, fn);
    std::size_t total = 0;
    if constexpr (std::ranges::sized_range<const Range>) total = std::ranges::size(items);
    auto it = std::ranges::begin(items);
    auto end = std::ranges::end(items);
    auto encode = [fn, it, end, make](Bytes& payload, detail::MessageFds& fds, std::size_t first,
                                      std::size_t max_items) mutable -> std::size_t {
      if (it == end) return 0;
      payload = detail::batch_header<F, Tuple>(fn, first, &fds);
      payload.reserve(payload.size() + std::min<std::size_t>(max_items, 1 << 16) * 16);
      Writer w(payload, &fds);
      std::size_t n = 0;
      for (; n < max_items && it != end; ++it, ++n) Codec<Tuple>::write(w, make(*it));
      detail::patch_count(payload, n);
      return n;
    };
    return std::make_unique<detail::CallDriver>(core_, n_jobs_, verbose_, options, total,
                                                std::move(encode));
  }

  template <class R, class F, class Range, class MakeTuple>
  std::vector<TaskResult<detail::stored_t<R>>> collect(F fn, const Range& items,
                                                       const CallOptions& options, bool fail_fast,
                                                       MakeTuple make) {
    using T = detail::stored_t<R>;
    using Tuple = decltype(make(*std::ranges::begin(items)));
    if constexpr (!std::is_void_v<R>) detail::check_value<std::decay_t<R>>();
    auto driver = make_driver<F, Tuple>(fn, items, options, make);
    std::map<std::size_t, std::vector<TaskResult<T>>> batches;
    while (auto done = driver->next()) {
      std::vector<TaskResult<T>> batch;
      detail::decode_outcome(done->outcome, done->first, done->n, batch);
      if (fail_fast) {
        for (auto& r : batch) {
          if (!r.ok()) {
            driver->cancel_all();
            throw r.error();
          }
        }
      }
      batches.emplace(done->first, std::move(batch));
    }
    std::vector<TaskResult<T>> results;
    for (auto& [first, batch] : batches) {
      for (auto& r : batch) results.push_back(std::move(r));
    }
    return results;
  }

  template <class F, class Range>
  auto lazy(F fn, const Range& items, const CallOptions& options, bool ordered) {
    using In = std::ranges::range_value_t<Range>;
    using R = std::invoke_result_t<F&, In&&>;
    static_assert(!std::is_void_v<R>, "imap needs a function that returns a value: use map");
    if constexpr (!std::is_void_v<R>) detail::check_value<std::decay_t<R>>();
    auto driver = make_driver<F, std::tuple<In>>(
        fn, items, options, [](const In& item) { return std::tuple<In>(item); });
    return Imap<R>(std::move(driver), ordered,
                   [](detail::CallDriver::Done& done, std::vector<TaskResult<R>>& out) {
                     detail::decode_outcome(done.outcome, done.first, done.n, out);
                   });
  }

  std::shared_ptr<detail::PoolCore> core_;
  int n_jobs_ = 1;
  int verbose_ = 0;
  Backend backend_ = Backend::Process;
  std::uint64_t max_nbytes_ = 0;
};

}  // namespace mmc
