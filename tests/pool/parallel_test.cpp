// Tests of mmc::Pool (parallel.hpp): map/imap/starmap/submit on every backend, batching,
// failure semantics with fault injection, worker lifecycle, options, progress.
#include "mmc/parallel.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <numeric>
#include <ranges>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mmc/shared.hpp"
#include "mmc/source.hpp"
#include "pool_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using namespace std::chrono_literals;
using test::catch_error;
using test::LeakCheck;
using test::run_guarded;
using test::with;

int square(int x) { return x * x; }

ParallelOptions serial_default() {
  ParallelOptions options;
  options.backend = Backend::Serial;
  return options;
}

class EveryBackend : public ::testing::TestWithParam<std::tuple<Backend, int>> {
 protected:
  Pool make_pool() {
    const auto [backend, n_jobs] = GetParam();
    return Pool(with(backend, n_jobs));
  }
};

TEST_P(EveryBackend, MapReturnsResultsInInputOrder) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<int> items(1000);
    std::iota(items.begin(), items.end(), 0);
    const std::vector<int> squares = pool.map(square, items);
    ASSERT_EQ(squares.size(), items.size());
    for (int i = 0; i < 1000; ++i) EXPECT_EQ(squares[i], i * i);
  });
}

TEST_P(EveryBackend, MapWithExplicitChunksizeAndLambdaCapturingPlainData) {
  run_guarded([&] {
    Pool pool = make_pool();
    const double scale = 0.5;
    const int offset = 3;
    std::vector<int> items(257);
    std::iota(items.begin(), items.end(), 0);
    CallOptions options;
    options.chunksize = 10;
    const auto out = pool.map([scale](int x) { return scale * x + offset; }, items, options);
    for (int i = 0; i < 257; ++i) EXPECT_DOUBLE_EQ(out[i], 0.5 * i + 3);
  });
}

TEST_P(EveryBackend, StringsAndVectorsTravelBothWays) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<std::string> words = {"", "a", "mmap", std::string(5000, 'x')};
    const auto out = pool.map(
        [](const std::string& w) { return std::vector<std::size_t>(w.size() % 7, w.size()); },
        words);
    ASSERT_EQ(out.size(), 4u);
    EXPECT_EQ(out[2], std::vector<std::size_t>(4, 4));
    EXPECT_EQ(out[3], std::vector<std::size_t>(5000 % 7, 5000));
  });
}

TEST_P(EveryBackend, StarmapUnpacksTuples) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<std::tuple<int, std::string>> args = {{1, "a"}, {3, "bc"}, {2, "xyz"}};
    const auto out = pool.starmap(
        [](int n, const std::string& s) {
          std::string r;
          for (int i = 0; i < n; ++i) r += s;
          return r;
        },
        args);
    EXPECT_EQ(out, (std::vector<std::string>{"a", "bcbcbc", "xyzxyz"}));
  });
}

TEST_P(EveryBackend, ImapIsOrderedAndImapUnorderedHasEveryResult) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<int> items(300);
    std::iota(items.begin(), items.end(), 0);
    std::vector<int> ordered;
    for (int v : pool.imap(square, items)) ordered.push_back(v);
    ASSERT_EQ(ordered.size(), 300u);
    for (int i = 0; i < 300; ++i) EXPECT_EQ(ordered[i], i * i);
    std::multiset<int> unordered;
    auto results = pool.imap_unordered(square, items);
    while (auto v = results.next()) unordered.insert(*v);
    EXPECT_EQ(unordered, std::multiset<int>(ordered.begin(), ordered.end()));
  });
}

TEST_P(EveryBackend, SubmitReturnsAFutureWithTheValue) {
  run_guarded([&] {
    Pool pool = make_pool();
    auto future = pool.submit([](int a, std::string b) { return b + std::to_string(a); }, 42,
                              std::string("n="));
    EXPECT_EQ(future.get(), "n=42");
    EXPECT_TRUE(future.ready());
    auto unit = pool.submit([] {});
    unit.get();
  });
}

