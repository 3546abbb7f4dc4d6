// Tests of run_tasks: results in every backend, task errors, lost workers and what a call
// leaves behind (children, descriptors, segments).
#include "mmc/pool.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "mmc/error.hpp"
#include "pool_test_util.hpp"

namespace mmc {
namespace {

using test::Caught;
using test::LeakCheck;

// Task t gets 16 bytes (t, 3t+1) and returns their sum and product as two uint64.
TaskSet arithmetic_call(std::size_t n_tasks, std::vector<Bytes>& results) {
  results.assign(n_tasks, Bytes());
  TaskSet call;
  call.n_tasks = n_tasks;
  call.make_arg = [](std::size_t task) {
    const std::uint64_t values[2] = {task, 3 * task + 1};
    Bytes arg(sizeof values);
    std::memcpy(arg.data(), values, sizeof values);
    return arg;
  };
  call.run = [](std::size_t, ByteView arg, Bytes& out) {
    std::uint64_t values[2];
    if (arg.size != sizeof values) throw Error(ErrorCode::Corrupt, "bad argument size");
    std::memcpy(values, arg.data, sizeof values);
    const std::uint64_t answer[2] = {values[0] + values[1], values[0] * values[1]};
    out.resize(sizeof answer);
    std::memcpy(out.data(), answer, sizeof answer);
  };
  call.on_result = [&results](std::size_t task, ByteView result) {
    EXPECT_TRUE(results.at(task).empty()) << "task " << task << " delivered twice";
    test::append(results.at(task), result);
  };
  return call;
}

class PoolEveryBackend : public ::testing::TestWithParam<std::tuple<Backend, int>> {};

TEST_P(PoolEveryBackend, MapsAThousandTasksCorrectly) {
  const auto [backend, n_jobs] = GetParam();
  LeakCheck leaks;
  std::vector<Bytes> results;
  TaskSet call = arithmetic_call(1000, results);
  const std::thread::id caller = std::this_thread::get_id();
  std::size_t progress_calls = 0;
  std::size_t last_done = 0;
  double last_elapsed = 0;
  call.on_progress = [&](const Progress& p) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(p.total, 1000u);
    EXPECT_EQ(p.done, last_done + 1);
    EXPECT_GE(p.elapsed_s, last_elapsed);
    // The estimate of what is left: known once a task finished, 0 after the last.
    EXPECT_GE(p.eta_s, 0.0);
    if (p.done == p.total) {
      EXPECT_EQ(p.eta_s, 0.0);
    }
    last_elapsed = p.elapsed_s;
    last_done = p.done;
    ++progress_calls;
  };
  auto deliver = call.on_result;
  call.on_result = [&, deliver](std::size_t task, ByteView result) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    deliver(task, result);
  };
  PoolOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  const CallStats stats = run_tasks(options, call);
  EXPECT_EQ(stats.tasks, 1000u);
  EXPECT_EQ(progress_calls, 1000u);
  EXPECT_EQ(stats.workers, backend == Backend::Serial ? 1 : n_jobs);
  for (std::uint64_t t = 0; t < 1000; ++t) {
    ASSERT_EQ(results[t].size(), 16u) << "task " << t;
    std::uint64_t answer[2];
    std::memcpy(answer, results[t].data(), sizeof answer);
    EXPECT_EQ(answer[0], t + 3 * t + 1);
    EXPECT_EQ(answer[1], t * (3 * t + 1));
  }
  leaks.expect_clean();
}

INSTANTIATE_TEST_SUITE_P(BackendsAndJobs, PoolEveryBackend,
                         ::testing::Combine(::testing::Values(Backend::Process, Backend::Thread,
                                                              Backend::Serial),
                                            ::testing::Values(1, 2, 4)),
                         [](const auto& info) {
                           return std::string(to_string(std::get<0>(info.param))) + "_n_jobs_" +
                                  std::to_string(std::get<1>(info.param));
                         });

