// Tests of shared.hpp: SharedArray/SharedValue written by workers, ArrayRef modes (r, r+, c),
// file-backed arrays by reference, and where segments go when memfd is off.
#include "mmc/shared.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
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

// Segments travel as descriptors with their task (SCM_RIGHTS): a worker that already got one
// maps it even after the caller closed its own, where reopening the owner's descriptor by its
// /proc path would fail.
TEST(SharedArray, AWorkerMapsASegmentTheCallerClosedAfterSendingIt) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    SharedArray<int> gate(2);  // [0]: the caller closed its copy; [1]: the task started
    auto data = std::make_unique<SharedArray<int>>(4);
    (*data)[2] = 42;
    auto result = pool.submit(
        [](ArrayRef<int> flags, ArrayRef<int> values) {
          std::atomic_ref<int>(flags[1]).store(1);
          while (std::atomic_ref<int>(flags[0]).load() == 0) usleep(1000);
          values[3] = 7;  // r+: the worker writes through its own descriptor's mapping
          return values[2];
        },
        gate.ref(), data->ref());
    while (std::atomic_ref<int>(gate[1]).load() == 0) usleep(1000);
    const ArrayRef<int> keep = data->ref();  // names the segment by the caller's descriptor
    const int caller_fd = keep.desc().fd;
    ASSERT_GE(caller_fd, 0);
    // Keep the segment's memory mapped here (through `keep`), then drop the owner.
    int* values = keep.data();
    data.reset();
    EXPECT_EQ(fcntl(caller_fd, F_GETFD), -1);  // closed: nothing of ours names the segment now
    std::atomic_ref<int>(gate[0]).store(1);
    EXPECT_EQ(result.get(), 42);
    EXPECT_EQ(values[3], 7);
  });
}

// An ArrayRef a task returns travels back with its descriptor.
TEST(SharedArray, ARefReturnedByAWorkerComesBackWithItsDescriptor) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    SharedArray<int> data(3);
    data[0] = 5;
    const ArrayRef<int> back = pool.submit(
                                       [](ArrayRef<int> a) {
                                         a[1] = 6;
                                         return a;
                                       },
                                       data.ref())
                                   .get();
    ASSERT_EQ(back.size(), 3u);
    EXPECT_NE(back.desc().fd, data.ref().desc().fd);  // a copy that came with the result
    back[2] = 7;
    EXPECT_EQ(data[0] + data[1] + data[2], 18);
  });
}

// Descriptors that came with tasks are closed with them: neither side accumulates any.
TEST(SharedArray, ManyTasksWithSegmentsLeakNoDescriptorInWorkerOrCaller) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    const auto open_fds = [] {
      int n = 0;
      for (const std::string& entry : test::list_dir("/proc/self/fd")) {
        static_cast<void>(entry);
        ++n;
      }
      return n;
    };
    const auto run_round = [&](int tasks) {
      int worker_fds = 0;
      for (int i = 0; i < tasks; ++i) {
        SharedArray<int> a(16);
        SharedArray<int> b(16);
        worker_fds = pool.submit(
                             [open_fds](ArrayRef<int> x, ArrayRef<int> y) {
                               x[0] = y[0] + 1;
                               return open_fds();
                             },
                             a.ref(), b.ref())
                         .get();
        EXPECT_EQ(a[0], 1);
      }
      return worker_fds;
    };
    const int worker_warm = run_round(10);
    const int caller_before = open_fds();
    const int worker_after = run_round(300);
    EXPECT_EQ(open_fds(), caller_before);
    EXPECT_EQ(worker_after, worker_warm);
  });
}

// A result naming more segments than one message carries fails its task with the reason; the
// worker that ran it lives on.
TEST(SharedArray, AResultWithTooManySegmentsFailsItsTaskAndTheWorkerLives) {
  run_guarded([] {
    Pool pool(with(Backend::Process, 1));
    const pid_t worker = pool.submit([] { return static_cast<int>(getpid()); }).get();
    auto too_many = pool.submit([] {
      static std::vector<SharedArray<int>> kept;  // alive while the result is sent
      kept.clear();
      kept.reserve(64);
      std::vector<ArrayRef<int>> refs;
      for (int i = 0; i < 64; ++i) refs.push_back(kept.emplace_back(1).ref());
      return refs;
    });
    const auto caught = catch_error([&] { too_many.get(); });
    EXPECT_EQ(caught.code, ErrorCode::InvalidArgument) << caught.message;
    EXPECT_NE(caught.message.find("at most 63"), std::string::npos) << caught.message;
    EXPECT_EQ(pool.submit([] { return static_cast<int>(getpid()); }).get(), worker);
  });
}

TEST(SharedArray, ARefToASegmentCannotBeStoredInsideAMessageWithoutDescriptors) {
  SharedArray<int> data(4);
  Bytes bytes;
  ByteWriter w(bytes);
  const auto caught = catch_error([&] { Codec<ArrayRef<int>>::write(w, data.ref()); });
  EXPECT_EQ(caught.code, ErrorCode::InvalidArgument);
  EXPECT_NE(caught.message.find("shared container"), std::string::npos) << caught.message;
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
