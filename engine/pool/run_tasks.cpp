// run_tasks: validates the call and hands it to a backend; the serial backend; task errors.
#include <string>

#include "core/interrupt.hpp"
#include "mmc/error.hpp"
#include "mmc/pool.hpp"
#include "pool/backends.hpp"

namespace mmc {
namespace detail {

TaskFailure current_task_failure() {
  try {
    throw;
  } catch (const Error& error) {
    return {error.code(), error.what()};
  } catch (const std::exception& error) {
    return {ErrorCode::TaskFailed, error.what()};
  } catch (...) {
    return {ErrorCode::TaskFailed, "the task threw something that is not a std::exception"};
  }
}

void raise_task_failure(std::size_t task, const TaskFailure& failure) {
  raise(failure.code, "task " + std::to_string(task) + ": " + failure.message);
}

CallStats run_serial(const Call& call) {
  CallStats stats;
  stats.workers = 1;
  for (std::size_t task = 0; task < call.n_tasks; ++task) {
    throw_if_interrupted();
    const Bytes arg = call.make_arg ? call.make_arg(task) : Bytes();
    Bytes out;
    try {
      call.run(task, {arg.data(), arg.size()}, out);
    } catch (...) {
      raise_task_failure(task, current_task_failure());
    }
    if (call.on_result) call.on_result(task, {out.data(), out.size()});
    stats.tasks = task + 1;
    if (call.on_progress) call.on_progress(task + 1, call.n_tasks);
  }
  return stats;
}

}  // namespace detail

CallStats run_tasks(const PoolOptions& options, const Call& call) {
  const int n_workers = effective_n_jobs(options.n_jobs);
  if (call.n_tasks > 0 && !call.run) {
    raise(ErrorCode::InvalidArgument, "run_tasks: the call has tasks but no task function");
  }
  detail::throw_if_interrupted();
  if (call.n_tasks == 0) return {};
  switch (options.backend) {
    case Backend::Serial:
      return detail::run_serial(call);
    case Backend::Thread:
      return detail::run_threads(call, n_workers);
    case Backend::Process:
      return detail::run_processes(call, n_workers, options.max_nbytes);
  }
  raise(ErrorCode::InvalidArgument, "run_tasks: unknown backend");
}

}  // namespace mmc
