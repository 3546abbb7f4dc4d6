// Tests of the pool's options: n_jobs, the CPU count (and cgroup quota parsing), max_nbytes and
// backend names.
#include "pool/options.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"
#include "mmc/source.hpp"
#include "pool_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::ScopedEnv;

TEST(NJobs, PositiveCountIsTakenAsIs) {
  EXPECT_EQ(effective_n_jobs(1), 1);
  EXPECT_EQ(effective_n_jobs(3), 3);
  EXPECT_EQ(effective_n_jobs(1000), 1000);
}

TEST(NJobs, ZeroIsRejectedWithAHint) {
  const test::Caught caught = test::catch_error([] { effective_n_jobs(0); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_EQ(caught.message,
            "n_jobs=0 is invalid: use a positive count, -1 for all CPUs, -2 for all but one");
}

TEST(NJobs, NegativeCountsFromTheCpuCount) {
  const int cpus = cpu_count();
  EXPECT_EQ(effective_n_jobs(-1), cpus);
  EXPECT_EQ(effective_n_jobs(-2), std::max(cpus - 1, 1));
  EXPECT_EQ(effective_n_jobs(-cpus - 10), 1);
  EXPECT_EQ(effective_n_jobs(std::numeric_limits<int>::min()), 1);
}

TEST(NJobs, RunTasksRejectsZero) {
  PoolOptions options;
  options.n_jobs = 0;
  TaskSet call;
  call.n_tasks = 3;
  call.run = [](std::size_t, ByteView, Bytes&) {};
  const test::Caught caught = test::catch_error([&] { run_tasks(options, call); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("n_jobs=0"), std::string::npos);
}

TEST(CpuCount, IsAtLeastOneAndAtMostTheOnlineAndAffinityCounts) {
  const int cpus = cpu_count();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, sysconf(_SC_NPROCESSORS_ONLN));
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_LE(cpus, CPU_COUNT(&set));
}

TEST(CpuCount, FollowsAShrunkAffinityMask) {
  cpu_set_t saved;
  ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
  int first = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && first < 0; ++cpu) {
    if (CPU_ISSET(cpu, &saved)) first = cpu;
  }
  ASSERT_GE(first, 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  const int cpus = cpu_count();
  ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
  EXPECT_EQ(cpus, 1);
}

TEST(CpuCount, ReadsTheCgroupV2Quota) {
  EXPECT_FALSE(detail::cpus_from_cgroup_v2("max 100000"));
  EXPECT_EQ(detail::cpus_from_cgroup_v2("200000 100000"), 2);
  EXPECT_EQ(detail::cpus_from_cgroup_v2("150000 100000"), 2);  // rounded up, as loky does
  EXPECT_EQ(detail::cpus_from_cgroup_v2("50000 100000"), 1);
  EXPECT_FALSE(detail::cpus_from_cgroup_v2(""));
  EXPECT_FALSE(detail::cpus_from_cgroup_v2("garbage"));
  EXPECT_FALSE(detail::cpus_from_cgroup_v2("100000 0"));
}

TEST(CpuCount, ReadsTheCgroupV1Quota) {
  EXPECT_FALSE(detail::cpus_from_cgroup_v1("-1", "100000"));
  EXPECT_EQ(detail::cpus_from_cgroup_v1("300000", "100000"), 3);
  EXPECT_EQ(detail::cpus_from_cgroup_v1("10000", "100000"), 1);
  EXPECT_FALSE(detail::cpus_from_cgroup_v1("", ""));
}

struct NbytesCase {
  const char* text;
  std::uint64_t bytes;
};

TEST(CgroupMemory, ParsesV2AndV1Files) {
  const auto v2 = detail::cgroup_memory_from("1073741824\n",
                                             "anon 104857600\nfile 5000\nshmem 4194304\n", false);
  ASSERT_TRUE(v2.has_value());
  EXPECT_EQ(v2->limit, 1073741824u);
  EXPECT_EQ(v2->used, 104857600u + 4194304u);
  EXPECT_EQ(v2->headroom(), 1073741824u - 104857600u - 4194304u);
  EXPECT_FALSE(detail::cgroup_memory_from("max\n", "anon 1\nshmem 1\n", false));
  EXPECT_FALSE(detail::cgroup_memory_from("12x", "anon 1\nshmem 1\n", false));
  EXPECT_FALSE(detail::cgroup_memory_from("4096", "file 1\n", false));  // no anon line

  const auto v1 = detail::cgroup_memory_from(
      "2147483648", "cache 9\nrss 5\nshmem 7\ntotal_rss 1000\ntotal_shmem 24\n", true);
  ASSERT_TRUE(v1.has_value());
  EXPECT_EQ(v1->used, 1024u);
  // v1's "unlimited" is the largest page multiple below 2^63.
  EXPECT_FALSE(
      detail::cgroup_memory_from("9223372036854771712", "total_rss 1\ntotal_shmem 1\n", true));
}

TEST(CgroupMemory, CapsNJobsByWorkerMemory) {
  const detail::CgroupMemory memory{8ull << 30, 2ull << 30};  // 6 GiB left
  EXPECT_EQ(detail::cap_jobs_by_memory(8, 1ull << 30, memory, 0), 6);
  EXPECT_EQ(detail::cap_jobs_by_memory(4, 1ull << 30, memory, 0), 4);
  EXPECT_EQ(detail::cap_jobs_by_memory(8, 1ull << 30, memory, 3ull << 30), 3);
  EXPECT_EQ(detail::cap_jobs_by_memory(8, 100ull << 30, memory, 0), 1);  // never below 1
  EXPECT_EQ(detail::cap_jobs_by_memory(8, 0, memory, 0), 8);             // unknown: no cap
  EXPECT_EQ(detail::cap_jobs_by_memory(8, 1ull << 30, std::nullopt, 0), 8);
}

// A fake cgroup folder (MMC_CGROUP_DIR) with 64 MiB of headroom.
class FakeCgroup {
 public:
  FakeCgroup() {
    std::ofstream(dir_.file("memory.max")) << (1ull << 30) << "\n";
    std::ofstream(dir_.file("memory.stat")) << "anon " << (960ull << 20) << "\nfile 0\nshmem 0\n";
    setenv("MMC_CGROUP_DIR", dir_.path().c_str(), 1);
  }
  ~FakeCgroup() { unsetenv("MMC_CGROUP_DIR"); }

 private:
  test::TempDir dir_;
};

TEST(CgroupMemory, SharingPastTheLimitFailsAtOnceNamingTheCgroup) {
  FakeCgroup cgroup;
  ASSERT_TRUE(detail::cgroup_memory().has_value());
  EXPECT_EQ(detail::cgroup_memory()->headroom(), 64ull << 20);
  EXPECT_NO_THROW(detail::check_shared_memory_room(1 << 20, "a small array"));
  const test::Caught caught =
      test::catch_error([] { detail::check_shared_memory_room(200ull << 20, "a big array"); });
  EXPECT_EQ(caught.code, ErrorCode::Io);
  EXPECT_NE(caught.message.find("cgroup's memory limit"), std::string::npos) << caught.message;
  EXPECT_NE(caught.message.find("a big array"), std::string::npos) << caught.message;

  // The pool's transport checks before making a segment: the task fails with that message.
  test::run_guarded([] {
    ParallelOptions options;
    options.backend = Backend::Process;
    options.n_jobs = 1;
    options.max_nbytes = 1024;
    Pool pool(options);
    const auto caught = test::catch_error([&] {
      pool.submit([](const std::vector<char>& v) { return v.size(); },
                  std::vector<char>(100u << 20))
          .get();
    });
    EXPECT_EQ(caught.code, ErrorCode::Io) << caught.message;
    EXPECT_NE(caught.message.find("cgroup"), std::string::npos) << caught.message;
    EXPECT_EQ(pool.submit([](int x) { return x; }, 5).get(), 5);
  });
}

TEST(CgroupMemory, WorkerMemoryLowersNJobs) {
  FakeCgroup cgroup;
  ParallelOptions options;
  options.backend = Backend::Serial;
  options.n_jobs = 8;
  options.worker_memory = 20ull << 20;  // 64 MiB left: 3 workers fit
  EXPECT_EQ(Pool(options).n_jobs(), 3);
  options.worker_memory = 0;
  EXPECT_EQ(Pool(options).n_jobs(), 8);
}

TEST(MaxNbytes, ParsesBytesAndPowerOf1024Suffixes) {
  const NbytesCase cases[] = {
      {"0", 0},
      {"1", 1},
      {"4096", 4096},
      {"0K", 0},
      {"1K", 1024},
      {"1k", 1024},
      {"1M", 1048576},
      {"1m", 1048576},
      {"3G", 3ull << 30},
      {"3g", 3ull << 30},
      {"0001M", 1048576},
      {"18446744073709551615", UINT64_MAX},
      {"17179869183G", 17179869183ull << 30},
  };
  for (const NbytesCase& c : cases) {
    EXPECT_EQ(parse_max_nbytes(c.text), c.bytes) << c.text;
  }
  EXPECT_EQ(parse_max_nbytes("1M"), kDefaultMaxNbytes);
}

TEST(MaxNbytes, RejectsAnythingElse) {
  const char* bad[] = {"",
                       "-1",
                       "-1M",
                       "+1",
                       "1.5M",
                       "1MB",
                       "1mb",
                       "1 M",
                       " 1",
                       "1 ",
                       "M",
                       "K",
                       "1T",
                       "1KK",
                       "0x10",
                       "1e6",
                       "one",
                       "1B",
                       "１M",
                       "18446744073709551616",  // 2^64
                       "17179869184G",          // 2^64 bytes
                       "18014398509481984K"};   // 2^64 bytes
  for (const char* text : bad) {
    const test::Caught caught = test::catch_error([&] { parse_max_nbytes(text); });
    EXPECT_TRUE(caught.thrown) << "'" << text << "' was accepted";
    EXPECT_EQ(caught.code, ErrorCode::InvalidArgument) << text;
    EXPECT_NE(caught.message.find(std::string("'") + text + "'"), std::string::npos)
        << caught.message;
  }
}

TEST(PoolBackend, ParsesAndPrintsItsNames) {
  for (Backend backend : {Backend::Process, Backend::Thread, Backend::Serial}) {
    EXPECT_EQ(parse_backend(to_string(backend)), backend);
  }
  const test::Caught caught = test::catch_error([] { parse_backend("threads"); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("'threads'"), std::string::npos);
}

// One options type for every parallel path: run_tasks and the calls on top of it (reduce,
// convert, gen) take the scoped defaults and the environment as mmc::Pool does.

TaskSet empty_call(std::size_t n_tasks) {
  TaskSet call;
  call.n_tasks = n_tasks;
  call.run = [](std::size_t, ByteView, Bytes&) {};
  return call;
}

TEST(OneOptionsType, TheEnvironmentReachesRunTasksWhenNJobsIsNotGiven) {
  ScopedEnv jobs("MMC_N_JOBS", "3");
  ScopedEnv backend("MMC_BACKEND", "thread");
  EXPECT_EQ(run_tasks(PoolOptions{}, empty_call(10)).workers, 3);
  PoolOptions explicit_options;
  explicit_options.n_jobs = 2;
  EXPECT_EQ(run_tasks(explicit_options, empty_call(10)).workers, 2);
}

TEST(OneOptionsType, AParallelConfigReachesRunTasks) {
  unsetenv("MMC_N_JOBS");
  PoolOptions defaults;
  defaults.n_jobs = 2;
  defaults.backend = Backend::Thread;
  const ResolvedOptions outside = resolve(PoolOptions{});
  {
    ParallelConfig config(defaults);
    const ResolvedOptions inside = resolve(PoolOptions{});
    EXPECT_EQ(inside.n_jobs, 2);
    EXPECT_EQ(inside.backend, Backend::Thread);
    EXPECT_EQ(run_tasks(PoolOptions{}, empty_call(5)).workers, 2);
  }
  EXPECT_EQ(resolve(PoolOptions{}).n_jobs, outside.n_jobs);
  EXPECT_EQ(resolve(PoolOptions{}).backend, outside.backend);
}

TEST(OneOptionsType, MmcNJobsReachesAReduce) {
  test::TempDir dir;
  std::vector<std::uint8_t> values(64 * 64);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::uint8_t>(i * 7);
  test::write_file(dir.file("a.raw"),
                   std::string(reinterpret_cast<const char*>(values.data()), values.size()));
  RawSpec spec;
  spec.path = dir.file("a.raw");
  spec.dtype = DType(TypeId::U8);
  spec.shape = {64, 64};
  const Source source = open_raw(spec);
  ReduceOptions options;
  options.op = ReduceOp::Sum;
  options.axes = {0, 1};
  options.axes_given = true;
  options.task_bytes = 256;  // 16 tasks: room for every worker
  const std::uint64_t expected = std::accumulate(values.begin(), values.end(), std::uint64_t{0});
  ReduceResult one;
  {
    ScopedEnv jobs("MMC_N_JOBS", "1");
    one = reduce(source, options);
  }
  ScopedEnv jobs("MMC_N_JOBS", "2");
  const ReduceResult two = test::run_guarded([&] { return reduce(source, options); });
  EXPECT_EQ(one.stats.workers, 1);
  EXPECT_EQ(two.stats.workers, 2);
  ASSERT_EQ(two.size(), 1);
  EXPECT_EQ(two.as<std::uint64_t>()[0], expected);
  EXPECT_EQ(one.as<std::uint64_t>()[0], expected);
}

}  // namespace
}  // namespace mmc
