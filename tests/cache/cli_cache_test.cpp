// The CLI's cache: reduce --cache with -v, MMC_CACHE_DIR, and cache ls|clear|prune.
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>
#include <string>
#include <vector>

#include "cache/cache_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

class CliCache : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("MMC_CACHE_DIR");
    cube_ = dir_.file("cube.u8");
    folder_ = dir_.file("cache");
    write_cube(cube_, 1);
  }

  std::vector<std::string> reduce_args(const std::string& op = "mean") const {
    return {"reduce", cube_, "--dtype", "u8", "--shape", "6,16,24", "--op", op, "-j", "2"};
  }
  CommandResult reduce_cached(const std::vector<std::string>& extra = {},
                              const std::string& op = "mean") const {
    std::vector<std::string> args = reduce_args(op);
    args.insert(args.end(), {"--cache", folder_, "-v"});
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  // The key of a "cache: hit <key>" / "cache: miss, stored <key>" line, or "".
  static std::string key_in(const std::string& err, const std::string& prefix) {
    const std::regex line(prefix + " ([0-9a-f]{32})\\n");
    std::smatch m;
    return std::regex_search(err, m, line) ? m[1].str() : "";
  }

  TempDir dir_;
  std::string cube_;
  std::string folder_;
};

bool one_error_line(const std::string& err) {
  return err.rfind("mmcompute: error: ", 0) == 0 && err.find('\n') == err.size() - 1;
}

TEST_F(CliCache, SeveralOpsMissTogetherThenEachHits) {
  const CommandResult plain = run_cli(reduce_args("mean,std,max"));
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const CommandResult miss = reduce_cached({}, "mean,std,max");
  ASSERT_EQ(miss.exit_code, 0) << miss.err;
  EXPECT_EQ(miss.out, plain.out);
  for (const std::string op : {"mean", "std", "max"}) {
    EXPECT_NE(miss.err.find("cache: miss, stored "), std::string::npos) << miss.err;
    EXPECT_NE(miss.err.find(" (" + op + ")\n"), std::string::npos) << miss.err;
  }
  const CommandResult hit = reduce_cached({}, "mean,std,max");
  ASSERT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_EQ(hit.out, plain.out);
  EXPECT_EQ(hit.err.find("miss"), std::string::npos) << hit.err;
  EXPECT_EQ(hit.err.find("workers"), std::string::npos) << hit.err;  // no pool was started
  // std alone hits the entry the pass stored.
  const CommandResult one = reduce_cached({}, "std");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_FALSE(key_in(one.err, "cache: hit").empty()) << one.err;
}

TEST_F(CliCache, ReduceMissesThenHitsWithTheSameOutput) {
  const CommandResult plain = run_cli(reduce_args());
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  const CommandResult miss = reduce_cached();
  ASSERT_EQ(miss.exit_code, 0) << miss.err;
  const std::string key = key_in(miss.err, "cache: miss, stored");
  ASSERT_FALSE(key.empty()) << miss.err;
  const CommandResult hit = reduce_cached();
  ASSERT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_EQ(key_in(hit.err, "cache: hit"), key) << hit.err;
  EXPECT_EQ(hit.err.find("workers"), std::string::npos) << hit.err;  // no pool was started
  EXPECT_EQ(miss.out, plain.out);
  EXPECT_EQ(hit.out, plain.out);
  EXPECT_TRUE(file_exists(folder_ + "/" + key + ".mmc"));
}

TEST_F(CliCache, WithoutVerboseTheCacheIsSilent) {
  std::vector<std::string> args = reduce_args();
  args.insert(args.end(), {"--cache", folder_});
  ASSERT_EQ(run_cli(args).exit_code, 0);
  const CommandResult hit = run_cli(args);
  EXPECT_EQ(hit.exit_code, 0);
  EXPECT_EQ(hit.err, "");
}

TEST_F(CliCache, MmcCacheDirIsTheDefaultAndNoCacheTurnsItOff) {
  const std::string env = "MMC_CACHE_DIR=" + folder_;
  std::vector<std::string> args = {"env", env, cli_path()};
  const std::vector<std::string> reduce = reduce_args();
  args.insert(args.end(), reduce.begin(), reduce.end());
  args.push_back("-v");
  const CommandResult miss = run_command(args);
  ASSERT_EQ(miss.exit_code, 0) << miss.err;
  EXPECT_FALSE(key_in(miss.err, "cache: miss, stored").empty()) << miss.err;
  EXPECT_FALSE(key_in(run_command(args).err, "cache: hit").empty());
  args.push_back("--no-cache");
  const CommandResult off = run_command(args);
  ASSERT_EQ(off.exit_code, 0) << off.err;
  EXPECT_EQ(off.err.find("cache:"), std::string::npos) << off.err;
}

