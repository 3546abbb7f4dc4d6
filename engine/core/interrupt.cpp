// SIGINT/SIGTERM handling for programs: the handler records the signal and writes a byte to a
// self-pipe that the process backend polls; other backends check the flag between tasks.
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

}  // namespace

void install_interrupt_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("pipe2 for the interrupt handler");
    // Process-lifetime descriptors: never closed, so no UniqueFd.
    g_pipe_read.store(fds[0]);
    g_pipe_write.store(fds[1]);
    struct sigaction action {};
    action.sa_handler = on_interrupt;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocked call returns EINTR and sees the flag
    if (sigaction(SIGINT, &action, nullptr) != 0 || sigaction(SIGTERM, &action, nullptr) != 0) {
      throw_errno("sigaction for SIGINT/SIGTERM");
    }
  });
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
