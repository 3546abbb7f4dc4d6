// The pool as a library (joblib.Parallel and multiprocessing.Pool natively): mmc::Pool with
// process, thread and serial backends, map/imap/starmap/submit, futures, batching and progress.
// Values cross a process boundary through mmc::Codec (codec.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "mmc/codec.hpp"
#include "mmc/detail/pool_engine.hpp"
#include "mmc/error.hpp"
#include "mmc/pool.hpp"

namespace mmc {

// Pool-wide options: the one options type of pool.hpp.
using ParallelOptions = PoolOptions;

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
  // Starts the workers (process backend: forks the fork server). Throws Error(InvalidArgument)
  // for bad options.
  explicit Pool(const ParallelOptions& options);
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
    ByteWriter w(request.payload, &request.fds);
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
    ByteWriter w(bytes, &fds);
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
      ByteWriter w(payload, &fds);
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