TEST(PoolMap, ResultsAreByteIdenticalAcrossBackends) {
  // Results of varying size, some over max_nbytes (shared), some under (piped), some empty.
  const auto collect = [](Backend backend) {
    std::vector<Bytes> results(300);
    TaskSet call;
    call.n_tasks = results.size();
    call.make_arg = [](std::size_t task) { return test::pattern(task, (task * 37) % 3000); };
    call.run = [](std::size_t task, ByteView arg, Bytes& out) {
      out = test::pattern(task + 1000, (task * 53) % 5000);
      for (std::size_t i = 0; i < arg.size && i < out.size(); ++i) out[i] ^= arg.data[i];
    };
    call.on_result = [&results](std::size_t task, ByteView result) {
      test::append(results[task], result);
    };
    PoolOptions options;
    options.backend = backend;
    options.n_jobs = 3;
    options.max_nbytes = parse_max_nbytes("2K");
    run_tasks(options, call);
    return results;
  };
  const std::vector<Bytes> serial = collect(Backend::Serial);
  EXPECT_EQ(collect(Backend::Thread), serial);
  EXPECT_EQ(collect(Backend::Process), serial);
}

TEST(PoolMap, ZeroTasksStartsNoWorker) {
  TaskSet call;
  call.run = [](std::size_t, ByteView, Bytes&) { std::abort(); };
  for (Backend backend : {Backend::Process, Backend::Thread, Backend::Serial}) {
    PoolOptions options;
    options.backend = backend;
    options.n_jobs = 4;
    const CallStats stats = run_tasks(options, call);
    EXPECT_EQ(stats.tasks, 0u);
    EXPECT_EQ(stats.workers, 0);
  }
  EXPECT_TRUE(test::has_no_children());
}

TEST(PoolMap, StartsNoMoreWorkersThanTasks) {
  std::vector<Bytes> results;
  TaskSet call = arithmetic_call(3, results);
  for (Backend backend : {Backend::Process, Backend::Thread}) {
    PoolOptions options;
    options.backend = backend;
    options.n_jobs = 8;
    EXPECT_EQ(run_tasks(options, call).workers, 3) << to_string(backend);
    results.assign(3, Bytes());
  }
}

