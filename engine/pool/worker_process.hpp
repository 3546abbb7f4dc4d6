// What a pool's workers share: their exit codes, their first steps, their stdio, their fork.
#pragma once

#include <functional>

#include "os/process.hpp"

namespace mmc::detail {

// The exit codes of a worker that stops on its own; any other status is its task's doing.
inline constexpr int kExitUncaught = 70;    // an exception escaped the child's body
inline constexpr int kExitOrphaned = 71;    // its parent died before it could be tied to it
inline constexpr int kExitProtocol = 72;    // the pool sent something that is not a task
inline constexpr int kExitInitFailed = 73;  // the pool's initializer threw

// What every worker does first: ignore SIGINT/SIGTERM (Ctrl-C reaches the whole process group;
// the parent decides what happens) and set OMP/OPENBLAS/MKL thread counts to `threads` unless
// the user chose already, as joblib does, so nested pools do not oversubscribe.
void prepare_worker(int threads);

// In a worker after each task: flush_stdio(false) for a task that printed, and for one that
// did not (most tiny tasks) only a look at the buffers, not two flushes that take stdout's lock.
void flush_task_output() noexcept;
// How a worker ends on its own: flush_stdio(true), then _exit(status).
[[noreturn]] void exit_worker(int status) noexcept;

// The setup of a pool's child: ends with kExitUncaught when its body throws; when `tied`, gets
// SIGKILL when the forking thread ends (kExitOrphaned if that thread was gone already); `hooks`
// run around its fork.
ChildSetup pool_child_setup(bool tied, const ForkHooks& hooks);
// ChildProcess::start(setup, body); throws Error(Io) if fork fails.
ChildProcess start_child(const ChildSetup& setup, const std::function<void()>& body);

}  // namespace mmc::detail