TEST_P(EveryBackend, TaskErrorIsRethrownWithIndexAndMessageAndCode) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<int> items(100);
    std::iota(items.begin(), items.end(), 0);
    const auto caught = catch_error([&] {
      pool.map(
          [](int x) {
            if (x == 17) throw Error(ErrorCode::Corrupt, "record 17 is bad");
            return x;
          },
          items);
    });
    EXPECT_TRUE(caught.thrown);
    EXPECT_EQ(caught.code, ErrorCode::Corrupt);
    EXPECT_NE(caught.message.find("task 17: record 17 is bad"), std::string::npos)
        << caught.message;
    // The pool still works after a failed call.
    EXPECT_EQ(pool.map(square, std::vector<int>{2, 3}), (std::vector<int>{4, 9}));
  });
}

TEST_P(EveryBackend, MapCollectKeepsGoodResultsBesideErrors) {
  run_guarded([&] {
    Pool pool = make_pool();
    std::vector<int> items(50);
    std::iota(items.begin(), items.end(), 0);
    const auto results = pool.map_collect(
        [](int x) {
          if (x % 10 == 3) throw std::runtime_error("bad " + std::to_string(x));
          return x * 2;
        },
        items);
    ASSERT_EQ(results.size(), 50u);
    for (int i = 0; i < 50; ++i) {
      if (i % 10 == 3) {
        ASSERT_FALSE(results[i].ok());
        EXPECT_EQ(results[i].error().code(), ErrorCode::TaskFailed);
        EXPECT_NE(
            std::string(results[i].error().what()).find("task " + std::to_string(i) + ": bad"),
            std::string::npos);
      } else {
        ASSERT_TRUE(results[i].ok());
        EXPECT_EQ(results[i].value(), 2 * i);
      }
    }
  });
}

TEST_P(EveryBackend, ProgressCallbackSeesEveryItemAndVerboseLinesLookLikeJoblib) {
  run_guarded([&] {
    const auto [backend, n_jobs] = GetParam();
    ParallelOptions options = with(backend, n_jobs);
    options.verbose = 10;
    Pool pool(options);
    std::vector<int> items(40);
    std::iota(items.begin(), items.end(), 0);
    CallOptions call;
    call.chunksize = 4;
    call.progress_bar = true;
    call.progress_json = true;
    std::size_t last = 0;
    call.on_progress = [&](const Progress& p) {
      EXPECT_GT(p.done, last);
      EXPECT_EQ(p.total, 40u);
      last = p.done;
    };
    testing::internal::CaptureStderr();
    pool.map(square, items, call);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_EQ(last, 40u);
    EXPECT_NE(err.find("[Parallel(n_jobs=" + std::to_string(n_jobs) + ")]: Done  40 out of  40"),
              std::string::npos)
        << err;
    EXPECT_NE(err.find("40/40 100%"), std::string::npos) << err;
    EXPECT_NE(err.find("{\"done\": 40, \"total\": 40,"), std::string::npos) << err;
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, EveryBackend,
                         ::testing::Values(std::make_tuple(Backend::Process, 2),
                                           std::make_tuple(Backend::Thread, 2),
                                           std::make_tuple(Backend::Serial, 1)));

// ---------------------------------------------------------------------------------------------
// Process backend: failures

TEST(ProcessPool, WorkerKilledMidMapRaisesWorkerLostAndThePoolStaysUsable) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::vector<int> items(64);
    std::iota(items.begin(), items.end(), 0);
    CallOptions call;
    call.chunksize = 4;
    const auto caught = catch_error([&] {
      pool.map(
          [](int x) {
            if (x == 21) kill(getpid(), SIGKILL);
            return x;
          },
          items, call);
    });
    EXPECT_TRUE(caught.thrown);
    EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
    EXPECT_NE(caught.message.find("signal 9 (SIGKILL)"), std::string::npos) << caught.message;
    EXPECT_NE(caught.message.find("tasks 20..23"), std::string::npos) << caught.message;
    for (int round = 0; round < 3; ++round) {
      EXPECT_EQ(pool.map(square, items, call)[63], 63 * 63);
    }
  });
}

