// Crash consistency of the result cache: `reduce --cache DIR` SIGKILLed (with its workers) at
// moments spread over the run, fixed seed printed. Afterwards the cache holds no entry, or a
// valid one: the next run answers numpy's values (a hit when an entry was left), and the run
// after it hits with the same values.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"
#include "support/kill_points.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

constexpr int kKills = 10;

class CacheCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("MMC_CACHE_DIR");
    source_ = dir_.file("cube.npy");
    cube_fixture({"make", source_, "--descr", "<u2", "--shape", "24,128,128", "--seed", "7"});
    expected_ = cube_fixture({"expect", source_, "--op", "mean", "--axis", "1,2"});
  }

  std::vector<std::string> reduce_args(const std::string& cache) const {
    return {"reduce", source_, "--op", "mean", "--axis", "1,2", "-j", "2", "--backend",
            "process", "--cache", cache, "-v"};
  }

  // Entries `cache ls --json` lists in `cache` (0 when the kill came before it was made).
  std::size_t entries(const std::string& cache) const {
    if (!file_exists(cache)) return 0;
    const CommandResult ls = run_cli({"cache", "ls", "--json", "--cache", cache});
    EXPECT_EQ(ls.exit_code, 0) << ls.err;
    return json::parse(ls.out)["entries"].size();
  }

  // Runs the cached reduce to the end writing `out`; true on a hit.
  bool run_to(const std::string& cache, const std::string& out) const {
    std::vector<std::string> args = reduce_args(cache);
    args.insert(args.end(), {"-o", out});
    const CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.err.find("cache: hit ") != std::string::npos;
  }
  // The same, its output the same bytes as the reference run's, whose values are numpy's.
  bool run_and_check(const std::string& cache, const std::string& out) const {
    const bool hit = run_to(cache, out);
    EXPECT_EQ(read_file(out), read_file(reference_out_)) << cache << (hit ? " (hit)" : " (miss)");
    return hit;
  }

  TempDir dir_;
  std::string source_;
  json expected_;
  std::string reference_out_;
};

TEST_F(CacheCrash, KilledReduceLeavesNoEntryOrOneThatHitsWithTheRightValues) {
  const EnvVars env = {{"MMC_DEBUG_TASK_DELAY_MS", "60"}};
  const double seconds = timed_cli_run(reduce_args(dir_.file("reference")), dir_.path(), env);
  reference_out_ = dir_.file("reference.npy");
  EXPECT_FALSE(run_to(dir_.file("uncached"), reference_out_));
  expect_same_values(expected_, load_npy_output(reference_out_), "reference run");
  int left_entry = 0;
  int i = 0;
  for (double at : kill_moments(17, kKills, seconds)) {
    const std::string cache = dir_.file("cache" + std::to_string(i++));
    const int code = run_and_kill(reduce_args(cache), dir_.path(), env, at);
    EXPECT_TRUE(code == 0 || code == 128 + 9) << "exit " << code;
    const std::size_t before = entries(cache);
    EXPECT_LE(before, 1u) << cache;
    const std::string out = cache + "-out.npy";
    const bool hit = run_and_check(cache, out);
    EXPECT_EQ(hit, before == 1) << cache << ": an entry left by the killed run must be hit";
    EXPECT_TRUE(run_and_check(cache, out)) << cache << ": the second run must hit";
    left_entry += before == 1 ? 1 : 0;
  }
  std::printf("%d of %d killed runs left an entry, the others none\n", left_entry, kKills);
}

}  // namespace
}  // namespace mmc::test
