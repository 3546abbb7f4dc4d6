// Tests of shared_containers.hpp: workers of every backend grow a shared vector, map and
// string; a worker killed with the lock held; a full segment; nothing left behind.
#include "mmc/shared_containers.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "pool/shared_containers_debug.hpp"
#include "pool_test_util.hpp"

namespace mmc {
namespace {

using test::catch_error;
using test::Caught;
using test::run_guarded;

constexpr SegmentSize kOneMiB{1 << 20};

ParallelOptions with(Backend backend, int n_jobs) {
  ParallelOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  return options;
}

CallOptions one_per_batch() {
  CallOptions call;
  call.chunksize = 1;  // many small batches: the workers take the lock in turns
  return call;
}

std::string label(int i) { return "item-" + std::to_string(i) + std::string(i % 50, 'x'); }

class SharedContainersEveryBackend : public ::testing::TestWithParam<std::tuple<Backend, int>> {
 protected:
  Pool make_pool() const { return Pool(with(std::get<0>(GetParam()), std::get<1>(GetParam()))); }
};

TEST_P(SharedContainersEveryBackend, WorkersAppendToAVectorAndTheParentSeesEveryElement) {
  run_guarded([&] {
    Pool pool = make_pool();
    SharedVector<long> squares(kOneMiB);
    std::vector<std::tuple<SharedVector<long>, long>> args;
    for (long i = 0; i < 300; ++i) args.emplace_back(squares, i);
    pool.starmap([](SharedVector<long> v, long i) { v.push_back(i * i); }, args, one_per_batch());
    std::vector<long> seen = squares.to_vector();
    std::sort(seen.begin(), seen.end());
    std::vector<long> want(300);
    for (long i = 0; i < 300; ++i) want[static_cast<std::size_t>(i)] = i * i;
    EXPECT_EQ(seen, want);
    EXPECT_EQ(squares.size(), 300u);
  });
}

TEST_P(SharedContainersEveryBackend, WorkersInsertIntoAMapAndCountWithoutLosingAnUpdate) {
  run_guarded([&] {
    Pool pool = make_pool();
    SharedMap<int, std::string> names(kOneMiB);
    SharedMap<std::string, long> counts(kOneMiB);
    std::vector<std::tuple<SharedMap<int, std::string>, SharedMap<std::string, long>, int>> args;
    for (int i = 0; i < 200; ++i) args.emplace_back(names, counts, i);
    const std::vector<bool> added = pool.starmap(
        [](SharedMap<int, std::string> n, SharedMap<std::string, long> c, int i) {
          c.update("bucket-" + std::to_string(i % 7), 0, [](long& v) { ++v; });
          return n.insert(i, label(i));
        },
        args, one_per_batch());
    EXPECT_EQ(std::count(added.begin(), added.end(), true), 200);
    std::map<int, std::string> want;
    for (int i = 0; i < 200; ++i) want[i] = label(i);
    EXPECT_EQ(names.to_map(), want);
    std::map<std::string, long> want_counts;
    for (int i = 0; i < 200; ++i) ++want_counts["bucket-" + std::to_string(i % 7)];
    EXPECT_EQ(counts.to_map(), want_counts);
  });
}

TEST_P(SharedContainersEveryBackend, StringsOfAnyLengthComeBackWhole) {
  run_guarded([&] {
    Pool pool = make_pool();
    SharedVector<std::string> lines(kOneMiB);
    SharedString log(kOneMiB);
    std::vector<std::tuple<SharedVector<std::string>, SharedString, int>> args;
    for (int i = 0; i < 120; ++i) args.emplace_back(lines, log, i);
    pool.starmap(
        [](SharedVector<std::string> v, SharedString s, int i) {
          v.push_back(label(i));
          s.append(label(i) + "\n");
        },
        args, one_per_batch());
    std::vector<std::string> want;
    for (int i = 0; i < 120; ++i) want.push_back(label(i));
    std::vector<std::string> seen = lines.to_vector();
    std::sort(seen.begin(), seen.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(seen, want);
    // Appends never interleave: the log splits into exactly the lines written.
    std::vector<std::string> logged;
    std::string text = log.str();
    for (std::size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos;
         start = end + 1) {
      logged.push_back(text.substr(start, end - start));
    }
    std::sort(logged.begin(), logged.end());
    EXPECT_EQ(logged, want);
    EXPECT_EQ(log.size(), text.size());
  });
}

TEST_P(SharedContainersEveryBackend, AFullSegmentInAWorkerFailsTheTaskNamingTheSize) {
  run_guarded([&] {
    Pool pool = make_pool();
    SharedVector<std::string> small(SegmentSize{8192});
    const Caught caught = catch_error([&] {
      pool.submit([](SharedVector<std::string> v) { v.push_back(std::string(20000, 'z')); }, small)
          .get();
    });
    ASSERT_TRUE(caught.thrown);
    EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
    EXPECT_NE(caught.message.find("segment of 8.0 KiB is full"), std::string::npos)
        << caught.message;
    EXPECT_TRUE(small.empty());
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedContainersEveryBackend,
                         ::testing::Values(std::tuple(Backend::Process, 2),
                                           std::tuple(Backend::Process, 4),
                                           std::tuple(Backend::Thread, 3),
                                           std::tuple(Backend::Serial, 1)),
                         [](const auto& info) {
                           const Backend backend = std::get<0>(info.param);
                           const char* name = backend == Backend::Process  ? "Process"
                                              : backend == Backend::Thread ? "Thread"
                                                                           : "Serial";
                           return name + std::to_string(std::get<1>(info.param)) + "Jobs";
                         });

TEST(SharedVector, AFullSegmentThrowsAClearErrorAndKeepsWhatItHeld) {
  SharedVector<std::string> v(SegmentSize{16384});
  std::size_t stored = 0;
  const Caught caught = catch_error([&] {
    for (;; ++stored) v.push_back(label(static_cast<int>(stored)));
  });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("shared vector: its segment of 16.0 KiB is full"),
            std::string::npos)
      << caught.message;
  EXPECT_NE(caught.message.find("larger SegmentSize"), std::string::npos);
  ASSERT_EQ(v.size(), stored);
  for (std::size_t i = 0; i < stored; ++i) ASSERT_EQ(v[i], label(static_cast<int>(i)));
  v.clear();
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(v.push_back("again"), 0u);  // the space came back
}

TEST(SharedVector, ASegmentUnderFourKiBIsRefused) {
  const Caught caught = catch_error([] { SharedVector<int> v(SegmentSize{100}); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("too small"), std::string::npos) << caught.message;
}

TEST(SharedVector, IndexPastTheEndIsAnError) {
  SharedVector<int> v(kOneMiB);
  v.push_back(7);
  v.set(0, 8);
  EXPECT_EQ(v[0], 8);
  const Caught caught = catch_error([&] { v.get(1); });
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("index 1 is out of range (size 1)"), std::string::npos);
}

// The worker's mapping sits elsewhere than the owner's: offset_ptr makes that work. In one
// process, a decoded copy maps the segment a second time, at another address.
TEST(SharedVector, ACopyMappedAtAnotherAddressSharesTheElements) {
  SharedMap<std::string, std::vector<int>> owner(kOneMiB);
  owner.insert_or_assign("a", {1, 2, 3});
  Bytes wire;
  detail::MessageFds fds;  // what a pool message carries beside its bytes
  ByteWriter w(wire, &fds);
  Codec<SharedMap<std::string, std::vector<int>>>::write(w, owner);
  ByteReader r(ByteView{wire.data(), wire.size()}, &fds);
  auto other = Codec<SharedMap<std::string, std::vector<int>>>::read(r);
  EXPECT_NE(other.segment().payload(), owner.segment().payload());
  EXPECT_EQ(other.get("a"), (std::vector<int>{1, 2, 3}));
  other.insert_or_assign("b", {4});
  EXPECT_TRUE(other.erase("a"));
  EXPECT_EQ(owner.to_map(), (std::map<std::string, std::vector<int>>{{"b", {4}}}));
  EXPECT_FALSE(owner.insert("b", {5}));
  EXPECT_EQ(owner.get("b"), std::vector<int>{4});
}

TEST(SharedVector, ARefToAnotherKindOfContainerIsRefused) {
  SharedMap<int, int> map(kOneMiB);
  const Caught caught = catch_error([&] { SharedVector<int> v(map.segment().ref()); });
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("holds something else"), std::string::npos) << caught.message;
}

TEST(SharedVector, ExplainSaysItGoesByReference) {
  Pool pool(with(Backend::Process, 1));
  SharedVector<int> v(kOneMiB);
  const std::string text = pool.explain([](SharedVector<int> x) { x.push_back(1); }, v);
  EXPECT_NE(text.find("by reference: a shared vector in a 1.0 MiB shared segment"),
            std::string::npos)
      << text;
}

// A worker killed inside update's function held the lock but had changed nothing: the others
// do not hang, and the map stays usable with everything it held.
TEST(SharedMap, AWorkerKilledHoldingTheLockOutsideAChangeLeavesItUsable) {
  run_guarded([] {
    test::LeakCheck leaks;
    {
      Pool pool(with(Backend::Process, 3));
      SharedMap<int, int> m(kOneMiB);
      m.insert(-1, -1);
      std::vector<std::tuple<SharedMap<int, int>, int>> args;
      for (int i = 0; i < 60; ++i) args.emplace_back(m, i);
      const auto results = pool.map_collect(
          [](std::tuple<SharedMap<int, int>, int> a) {
            auto [map, i] = a;
            if (i == 10) map.update(1000, 0, [](int&) { ::raise(SIGKILL); });
            map.insert(i, i * 2);
          },
          args, one_per_batch());
      ASSERT_EQ(results.size(), 60u);
      EXPECT_FALSE(results[10].ok());
      EXPECT_EQ(results[10].error().code(), ErrorCode::WorkerLost);
      std::map<int, int> want{{-1, -1}};
      for (int i = 0; i < 60; ++i) {
        if (i == 10) continue;
        want[i] = i * 2;
        EXPECT_TRUE(results[static_cast<std::size_t>(i)].ok()) << i;
      }
      EXPECT_EQ(m.to_map(), want);
      // And the lock still works for everyone.
      pool.submit([](SharedMap<int, int> map) { map.insert(10, 20); }, m).get();
      EXPECT_EQ(m.get(10), 20);
    }
    leaks.expect_clean();
  });
}

// A worker killed inside a change may have left the vector half changed: every process then
// gets Error(Corrupt), until reset().
TEST(SharedVector, AWorkerKilledInsideAChangeMarksItInconsistentUntilReset) {
  run_guarded([] {
    test::LeakCheck leaks;
    {
      Pool pool(with(Backend::Process, 2));
      SharedVector<int> v(kOneMiB);
      v.push_back(1);
      const Caught died = catch_error([&] {
        pool.submit(
                [](SharedVector<int> x) {
                  detail::die_in_next_container_change();
                  x.push_back(2);
                },
                v)
            .get();
      });
      EXPECT_EQ(died.code, ErrorCode::WorkerLost) << died.message;
      const Caught in_worker =
          catch_error([&] { pool.submit([](SharedVector<int> x) { x.push_back(3); }, v).get(); });
      EXPECT_EQ(in_worker.code, ErrorCode::Corrupt) << in_worker.message;
      EXPECT_NE(in_worker.message.find("a process died while changing it"), std::string::npos)
          << in_worker.message;
      const Caught in_parent = catch_error([&] { v.to_vector(); });
      EXPECT_EQ(in_parent.code, ErrorCode::Corrupt);
      v.reset();
      EXPECT_TRUE(v.empty());
      pool.submit([](SharedVector<int> x) { x.push_back(4); }, v).get();
      EXPECT_EQ(v.to_vector(), std::vector<int>{4});
    }
    leaks.expect_clean();
  });
}

TEST(SharedString, NothingIsLeftInDevShmAndNoDescriptorLeaks) {
  run_guarded([] {
    test::LeakCheck leaks;
    {
      Pool pool(with(Backend::Process, 2));
      SharedString s(kOneMiB);
      SharedVector<std::string> v(kOneMiB);
      std::vector<std::tuple<SharedString, SharedVector<std::string>>> args(20, {s, v});
      pool.starmap(
          [](SharedString str, SharedVector<std::string> vec) {
            vec.push_back(str.str());
            str.append("x");
          },
          args);
      EXPECT_EQ(s.str(), std::string(20, 'x'));
      EXPECT_EQ(v.size(), 20u);
    }
    leaks.expect_clean();
  });
}

}  // namespace
}  // namespace mmc
