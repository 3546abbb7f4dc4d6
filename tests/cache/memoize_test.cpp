// Cache::memoize: user functions computed once per arguments, typed helpers, failures.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cache/cache_test_util.hpp"
#include "mmc/cache.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

Bytes bytes_of(const std::string& s) {
  Bytes b(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) b[i] = static_cast<std::byte>(s[i]);
  return b;
}

class Memoize : public ::testing::Test {
 protected:
  Cache cache() { return Cache(cache_options(dir_.file("cache"), &warnings_)); }
  TempDir dir_;
  std::vector<std::string> warnings_;
};

TEST_F(Memoize, ComputesOnceThenHits) {
  int calls = 0;
  const auto compute = [&] {
    ++calls;
    return bytes_of("answer");
  };
  Hasher args;
  args.add("volume").add(42).add(std::vector<double>{0.5, 1.5});
  CacheOutcome first, second;
  EXPECT_EQ(cache().memoize("f", 1, args, compute, &first), bytes_of("answer"));
  EXPECT_EQ(cache().memoize("f", 1, args, compute, &second), bytes_of("answer"));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(first.hit);
  EXPECT_TRUE(first.stored);
  EXPECT_TRUE(second.hit);
}

TEST_F(Memoize, OtherArgumentsNameOrVersionCompute) {
  int calls = 0;
  const auto compute = [&] {
    ++calls;
    return bytes_of(std::to_string(calls));
  };
  Hasher a, b;
  a.add(1);
  b.add(2);
  cache().memoize("f", 1, a, compute);
  cache().memoize("f", 1, b, compute);
  cache().memoize("g", 1, a, compute);
  cache().memoize("f", 2, a, compute);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(cache().memoize("f", 1, a, compute), bytes_of("1"));
  EXPECT_EQ(calls, 4);
}

TEST_F(Memoize, EmptyResultIsCachedToo) {
  int calls = 0;
  const auto compute = [&] {
    ++calls;
    return Bytes();
  };
  cache().memoize("empty", 1, Hasher(), compute);
  EXPECT_TRUE(cache().memoize("empty", 1, Hasher(), compute).empty());
  EXPECT_EQ(calls, 1);
}

TEST_F(Memoize, ArrayArgumentsAreKeyedByContent) {
  std::vector<float> x(4096, 0.25f);
  int calls = 0;
  const auto compute = [&] {
    ++calls;
    return bytes_of("r");
  };
  Hasher first;
  first.add_array(ArrayMeta::contiguous(DType(TypeId::F32), {64, 64}), x.data());
  cache().memoize("f", 1, first, compute);
  const std::vector<float> copy = x;  // other address, same bytes: hit
  Hasher same;
  same.add_array(ArrayMeta::contiguous(DType(TypeId::F32), {64, 64}), copy.data());
  cache().memoize("f", 1, same, compute);
  EXPECT_EQ(calls, 1);
  x[4095] = 0.5f;
  Hasher changed;
  changed.add_array(ArrayMeta::contiguous(DType(TypeId::F32), {64, 64}), x.data());
  cache().memoize("f", 1, changed, compute);
  EXPECT_EQ(calls, 2);
}

TEST_F(Memoize, TypedValueAndVectorRoundTrip) {
  struct Stats {
    double mean;
    std::int64_t count;
  };
  int calls = 0;
  const std::function<Stats()> stats = [&] {
    ++calls;
    return Stats{2.5, 7};
  };
  const std::function<std::vector<std::int32_t>()> values = [&] {
    ++calls;
    return std::vector<std::int32_t>{3, -1, 4};
  };
  Hasher args;
  args.add("x");
  for (int i = 0; i < 2; ++i) {
    const Stats s = cache().memoize_value<Stats>("stats", 1, args, stats);
    EXPECT_EQ(s.mean, 2.5);
    EXPECT_EQ(s.count, 7);
    EXPECT_EQ(cache().memoize_vector<std::int32_t>("values", 1, args, values),
              (std::vector<std::int32_t>{3, -1, 4}));
  }
  EXPECT_EQ(calls, 2);
}

TEST_F(Memoize, TypedResultsDoNotCollideWithRawBytesOfTheSameKey) {
  const std::function<std::int64_t()> value = [] { return std::int64_t{5}; };
  cache().memoize("f", 1, Hasher(), [] { return bytes_of("abc"); });
  EXPECT_EQ(cache().memoize_value<std::int64_t>("f", 1, Hasher(), value), 5);
}

TEST_F(Memoize, ComputeThatThrowsStoresNothingAndTheNextCallComputes) {
  int calls = 0;
  EXPECT_THROW(cache().memoize("f", 1, Hasher(),
                               [&]() -> Bytes {
                                 ++calls;
                                 throw std::runtime_error("boom");
                               }),
               std::runtime_error);
  EXPECT_EQ(cache().memoize("f", 1, Hasher(),
                            [&] {
                              ++calls;
                              return bytes_of("ok");
                            }),
            bytes_of("ok"));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(list_dir(dir_.file("cache")).size(), 1u);  // no lock file left by the failure
}

TEST_F(Memoize, EightThreadsComputeOnce) {
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  std::vector<Bytes> results(8);
  const Cache shared = cache();
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      results[static_cast<std::size_t>(i)] = shared.memoize("slow", 1, Hasher(), [&] {
        ++calls;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return bytes_of("done");
      });
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  for (const Bytes& r : results) EXPECT_EQ(r, bytes_of("done"));
}

TEST_F(Memoize, SourceArgumentsByIdentityOrContent) {
  const std::string path = dir_.file("cube.u8");
  write_cube(path, 1);
  int calls = 0;
  const auto compute = [&] {
    ++calls;
    return bytes_of("v");
  };
  const auto call = [&](SourceHash how) {
    Hasher args;
    args.add(open_cube(path), how);
    cache().memoize("f", 1, args, compute);
  };
  call(SourceHash::Identity);
  call(SourceHash::Identity);
  EXPECT_EQ(calls, 1);
  call(SourceHash::Content);
  EXPECT_EQ(calls, 2);
  const struct timespec mtime = mtime_of(path);
  write_cube(path, 9);
  set_mtime(path, mtime);
  call(SourceHash::Content);  // same mtime, other bytes
  EXPECT_EQ(calls, 3);
}

}  // namespace
}  // namespace mmc::test
