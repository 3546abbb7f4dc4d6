// Tests of os/process.hpp: how a child ended, said in words; its signal setup; its tie to the
// thread that forked it; reaping that survives signals and leaves no zombie.
#include "os/process.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace mmc::detail {
namespace {

using std::chrono::milliseconds;

[[noreturn]] void wait_forever() {
  for (;;) pause();
}

// True once `pid` (our child) has ended, waiting up to `limit`; it stays unreaped.
bool ends_within(pid_t pid, milliseconds limit) {
  const UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return false;
  pollfd pfd{pidfd.get(), POLLIN, 0};
  return poll(&pfd, 1, static_cast<int>(limit.count())) == 1;
}

// A zombie still answers kill(pid, 0); only a reaped process is gone.
bool is_gone(pid_t pid) { return kill(pid, 0) == -1 && errno == ESRCH; }

TEST(ChildProcess, AChildThatExitsWithThreeIsReportedSo) {
  ChildProcess child = ChildProcess::start({}, [] { _exit(3); });
  ASSERT_GT(child.pid(), 0);
  const ExitInfo info = child.reap(milliseconds(10000));
  EXPECT_TRUE(info.known);
  EXPECT_FALSE(info.signaled);
  EXPECT_EQ(info.status, 3);
  EXPECT_EQ(describe(info), "exited with status 3");
}

TEST(ChildProcess, ABodyThatReturnsExitsWithZero) {
  ChildProcess child = ChildProcess::start({}, [] {});
  const ExitInfo info = child.reap(milliseconds(10000));
  EXPECT_TRUE(info.known);
  EXPECT_EQ(describe(info), "exited with status 0");
}

TEST(ChildProcess, AnExceptionEscapingTheBodyEndsItWithTheUncaughtStatus) {
  ChildSetup setup;
  setup.uncaught_status = 42;
  ChildProcess child = ChildProcess::start(setup, [] { throw std::runtime_error("escapes"); });
  EXPECT_EQ(describe(child.reap(milliseconds(10000))), "exited with status 42");
}

TEST(ChildProcess, AChildKilledByASignalIsReportedWithTheSignalsName) {
  // SIGUSR1, not SIGSEGV: the sanitizers catch a SIGSEGV and turn it into an exit status.
  ChildProcess child = ChildProcess::start({}, [] { raise(SIGUSR1); });
  const ExitInfo info = child.reap(milliseconds(10000));
  EXPECT_TRUE(info.signaled);
  EXPECT_EQ(info.signal, SIGUSR1);
  EXPECT_EQ(describe(info), "was killed by signal 10 (SIGUSR1)");
}

TEST(ChildProcess, ReapKillsAChildThatOutlivesTheGrace) {
  ChildProcess child = ChildProcess::start({}, wait_forever);
  EXPECT_EQ(describe(child.reap(milliseconds(20))), "was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(child.pid(), 0);
}

TEST(ChildProcess, DestroyingTheHandleKillsAndReapsTheChildLeavingNoZombie) {
  pid_t pid = 0;
  {
    const ChildProcess child = ChildProcess::start({}, wait_forever);
    pid = child.pid();
    ASSERT_GT(pid, 0);
    EXPECT_FALSE(is_gone(pid));
  }
  EXPECT_TRUE(is_gone(pid));
}

TEST(ChildProcess, MovingHandsOverTheChild) {
  ChildProcess a = ChildProcess::start({}, wait_forever);
  const pid_t pid = a.pid();
  ChildProcess b = std::move(a);
  EXPECT_EQ(a.pid(), 0);
  EXPECT_EQ(b.pid(), pid);
  EXPECT_FALSE(is_gone(pid));
  b = ChildProcess();  // the assignment lets go of the child it held
  EXPECT_TRUE(is_gone(pid));
}

// Sets SIGTERM's disposition and blocks or unblocks it for one test; restores both after.
class SigtermState {
 public:
  SigtermState(void (*handler)(int), bool block) {
    struct sigaction action {};
    action.sa_handler = handler;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, &old_action_);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, &old_mask_);
  }
  ~SigtermState() {
    pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
    sigaction(SIGTERM, &old_action_, nullptr);
  }

 private:
  struct sigaction old_action_ {};
  sigset_t old_mask_{};
};

TEST(ChildSetup, DefaultSignalsActAgainThoughTheParentIgnoredAndBlockedThem) {
  const SigtermState ignored_and_blocked(SIG_IGN, /*block=*/true);
  ChildSetup setup;
  setup.default_signals = {SIGTERM};
  ChildProcess child = ChildProcess::start(setup, [] {
    raise(SIGTERM);
    _exit(5);  // reached only if SIGTERM stayed ignored or blocked
  });
  EXPECT_EQ(describe(child.reap(milliseconds(10000))), "was killed by signal 15 (SIGTERM)");
}

