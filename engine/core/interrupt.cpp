// SIGINT/SIGTERM handling for programs (install_interrupt_handlers) and for calls from a host
// with handlers of its own (InterruptScope): the handler records the signal and writes a byte to
// a self-pipe that the process backend polls; other backends check the flag between tasks.
// Process-wide by nature: the flag, the signal number and the pipe live for the whole process.
#include "core/interrupt.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "mmc/error.hpp"
#include "mmc/interrupt.hpp"
#include "os/process.hpp"

namespace mmc {
namespace {

std::atomic<bool> g_interrupted{false};
std::atomic<int> g_signal{0};
std::atomic<int> g_pipe_read{-1};
std::atomic<int> g_pipe_write{-1};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the handler needs lock-free atomics");

extern "C" void on_interrupt(int signo) {
  const int saved_errno = errno;
  g_signal.store(signo, std::memory_order_relaxed);
  g_interrupted.store(true, std::memory_order_seq_cst);
  const int fd = g_pipe_write.load(std::memory_order_relaxed);
  if (fd >= 0) {
    const char byte = 1;
    // Nonblocking: a full pipe already wakes every poller, so a lost byte does not matter.
    [[maybe_unused]] const ssize_t n = write(fd, &byte, 1);
  }
  errno = saved_errno;
}

// The self-pipe, made once for the process (both install_interrupt_handlers and the scopes).
void make_pipe_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2 for the interrupt handler");
    // Process-lifetime descriptors: never closed, so no UniqueFd.
    g_pipe_read.store(fds[0]);
    g_pipe_write.store(fds[1]);
  });
}

struct sigaction our_action() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocked call returns EINTR and sees the flag
  return action;
}

// The scopes' shared state: how many live, and the handlers the first one replaced.
struct Scopes {
  std::mutex mutex;
  int live = 0;
  bool permanent = false;  // install_interrupt_handlers() ran: scopes change nothing
  struct sigaction saved_int {};
  struct sigaction saved_term {};
};

Scopes& scopes() {
  static Scopes s;
  return s;
}

}  // namespace

void install_interrupt_handlers() {
  make_pipe_once();
  Scopes& s = scopes();
  const std::lock_guard lock(s.mutex);
  if (s.permanent) return;
  const struct sigaction action = our_action();
  if (sigaction(SIGINT, &action, nullptr) != 0 || sigaction(SIGTERM, &action, nullptr) != 0) {
    throw_errno("sigaction for SIGINT/SIGTERM");
  }
  s.permanent = true;
}

InterruptScope::InterruptScope() {
  make_pipe_once();
  Scopes& s = scopes();
  const std::lock_guard lock(s.mutex);
  if (s.permanent || s.live++ > 0) return;
  // The first scope: no call of a scope runs, so an earlier interrupt can be forgotten.
  char sink[64];
  while (read(g_pipe_read.load(), sink, sizeof sink) > 0) {
  }
  g_signal.store(0);
  g_interrupted.store(false);
  const struct sigaction action = our_action();
  if (sigaction(SIGINT, &action, &s.saved_int) != 0 ||
      sigaction(SIGTERM, &action, &s.saved_term) != 0) {
    --s.live;
    sigaction(SIGINT, &s.saved_int, nullptr);
    throw_errno("sigaction for SIGINT/SIGTERM");
  }
}

InterruptScope::~InterruptScope() {
  Scopes& s = scopes();
  const std::lock_guard lock(s.mutex);
  if (s.permanent || --s.live > 0) return;
  sigaction(SIGINT, &s.saved_int, nullptr);
  sigaction(SIGTERM, &s.saved_term, nullptr);
  // The host's own handling of what arrived (Python's KeyboardInterrupt, SIGTERM's default).
  if (g_interrupted.load()) raise(g_signal.load());
}

bool interrupted() noexcept { return g_interrupted.load(); }

int interrupt_signal() noexcept { return g_signal.load(); }

namespace detail {

int interrupt_fd() noexcept { return g_pipe_read.load(); }

void throw_if_interrupted() {
  if (!interrupted()) return;
  const int signo = interrupt_signal();
  throw_error(ErrorCode::Cancelled, "interrupted by " + signal_name(signo));
}

}  // namespace detail
}  // namespace mmc