TEST(ProcessPool, WorkerKilledFromOutsideFailsOnlyItsTask) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    SharedValue<int> pid_box(0);
    auto victim = pool.submit(
        [](ArrayRef<int> box) {
          with_lock(box, [](int& v) { v = getpid(); });
          for (;;) pause();
        },
        pid_box.ref());
    while (pid_box.load() == 0) std::this_thread::sleep_for(1ms);
    auto bystander = pool.submit(square, 12);
    kill(pid_box.load(), SIGKILL);
    const auto caught = catch_error([&] { victim.get(); });
    EXPECT_EQ(caught.code, ErrorCode::WorkerLost) << caught.message;
    EXPECT_EQ(bystander.get(), 144);
    EXPECT_EQ(pool.submit(square, 5).get(), 25);
  });
}

// Small submitted tasks travel in groups; a crash inside a group fails exactly its task.
TEST(ProcessPool, CrashAmongManySmallSubmitsFailsOnlyThatTask) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    for (int round = 0; round < 3; ++round) {
      std::vector<Future<int>> futures;
      for (int i = 0; i < 300; ++i) {
        futures.push_back(pool.submit(
            [](int x) {
              if (x == 150) kill(getpid(), SIGKILL);
              return x + 1;
            },
            i));
      }
      for (int i = 0; i < 300; ++i) {
        if (i == 150) {
          const auto caught = catch_error([&] { futures[i].get(); });
          EXPECT_EQ(caught.code, ErrorCode::WorkerLost) << caught.message;
        } else {
          EXPECT_EQ(futures[i].get(), i + 1);
        }
      }
    }
  });
}

// Results of grouped tasks come back in batches; the run board still tells which task a
// get(timeout) must stop: the endless one's worker is killed, every neighbour completes.
TEST(ProcessPool, GetWithTimeoutStopsAnEndlessTaskAmongManySmallOnes) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::vector<Future<int>> before, after;
    for (int i = 0; i < 200; ++i) before.push_back(pool.submit(square, i));
    auto endless = pool.submit(
        [](int x) {
          if (x == 7) {
            for (;;) pause();
          }
          return x;
        },
        7);
    for (int i = 0; i < 200; ++i) after.push_back(pool.submit(square, i + 200));
    const auto caught = catch_error([&] { endless.get(300ms); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout) << caught.message;
    for (int i = 0; i < 200; ++i) {
      EXPECT_EQ(before[i].get(), i * i);
      EXPECT_EQ(after[i].get(), (i + 200) * (i + 200));
    }
    EXPECT_EQ(pool.submit(square, 9).get(), 81);
  });
}

// Tasks queued at a worker that crashes are run again elsewhere; each future gets exactly one
// answer, and only the crashing task fails, even with results batched.
TEST(ProcessPool, EveryTaskBesideACrashIsAnsweredOnceWithItsValue) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::vector<Future<int>> futures;
    std::atomic<int> answered{0};
    for (int i = 0; i < 2000; ++i) {
      futures.push_back(pool.submit(
          [](int x) {
            if (x == 1234) kill(getpid(), SIGKILL);  // (ASan turns SIGSEGV into exit 1)
            return x * 3;
          },
          i));
      futures.back().add_done_callback([&](const int&) { ++answered; },
                                       [&](const Error&) { ++answered; });
    }
    for (int i = 0; i < 2000; ++i) {
      if (i == 1234) {
        const auto caught = catch_error([&] { futures[i].get(); });
        EXPECT_EQ(caught.code, ErrorCode::WorkerLost) << caught.message;
        EXPECT_NE(caught.message.find("SIGKILL"), std::string::npos) << caught.message;
        EXPECT_NE(caught.message.find("task 0"), std::string::npos) << caught.message;
      } else {
        EXPECT_EQ(futures[i].get(), i * 3);
      }
    }
    // Callbacks run on the dispatcher just after the value is published: let the last finish.
    for (int i = 0; i < 500 && answered.load() < 2000; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(answered.load(), 2000);
  });
}