TEST(PoolMap, RejectsACallWithoutATaskFunction) {
  TaskSet call;
  call.n_tasks = 2;
  const Caught caught = test::catch_error([&] { run_tasks(PoolOptions(), call); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
}

TEST(PoolMap, TransportStatsAreZeroForThreadsAndSerial) {
  for (Backend backend : {Backend::Thread, Backend::Serial}) {
    TaskSet call;
    call.n_tasks = 10;
    call.make_arg = [](std::size_t) { return test::pattern(1, 4096); };
    call.run = [](std::size_t, ByteView arg, Bytes& out) { test::append(out, arg); };
    PoolOptions options;
    options.backend = backend;
    options.n_jobs = 2;
    options.max_nbytes = 0;
    const CallStats stats = run_tasks(options, call);
    EXPECT_EQ(stats.tasks, 10u);
    EXPECT_EQ(stats.bytes_piped, 0u);
    EXPECT_EQ(stats.bytes_shared, 0u);
    EXPECT_EQ(stats.segments, 0u);
  }
}

TEST(PoolWorkers, AreForkedOnceAndReusedForAllTasks) {
  std::set<std::string> pids;
  TaskSet call;
  call.n_tasks = 200;
  call.run = [](std::size_t, ByteView, Bytes& out) {
    out = test::bytes_of(std::to_string(getpid()));
  };
  call.on_result = [&pids](std::size_t, ByteView result) { pids.insert(test::string_of(result)); };
  PoolOptions options;
  options.n_jobs = 2;
  run_tasks(options, call);
  EXPECT_LE(pids.size(), 2u);
  EXPECT_GE(pids.size(), 1u);
  EXPECT_EQ(pids.count(std::to_string(getpid())), 0u) << "a task ran in the parent";
}

int g_forked_child_hook = 0;

TEST(PoolWorkers, ForkHooksRunAroundEachWorkersFork) {
  // prepare and parent once per fork in the caller, child first thing in each worker (what a
  // host interpreter needs to keep its own state whole across fork; see mmc/fork_hooks.hpp).
  int prepared = 0, parented = 0;
  PoolOptions options;
  options.n_jobs = 3;
  options.fork_hooks.prepare = [&prepared] { ++prepared; };
  options.fork_hooks.parent = [&parented, &prepared] { parented += prepared; };
  options.fork_hooks.child = [] { g_forked_child_hook = 7; };
  std::set<std::string> seen;
  TaskSet call;
  call.n_tasks = 30;
  call.run = [](std::size_t, ByteView, Bytes& out) {
    out = test::bytes_of(std::to_string(g_forked_child_hook));
  };
  call.on_result = [&seen](std::size_t, ByteView result) { seen.insert(test::string_of(result)); };
  run_tasks(options, call);
  EXPECT_EQ(seen, std::set<std::string>{"7"});
  EXPECT_EQ(prepared, 3);
  EXPECT_EQ(parented, 1 + 2 + 3) << "parent runs after each prepare";
  EXPECT_EQ(g_forked_child_hook, 0) << "the child hook ran in the caller";
  // Threads are not forked: no hook runs.
  options.backend = Backend::Thread;
  prepared = 0;
  seen.clear();
  run_tasks(options, call);
  EXPECT_EQ(prepared, 0);
  EXPECT_EQ(seen, std::set<std::string>{"0"});
}

TEST(PoolWorkers, LimitNestedThreadPoolsUnlessTheUserDid) {
  ASSERT_EQ(std::getenv("OMP_NUM_THREADS"), nullptr) << "test needs OMP_NUM_THREADS unset";
  const char* old_mkl = std::getenv("MKL_NUM_THREADS");
  const std::string saved_mkl = old_mkl ? old_mkl : "";
  setenv("MKL_NUM_THREADS", "7", 1);
  std::vector<std::string> seen(4);
  TaskSet call;
  call.n_tasks = seen.size();
  call.run = [](std::size_t, ByteView, Bytes& out) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    const char* blas = std::getenv("OPENBLAS_NUM_THREADS");
    const char* mkl = std::getenv("MKL_NUM_THREADS");
    out = test::bytes_of(std::string(omp ? omp : "-") + "," + (blas ? blas : "-") + "," +
                         (mkl ? mkl : "-"));
  };
  call.on_result = [&seen](std::size_t task, ByteView result) {
    seen[task] = test::string_of(result);
  };
  PoolOptions options;
  options.n_jobs = 2;
  run_tasks(options, call);
  if (old_mkl) {
    setenv("MKL_NUM_THREADS", saved_mkl.c_str(), 1);
  } else {
    unsetenv("MKL_NUM_THREADS");
  }
  const std::string each = std::to_string(std::max(cpu_count() / 2, 1));
  for (const std::string& s : seen) EXPECT_EQ(s, each + "," + each + ",7");
  EXPECT_EQ(std::getenv("OMP_NUM_THREADS"), nullptr) << "the parent's environment changed";
}

// Errors ---------------------------------------------------------------------------------------

class PoolErrors : public ::testing::TestWithParam<Backend> {};

TEST_P(PoolErrors, ATaskErrorKeepsItsCodeAndNamesTheTask) {
  LeakCheck leaks;
  TaskSet call;
  call.n_tasks = 50;
  call.run = [](std::size_t task, ByteView, Bytes&) {
    if (task == 7) throw Error(ErrorCode::Corrupt, "slab 3 has 12 bytes, expected 16");
  };
  PoolOptions options;
  options.backend = GetParam();
  options.n_jobs = 2;
  const Caught caught =
      test::run_guarded([&] { return test::catch_error([&] { run_tasks(options, call); }); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::Corrupt);
  EXPECT_EQ(caught.message, "task 7: slab 3 has 12 bytes, expected 16");
  leaks.expect_clean();
}

TEST_P(PoolErrors, AStdExceptionBecomesTaskFailed) {
  LeakCheck leaks;
  TaskSet call;
  call.n_tasks = 20;
  call.run = [](std::size_t task, ByteView, Bytes&) {
    if (task == 11) throw std::runtime_error("out of range");
  };
  PoolOptions options;
  options.backend = GetParam();
  options.n_jobs = 3;
  const Caught caught =
      test::run_guarded([&] { return test::catch_error([&] { run_tasks(options, call); }); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::TaskFailed);
  EXPECT_EQ(caught.message, "task 11: out of range");
  leaks.expect_clean();
}

TEST_P(PoolErrors, AnExceptionFromOnResultReachesTheCaller) {
  LeakCheck leaks;
  TaskSet call;
  call.n_tasks = 20;
  call.run = [](std::size_t, ByteView, Bytes& out) { out.resize(8); };
  call.on_result = [](std::size_t task, ByteView) {
    if (task == 4) throw std::logic_error("sink full");
  };
  PoolOptions options;
  options.backend = GetParam();
  options.n_jobs = 2;
  EXPECT_THROW(run_tasks(options, call), std::logic_error);
  leaks.expect_clean();
}

INSTANTIATE_TEST_SUITE_P(Backends, PoolErrors,
                         ::testing::Values(Backend::Process, Backend::Thread, Backend::Serial),
                         [](const auto& info) { return std::string(to_string(info.param)); });

// Process backend only: the ways a worker can die.
Caught run_dying_call(const std::function<void()>& die) {
  TaskSet call;
  call.n_tasks = 40;
  call.run = [die](std::size_t task, ByteView, Bytes& out) {
    if (task == 5) die();
    out.resize(4);
  };
  PoolOptions options;
  options.n_jobs = 2;
  return test::run_guarded([&] { return test::catch_error([&] { run_tasks(options, call); }); });
}

TEST(PoolWorkerLost, KillNineIsReportedWithSignalAndTask) {
  LeakCheck leaks;
  const Caught caught = run_dying_call([] { kill(getpid(), SIGKILL); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
  EXPECT_NE(caught.message.find("was killed by signal 9 (SIGKILL) while running task 5"),
            std::string::npos)
      << caught.message;
  EXPECT_NE(caught.message.find("(pid "), std::string::npos) << caught.message;
  leaks.expect_clean();
}

TEST(PoolWorkerLost, AbortIsReportedAsSigabrt) {
  LeakCheck leaks;
  const Caught caught = run_dying_call([] { ::raise(SIGABRT); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
  EXPECT_NE(caught.message.find("(SIGABRT) while running task 5"), std::string::npos)
      << caught.message;
  leaks.expect_clean();
}

TEST(PoolWorkerLost, ExitIsReportedWithItsStatus) {
  LeakCheck leaks;
  const Caught caught = run_dying_call([] { _exit(3); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
  EXPECT_NE(caught.message.find("exited with status 3 while running task 5"), std::string::npos)
      << caught.message;
  leaks.expect_clean();
}

TEST(PoolWorkerLost, DeathIsNoticedEvenIfAGrandchildHoldsTheSocket) {
  // The task forks a process that inherits the worker's socket and outlives the worker, so
  // the socket never reports EOF: the pidfd must.
  LeakCheck leaks;
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC), 0);
  const int grandchild_reports = pipe_fds[1];
  const Caught caught = run_dying_call([grandchild_reports] {
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      const std::string pid = std::to_string(getpid()) + "\n";
      [[maybe_unused]] ssize_t n = write(grandchild_reports, pid.data(), pid.size());
      sleep(30);
      _exit(0);
    }
    _exit(4);
  });
  close(pipe_fds[1]);
  char text[32] = {};
  const ssize_t n = read(pipe_fds[0], text, sizeof text - 1);
  close(pipe_fds[0]);
  if (n > 0) kill(std::atoi(text), SIGKILL);  // not our child: the worker's
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::WorkerLost);
  EXPECT_NE(caught.message.find("exited with status 4 while running task 5"), std::string::npos)
      << caught.message;
  leaks.expect_clean();
}

TEST(PoolWorkerLost, AFailureStopsWorkersBlockedInOtherTasks) {
  LeakCheck leaks;
  TaskSet call;
  call.n_tasks = 8;
  call.run = [](std::size_t task, ByteView, Bytes&) {
    if (task == 0) throw Error(ErrorCode::Io, "disk gone");
    for (;;) pause();  // every other task blocks forever
  };
  PoolOptions options;
  options.n_jobs = 4;
  const Caught caught =
      test::run_guarded([&] { return test::catch_error([&] { run_tasks(options, call); }); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::Io);
  EXPECT_EQ(caught.message, "task 0: disk gone");
  leaks.expect_clean();
}

TEST(PoolLeaks, TwoHundredCallsLeaveNoDescriptorOrChild) {
  LeakCheck leaks;
  PoolOptions options;
  options.n_jobs = 2;
  options.max_nbytes = 1024;
  for (int i = 0; i < 200; ++i) {
    TaskSet call;
    call.n_tasks = 6;
    call.make_arg = [](std::size_t task) { return test::pattern(task, task % 2 ? 4000 : 100); };
    call.run = [i](std::size_t task, ByteView arg, Bytes& out) {
      if (i % 50 == 49 && task == 3) throw Error(ErrorCode::Corrupt, "planned");
      test::append(out, arg);
    };
    std::size_t delivered = 0;
    call.on_result = [&delivered](std::size_t, ByteView) { ++delivered; };
    if (i % 50 == 49) {
      EXPECT_THROW(run_tasks(options, call), Error);
    } else {
      const CallStats stats = run_tasks(options, call);
      ASSERT_EQ(delivered, 6u);
      ASSERT_EQ(stats.segments, 6u);  // 3 big arguments, 3 big results
    }
  }
  leaks.expect_clean();
}

}  // namespace
}  // namespace mmc
