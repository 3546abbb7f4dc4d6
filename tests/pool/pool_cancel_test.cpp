// Tests of what cancelling means for mmc::Pool's process backend: a cancelled task never starts
// if it was queued (even at a busy worker), is killed if it was running, and the tasks queued
// behind it complete; destruction reports a running task as cancelled while running; a
// callable capturing a pointer the workers cannot follow is refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "mmc/shared.hpp"
#include "pool_test_util.hpp"

namespace mmc {
namespace {

using namespace std::chrono_literals;
using test::catch_error;
using test::run_guarded;

ParallelOptions processes(int n_jobs) {
  ParallelOptions options;
  options.backend = Backend::Process;
  options.n_jobs = n_jobs;
  return options;
}

int read_locked(const ArrayRef<int>& ref) {
  auto guard = ref.lock();
  return ref[0];
}

void add_locked(const ArrayRef<int>& ref, int delta) {
  with_lock(ref, [delta](int& v) { v += delta; });
}

// In a task: says it started (started += 1), then waits until `gate` is non-zero.
void start_and_wait(ArrayRef<int> started, ArrayRef<int> gate) {
  add_locked(started, 1);
  while (read_locked(gate) == 0) usleep(1000);
}

// On the caller: waits (bounded by run_guarded) until `value` reaches `at_least`.
void await(const SharedValue<int>& value, int at_least) {
  while (value.load() < at_least) std::this_thread::sleep_for(1ms);
}

TEST(PoolCancel, TaskWhoseGetTimedOutWhileQueuedNeverRuns) {
  run_guarded([] {
    SharedValue<int> started(0), gate(0), ran(0);
    Pool pool(processes(1));
    auto head = pool.submit(start_and_wait, started.ref(), gate.ref());
    auto queued = pool.submit([](ArrayRef<int> count) { add_locked(count, 1); }, ran.ref());
    await(started, 1);
    const auto caught = catch_error([&] { queued.get(100ms); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout) << caught.message;
    gate.store(1);
    head.get();
    // One worker runs its queue in order: once this ran, the cancelled task had its turn.
    EXPECT_EQ(pool.submit([](int x) { return x + 1; }, 41).get(), 42);
    EXPECT_EQ(ran.load(), 0) << "the task cancelled while queued ran anyway";
  });
}

TEST(PoolCancel, TaskQueuedBehindATaskStoppedWhileQueuedCompletes) {
  run_guarded([] {
    SharedValue<int> started(0), gate(0);
    Pool pool(processes(1));
    auto head = pool.submit(start_and_wait, started.ref(), gate.ref());
    auto endless = pool.submit([] {
      for (;;) pause();
    });
    auto behind = pool.submit([](int x) { return x * 2; }, 21);
    await(started, 1);
    const auto caught = catch_error([&] { endless.get(100ms); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout) << caught.message;
    gate.store(1);
    head.get();
    EXPECT_EQ(behind.get(), 42);  // before the fix: never, the endless task held the worker
  });
}

TEST(PoolCancel, TaskQueuedBehindATaskKilledForItsDeadlineCompletesOnAReplacement) {
  run_guarded([] {
    SharedValue<int> pid_box(0);
    Pool pool(processes(1));
    TaskOptions deadline;
    deadline.timeout = 0.2;
    auto endless = pool.submit_with(
        deadline,
        [](ArrayRef<int> box) {
          with_lock(box, [](int& v) { v = getpid(); });
          for (;;) pause();
        },
        pid_box.ref());
    auto behind = pool.submit([] { return static_cast<int>(getpid()); });
    const auto caught = catch_error([&] { endless.get(); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout) << caught.message;
    const int replacement = behind.get();
    EXPECT_NE(replacement, pid_box.load()) << "it ran on the killed worker";
  });
}

// Fail fast: the map's items queued behind another call's task at a busy worker are cancelled
// when one of its items fails on the other worker, and never run.
TEST(PoolCancel, FailFastCancelsItemsQueuedAtABusyWorker) {
  run_guarded([] {
    SharedValue<int> started(0), gate(0), ran(0), arrived(0);
    Pool pool(processes(2));
    auto blocker = pool.submit(start_and_wait, started.ref(), gate.ref());
    await(started, 1);
    // Item 0 fails on the idle worker once the others were handed out: item 1 waits behind
    // the blocker (least loaded first: 1 task each, the first worker wins the tie), item 2
    // behind item 0 (it may start before the cancellation arrives: it does not count).
    const auto fn = [](int x, ArrayRef<int> count, ArrayRef<int> open) {
      if (x == 0) {
        usleep(100'000);
        throw Error(ErrorCode::Corrupt, "item 0 fails");
      }
      while (read_locked(open) == 0) usleep(1000);
      if (x == 1) add_locked(count, 1);
      return x;
    };
    std::vector<std::tuple<int, ArrayRef<int>, ArrayRef<int>>> items;
    for (int i = 0; i < 4; ++i) items.emplace_back(i, ran.ref(), gate.ref());
    CallOptions call;
    call.chunksize = 1;
    const auto caught = catch_error([&] { pool.starmap(fn, items, call); });
    EXPECT_EQ(caught.code, ErrorCode::Corrupt) << caught.message;
    gate.store(1);
    blocker.get();
    // Two tasks that wait for each other run on both workers at once, so each worker has gone
    // through everything queued before them. The dispatcher may give both to one worker (the
    // other still busy with the map's last items): then the first gives up after 200 ms and
    // the pair is sent again, until a pair met.
    const auto meet = [](ArrayRef<int> both) {
      add_locked(both, 1);
      for (int i = 0; i < 200 && read_locked(both) < 2; ++i) usleep(1000);
      return read_locked(both);
    };
    bool met = false;
    for (int round = 0; round < 40 && !met; ++round) {
      arrived.store(0);
      auto a = pool.submit(meet, arrived.ref());
      auto b = pool.submit(meet, arrived.ref());
      const int seen_a = a.get();
      const int seen_b = b.get();
      met = seen_a == 2 && seen_b == 2;
    }
    EXPECT_TRUE(met) << "two tasks never ran on both workers at once";
    EXPECT_EQ(ran.load(), 0) << "item 1, cancelled by fail fast while queued, ran anyway";
  });
}

TEST(PoolCancel, DestroyingThePoolReportsARunningTaskAsCancelledWhileRunning) {
  run_guarded([] {
    SharedValue<int> started(0);
    Future<void> running;
    Future<int> queued;
    {
      Pool pool(processes(1));
      running = pool.submit(
          [](ArrayRef<int> started) {
            add_locked(started, 1);
            for (;;) pause();
          },
          started.ref());
      queued = pool.submit([] { return 1; });
      await(started, 1);
    }
    const auto caught = catch_error([&] { running.get(); });
    EXPECT_EQ(caught.code, ErrorCode::Cancelled) << caught.message;
    EXPECT_NE(caught.message.find("task 0: cancelled while running: the pool was destroyed"),
              std::string::npos)
        << caught.message;
    EXPECT_NE(caught.message.find("was killed"), std::string::npos) << caught.message;
    const auto never = catch_error([&] { queued.get(); });
    EXPECT_EQ(never.code, ErrorCode::Cancelled) << never.message;
    EXPECT_NE(never.message.find("destroyed before the task ran"), std::string::npos)
        << never.message;
  });
}

// A task of the test below: says on a shared board that it started, works 200 us, says that
// it finished.
int mark_start_and_finish(ArrayRef<int> board, int i) {
  std::atomic_ref<int>(board[static_cast<std::size_t>(i)]).store(1);
  const auto until = std::chrono::steady_clock::now() + 200us;
  while (std::chrono::steady_clock::now() < until) {
  }
  std::atomic_ref<int>(board[static_cast<std::size_t>(i)]).store(2);
  return i;
}

// Destroyed while tiny tasks stream through its workers, the pool tells each future what
// became of its task: a task said not to have run never started, and a result or "finished"
// comes only from a task that finished.
// (The moment of destruction moves from round to round.)
TEST(PoolCancel, DestroyingThePoolTellsEachTaskWhetherItRanExactly) {
  run_guarded(
      [] {
        constexpr int kTasks = 48;
        for (int round = 0; round < 40; ++round) {
          SharedArray<int> board(kTasks);
          std::vector<Future<int>> futures;
          {
            Pool pool(processes(2));
            for (int i = 0; i < kTasks; ++i) {
              futures.push_back(pool.submit(mark_start_and_finish, board.ref(), i));
            }
            while (std::atomic_ref<int>(board[0]).load() == 0) std::this_thread::sleep_for(50us);
            std::this_thread::sleep_for(std::chrono::microseconds(97 * (round % 23)));
          }
          for (int i = 0; i < kTasks; ++i) {
            const int state = std::atomic_ref<int>(board[static_cast<std::size_t>(i)]).load();
            int value = -1;
            const auto caught =
                catch_error([&] { value = futures[static_cast<std::size_t>(i)].get(); });
            if (!caught.thrown) {
              EXPECT_EQ(value, i);
              EXPECT_EQ(state, 2) << "task " << i << " has a result but did not finish";
              continue;
            }
            EXPECT_EQ(caught.code, ErrorCode::Cancelled) << caught.message;
            if (caught.message.find("destroyed before the task ran") != std::string::npos) {
              EXPECT_EQ(state, 0) << "task " << i << " ran: " << caught.message;
            } else if (caught.message.find("cancelled while running") != std::string::npos) {
              // Killed somewhere in it: maybe before its first line (its arguments are mapped
              // first), maybe after its last.
            } else {
              EXPECT_NE(caught.message.find("finished, but the pool was destroyed"),
                        std::string::npos)
                  << caught.message;
              EXPECT_EQ(state, 2) << "task " << i << " did not finish: " << caught.message;
            }
          }
        }
      },
      120);
}

TEST(PoolCapture, PointerToMemoryAllocatedAfterThePoolIsRefusedAtSubmitAndMap) {
  run_guarded([] {
    Pool pool(processes(1));
    // 8 MiB: malloc serves it from a mapping of its own, made after the pool's fork.
    auto late = std::make_unique<std::vector<double>>(1 << 20, 2.5);
    const double* data = late->data();
    const auto fn = [data](int i) { return data[i]; };
    const auto at_submit = catch_error([&] { pool.submit(fn, 3); });
    EXPECT_EQ(at_submit.code, ErrorCode::InvalidArgument) << at_submit.message;
    EXPECT_NE(at_submit.message.find("captures a pointer"), std::string::npos) << at_submit.message;
    EXPECT_NE(at_submit.message.find("allocated after the pool was created"), std::string::npos)
        << at_submit.message;
    const auto at_map = catch_error([&] { pool.map(fn, std::vector<int>{0, 1}); });
    EXPECT_EQ(at_map.code, ErrorCode::InvalidArgument) << at_map.message;
    const std::string explained = pool.explain(fn, 3);
    EXPECT_NE(explained.find("callable: refused"), std::string::npos) << explained;
    // The thread backend shares the memory: the same callable is fine there.
    ParallelOptions threads;
    threads.backend = Backend::Thread;
    threads.n_jobs = 2;
    Pool thread_pool(threads);
    EXPECT_EQ(thread_pool.submit(fn, 3).get(), 2.5);
  });
}

TEST(PoolCapture, PointerToMemoryAllocatedBeforeThePoolIsAccepted) {
  run_guarded([] {
    auto early = std::make_unique<std::vector<double>>(1 << 20, 1.5);
    const double* data = early->data();
    Pool pool(processes(1));
    const auto fn = [data](int i) { return data[i]; };
    EXPECT_EQ(pool.submit(fn, 7).get(), 1.5);
    EXPECT_EQ(pool.map(fn, std::vector<int>{0, 1}), (std::vector<double>{1.5, 1.5}));
    const std::string explained = pool.explain(fn, 3);
    EXPECT_NE(explained.find("none found into memory allocated later"), std::string::npos)
        << explained;
  });
}

}  // namespace
}  // namespace mmc