TEST(ProcessPool, ExplainSaysHowEachArgumentTravels) {
  test::TempDir dir;
  const std::string path = dir.file("cube.u8");
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(4096, 'x');
  }
  const Source cube = open_raw({path, DType(TypeId::U8), {4, 1024}});
  ParallelOptions options = with(Backend::Process, 1);
  options.max_nbytes = 1 << 20;
  Pool pool(options);
  const auto fn = [](int, const std::vector<double>&, ArrayRef<std::uint8_t>) { return 0; };
  const std::string small =
      pool.explain(fn, 3, std::vector<double>(10), ArrayRef<std::uint8_t>::of(cube));
  EXPECT_NE(small.find("copied through the worker's socket"), std::string::npos) << small;
  EXPECT_NE(small.find("arg 0 (int): 4 B"), std::string::npos) << small;
  EXPECT_NE(small.find("by reference: 4.0 KiB of file " + path), std::string::npos) << small;
  EXPECT_NE(small.find("mode r,"), std::string::npos) << small;
  const std::string big = pool.explain(fn, 3, std::vector<double>(1 << 18),
                                       ArrayRef<std::uint8_t>::of(cube, MapMode::ReadWrite));
  EXPECT_NE(big.find("> max_nbytes 1.0 MiB"), std::string::npos) << big;
  EXPECT_NE(big.find("shared segment"), std::string::npos) << big;
  EXPECT_NE(big.find("arg 1 (std::vector<double"), std::string::npos) << big;
  EXPECT_NE(big.find("2.0 MiB"), std::string::npos) << big;
  EXPECT_NE(big.find("mode r+"), std::string::npos) << big;
  Pool threads(with(Backend::Thread, 2));
  EXPECT_NE(threads.explain(fn, 1, std::vector<double>(), ArrayRef<std::uint8_t>::of(cube))
                .find("nothing crosses a process boundary"),
            std::string::npos);
}

TEST(ProcessPool, AbortInATaskIsReportedWithItsSignal) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    auto future = pool.submit([] {
      signal(SIGABRT, SIG_DFL);
      ::raise(SIGABRT);
    });
    const auto caught = catch_error([&] { future.get(); });
    EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
    EXPECT_NE(caught.message.find("SIGABRT"), std::string::npos) << caught.message;
    EXPECT_NE(caught.message.find("task 0"), std::string::npos) << caught.message;
  });
}

TEST(ProcessPool, ExitInATaskIsReportedWithItsStatus) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    const auto caught = catch_error([&] { pool.submit([] { _exit(3); }).get(); });
    EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
    EXPECT_NE(caught.message.find("exited with status 3"), std::string::npos) << caught.message;
  });
}

TEST(ProcessPool, EndlessTaskPastItsTimeoutIsKilledAndTheWorkerReplaced) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    TaskOptions options;
    options.timeout = 0.3;
    auto endless = pool.submit_with(options, [] {
      for (;;) pause();
    });
    const auto caught = catch_error([&] { endless.get(); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout);
    EXPECT_NE(caught.message.find("timeout"), std::string::npos) << caught.message;
    EXPECT_EQ(pool.submit(square, 7).get(), 49);
  });
}

TEST(ProcessPool, GetWithTimeoutStopsTheTask) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    SharedValue<int> pid_box(0);
    auto endless = pool.submit(
        [](ArrayRef<int> box) {
          with_lock(box, [](int& v) { v = getpid(); });
          for (;;) pause();
        },
        pid_box.ref());
    const auto caught = catch_error([&] { endless.get(200ms); });
    EXPECT_EQ(caught.code, ErrorCode::Timeout);
    // The worker that ran it is gone: the task does not go on behind our back.
    const int pid = pid_box.load();
    if (pid != 0) {
      for (int i = 0; i < 500 && kill(pid, 0) == 0; ++i) std::this_thread::sleep_for(10ms);
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string fields;
      std::getline(stat, fields);
      EXPECT_TRUE(fields.empty() || fields.find(") Z") != std::string::npos) << fields;
    }
    EXPECT_EQ(pool.submit(square, 8).get(), 64);
  });
}

TEST(ProcessPool, MapTimeoutFailsTheCallWithTimeout) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    CallOptions call;
    call.timeout = 0.3;
    call.chunksize = 1;
    const auto caught = catch_error([&] {
      pool.map(
          [](int x) {
            if (x == 2) {
              for (;;) pause();
            }
            return x;
          },
          std::vector<int>{0, 1, 2, 3}, call);
    });
    EXPECT_EQ(caught.code, ErrorCode::Timeout);
    EXPECT_NE(caught.message.find("task 2"), std::string::npos) << caught.message;
  });
}

