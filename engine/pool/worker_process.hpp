// WorkerProcess: one forked child, killed and reaped when its owner lets go of it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>

#include "os/unique_fd.hpp"

namespace mmc::detail {

// The exit codes of a worker that stops on its own; any other status is its task's doing.
inline constexpr int kExitUncaught = 70;    // an exception escaped the child's body
inline constexpr int kExitOrphaned = 71;    // its parent died before it could be tied to it
inline constexpr int kExitProtocol = 72;    // the pool sent something that is not a task
inline constexpr int kExitInitFailed = 73;  // the pool's initializer threw

// How a child ended, from wait4.
struct ExitInfo {
  bool known = false;     // false if the child could not be reaped (ECHILD)
  bool signaled = false;  // killed by `signal`; else exited with `status`
  int signal = 0;
  int status = 0;
  long max_rss_kib = 0;  // the child's peak resident set
};

// What every worker does first: ignore SIGINT/SIGTERM (Ctrl-C reaches the whole process group;
// the parent decides what happens) and set OMP/OPENBLAS/MKL thread counts to `threads` unless
// the user chose already, as joblib does, so nested pools do not oversubscribe.
void prepare_worker(int threads);

// Writes out what the standard streams (std::cout, then C stdio: every open FILE when
// `every_file`, else stdout) hold in their buffers. Called before every fork, or each child
// would print the parent's unflushed output again; and in a worker after each task and before
// it exits, or what tasks print is lost when stdout is a file or a pipe (fully buffered) and
// the worker is later killed or ends with _exit. Cheap when there is nothing to write.
void flush_stdio(bool every_file) noexcept;
// In a worker after each task: flush_stdio(false) for a task that printed, and for one that
// did not (most tiny tasks) only a look at the buffers, not two flushes that take stdout's lock.
void flush_task_output() noexcept;
// How a worker ends on its own: flush_stdio(true), then _exit(status).
[[noreturn]] void exit_worker(int status) noexcept;

// "was killed by signal 9 (SIGKILL)" or "exited with status 3".
std::string describe(const ExitInfo& info);

// Owns a child process: the destructor SIGKILLs and reaps it, so no zombie and no orphan
// outlives its owner. Move-only; not thread-safe.
class WorkerProcess {
 public:
  // Forks. In the child, runs `body` and then _exit(0); an exception escaping `body` ends the
  // child with _exit(kExitUncaught). Never returns in the child. Throws Error(Io) if fork fails.
  static WorkerProcess start(const std::function<void()>& body);

  WorkerProcess() noexcept = default;
  ~WorkerProcess() { kill_and_reap(); }
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;
  WorkerProcess(WorkerProcess&& other) noexcept;
  WorkerProcess& operator=(WorkerProcess&& other) noexcept;

  pid_t pid() const noexcept { return pid_; }
  // A pidfd that polls readable when the child exits, or -1 on kernels without pidfd_open.
  int pidfd() const noexcept { return pidfd_.get(); }

  // Waits up to `grace` for the child to end on its own, then SIGKILLs it; reaps it and says
  // how it ended.
  ExitInfo reap(std::chrono::milliseconds grace);
  // SIGKILL, then reap. Idempotent.
  void kill_and_reap() noexcept;
  // For a copy inherited by a later child: closes the pidfd and forgets the pid, without
  // touching the process (it is the sibling's, not ours).
  void abandon_in_child() noexcept;

 private:
  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

}  // namespace mmc::detail
