// WorkerProcess: fork, pidfd for exit notification, wait4 for status and peak RSS.
#include "pool/worker_process.hpp"

#include <poll.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <utility>

#include "mmc/error.hpp"

#if defined(__GLIBCXX__)
#include <ext/stdio_sync_filebuf.h>
#endif

namespace mmc::detail {

void prepare_worker(int threads) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGINT, &ignore, nullptr);
  sigaction(SIGTERM, &ignore, nullptr);
  const std::string value = std::to_string(threads);
  for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}) {
    setenv(name, value.c_str(), /*overwrite=*/0);
  }
}

void flush_stdio(bool every_file) noexcept {
  try {
    std::cout.flush();  // its own buffer when the program turned off sync_with_stdio
  } catch (...) {
  }
  std::fflush(every_file ? nullptr : stdout);
}

void flush_task_output() noexcept {
#if defined(__GLIBCXX__)
  // Synced with stdio (the default), std::cout keeps no buffer: it writes into stdout's.
  const bool own_buffer =
      dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(std::cout.rdbuf()) == nullptr;
#else
  const bool own_buffer = true;
#endif
  if (own_buffer) {
    try {
      std::cout.flush();
    } catch (...) {
    }
  }
  if (__fpending(stdout) != 0) std::fflush(stdout);
}

void exit_worker(int status) noexcept {
  flush_stdio(/*every_file=*/true);
  _exit(status);
}

namespace {

ExitInfo wait_for(pid_t pid, int options, bool* reaped) {
  ExitInfo info;
  int status = 0;
  rusage usage{};
  for (;;) {
    const pid_t rc = wait4(pid, &status, options, &usage);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {  // WNOHANG and still running
      *reaped = false;
      return info;
    }
    *reaped = true;
    if (rc < 0) return info;  // ECHILD: someone else reaped it (SIGCHLD ignored)
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
}

}  // namespace

std::string describe(const ExitInfo& info) {
  if (!info.known) return "ended (its status could not be collected)";
  if (!info.signaled) return "exited with status " + std::to_string(info.status);
  const char* abbrev = sigabbrev_np(info.signal);
  std::string text = "was killed by signal " + std::to_string(info.signal);
  if (abbrev != nullptr) text += std::string(" (SIG") + abbrev + ")";
  return text;
}

WorkerProcess WorkerProcess::start(const std::function<void()>& body) {
  flush_stdio(/*every_file=*/true);
  const pid_t pid = fork();
  if (pid < 0) throw_errno("fork of a worker process");
  if (pid == 0) {
    // The child must never unwind into the parent's frames nor run its atexit handlers.
    try {
      body();
    } catch (...) {
      exit_worker(kExitUncaught);
    }
    exit_worker(0);
  }
  WorkerProcess process;
  process.pid_ = pid;
  // Fails only on old kernels (ENOSYS); then exits are seen through the socket alone.
  process.pidfd_.reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  return process;
}

WorkerProcess::WorkerProcess(WorkerProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, 0)), pidfd_(std::move(other.pidfd_)) {}

WorkerProcess& WorkerProcess::operator=(WorkerProcess&& other) noexcept {
  if (this != &other) {
    kill_and_reap();
    pid_ = std::exchange(other.pid_, 0);
    pidfd_ = std::move(other.pidfd_);
  }
  return *this;
}

ExitInfo WorkerProcess::reap(std::chrono::milliseconds grace) {
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

void WorkerProcess::kill_and_reap() noexcept {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  bool reaped = false;
  wait_for(pid_, 0, &reaped);
  pid_ = 0;
  pidfd_.reset();
}

void WorkerProcess::abandon_in_child() noexcept {
  pid_ = 0;
  pidfd_.reset();
}

}  // namespace mmc::detail