TEST(ProcessPool, CallbacksRunForValuesAndErrors) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::atomic<int> value{0};
    std::atomic<int> errors{0};
    auto good = pool.submit(square, 9);
    good.add_done_callback([&](const int& v) { value = v; });
    auto bad = pool.submit([]() -> int { throw std::runtime_error("nope"); });
    bad.add_done_callback([&](const int&) { ADD_FAILURE(); },
                          [&](const Error& e) {
                            EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
                            ++errors;
                          });
    good.wait();
    bad.wait();
    for (int i = 0; i < 1000 && (value != 81 || errors != 1); ++i) std::this_thread::sleep_for(1ms);
    EXPECT_EQ(value.load(), 81);
    EXPECT_EQ(errors.load(), 1);
  });
}

int g_initialized = 0;

TEST(ProcessPool, InitializerRunsOnceInEachWorker) {
  run_guarded([] {
    ParallelOptions options = with(Backend::Process, 2);
    options.initializer = [] { ++g_initialized; };
    Pool pool(options);
    std::vector<int> items(200);
    CallOptions call;
    call.chunksize = 3;
    const auto seen =
        pool.map([](int) { return std::pair<int, int>(getpid(), g_initialized); }, items, call);
    std::set<int> pids;
    for (auto [pid, count] : seen) {
      EXPECT_EQ(count, 1);
      pids.insert(pid);
    }
    EXPECT_LE(pids.size(), 2u);
    EXPECT_EQ(g_initialized, 0) << "the initializer must not run in the caller";
  });
}

int g_pool_child_hook = 0;

TEST(ProcessPool, ForkHooksRunAroundTheServersForkAndEachWorkers) {
  run_guarded([] {
    ParallelOptions options = with(Backend::Process, 2);
    int prepared = 0;
    options.fork_hooks.prepare = [&prepared] { ++prepared; };
    // In the fork server (a child of this process) and again in each worker it forks.
    options.fork_hooks.child = [] { ++g_pool_child_hook; };
    Pool pool(options);
    CallOptions call;
    call.chunksize = 1;
    const auto seen = pool.map([](int) { return g_pool_child_hook; }, std::vector<int>(20), call);
    for (const int hooked : seen) EXPECT_EQ(hooked, 2);
    EXPECT_EQ(prepared, 1) << "the caller forks only the server";
    EXPECT_EQ(g_pool_child_hook, 0);
  });
}

TEST(ProcessPool, InitializerFailureFailsTasksClearly) {
  run_guarded([] {
    ParallelOptions options = with(Backend::Process, 1);
    options.initializer = [] { throw std::runtime_error("no database"); };
    Pool pool(options);
    const auto caught = catch_error([&] { pool.submit(square, 2).get(); });
    EXPECT_TRUE(caught.thrown);
    EXPECT_NE(caught.message.find("initializer failed"), std::string::npos) << caught.message;
    EXPECT_NE(caught.message.find("no database"), std::string::npos) << caught.message;
  });
}

TEST(ProcessPool, MaxTasksPerChildRecyclesWorkers) {
  run_guarded([] {
    ParallelOptions options = with(Backend::Process, 1);
    options.maxtasksperchild = 2;
    Pool pool(options);
    CallOptions call;
    call.chunksize = 1;
    const auto pids =
        pool.map([](int) { return static_cast<int>(getpid()); }, std::vector<int>(6), call);
    EXPECT_EQ(std::set<int>(pids.begin(), pids.end()).size(), 3u);
  });
}

