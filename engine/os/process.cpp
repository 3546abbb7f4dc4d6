// Process spawning over fork(2), prctl(PR_SET_PDEATHSIG), pidfd_open(2) and wait4(2).
#include "os/process.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <utility>

namespace mmc::detail {
namespace {

// One wait4 with EINTR retried. `*reaped` is false only for WNOHANG on a running child.
ExitInfo wait_one(pid_t pid, int options, pid_t* who, bool* reaped) noexcept {
  ExitInfo info;
  int status = 0;
  rusage usage{};
  pid_t rc;
  do {
    rc = wait4(pid, &status, options, &usage);
  } while (rc < 0 && errno == EINTR);
  *who = rc;
  *reaped = rc != 0;
  if (rc <= 0) return info;  // still running, or ECHILD
  info.known = true;
  info.max_rss_kib = usage.ru_maxrss;
  if (WIFSIGNALED(status)) {
    info.signaled = true;
    info.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    info.status = WEXITSTATUS(status);
  }
  return info;
}

ExitInfo wait_for(pid_t pid, int options, bool* reaped) noexcept {
  pid_t who = 0;
  return wait_one(pid, options, &who, reaped);
}

void set_up_child(const ChildSetup& setup, pid_t parent) {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  sigset_t unblock;
  sigemptyset(&unblock);
  action.sa_handler = SIG_DFL;
  for (const int signo : setup.default_signals) {
    sigaction(signo, &action, nullptr);
    sigaddset(&unblock, signo);
  }
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  action.sa_handler = SIG_IGN;
  for (const int signo : setup.ignored_signals) sigaction(signo, &action, nullptr);
  if (setup.death_signal != 0) {
    prctl(PR_SET_PDEATHSIG, setup.death_signal);
    if (getppid() != parent) _exit(setup.orphaned_status);
  }
}

}  // namespace

std::string signal_name(int signo) {
  const char* abbrev = sigabbrev_np(signo);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(signo);
}

std::string describe(const ExitInfo& info) {
  if (!info.known) return "ended (its status could not be collected)";
  if (!info.signaled) return "exited with status " + std::to_string(info.status);
  std::string text = "was killed by signal " + std::to_string(info.signal);
  if (sigabbrev_np(info.signal) != nullptr) text += " (" + signal_name(info.signal) + ")";
  return text;
}

void flush_stdio(bool every_file) noexcept {
  try {
    std::cout.flush();  // its own buffer when the program turned off sync_with_stdio
  } catch (...) {
  }
  std::fflush(every_file ? nullptr : stdout);
}

pid_t fork_child(const ChildSetup& setup, const std::function<void()>& body) noexcept {
  flush_stdio(/*every_file=*/true);
  const pid_t parent = getpid();
  if (setup.hooks.prepare) setup.hooks.prepare();
  const pid_t pid = fork();
  if (pid != 0) {
    const int saved = errno;
    if (setup.hooks.parent) setup.hooks.parent();
    errno = saved;
    return pid;
  }
  int status = 0;
  try {
    if (setup.hooks.child) setup.hooks.child();
    set_up_child(setup, parent);
    body();
  } catch (...) {
    status = setup.uncaught_status;
  }
  flush_stdio(/*every_file=*/true);
  _exit(status);
}

ExitInfo wait_child(pid_t pid) noexcept {
  bool reaped = false;
  return wait_for(pid, 0, &reaped);
}

pid_t reap_any_ended(ExitInfo* info) noexcept {
  pid_t who = 0;
  bool reaped = false;
  *info = wait_one(-1, WNOHANG, &who, &reaped);
  return who;
}

ChildProcess ChildProcess::start(const ChildSetup& setup,
                                 const std::function<void()>& body) noexcept {
  ChildProcess process;
  const pid_t pid = fork_child(setup, body);
  if (pid < 0) return process;
  process.pid_ = pid;
  // Fails only on old kernels (ENOSYS); then exits are seen some other way (a socket's end).
  const int saved = errno;
  process.pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  errno = saved;
  return process;
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)), pidfd_(std::move(other.pidfd_)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
  }
  return *this;
}

ExitInfo ChildProcess::reap(std::chrono::milliseconds grace) noexcept {
  if (pid_ <= 0) return {};
  const auto deadline = std::chrono::steady_clock::now() + grace;
  bool reaped = false;
  ExitInfo info = wait_for(pid_, WNOHANG, &reaped);
  while (!reaped) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (pidfd_) {
      pollfd pfd{pidfd_.get(), POLLIN, 0};
      poll(&pfd, 1, static_cast<int>(left.count()));  // EINTR or timeout: just look again
    } else {
      const timespec tick{0, 1'000'000};
      nanosleep(&tick, nullptr);
    }
    info = wait_for(pid_, WNOHANG, &reaped);
  }
  if (!reaped) {
    kill(pid_, SIGKILL);
    info = wait_for(pid_, 0, &reaped);
  }
  pid_ = 0;
  pidfd_.reset();
  return info;
}

void ChildProcess::kill_and_reap() noexcept {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  wait_child(pid_);
  pid_ = 0;
  pidfd_.reset();
}

}  // namespace mmc::detail
