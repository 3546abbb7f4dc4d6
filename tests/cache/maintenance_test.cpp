// Cache::list, prune and clear: LRU by last use, leftovers, files that are not the cache's.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "cache/cache_test_util.hpp"
#include "mmc/cache.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

class Maintenance : public ::testing::Test {
 protected:
  Cache cache() { return Cache(cache_options(folder_, &warnings_)); }

  // Stores an entry of `size` payload bytes for `name`; returns its path.
  std::string store(const std::string& name, std::size_t size) {
    CacheOutcome outcome;
    cache().memoize(
        name, 1, Hasher(), [&] { return Bytes(size, std::byte{1}); }, &outcome);
    EXPECT_TRUE(outcome.stored);
    return outcome.entry_path;
  }
  void hit(const std::string& name) {
    CacheOutcome outcome;
    cache().memoize(
        name, 1, Hasher(), [] { return Bytes(); }, &outcome);
    EXPECT_TRUE(outcome.hit) << name;
  }

  TempDir dir_;
  std::string folder_ = dir_.file("cache");
  std::vector<std::string> warnings_;
};

TEST_F(Maintenance, ListShowsEntriesMostRecentlyUsedFirst) {
  const std::string a = store("alpha", 1000);
  const std::string b = store("beta", 2000);
  set_mtime_relative(a, -200);
  set_mtime_relative(b, -100);
  const std::vector<CacheEntryInfo> entries = cache().list();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].path, b);
  EXPECT_EQ(entries[0].what, "beta v1");
  EXPECT_EQ(entries[0].size, file_size(b));
  EXPECT_EQ(entries[0].key + ".mmc", b.substr(b.size() - 36));
  EXPECT_TRUE(entries[0].valid);
  EXPECT_EQ(entries[1].what, "alpha v1");
  EXPECT_GT(entries[0].last_use_ns, entries[1].last_use_ns);
}

TEST_F(Maintenance, ListOfMissingFolderIsEmpty) { EXPECT_TRUE(cache().list().empty()); }

TEST_F(Maintenance, PruneKeepsTheMostRecentlyUsedWithinTheBudget) {
  const std::string a = store("a", 3000);
  const std::string b = store("b", 3000);
  const std::string c = store("c", 3000);
  set_mtime_relative(a, -1000);
  set_mtime_relative(b, -900);
  set_mtime_relative(c, -800);
  hit("a");  // now a is the most recent: recency a, c, b
  const std::uint64_t each = file_size(a);
  const CacheRemoval r = cache().prune(2 * each + each / 2);
  EXPECT_EQ(r.removed_entries, 1u);
  EXPECT_EQ(r.removed_bytes, each);
  EXPECT_EQ(r.kept_entries, 2u);
  EXPECT_EQ(r.kept_bytes, 2 * each);
  EXPECT_TRUE(file_exists(a));
  EXPECT_FALSE(file_exists(b));
  EXPECT_TRUE(file_exists(c));
  EXPECT_EQ(cache().prune(0).removed_entries, 2u);
  EXPECT_TRUE(cache().list().empty());
}

TEST_F(Maintenance, PruneRemovesCorruptEntriesAndOldTemporariesOnly) {
  const std::string good = store("good", 100);
  const std::string bad = store("bad", 100);
  flip_byte(bad, 80);
  const std::string key(32, 'a');
  const std::string old_temp = folder_ + "/." + key + ".mmc.tmp.abcdef";
  const std::string new_temp = folder_ + "/." + key + ".mmc.tmp.ghijkl";
  const std::string foreign = folder_ + "/notes.txt";
  write_file(old_temp, "x");
  write_file(new_temp, "x");
  write_file(foreign, "keep me");
  set_mtime_relative(old_temp, -7200);
  const std::vector<CacheEntryInfo> listed = cache().list();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].valid + listed[1].valid, 1);
  const CacheRemoval r = cache().prune(1 << 30);
  EXPECT_EQ(r.removed_entries, 1u);
  EXPECT_TRUE(file_exists(good));
  EXPECT_FALSE(file_exists(bad));
  EXPECT_FALSE(file_exists(old_temp));
  EXPECT_TRUE(file_exists(new_temp));  // may belong to a write in progress
  EXPECT_TRUE(file_exists(foreign));
}

TEST_F(Maintenance, ClearRemovesEntriesLeftoversAndFreeLocksButNotOtherFiles) {
  store("a", 10);
  store("b", 10);
  const std::string key(32, 'b');
  write_file(folder_ + "/" + key + ".lock", "");
  write_file(folder_ + "/." + key + ".mmc.tmp.123456", "x");
  write_file(folder_ + "/mine.npy", "keep");
  const CacheRemoval r = cache().clear();
  EXPECT_EQ(r.removed_entries, 2u);
  EXPECT_EQ(list_dir(folder_), std::vector<std::string>{"mine.npy"});
  EXPECT_EQ(cache().clear().removed_entries, 0u);
}

}  // namespace
}  // namespace mmc::test
