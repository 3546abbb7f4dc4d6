// The three backends behind run_tasks, and what they share: turning a task's exception into
// the call's error.
#pragma once

#include <cstddef>
#include <string>

#include "mmc/error.hpp"
#include "mmc/pool.hpp"

namespace mmc::detail {

inline constexpr std::size_t kTasksInFlightPerWorker = 2;

// The code and message of the exception being handled: mmc::Error keeps its code,
// std::exception becomes TaskFailed. Call only inside a catch block.
struct TaskFailure {
  ErrorCode code = ErrorCode::TaskFailed;
  std::string message;
};
TaskFailure current_task_failure();

// Error(code, "task N: message").
[[noreturn]] void raise_task_failure(std::size_t task, const TaskFailure& failure);

// REQUIRES (all three): call.n_tasks > 0, call.run set, n_workers >= 1.
CallStats run_serial(const Call& call);
CallStats run_threads(const Call& call, int n_workers);
CallStats run_processes(const Call& call, int n_workers, std::uint64_t max_nbytes);

}  // namespace mmc::detail