TEST_F(CliCache, VerifyUsesItsOwnKeyAndHits) {
  const std::string plain = key_in(reduce_cached().err, "cache: miss, stored");
  const CommandResult first = reduce_cached({"--cache-verify"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string verified = key_in(first.err, "cache: miss, stored");
  ASSERT_FALSE(verified.empty()) << first.err;
  EXPECT_NE(verified, plain);
  EXPECT_EQ(key_in(reduce_cached({"--cache-verify"}).err, "cache: hit"), verified);
}

TEST_F(CliCache, TouchedSourceMissesAgain) {
  ASSERT_EQ(reduce_cached().exit_code, 0);
  set_mtime_relative(cube_, 5);
  const CommandResult again = reduce_cached();
  EXPECT_FALSE(key_in(again.err, "cache: miss, stored").empty()) << again.err;
}

TEST_F(CliCache, UnwritableFolderWarnsAndStillAnswers) {
  const CommandResult plain = run_cli(reduce_args());
  folder_ = "/proc";
  const CommandResult r = reduce_cached();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, plain.out);
  EXPECT_NE(r.err.find("mmcompute: warning: cache: cannot write in the cache folder /proc"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(key_in(r.err, "cache: miss, not stored").empty()) << r.err;
}

TEST_F(CliCache, UsageErrorsExitTwoWithOneLine) {
  std::vector<std::string> verify_alone = reduce_args();
  verify_alone.push_back("--cache-verify");
  std::vector<std::string> both = reduce_args();
  both.insert(both.end(), {"--cache", folder_, "--no-cache"});
  for (const auto& args :
       {verify_alone, both, std::vector<std::string>{"cache", "ls"},
        std::vector<std::string>{"cache", "prune", "--cache", "d"},
        std::vector<std::string>{"cache", "prune", "--cache", folder_, "--max-size", "12Q"},
        std::vector<std::string>{"cache"}}) {
    const CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << ::testing::PrintToString(args) << r.err;
    EXPECT_TRUE(one_error_line(r.err)) << r.err;
  }
}

TEST_F(CliCache, LsListsEntriesWithWhatTheyHold) {
  const std::string mean = key_in(reduce_cached().err, "cache: miss, stored");
  const std::string max = key_in(reduce_cached({}, "max").err, "cache: miss, stored");
  ASSERT_FALSE(mean.empty());
  ASSERT_FALSE(max.empty());
  const CommandResult ls = run_cli({"cache", "ls", "--cache", folder_});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_NE(ls.out.find(mean), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find(max), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("mean axes=1,2 of " + cube_ + " (" +
                        ArrayMeta::contiguous(DType(TypeId::U8), kCubeShape).describe() + ", raw)"),
            std::string::npos)
      << ls.out;
  EXPECT_NE(ls.out.find("2 entries"), std::string::npos) << ls.out;
  const CommandResult json = run_cli({"cache", "ls", "--json", "--cache", folder_});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_NE(json.out.find("\"key\": \"" + mean + "\""), std::string::npos) << json.out;
}

TEST_F(CliCache, PruneKeepsTheMostRecentlyUsedAndClearEmpties) {
  const std::string mean = key_in(reduce_cached().err, "cache: miss, stored");
  const std::string max = key_in(reduce_cached({}, "max").err, "cache: miss, stored");
  set_mtime_relative(folder_ + "/" + mean + ".mmc", -100);
  set_mtime_relative(folder_ + "/" + max + ".mmc", -50);
  ASSERT_FALSE(key_in(reduce_cached().err, "cache: hit").empty());  // mean is now the most recent
  const std::uint64_t size = file_size(folder_ + "/" + mean + ".mmc");
  const CommandResult prune =
      run_cli({"cache", "prune", "--max-size", std::to_string(size), "--cache", folder_});
  ASSERT_EQ(prune.exit_code, 0) << prune.err;
  EXPECT_NE(prune.out.find("removed 1 entry"), std::string::npos) << prune.out;
  EXPECT_TRUE(file_exists(folder_ + "/" + mean + ".mmc"));
  EXPECT_FALSE(file_exists(folder_ + "/" + max + ".mmc"));
  const CommandResult keep = run_cli({"cache", "prune", "--max-size", "1G", "--cache", folder_});
  EXPECT_NE(keep.out.find("removed 0 entries"), std::string::npos) << keep.out;
  const CommandResult clear = run_cli({"cache", "clear", "--cache", folder_});
  ASSERT_EQ(clear.exit_code, 0) << clear.err;
  EXPECT_NE(clear.out.find("removed 1 entry"), std::string::npos) << clear.out;
  EXPECT_NE(run_cli({"cache", "ls", "--cache", folder_}).out.find("0 entries"), std::string::npos);
}

}  // namespace
}  // namespace mmc::test