TEST(ChildSetup, IgnoredSignalsDoNotEndTheChild) {
  ChildSetup setup;
  setup.ignored_signals = {SIGTERM};
  ChildProcess child = ChildProcess::start(setup, [] {
    raise(SIGTERM);
    _exit(5);
  });
  EXPECT_EQ(describe(child.reap(milliseconds(10000))), "exited with status 5");
}

TEST(ChildSetup, AChildTiedToAThreadDiesWhenThatThreadEnds) {
  ChildSetup setup;
  setup.death_signal = SIGKILL;
  int ready[2];
  ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
  const UniqueFd ready_read(ready[0]);
  UniqueFd ready_write(ready[1]);
  pid_t pid = -1;
  // The thread forks, waits until the child is tied to it (its body runs), and ends; the
  // process (and this thread) lives on.
  std::thread forker([&] {
    pid = fork_child(setup, [&] {
      const char byte = 1;
      if (write(ready_write.get(), &byte, 1) != 1) _exit(9);
      wait_forever();
    });
    char byte = 0;
    ready_write.reset();
    if (pid > 0 && read(ready_read.get(), &byte, 1) != 1) pid = -2;
  });
  forker.join();
  ASSERT_GT(pid, 0);
  const bool ended = ends_within(pid, milliseconds(10000));
  if (!ended) kill(pid, SIGKILL);  // no hang, no orphan, whatever the outcome
  const ExitInfo info = wait_child(pid);
  EXPECT_TRUE(ended) << "the child outlived the thread that forked it";
  EXPECT_EQ(describe(info), "was killed by signal 9 (SIGKILL)");
}

TEST(ChildSetup, AnUntiedChildOutlivesTheThreadThatForkedIt) {
  pid_t pid = -1;
  std::thread forker([&] { pid = fork_child({}, wait_forever); });
  forker.join();
  ASSERT_GT(pid, 0);
  EXPECT_FALSE(ends_within(pid, milliseconds(200)));
  kill(pid, SIGKILL);
  wait_child(pid);
}

extern "C" void count_alarm(int) {}

TEST(WaitChild, SignalsArrivingWhileItWaitsDoNotCutTheWaitShort) {
  // A handler without SA_RESTART: every tick interrupts wait4 with EINTR.
  struct sigaction action {};
  struct sigaction old {};
  action.sa_handler = count_alarm;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGALRM, &action, &old), 0);
  const itimerval every_ms{{0, 1000}, {0, 1000}};
  const itimerval off{};
  const pid_t pid = fork_child({}, [] {
    usleep(100'000);
    _exit(7);
  });
  ASSERT_GT(pid, 0);
  setitimer(ITIMER_REAL, &every_ms, nullptr);
  const ExitInfo info = wait_child(pid);
  setitimer(ITIMER_REAL, &off, nullptr);
  sigaction(SIGALRM, &old, nullptr);
  EXPECT_EQ(describe(info), "exited with status 7");
  EXPECT_TRUE(is_gone(pid));
}

TEST(WaitChild, AProcessThatIsNotOurChildIsUnknown) {
  const ExitInfo info = wait_child(getpid());
  EXPECT_FALSE(info.known);
  EXPECT_EQ(describe(info), "ended (its status could not be collected)");
}

TEST(ReapAnyEnded, ReapsEveryEndedChildThenSaysThereIsNone) {
  const pid_t a = fork_child({}, [] { _exit(1); });
  const pid_t b = fork_child({}, [] { _exit(2); });
  ASSERT_GT(a, 0);
  ASSERT_GT(b, 0);
  ASSERT_TRUE(ends_within(a, milliseconds(10000)));
  ASSERT_TRUE(ends_within(b, milliseconds(10000)));
  int seen = 0;
  ExitInfo info;
  for (pid_t pid; (pid = reap_any_ended(&info)) > 0;) {
    EXPECT_EQ(info.status, pid == a ? 1 : 2);
    ++seen;
  }
  EXPECT_EQ(seen, 2);
  EXPECT_EQ(reap_any_ended(&info), -1);  // no child left, none a zombie
  EXPECT_TRUE(is_gone(a));
  EXPECT_TRUE(is_gone(b));
}

TEST(ReapAnyEnded, LeavesARunningChildAlone) {
  ChildProcess child = ChildProcess::start({}, wait_forever);
  ExitInfo info;
  EXPECT_EQ(reap_any_ended(&info), 0);
  EXPECT_FALSE(is_gone(child.pid()));
}

TEST(SignalName, NamesKnownSignalsAndNumbersOthers) {
  EXPECT_EQ(signal_name(SIGINT), "SIGINT");
  EXPECT_EQ(signal_name(SIGKILL), "SIGKILL");
  EXPECT_EQ(signal_name(1000), "signal 1000");
}

}  // namespace
}  // namespace mmc::detail
