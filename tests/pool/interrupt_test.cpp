// Tests of install_interrupt_handlers: each runs in a forked helper process, because the
// handlers and the interrupted flag are process-wide and sticky.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "mmc/error.hpp"
#include "mmc/pool.hpp"
#include "pool_test_util.hpp"

namespace mmc {
namespace {

// Exit codes of the helper.
constexpr int kOk = 0;
constexpr int kNoError = 10;
constexpr int kWrongError = 11;
constexpr int kChildrenLeft = 12;
constexpr int kFlagWrong = 13;
constexpr int kOtherException = 14;

// Forks a helper that runs `body(ready_fd)` and exits with its return value. Tasks write a
// byte to ready_fd when they start. Returns the helper's pid and the read end of ready.
struct Helper {
  pid_t pid = -1;
  int ready = -1;
};

Helper start_helper(const std::function<int(int ready_fd)>& body) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int code = kOtherException;
    try {
      code = body(fds[1]);
    } catch (...) {
      code = kOtherException;
    }
    _exit(code);
  }
  close(fds[1]);
  return {pid, fds[0]};
}

// Runs a call that never ends on its own and expects it to fail with "interrupted by <name>",
// leaving no child behind.
int expect_cancelled(Backend backend, int ready_fd, const std::string& signal_name) {
  install_interrupt_handlers();
  TaskSet call;
  call.n_tasks = backend == Backend::Process ? 4 : 100000;
  call.run = [backend, ready_fd](std::size_t, ByteView, Bytes&) {
    const char byte = 'r';
    [[maybe_unused]] ssize_t n = write(ready_fd, &byte, 1);
    if (backend == Backend::Process) {
      for (;;) pause();  // blocked for good: only SIGKILL ends it
    }
    usleep(2000);  // threads and serial stop between tasks
  };
  PoolOptions options;
  options.backend = backend;
  options.n_jobs = 2;
  try {
    run_tasks(options, call);
  } catch (const Error& error) {
    if (error.code() != ErrorCode::Cancelled) return kWrongError;
    if (std::string(error.what()) != "interrupted by " + signal_name) return kWrongError;
    if (!test::has_no_children()) return kChildrenLeft;
    if (!interrupted() || interrupt_signal() == 0) return kFlagWrong;
    return kOk;
  }
  return kNoError;
}

#if defined(__SANITIZE_THREAD__)
// GCC 12's ThreadSanitizer now and then loses an asynchronous signal under load: 5 of 30 runs
// on two busy cores hung with the handler never run and nothing pending in the kernel
// (/proc/PID/task/*/status), while the Release build passed 600 runs. Under TSan the signal
// is sent again while the helper lives; elsewhere one signal must do.
constexpr bool kResendSignal = true;
#else
constexpr bool kResendSignal = false;
#endif

// Sends `signo` to `pid` and waits at most `seconds` for it to end (test::wait_child's result).
int signal_and_wait(pid_t pid, int signo, int seconds) {
  kill(pid, signo);
  if (!kResendSignal) return test::wait_child(pid, seconds);
  for (int second = 1; second < seconds; ++second) {
    int status = 0;
    const pid_t rc = waitpid(pid, &status, WNOHANG);
    if (rc == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    sleep(1);
    kill(pid, signo);
  }
  return test::wait_child(pid, 1);
}

class PoolInterrupt : public ::testing::TestWithParam<Backend> {};

TEST_P(PoolInterrupt, SigtermCancelsTheCallAndKillsBlockedWorkers) {
  const Backend backend = GetParam();
  const Helper helper =
      start_helper([backend](int ready) { return expect_cancelled(backend, ready, "SIGTERM"); });
  ASSERT_GT(helper.pid, 0);
  const bool started = test::read_byte(helper.ready, 20);
  const int status =
      started ? signal_and_wait(helper.pid, SIGTERM, 20) : test::wait_child(helper.pid, 20);
  close(helper.ready);
  ASSERT_TRUE(started) << "no task started";
  EXPECT_EQ(status, kOk);
  EXPECT_TRUE(test::has_no_children());
}

INSTANTIATE_TEST_SUITE_P(Backends, PoolInterrupt,
                         ::testing::Values(Backend::Process, Backend::Thread, Backend::Serial),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(PoolInterruptSigint, FromAnotherThreadCancelsTheCall) {
  const Helper helper = start_helper([](int ready) {
    int inner[2];
    if (pipe2(inner, O_CLOEXEC) != 0) return kOtherException;
    // A thread of the helper waits for a task to start, then interrupts its own process
    // (again each second until the call returns, under TSan: see kResendSignal).
    std::atomic<bool> returned{false};
    std::thread interrupter([&inner, &returned, ready] {
      if (test::read_byte(inner[0], 20)) {
        const char byte = 'r';
        [[maybe_unused]] ssize_t n = write(ready, &byte, 1);
        kill(getpid(), SIGINT);
        for (int second = 1; kResendSignal && second < 20 && !returned; ++second) {
          for (int tick = 0; tick < 10 && !returned; ++tick) usleep(100000);
          if (!returned) kill(getpid(), SIGINT);
        }
      }
    });
    const int code = expect_cancelled(Backend::Process, inner[1], "SIGINT");
    returned = true;
    interrupter.join();
    return code == kOk && interrupt_signal() != SIGINT ? kFlagWrong : code;
  });
  ASSERT_GT(helper.pid, 0);
  const int status = test::wait_child(helper.pid, 20);
  close(helper.ready);
  EXPECT_EQ(status, kOk);
}

TEST(PoolInterruptSigint, LaterCallsFailAtOnce) {
  const Helper helper = start_helper([](int) {
    install_interrupt_handlers();
    install_interrupt_handlers();  // idempotent
    if (interrupted()) return kFlagWrong;
    kill(getpid(), SIGINT);  // delivered before kill returns: one thread, signal unblocked
    if (!interrupted() || interrupt_signal() != SIGINT) return kFlagWrong;
    for (Backend backend : {Backend::Process, Backend::Thread, Backend::Serial}) {
      bool ran = false;
      TaskSet call;
      call.n_tasks = 3;
      call.run = [](std::size_t, ByteView, Bytes&) {};
      call.on_result = [&ran](std::size_t, ByteView) { ran = true; };
      PoolOptions options;
      options.backend = backend;
      try {
        run_tasks(options, call);
        return kNoError;
      } catch (const Error& error) {
        if (error.code() != ErrorCode::Cancelled || ran) return kWrongError;
      }
    }
    return test::has_no_children() ? kOk : kChildrenLeft;
  });
  ASSERT_GT(helper.pid, 0);
  const int status = test::wait_child(helper.pid, 20);
  close(helper.ready);
  EXPECT_EQ(status, kOk);
}

TEST(PoolInterruptSigint, WithoutHandlersTheFlagStaysClear) {
  EXPECT_FALSE(interrupted());
  EXPECT_EQ(interrupt_signal(), 0);
}

}  // namespace
}  // namespace mmc
