// run_tasks: one call's tasks on a pool core made for the call. The core's workers are forked
// after the TaskSet exists, so a task batch names the TaskSet by its address and the worker calls
// its closures in its own copy of the caller's memory.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "core/interrupt.hpp"
#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"
#include "pool/pool_core.hpp"

namespace mmc {
namespace detail {
namespace {

// Tasks queued per worker: a free worker takes the next, so long tasks balance; more while
// tasks take under a millisecond, so tiny tasks pipeline (and travel in groups) instead of
// paying a round trip through the dispatcher each.
constexpr std::size_t kTasksInFlightPerWorker = 2;
constexpr std::size_t kTinyTasksInFlightPerWorker = 16;
constexpr double kTinyTaskSeconds = 1e-3;
// How often the caller looks at the interrupt flag while it waits (the thread and serial
// cores cannot be woken by a signal).
constexpr std::chrono::milliseconds kInterruptCheck{50};

// A run_tasks batch: the batch header (trampoline, 1 item, the task as first item), the TaskSet's
// address, then the task's argument.
constexpr std::size_t kCallBatchHeader = 4 * sizeof(std::uint64_t);

void run_call_task(ByteView batch, const MessageFds&, Bytes& out, MessageFds&) {
  ByteReader in(batch);
  in.u64();  // the trampoline: us
  in.u64();  // one item
  const std::uint64_t task = in.u64();
  const auto* call = reinterpret_cast<const TaskSet*>(in.u64());
  const ByteView arg{batch.data + kCallBatchHeader, batch.size - kCallBatchHeader};
  if (out.empty()) {
    call->run(task, arg, out);
    return;
  }
  Bytes result;
  call->run(task, arg, result);
  out.insert(out.end(), result.begin(), result.end());
}

Bytes call_batch(const TaskSet& call, std::size_t task) {
  const Bytes arg = call.make_arg ? call.make_arg(task) : Bytes();
  Bytes payload(kCallBatchHeader + arg.size());
  const std::uint64_t header[4] = {reinterpret_cast<std::uint64_t>(&run_call_task), 1, task,
                                   reinterpret_cast<std::uint64_t>(&call)};
  std::memcpy(payload.data(), header, sizeof header);
  if (!arg.empty()) std::memcpy(payload.data() + kCallBatchHeader, arg.data(), arg.size());
  return payload;
}

// The outcomes the core hands over (on the caller's thread while it drives a process core, on
// worker threads or inside submit() otherwise), waiting for the caller's loop.
struct Inbox {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::pair<std::size_t, BatchOutcome>> done;
};

CallStats drive(PoolCore& core, const TaskSet& call, int n_workers) {
  auto inbox = std::make_shared<Inbox>();
  std::size_t per_worker = kTasksInFlightPerWorker;
  std::size_t next = 0;
  std::size_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  while (done < call.n_tasks) {
    throw_if_interrupted();
    while (next < call.n_tasks && next - done < per_worker * static_cast<std::size_t>(n_workers)) {
      BatchRequest request;
      request.payload = call_batch(call, next);
      request.envelope = kCallBatchHeader;
      request.first_task = next;
      request.n_items = 1;
      request.on_done = [inbox, task = next](BatchOutcome& outcome) {
        {
          std::lock_guard lock(inbox->mutex);
          inbox->done.emplace_back(task, std::move(outcome));
        }
        inbox->ready.notify_one();
      };
      core.submit(std::move(request));
      ++next;
    }
    // The process core is driven from here (its outcomes land in the inbox on this thread);
    // the thread and serial cores deliver on their own.
    const bool driven = core.dispatch(kInterruptCheck);
    std::deque<std::pair<std::size_t, BatchOutcome>> arrived;
    {
      std::unique_lock lock(inbox->mutex);
      if (!driven) {
        inbox->ready.wait_for(lock, kInterruptCheck, [&] { return !inbox->done.empty(); });
      }
      arrived.swap(inbox->done);
    }
    for (auto& [task, outcome] : arrived) {
      if (outcome.failed) throw_error(outcome.code, outcome.message);
      per_worker = outcome.seconds < kTinyTaskSeconds ? kTinyTasksInFlightPerWorker
                                                      : kTasksInFlightPerWorker;
      if (call.on_result) call.on_result(task, {outcome.results.data(), outcome.results.size()});
      ++done;
      if (call.on_progress) {
        call.on_progress(Progress::at(
            done, call.n_tasks,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
      }
    }
  }
  CallStats stats = core.traffic();
  stats.tasks = done;
  stats.workers = n_workers;
  return stats;
}

}  // namespace
}  // namespace detail

CallStats run_tasks(const PoolOptions& options, const TaskSet& call) {
  detail::CoreOptions core_options = detail::resolve_options(options);
  if (call.n_tasks > 0 && !call.run) {
    throw_error(ErrorCode::InvalidArgument, "run_tasks: the call has tasks but no task function");
  }
  detail::throw_if_interrupted();
  if (call.n_tasks == 0) return {};
  const int n_workers = core_options.backend == Backend::Serial
                            ? 1
                            : static_cast<int>(std::min<std::size_t>(
                                  static_cast<std::size_t>(core_options.n_jobs), call.n_tasks));
  core_options.n_jobs = n_workers;
  core_options.one_call = true;
  // Made here, after `call`: forked workers see the TaskSet at the address each batch names.
  const std::shared_ptr<detail::PoolCore> core = detail::make_pool_core(core_options);
  return detail::drive(*core, call, n_workers);
}

}  // namespace mmc
