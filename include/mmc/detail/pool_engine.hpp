// Internal to mmcompute: the engine under mmc::Pool's templates (batches and their encoding,
// the PoolCore interface, the call driver, futures' shared state). parallel.hpp includes it for
// its templates; users never include it, and nothing in it is API: it changes without notice.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmc/codec.hpp"
#include "mmc/error.hpp"
#include "mmc/pool.hpp"

namespace mmc::detail {

template <class R>
using stored_t = std::conditional_t<std::is_void_v<R>, NoValue, R>;

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
  // A core without a thread of its own to dispatch (the process backend's one-call core, made
  // by run_tasks): does the dispatcher's work on the calling thread, on_done included, for one
  // round (up to `wait`, less when a result arrives) and returns true. Other cores dispatch by
  // themselves: false at once. REQUIRES: called from the thread that made the core.
  virtual bool dispatch(std::chrono::milliseconds wait) {
    static_cast<void>(wait);
    return false;
  }
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
[[noreturn]] void throw_late_pointer(std::uintptr_t address);

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
    throw_late_pointer(address);
  }
}

// Turns the exception being handled into (code, message). Call only inside a catch block.
void current_failure(ErrorCode* code, std::string* message);

// The worker side of a batch: decodes F and each item's arguments, calls, encodes results.
template <class F, class Tuple>
void run_items(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds) {
  ByteReader in(batch, &fds);
  in.u64();  // the trampoline: us
  const std::uint64_t n = in.u64();
  in.u64();  // first task
  F fn = Codec<F>::read(in);
  ByteWriter w(out, &out_fds);
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
  ByteReader in({outcome.results.data(), outcome.results.size()}, &outcome.fds);
  for (std::size_t i = 0; i < n; ++i) {
    if (in.u64() == 0) {
      if constexpr (std::is_same_v<T, NoValue>) {
        out.emplace_back(NoValue{});
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
  ByteWriter w(payload, fds);
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

}  // namespace mmc::detail
