// Crash consistency of `mmcompute convert` to zarr: the CLI and its workers are SIGKILLed at
// moments spread over the run (fixed seeds, printed); afterwards each destination is absent, or
// a complete store that zarr-python reads as exactly the source (or, when overwriting, exactly
// the store it replaced), and a later convert to the same name succeeds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"
#include "support/kill_points.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

constexpr int kKills = 10;

class ConvertCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = dir_.file("out");
    ASSERT_EQ(run_command({"mkdir", "-p", out_}).exit_code, 0);
    // 16 MiB in 2 MiB chunks: tasks of four chunks, two workers, each task first sleeping
    // (MMC_DEBUG_TASK_DELAY_MS) so kills land while chunks are half written, too.
    source_ = dir_.file("source.npy");
    expected_ = dir_.file("expected.npy");
    run_python("convert_check.py", {"make", "npy", source_, expected_, "<f4", "32,256,512", "C"});
  }

  std::vector<std::string> convert_args(const std::string& dst, bool overwrite) const {
    std::vector<std::string> args = {"convert", source_, dst,         "--chunks", "4,256,512",
                                     "-j",      "2",     "--backend", "process",  "--quiet"};
    if (overwrite) args.push_back("--overwrite");
    return args;
  }

  // crash_check.py's verdict on each store (see tests/fixtures/crash_check.py).
  std::vector<std::string> verdicts(const std::vector<std::string>& stores,
                                    const std::string& old_expected) const {
    std::vector<std::string> args = {expected_, old_expected};
    args.insert(args.end(), stores.begin(), stores.end());
    std::istringstream lines(run_python("crash_check.py", args));
    std::vector<std::string> out;
    for (std::string line; std::getline(lines, line);) out.push_back(line);
    EXPECT_EQ(out.size(), stores.size());
    return out;
  }

  // Kills a convert into out/<i>.zarr at each moment; returns the stores' names.
  std::vector<std::string> kill_runs(std::uint32_t seed, bool overwrite) {
    const EnvVars env = {{"MMC_DEBUG_TASK_DELAY_MS", "60"}};
    const std::string reference = out_ + "/reference.zarr";
    // The run the kills are spread over: the same kind (a new store, or one replaced).
    if (overwrite) {
      EXPECT_EQ(run_command({"cp", "-r", old_store_, reference}).exit_code, 0);
    }
    const double seconds = timed_cli_run(convert_args(reference, overwrite), dir_.path(), env);
    EXPECT_EQ(verdicts({reference}, "-"), std::vector<std::string>{"new"});
    run_command({"rm", "-rf", reference});
    std::vector<std::string> stores;
    for (double at : kill_moments(seed, kKills, seconds)) {
      const std::string dst = out_ + "/" + std::to_string(stores.size()) + ".zarr";
      if (overwrite) {
        EXPECT_EQ(run_command({"cp", "-r", old_store_, dst}).exit_code, 0);
      }
      const int code = run_and_kill(convert_args(dst, overwrite), dir_.path(), env, at);
      EXPECT_TRUE(code == 0 || code == 128 + 9) << "exit " << code;
      stores.push_back(dst);
    }
    return stores;
  }

  // Nothing but the stores and the writers' hidden temporary folders (which a SIGKILLed writer
  // cannot remove; zarr/writer.cpp) may be left in out/.
  void expect_only_stores_and_hidden_leftovers(const std::vector<std::string>& stores) const {
    int hidden = 0;
    for (const std::string& name : list_dir(out_)) {
      if (name[0] == '.') {
        ++hidden;
        continue;
      }
      EXPECT_NE(std::find(stores.begin(), stores.end(), out_ + "/" + name), stores.end())
          << "unexpected entry " << name;
    }
    std::printf("%d hidden temporary folders left by the killed writers\n", hidden);
  }

  TempDir dir_;
  std::string out_;
  std::string source_;
  std::string expected_;
  std::string old_store_;
};

TEST_F(ConvertCrash, KilledConvertLeavesNoStoreOrACompleteOne) {
  const std::vector<std::string> stores = kill_runs(15, /*overwrite=*/false);
  std::map<std::string, int> seen;
  std::string absent;
  const std::vector<std::string> verdict = verdicts(stores, "-");
  for (std::size_t i = 0; i < verdict.size(); ++i) {
    ++seen[verdict[i]];
    EXPECT_TRUE(verdict[i] == "absent" || verdict[i] == "new") << stores[i] << ": " << verdict[i];
    if (verdict[i] == "absent" && absent.empty()) absent = stores[i];
  }
  for (const auto& [v, n] : seen) std::printf("%s: %d\n", v.c_str(), n);
  expect_only_stores_and_hidden_leftovers(stores);
  // What a killed run left does not stand in the way of the next one.
  if (!absent.empty()) {
    timed_cli_run(convert_args(absent, false), dir_.path(), {});
    EXPECT_EQ(verdicts({absent}, "-"), std::vector<std::string>{"new"});
  }
}

TEST_F(ConvertCrash, KilledOverwriteLeavesTheOldStoreOrTheNewOne) {
  // The store being replaced: other values, dtype and shape than the source.
  const std::string old_source = dir_.file("old.npy");
  const std::string old_expected = dir_.file("old_expected.npy");
  run_python("convert_check.py", {"make", "npy", old_source, old_expected, "<i2", "6,10,12", "C"});
  old_store_ = dir_.file("old.zarr");
  const CommandResult made = run_cli({"convert", old_source, old_store_, "--quiet"});
  ASSERT_EQ(made.exit_code, 0) << made.err;

  const std::vector<std::string> stores = kill_runs(16, /*overwrite=*/true);
  std::map<std::string, int> seen;
  const std::vector<std::string> verdict = verdicts(stores, old_expected);
  for (std::size_t i = 0; i < verdict.size(); ++i) {
    ++seen[verdict[i]];
    EXPECT_TRUE(verdict[i] == "old" || verdict[i] == "new") << stores[i] << ": " << verdict[i];
  }
  for (const auto& [v, n] : seen) std::printf("%s: %d\n", v.c_str(), n);
  expect_only_stores_and_hidden_leftovers(stores);
  // A killed overwrite can be run again.
  timed_cli_run(convert_args(stores.front(), true), dir_.path(), {});
  EXPECT_EQ(verdicts({stores.front()}, old_expected), std::vector<std::string>{"new"});
}

}  // namespace
}  // namespace mmc::test