TEST(ProcessPool, PayloadsOverMaxNbytesGoThroughSegments) {
  run_guarded([] {
    ParallelOptions options = with(Backend::Process, 2);
    options.max_nbytes = 64 * 1024;
    Pool pool(options);
    std::vector<std::vector<std::uint32_t>> inputs;
    for (std::uint32_t i = 0; i < 4; ++i) inputs.emplace_back(300'000, i);
    CallOptions call;
    call.chunksize = 1;
    const auto out = pool.map(
        [](const std::vector<std::uint32_t>& v) {
          std::vector<std::uint32_t> r(v);
          for (auto& x : r) x += 1;
          return r;
        },
        inputs, call);
    for (std::uint32_t i = 0; i < 4; ++i)
      EXPECT_EQ(out[i], std::vector<std::uint32_t>(300'000, i + 1));
  });
}

TEST(ProcessPool, WritesToCapturedMemoryStayInTheWorker) {
  run_guarded([] {
    static int counter = 0;
    Pool pool(with(Backend::Process, 1));
    pool.map([](int) { return ++counter; }, std::vector<int>(10));
    EXPECT_EQ(counter, 0);
  });
}

TEST(ProcessPool, TwoHundredPoolsLeaveNoProcessDescriptorOrSegment) {
  run_guarded(
      [] {
        LeakCheck leaks;
        for (int i = 0; i < 200; ++i) {
          Pool pool(with(Backend::Process, 2));
          if (i % 20 == 0) {
            ParallelOptions big = with(Backend::Process, 1);
            EXPECT_EQ(pool.submit(square, i).get(), i * i);
          }
        }
        // A pool destroyed with work still running cancels it.
        Future<int> orphan;
        {
          Pool pool(with(Backend::Process, 1));
          orphan = pool.submit([] {
            for (;;) pause();
            return 0;
          });
        }
        EXPECT_EQ(catch_error([&] { orphan.get(); }).code, ErrorCode::Cancelled);
        leaks.expect_clean();
      },
      120);
}

// The caller dies by SIGKILL: its workers go too (their server sees EOF, PR_SET_PDEATHSIG).
TEST(ProcessPool, WorkersNeverOutliveTheirCaller) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipe_fds[0]);
    Pool pool(with(Backend::Process, 2));
    CallOptions call;
    call.chunksize = 1;
    const auto pids =
        pool.map([](int) { return static_cast<int>(getpid()); }, std::vector<int>(20), call);
    std::set<int> unique(pids.begin(), pids.end());
    for (int pid : unique) {
      if (write(pipe_fds[1], &pid, sizeof pid) != sizeof pid) _exit(2);
    }
    close(pipe_fds[1]);
    for (;;) pause();
  }
  close(pipe_fds[1]);
  std::vector<int> workers;
  int pid;
  while (read(pipe_fds[0], &pid, sizeof pid) == sizeof pid) workers.push_back(pid);
  close(pipe_fds[0]);
  ASSERT_FALSE(workers.empty());
  kill(child, SIGKILL);
  test::wait_child(child, 20);
  for (int worker : workers) {
    bool gone = false;
    for (int i = 0; i < 1000 && !gone; ++i) {
      std::ifstream stat("/proc/" + std::to_string(worker) + "/stat");
      std::string fields;
      std::getline(stat, fields);
      gone = fields.empty() || fields.find(") Z") != std::string::npos;
      if (!gone) std::this_thread::sleep_for(10ms);
    }
    EXPECT_TRUE(gone) << "worker " << worker << " outlived its caller";
  }
}

// SIGINT with install_interrupt_handlers(): workers stop, the waiting call fails Cancelled.
TEST(ProcessPool, InterruptStopsAllWorkersAndFailsTheCall) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    install_interrupt_handlers();
    int code = 0;
    {
      Pool pool(with(Backend::Process, 2));
      std::thread killer([] {
        std::this_thread::sleep_for(300ms);
        kill(getpid(), SIGINT);
      });
      try {
        pool.map(
            [](int) {
              for (;;) pause();
              return 0;
            },
            std::vector<int>(4));
        code = 3;
      } catch (const Error& error) {
        code = error.code() == ErrorCode::Cancelled ? 0 : 4;
      }
      killer.join();
    }
    if (code == 0 && !test::has_no_children()) code = 5;
    _exit(code);
  }
  EXPECT_EQ(test::wait_child(child, 30), 0);
}

// ---------------------------------------------------------------------------------------------
// Options

TEST(ParallelDefaults, NJobsFollowsJoblib) {
  EXPECT_EQ(Pool(with(Backend::Serial, -1)).n_jobs(), cpu_count());
  EXPECT_EQ(Pool(with(Backend::Serial, 3)).n_jobs(), 3);
  EXPECT_EQ(catch_error([] { Pool pool(with(Backend::Serial, 0)); }).code,
            ErrorCode::InvalidArgument);
}

