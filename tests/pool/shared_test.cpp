// Tests of shared.hpp: SharedArray/SharedValue written by workers, ArrayRef modes (r, r+, c),
// file-backed arrays by reference, and where segments go when memfd is off.
#include "mmc/shared.hpp"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "mmc/source.hpp"
#include "pool/segment.hpp"
#include "pool_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::catch_error;
using test::run_guarded;
using test::ScopedEnv;
using test::with;

class SharedEveryBackend : public ::testing::TestWithParam<Backend> {};

TEST_P(SharedEveryBackend, WorkersWriteResultsStraightIntoASharedArray) {
  run_guarded([&] {
    Pool pool(with(GetParam(), 2));
    SharedArray<double> out(1000);
    std::vector<std::tuple<ArrayRef<double>, std::size_t>> args;
    for (std::size_t i = 0; i < 1000; ++i) args.emplace_back(out.ref(), i);
    pool.starmap([](ArrayRef<double> o, std::size_t i) { o[i] = 0.5 * static_cast<double>(i); },
                 args);
    for (std::size_t i = 0; i < 1000; ++i) ASSERT_EQ(out[i], 0.5 * static_cast<double>(i));
  });
}

TEST_P(SharedEveryBackend, SharedValueCounterWithLockLosesNoIncrement) {
  run_guarded([&] {
    Pool pool(with(GetParam(), 2));
    SharedValue<long> counter(0);
    std::vector<ArrayRef<long>> refs(400, counter.ref());
    CallOptions call;
    call.chunksize = 1;
    pool.map([](ArrayRef<long> c) { with_lock(c, [](long& v) { v += 1; }); }, refs, call);
    EXPECT_EQ(counter.load(), 400);
  });
}

TEST_P(SharedEveryBackend, CopyOnWriteWritesStayPrivate) {
  run_guarded([&] {
    Pool pool(with(GetParam(), 1));
    SharedArray<int> data(16);
    for (int i = 0; i < 16; ++i) data[i] = i;
    const int seen = pool.submit(
                             [](ArrayRef<int> a) {
                               a[3] = 1000;
                               return a[3] + a[4];
                             },
                             data.ref(MapMode::CopyOnWrite))
                         .get();
    EXPECT_EQ(seen, 1004);
    EXPECT_EQ(data[3], 3);
  });
}

TEST_P(SharedEveryBackend, FileBackedArraysGoByReference) {
  run_guarded([&] {
    test::TempDir dir;
    const std::string path = dir.file("cube.raw");
    std::vector<std::uint16_t> values(4096);
    std::iota(values.begin(), values.end(), 0);
    test::write_file(
        path, std::string(8, 'h') +
                  std::string(reinterpret_cast<const char*>(values.data()), values.size() * 2));
    RawSpec spec;
    spec.path = path;
    spec.dtype = DType::parse("<u2");
    spec.shape = {64, 64};
    spec.offset = 8;
    const Source source = open_raw(spec);
    Pool pool(with(GetParam(), 2));
    std::vector<std::tuple<ArrayRef<std::uint16_t>, int>> rows;
    for (int r = 0; r < 64; ++r) rows.emplace_back(ArrayRef<std::uint16_t>::of(source), r);
    const auto sums = pool.starmap(
        [](ArrayRef<std::uint16_t> a, int r) {
          std::uint64_t s = 0;
          for (int c = 0; c < 64; ++c) s += a[static_cast<std::size_t>(r * 64 + c)];
          return s;
        },
        rows);
    for (int r = 0; r < 64; ++r) {
      std::uint64_t expect = 0;
      for (int c = 0; c < 64; ++c) expect += static_cast<std::uint64_t>(r * 64 + c);
      EXPECT_EQ(sums[r], expect);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Backends, SharedEveryBackend,
                         ::testing::Values(Backend::Process, Backend::Thread, Backend::Serial));

TEST(SharedArray, WriteThroughAReadOnlyRefKillsOnlyThatWorker) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    SharedArray<int> data(8);
    const auto caught = catch_error(
        [&] { pool.submit([](ArrayRef<int> a) { a[0] = 1; }, data.ref(MapMode::ReadOnly)).get(); });
    EXPECT_EQ(caught.code, ErrorCode::WorkerLost) << caught.message;
    EXPECT_EQ(pool.submit([](ArrayRef<int> a) { return a[0]; }, data.ref(MapMode::ReadOnly)).get(),
              0);
  });
}

TEST(SharedArray, MadeBeforeThePoolIsVisibleThroughACapturedPointer) {
  run_guarded([] {
    SharedArray<int> data(4);
    Pool pool(with(Backend::Process, 2));
    int* p = data.data();
    pool.map([p](int i) { p[i] = 10 * i; }, std::vector<int>{0, 1, 2, 3});
    EXPECT_EQ(data[3], 30);
  });
}

TEST(SharedArray, SegmentsAreUnnamedSoNothingIsLeftInTheTempFolder) {
  test::TempDir dir;
  ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
  ScopedEnv folder("MMC_TEMP_FOLDER", dir.path());
  {
    SharedArray<double> data(100'000);
    data[99'999] = 1;
    EXPECT_TRUE(test::list_dir(dir.path()).empty());
  }
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
}

TEST(SharedArray, UnwritableTempFolderFailsNamingIt) {
  test::TempDir dir;
  test::write_file(dir.file("plain"), "x");
  const std::string bad = dir.file("plain") + "/sub";
  ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
  ScopedEnv folder("MMC_TEMP_FOLDER", bad);
  const auto caught = catch_error([] { SharedArray<char> data(1000); });
  EXPECT_EQ(caught.code, ErrorCode::Io);
  EXPECT_NE(caught.message.find(bad), std::string::npos) << caught.message;
  EXPECT_NE(caught.message.find("MMC_TEMP_FOLDER"), std::string::npos) << caught.message;
}

// A full tmpfs (64 KiB) is refused with a clear error, and skipped by the default folder
// search. A real full file system is the only faithful fixture, so this test mounts one: the
// suite runs as root (scripts/test.sh and CI do), and anything else is a failure, not a skip.
TEST(SharedArray, FullTempFolderFailsNamingItAndIsSkippedByTheSearch) {
  test::TempDir dir;
  const std::string tiny = dir.file("tiny");
  ASSERT_EQ(mkdir(tiny.c_str(), 0700), 0);
  ASSERT_EQ(mount("tmpfs", tiny.c_str(), "tmpfs", 0, "size=64k"), 0)
      << "mounting a 64 KiB tmpfs at " << tiny << " failed (" << std::strerror(errno)
      << "): run the suite as root, as scripts/test.sh does";
  struct Unmount {
    std::string path;
    ~Unmount() { umount2(path.c_str(), MNT_DETACH); }
  } unmount{tiny};
  {
    ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
    ScopedEnv folder("MMC_TEMP_FOLDER", tiny);
    const auto caught = catch_error([] { SharedArray<char> data(1 << 20); });
    EXPECT_EQ(caught.code, ErrorCode::Io);
    EXPECT_NE(caught.message.find(tiny), std::string::npos) << caught.message;
    EXPECT_NE(caught.message.find("no room"), std::string::npos) << caught.message;
  }
  EXPECT_EQ(detail::first_folder_with_room({tiny, dir.path()}, 1 << 20), dir.path());
  EXPECT_TRUE(test::list_dir(tiny).empty());
}

}  // namespace
}  // namespace mmc
