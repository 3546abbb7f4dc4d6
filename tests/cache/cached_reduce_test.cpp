// cached_reduce: hits and misses, invalidation when the source changes, concurrent runs,
// corrupt entries and unusable folders.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cache/cache_test_util.hpp"
#include "mmc/cache.hpp"
#include "mmc/error.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

std::string as_string(const Bytes& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

class CachedReduce : public ::testing::Test {
 protected:
  void SetUp() override {
    cube_ = dir_.file("cube.u8");
    folder_ = dir_.file("cache");
    write_cube(cube_, 1);
  }

  // A fresh Source each call, as a new run of the CLI would open.
  ReduceResult run(const ReduceOptions& options, CacheOutcome* outcome, bool verify = false) {
    const Source source = open_cube(cube_);
    return cached_reduce(source, options, cache_options(folder_, &warnings_, verify), outcome);
  }
  ReduceResult direct(const ReduceOptions& options) { return reduce(open_cube(cube_), options); }

  TempDir dir_;
  std::string cube_;
  std::string folder_;
  std::vector<std::string> warnings_;
};

TEST_F(CachedReduce, MissComputesAndStoresThenHitReturnsIdenticalBytesWithoutWorkers) {
  const ReduceOptions options = mean_options(Backend::Process, 2);
  CacheOutcome first;
  const ReduceResult computed = run(options, &first);
  EXPECT_FALSE(first.hit);
  EXPECT_TRUE(first.stored);
  EXPECT_GT(computed.stats.workers, 0);
  EXPECT_TRUE(file_exists(first.entry_path));
  EXPECT_EQ(first.entry_path, folder_ + "/" + first.key.hex() + ".mmc");

  CacheOutcome second;
  const ReduceResult cached = run(options, &second);
  EXPECT_TRUE(second.hit);
  EXPECT_FALSE(second.stored);
  EXPECT_EQ(second.key, first.key);
  EXPECT_EQ(cached.stats.workers, 0);  // no worker started: nothing was computed
  EXPECT_EQ(cached.stats.tasks, 0u);
  EXPECT_EQ(cached.dtype, computed.dtype);
  EXPECT_EQ(cached.shape, computed.shape);
  EXPECT_EQ(as_string(cached.data), as_string(computed.data));
  EXPECT_EQ(as_string(cached.data), as_string(direct(options).data));
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(CachedReduce, FolderIsCreatedPrivateAndHoldsOnlyTheEntryAfterwards) {
  CacheOutcome outcome;
  run(mean_options(), &outcome);
  struct stat st {};
  ASSERT_EQ(::stat(folder_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // The lock file is removed by its holder and no temporary is left.
  EXPECT_EQ(list_dir(folder_), std::vector<std::string>{outcome.key.hex() + ".mmc"});
}

TEST_F(CachedReduce, EntryPayloadIsAnNpyImageThatNumpyReads) {
  ReduceOptions options = mean_options();
  options.op = ReduceOp::Max;
  options.axes = {0};
  options.axes_given = true;
  CacheOutcome outcome;
  const ReduceResult result = run(options, &outcome);
  ASSERT_TRUE(outcome.stored);
  // The header records where the payload starts (bytes 32..39, little-endian).
  const std::string out = run_python_code(
      "import sys, struct, numpy as np\n"
      "f = open(sys.argv[1], 'rb'); head = f.read(72)\n"
      "off = struct.unpack_from('<Q', head, 32)[0]\n"
      "f.seek(off); a = np.lib.format.read_array(f)\n"
      "print(a.dtype.str, a.shape, int(a.sum()))\n",
      {outcome.entry_path});
  long long sum = 0;
  for (std::int64_t i = 0; i < result.size(); ++i) sum += result.as<std::uint8_t>()[i];
  EXPECT_EQ(out, "|u1 (16, 24) " + std::to_string(sum) + "\n");
}

TEST_F(CachedReduce, KeyIgnoresJobsBackendAndMaxNbytesButNotOpAxesOrDdof) {
  CacheOutcome a, b;
  run(mean_options(Backend::Serial, 1), &a);
  ReduceOptions other = mean_options(Backend::Process, 3);
  other.pool.max_nbytes = 0;
  run(other, &b);
  EXPECT_TRUE(b.hit);
  EXPECT_EQ(a.key, b.key);

  const Source source = open_cube(cube_);
  const Cache cache(cache_options(folder_, &warnings_));
  ReduceOptions var = mean_options();
  var.op = ReduceOp::Var;
  ReduceOptions var1 = var;
  var1.ddof = 1;
  ReduceOptions axes = mean_options();
  axes.axes = {-1};
  axes.axes_given = true;
  ReduceOptions mean_ddof = mean_options();
  mean_ddof.ddof = 1;  // ddof does not change a mean: same key
  EXPECT_NE(cache.reduce_key(source, var), cache.reduce_key(source, var1));
  EXPECT_NE(cache.reduce_key(source, var), a.key);
  EXPECT_NE(cache.reduce_key(source, axes), a.key);
  EXPECT_EQ(cache.reduce_key(source, mean_ddof), a.key);
  ReduceOptions explicit_axes = mean_options();
  explicit_axes.axes = {2, -2};  // the default axes written out: same key
  explicit_axes.axes_given = true;
  EXPECT_EQ(cache.reduce_key(source, explicit_axes), a.key);
}

TEST_F(CachedReduce, HistogramKeyHasItsBinsAndRangeAndTheEntryItsBinsAxis) {
  const Source source = open_cube(cube_);
  const Cache cache(cache_options(folder_, &warnings_));
  ReduceOptions h = mean_options();
  h.op = ReduceOp::Histogram;
  h.bins = 8;
  ReduceOptions more_bins = h;
  more_bins.bins = 9;
  ReduceOptions ranged = h;
  ranged.range_given = true;
  ranged.range_lo = 0;
  ranged.range_hi = 100;
  ReduceOptions other_range = ranged;
  other_range.range_hi = 101;
  ReduceOptions mean_bins = mean_options();
  mean_bins.bins = 9;  // bins do not change a mean: same key
  EXPECT_NE(cache.reduce_key(source, h), cache.reduce_key(source, more_bins));
  EXPECT_NE(cache.reduce_key(source, h), cache.reduce_key(source, ranged));
  EXPECT_NE(cache.reduce_key(source, ranged), cache.reduce_key(source, other_range));
  EXPECT_EQ(cache.reduce_key(source, mean_bins), cache.reduce_key(source, mean_options()));

  CacheOutcome first, second;
  const ReduceResult computed = run(ranged, &first);
  const ReduceResult cached = run(ranged, &second);
  EXPECT_TRUE(second.hit);
  EXPECT_EQ(cached.shape, computed.shape);
  EXPECT_EQ(cached.shape.back(), 8);
  EXPECT_EQ(as_string(cached.data), as_string(direct(ranged).data));
  EXPECT_TRUE(warnings_.empty());
}

TEST_F(CachedReduce, RewritingSameSizeWithOtherBytesRecomputes) {
  CacheOutcome first, second;
  const ReduceResult before = run(mean_options(), &first);
  write_cube(cube_, 2);  // same inode, same size, new mtime
  const ReduceResult after = run(mean_options(), &second);
  EXPECT_FALSE(second.hit);
  EXPECT_NE(second.key, first.key);
  EXPECT_EQ(as_string(after.data), as_string(direct(mean_options()).data));
  EXPECT_NE(as_string(after.data), as_string(before.data));
}

TEST_F(CachedReduce, TouchRecomputesTheSameAnswer) {
  CacheOutcome first, second;
  const ReduceResult before = run(mean_options(), &first);
  set_mtime_relative(cube_, 5);
  const ReduceResult after = run(mean_options(), &second);
  EXPECT_FALSE(second.hit);
  EXPECT_TRUE(second.stored);
  EXPECT_EQ(as_string(after.data), as_string(before.data));
}

TEST_F(CachedReduce, ReplacingByRenameRecomputesEvenWithSameBytesAndMtime) {
  CacheOutcome first, second;
  run(mean_options(), &first);
  const struct timespec mtime = mtime_of(cube_);
  const std::string fresh = dir_.file("fresh.u8");
  write_cube(fresh, 3);
  set_mtime(fresh, mtime);
  ASSERT_EQ(std::rename(fresh.c_str(), cube_.c_str()), 0);
  const ReduceResult after = run(mean_options(), &second);
  EXPECT_FALSE(second.hit);
  EXPECT_EQ(as_string(after.data), as_string(direct(mean_options()).data));
}

TEST_F(CachedReduce, VerifyDetectsInPlaceChangeWithRestoredMtime) {
  CacheOutcome first, same, changed;
  run(mean_options(), &first, true);
  run(mean_options(), &same, true);
  EXPECT_TRUE(same.hit);
  const struct timespec mtime = mtime_of(cube_);
  write_cube(cube_, 4);
  set_mtime(cube_, mtime);
  const ReduceResult after = run(mean_options(), &changed, true);
  EXPECT_FALSE(changed.hit);
  EXPECT_EQ(as_string(after.data), as_string(direct(mean_options()).data));
}

TEST_F(CachedReduce, VerifiedAndUnverifiedKeysDiffer) {
  const Source source = open_cube(cube_);
  const Cache plain(cache_options(folder_, &warnings_, false));
  const Cache verified(cache_options(folder_, &warnings_, true));
  EXPECT_NE(plain.reduce_key(source, mean_options()), verified.reduce_key(source, mean_options()));
}

TEST_F(CachedReduce, HitRecordsLastUse) {
  CacheOutcome first, second;
  run(mean_options(), &first);
  set_mtime_relative(first.entry_path, -1000);
  const auto before = mtime_of(first.entry_path).tv_sec;
  run(mean_options(), &second);
  ASSERT_TRUE(second.hit);
  EXPECT_GT(mtime_of(first.entry_path).tv_sec, before + 900);
}

// --- Concurrency -------------------------------------------------------------------------------

TEST_F(CachedReduce, EightConcurrentProcessesComputeOnceAndAllGetTheAnswer) {
  const std::string expected = as_string(direct(mean_options()).data);
  // Each task sleeps, so the first computation is still running when the others arrive.
  ::setenv("MMC_DEBUG_TASK_DELAY_MS", "20", 1);
  const std::vector<std::string> answers = run_in_children(8, [&] {
    CacheOutcome outcome;
    std::vector<std::string> ignored;
    const ReduceResult r =
        cached_reduce(open_cube(cube_), mean_options(), cache_options(folder_, &ignored), &outcome);
    return std::string(outcome.hit ? "H" : outcome.stored ? "S" : "?") + as_string(r.data);
  });
  ::unsetenv("MMC_DEBUG_TASK_DELAY_MS");
  int stored = 0;
  for (const std::string& a : answers) {
    ASSERT_FALSE(a.empty());
    EXPECT_EQ(a.substr(1), expected) << a.substr(0, 40);
    stored += a[0] == 'S';
    EXPECT_TRUE(a[0] == 'S' || a[0] == 'H') << a.substr(0, 40);
  }
  EXPECT_EQ(stored, 1);  // one computation per key
  CacheOutcome after;
  EXPECT_EQ(as_string(run(mean_options(), &after).data), expected);
  EXPECT_TRUE(after.hit);  // the entry is valid
  EXPECT_TRUE(warnings_.empty());
  EXPECT_EQ(list_dir(folder_).size(), 1u);
}

TEST_F(CachedReduce, EightConcurrentProcessesWithoutLockLastWriterWins) {
  const std::string expected = as_string(direct(mean_options()).data);
  const std::vector<std::string> answers = run_in_children(8, [&] {
    std::vector<std::string> ignored;
    CacheOptions options = cache_options(folder_, &ignored);
    options.lock = false;
    return as_string(cached_reduce(open_cube(cube_), mean_options(), options).data);
  });
  for (const std::string& a : answers) EXPECT_EQ(a, expected);
  CacheOutcome after;
  EXPECT_EQ(as_string(run(mean_options(), &after).data), expected);
  EXPECT_TRUE(after.hit);
  EXPECT_TRUE(warnings_.empty());
  EXPECT_EQ(list_dir(folder_).size(), 1u);  // no temporary left behind
}

// --- Corrupt entries ---------------------------------------------------------------------------

class CorruptEntry : public CachedReduce {
 protected:
  // Stores an entry, damages it with `damage`, and checks the next run recomputes.
  void expect_recomputed(const std::function<void(const std::string&)>& damage,
                         const std::string& reason) {
    CacheOutcome first, second, third;
    const ReduceResult good = run(mean_options(), &first);
    ASSERT_TRUE(first.stored);
    damage(first.entry_path);
    const ReduceResult again = run(mean_options(), &second);
    EXPECT_FALSE(second.hit);
    EXPECT_TRUE(second.stored);
    EXPECT_EQ(as_string(again.data), as_string(good.data));
    EXPECT_TRUE(any_contains(second.warnings, "corrupt")) << ::testing::PrintToString(warnings_);
    EXPECT_TRUE(any_contains(second.warnings, reason)) << ::testing::PrintToString(warnings_);
    run(mean_options(), &third);
    EXPECT_TRUE(third.hit);  // the replacement is sound
  }
};

TEST_F(CorruptEntry, FlippedPayloadByteIsRecomputedNotReturned) {
  expect_recomputed([](const std::string& p) { flip_byte(p, file_size(p) - 1); },
                    "payload checksum");
}

TEST_F(CorruptEntry, FlippedHeaderByteIsRecomputed) {
  expect_recomputed([](const std::string& p) { flip_byte(p, 75); }, "header checksum");
}

TEST_F(CorruptEntry, TruncatedEntryIsRecomputed) {
  expect_recomputed(
      [](const std::string& p) { ASSERT_EQ(::truncate(p.c_str(), file_size(p) - 3), 0); },
      "truncated");
}

TEST_F(CorruptEntry, EmptyEntryIsRecomputed) {
  expect_recomputed([](const std::string& p) { ASSERT_EQ(::truncate(p.c_str(), 0), 0); },
                    "shorter than an entry header");
}

TEST_F(CorruptEntry, EntryOfAnotherKeyUnderThisNameIsRecomputed) {
  ReduceOptions max = mean_options();
  max.op = ReduceOp::Max;
  CacheOutcome other;
  run(max, &other);
  expect_recomputed(
      [&](const std::string& p) { ASSERT_EQ(std::rename(other.entry_path.c_str(), p.c_str()), 0); },
      "expected ");
}

// --- Unusable folders --------------------------------------------------------------------------

TEST_F(CachedReduce, FolderThatIsAFileComputesWithAWarning) {
  write_file(folder_, "not a folder");
  CacheOutcome outcome;
  const ReduceResult r = run(mean_options(), &outcome);
  EXPECT_EQ(as_string(r.data), as_string(direct(mean_options()).data));
  EXPECT_FALSE(outcome.hit);
  EXPECT_FALSE(outcome.stored);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find(folder_), std::string::npos) << warnings_[0];
  EXPECT_NE(warnings_[0].find("computing without the cache"), std::string::npos) << warnings_[0];
}

// /proc refuses new files even to root: a folder that exists but cannot be written.
TEST_F(CachedReduce, UnwritableExistingFolderComputesWithAWarning) {
  folder_ = "/proc";
  CacheOutcome outcome;
  const ReduceResult r = run(mean_options(), &outcome);
  EXPECT_EQ(as_string(r.data), as_string(direct(mean_options()).data));
  EXPECT_FALSE(outcome.stored);
  ASSERT_EQ(warnings_.size(), 1u);
  EXPECT_NE(warnings_[0].find("cannot write in the cache folder /proc"), std::string::npos)
      << warnings_[0];
}

// A file size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC), for root
// too. Runs in a child so the limit stays there.
TEST_F(CachedReduce, FullDiskComputesWithAWarningAndLeavesNoTemporary) {
  const std::string expected = as_string(direct(mean_options()).data);
  const std::vector<std::string> answers = run_in_children(1, [&] {
    std::signal(SIGXFSZ, SIG_IGN);
    const struct rlimit limit = {100, 100};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::vector<std::string> warnings;
    CacheOutcome outcome;
    const ReduceResult r = cached_reduce(open_cube(cube_), mean_options(),
                                         cache_options(folder_, &warnings), &outcome);
    return std::string(outcome.stored ? "S" : "-") + std::to_string(warnings.size()) +
           (warnings.empty() ? std::string("|") : warnings[0] + "|") + as_string(r.data);
  });
  const std::string& a = answers.at(0);
  const auto bar = a.find('|');
  ASSERT_NE(bar, std::string::npos) << a;
  EXPECT_EQ(a.substr(0, 2), "-1") << a.substr(0, bar);
  EXPECT_NE(a.find("cannot store entry"), std::string::npos) << a.substr(0, bar);
  EXPECT_EQ(a.substr(bar + 1), expected);
  EXPECT_TRUE(list_dir(folder_).empty()) << ::testing::PrintToString(list_dir(folder_));
}

TEST_F(CachedReduce, FolderDefaultsToMmcCacheDirAndIsRequired) {
  ::setenv("MMC_CACHE_DIR", folder_.c_str(), 1);
  CacheOptions options;
  EXPECT_EQ(Cache(options).folder(), folder_);
  ::unsetenv("MMC_CACHE_DIR");
  try {
    Cache none(options);
    FAIL() << "a cache without a folder was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("MMC_CACHE_DIR"), std::string::npos);
  }
}

TEST_F(CachedReduce, ReduceErrorsPropagateAndNothingIsStored) {
  ReduceOptions bad = mean_options();
  bad.axes = {7};
  bad.axes_given = true;
  CacheOutcome outcome;
  try {
    run(bad, &outcome);
    FAIL() << "axis 7 of a 3-d cube was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
  EXPECT_FALSE(file_exists(folder_) && !list_dir(folder_).empty());
}

// Several ops through the cache: each op has its own entry, the misses are computed in one
// pass, and a later call (of either kind) hits them.
TEST_F(CachedReduce, EachOpOfSeveralHasItsOwnEntryAndTheMissesShareOnePass) {
  ReduceOptions mean = mean_options(Backend::Process, 2);
  CacheOutcome first;
  run(mean, &first);  // mean alone, stored
  ASSERT_TRUE(first.stored);

  ReduceOptions several = mean;
  several.ops = {ReduceOp::Mean, ReduceOp::Std, ReduceOp::Max, ReduceOp::Histogram};
  several.range_given = true;
  several.range_lo = 10;
  several.range_hi = 200;
  several.bins = 6;
  const Cache cache(cache_options(folder_, &warnings_));
  std::vector<CacheOutcome> outcomes;
  const std::vector<ReduceResult> got = cache.reduce_each(open_cube(cube_), several, &outcomes);
  ASSERT_EQ(got.size(), 4u);
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_TRUE(outcomes[0].hit);  // stored by the call of mean alone
  EXPECT_EQ(outcomes[0].key, first.key);
  for (std::size_t k = 1; k < 4; ++k) {
    EXPECT_FALSE(outcomes[k].hit) << k;
    EXPECT_TRUE(outcomes[k].stored) << k;
  }
  // The three misses ran as one pass: each result carries that pass's statistics.
  EXPECT_GT(got[1].stats.tasks, 0u);
  EXPECT_EQ(got[1].stats.tasks, got[3].stats.tasks);
  for (std::size_t k = 0; k < 4; ++k) {
    ReduceOptions alone = several;
    alone.ops.clear();
    alone.op = several.ops[k];
    const ReduceResult want = direct(alone);
    EXPECT_EQ(got[k].dtype, want.dtype) << k;
    EXPECT_EQ(as_string(got[k].data), as_string(want.data)) << k;
    EXPECT_EQ(as_string(got[k].edges), as_string(want.edges)) << k;
  }
  ASSERT_EQ(got[3].edges.size(), 7 * sizeof(double));

  // Again: every op hits, nothing runs, the histogram keeps its edges.
  const std::vector<ReduceResult> again = cache.reduce_each(open_cube(cube_), several, &outcomes);
  for (std::size_t k = 0; k < 4; ++k) {
    EXPECT_TRUE(outcomes[k].hit) << k;
    EXPECT_EQ(again[k].stats.workers, 0) << k;
    EXPECT_EQ(as_string(again[k].data), as_string(got[k].data)) << k;
    EXPECT_EQ(again[k].dtype, got[k].dtype) << k;
    EXPECT_EQ(again[k].shape, got[k].shape) << k;
  }
  EXPECT_EQ(as_string(again[3].edges), as_string(got[3].edges));
  // And one op alone hits what the pass stored.
  ReduceOptions std_alone = mean;
  std_alone.op = ReduceOp::Std;
  CacheOutcome one;
  run(std_alone, &one);
  EXPECT_TRUE(one.hit);
  EXPECT_EQ(one.key, outcomes[1].key);
  EXPECT_TRUE(warnings_.empty());
  // Cache::reduce takes one op.
  test::expect_error([&] { cache.reduce(open_cube(cube_), several); }, ErrorCode::InvalidArgument,
                     {"reduce_each"});
}

}  // namespace
}  // namespace mmc::test