TEST(ParallelDefaults, ScopedConfigThenEnvironmentThenDefault) {
  unsetenv("MMC_N_JOBS");
  EXPECT_EQ(Pool(serial_default()).n_jobs(), 1);
  setenv("MMC_N_JOBS", "3", 1);
  EXPECT_EQ(Pool(serial_default()).n_jobs(), 3);
  {
    ParallelConfig outer(with(Backend::Thread, 5));
    Pool pool;
    EXPECT_EQ(pool.n_jobs(), 5);
    EXPECT_EQ(pool.backend(), Backend::Thread);
    {
      ParallelOptions two;
      two.n_jobs = 2;
      ParallelConfig inner(two);
      EXPECT_EQ(Pool().n_jobs(), 2);
      EXPECT_EQ(Pool().backend(), Backend::Thread);
    }
    ParallelOptions four;
    four.n_jobs = 4;
    EXPECT_EQ(Pool(four).n_jobs(), 4);
  }
  EXPECT_EQ(Pool(serial_default()).n_jobs(), 3);
  setenv("MMC_N_JOBS", "zero", 1);
  EXPECT_EQ(catch_error([] { Pool pool(serial_default()); }).code, ErrorCode::InvalidArgument);
  unsetenv("MMC_N_JOBS");
}

// A lazy input range of 0 .. n - 1 that counts the values read from it. (std::views::iota with
// a counting transform would do, but clang 14 cannot compile libstdc++ 12's iota_view, and the
// ASan build is clang's.)
class CountedInts {
 public:
  struct iterator {
    using value_type = int;
    using difference_type = std::ptrdiff_t;
    int at = 0;
    std::size_t* produced = nullptr;
    int operator*() const {
      ++*produced;
      return at;
    }
    iterator& operator++() {
      ++at;
      return *this;
    }
    void operator++(int) { ++at; }
    bool operator==(const iterator& other) const { return at == other.at; }
  };
  CountedInts(int n, std::size_t* produced) : n_(n), produced_(produced) {}
  iterator begin() const { return {0, produced_}; }
  iterator end() const { return {n_, produced_}; }

 private:
  int n_;
  std::size_t* produced_;
};

// imap reads its input lazily: at most pre_dispatch batches ahead of the consumer.
TEST(ParallelDefaults, ImapReadsAheadBoundedly) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::size_t produced = 0;
    const CountedInts input(1'000'000, &produced);
    CallOptions call;
    call.chunksize = 8;
    call.pre_dispatch = 4;  // explicit: no adaptive widening
    auto results = pool.imap(square, input, call);
    EXPECT_EQ(*results.next(), 0);
    EXPECT_LE(produced, 8u * 4 + 8);  // pre_dispatch batches of 8, +1
  });
}

// With chunksize 1 on tiny tasks the in-flight window grows past 2 * n_jobs, but stays bounded.
TEST(ParallelDefaults, TinyBatchesGrowTheWindowButReadAheadStaysBounded) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::size_t produced = 0;
    const CountedInts input(1'000'000, &produced);
    CallOptions call;
    call.chunksize = 1;
    auto results = pool.imap(square, input, call);
    std::size_t consumed = 0;
    std::size_t most_ahead = 0;
    for (int i = 0; i < 5000; ++i) {
      ASSERT_EQ(*results.next(), i * i);
      ++consumed;
      most_ahead = std::max(most_ahead, produced - consumed);
    }
    EXPECT_LE(most_ahead, 64u * 2 + 1) << "read-ahead must stay within 64 * n_jobs batches";
    EXPECT_GT(most_ahead, 2u * 2) << "tiny batches should widen the window past 2 * n_jobs";
  });
}

TEST(ParallelDefaults, AutoBatchingGrowsBatchesForTinyTasks) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 2));
    std::vector<int> items(20'000);
    std::size_t calls = 0;
    CallOptions call;
    call.on_progress = [&](const Progress&) { ++calls; };
    pool.map(square, items, call);
    EXPECT_LT(calls, 500u) << "tiny tasks should travel in large batches";
  });
}

}  // namespace
}  // namespace mmc
