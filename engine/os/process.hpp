// Process spawning: fork a child with its signal setup and its tie to the parent, reap it with
// EINTR handled once, own it with a handle that kills and reaps it, and say how it ended.
// Nothing throws: a failed fork returns with errno set, and the caller words the error.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "mmc/fork_hooks.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

// How a child ended, from wait4.
struct ExitInfo {
  bool known = false;     // false if the child could not be reaped (ECHILD)
  bool signaled = false;  // killed by `signal`; else exited with `status`
  int signal = 0;
  int status = 0;
  long max_rss_kib = 0;  // the child's peak resident set
};

// "was killed by signal 9 (SIGKILL)", "exited with status 3", or, when `known` is false,
// "ended (its status could not be collected)".
std::string describe(const ExitInfo& info);
// "SIGKILL"; "signal 42" for a number without a name.
std::string signal_name(int signo);

// Writes out what the standard streams (std::cout, then C stdio: every open FILE when
// `every_file`, else stdout) hold in their buffers. fork_child calls it first, or the child
// would print the parent's unflushed output again. Cheap when there is nothing to write.
void flush_stdio(bool every_file) noexcept;

// What a child does before its body runs, in this order.
struct ChildSetup {
  // Back to SIG_DFL and unblocked: the caller may have ignored or blocked them, and a child
  // inherits both.
  std::vector<int> default_signals;
  // Set to SIG_IGN.
  std::vector<int> ignored_signals;
  // PR_SET_PDEATHSIG: sent to the child when the *thread* that forked it ends (not the process:
  // fork from a thread that lives as long as the child should). The tie holds from the
  // child's setup on: a thread that may end at once should wait for a sign from the body.
  // 0: no tie.
  int death_signal = 0;
  // With death_signal: the child _exits with this status, without running its body, when its
  // parent was already gone when the tie was made (the signal would never come).
  int orphaned_status = 71;
  // The child's exit status when an exception escapes its body.
  int uncaught_status = 70;
  // Run around the fork (fork_child): hooks.child before everything above.
  ForkHooks hooks;
};

// Forks. In the parent: the child's pid, or -1 with errno set. In the child: `setup`, then
// `body`, then stdio flushed and _exit(0) (setup.uncaught_status if `body` throws); never
// returns there, never unwinds into the parent's frames nor runs its atexit handlers.
pid_t fork_child(const ChildSetup& setup, const std::function<void()>& body) noexcept;

// Blocks until child `pid` ends (EINTR retried), reaps it and says how it ended; `known` is
// false when it is not our child or someone else reaped it (SIGCHLD ignored).
ExitInfo wait_child(pid_t pid) noexcept;
// Reaps one child that has ended, whichever, without blocking: its pid and *info; 0 when every
// child is still running; -1 when there is no child at all.
pid_t reap_any_ended(ExitInfo* info) noexcept;

// Owns a child process: the destructor SIGKILLs and reaps it, so no zombie and no orphan
// outlives its owner. Move-only; not thread-safe.
class ChildProcess {
 public:
  // fork_child(setup, body), with a pidfd for exit notification. Empty (pid() == 0, errno
  // set) when fork fails.
  static ChildProcess start(const ChildSetup& setup, const std::function<void()>& body) noexcept;

  ChildProcess() noexcept = default;
  ~ChildProcess() { kill_and_reap(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;

  pid_t pid() const noexcept { return pid_; }
  // A pidfd that polls readable when the child exits, or -1 on kernels without pidfd_open.
  int pidfd() const noexcept { return pidfd_.get(); }

  // Waits up to `grace` for the child to end on its own, then SIGKILLs it; reaps it and says
  // how it ended. Empty afterwards.
  ExitInfo reap(std::chrono::milliseconds grace) noexcept;
  // SIGKILL, then reap. Idempotent.
  void kill_and_reap() noexcept;

 private:
  pid_t pid_ = 0;
  UniqueFd pidfd_;
};

}  // namespace mmc::detail
