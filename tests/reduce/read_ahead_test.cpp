// The cold-cube read-ahead: it queues the tasks' spans for reading in task order, never more
// than its window past the last finished task, and leaves a cached file and strided plans
// alone. A file's
// clean pages are evicted with POSIX_FADV_DONTNEED, which needs no privileges.
#include "reduce/read_ahead.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace mmc::detail {
namespace {

constexpr std::int64_t kImage = std::int64_t{256} << 10;  // 512 x 512 u8
constexpr std::int64_t kImages = 16;                      // a 4 MiB file, small enough to mlock

// Fraction of the file's pages in the page cache.
double cached_fraction(const MappedFile& m) {
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> in(m.size() / page);
  EXPECT_EQ(::mincore(const_cast<std::byte*>(m.data()), m.size(), in.data()), 0);
  std::size_t n = 0;
  for (unsigned char c : in) n += c & 1;
  return static_cast<double>(n) / static_cast<double>(in.size());
}

// Writes kImages images of `fill` to path, flushed so that its pages are clean and can be evicted.
void write_cube(const std::string& path, char fill) {
  test::write_file(path, std::string(static_cast<std::size_t>(kImages * kImage), fill));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

void evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
}

// Waits up to 20 s for some of the mapping's pages to come into the page cache.
void wait_for_pages(const MappedFile& m) {
  for (int i = 0; i < 2000 && cached_fraction(m) == 0.0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

TEST(ReadAhead, ReadsColdSpansInOrderWithinItsWindow) {
  test::TempDir dir;
  const std::string path = dir.file("cube.u8");
  write_cube(path, '\x07');
  const MappedFile m = MappedFile::open(path, MapMode::ReadOnly);
  m.advise(Access::Random);  // no kernel read-ahead: only what ReadAhead asks for is read
  const ArrayMeta meta = ArrayMeta::contiguous(DType(TypeId::U8), {kImages, 512, 512});
  const ReducePlan plan = make_reduce_plan(meta, {1, 2}, 2 * kImage);
  ASSERT_EQ(plan.n_tasks(), kImages / 2);

  evict(path);
  ASSERT_LT(cached_fraction(m), 0.5) << "the kernel kept the test file's pages";
  {
    ReadAhead ra(m, plan, 4 * kImage, 3 * 2 * kImage);  // a window of 3 tasks
    EXPECT_EQ(ra.spans_read(), 3) << "the first window is queued at once, and no more";
    // MADV_WILLNEED's reads complete later (and it is best effort): some of the first three
    // tasks' pages come in, none past them.
    wait_for_pages(m);
    const double cached = cached_fraction(m);
    EXPECT_GT(cached, 0.0);
    EXPECT_LE(cached, 3.0 / 8.0) << "pages past the window were read";
    ra.finished();
    EXPECT_EQ(ra.spans_read(), 4) << "one finished task moves the window by one";
    for (std::int64_t t = 1; t < plan.n_tasks(); ++t) ra.finished();
    EXPECT_EQ(ra.spans_read(), plan.n_tasks());
  }

  // Warm: read in through the mapping, and locked so that the kernel cannot evict a page
  // meanwhile (mlock alone does not do: AddressSanitizer makes it a no-op): nothing to read.
  m.populate(0, m.size());
  ASSERT_EQ(::mlock(m.data(), m.size()), 0) << "mlock of 4 MiB failed (RLIMIT_MEMLOCK?)";
  ASSERT_EQ(cached_fraction(m), 1.0);
  {
    ReadAhead warm(m, plan, 4 * kImage, 3 * 2 * kImage);
    for (std::int64_t t = 0; t < plan.n_tasks(); ++t) warm.finished();
    EXPECT_EQ(warm.spans_read(), 0);
  }
  ::munlock(m.data(), m.size());
}

TEST(ReadAhead, LeavesStridedPlansAlone) {
  test::TempDir dir;
  const std::string path = dir.file("cube.u8");
  write_cube(path, '\x01');
  const MappedFile m = MappedFile::open(path, MapMode::ReadOnly);
  m.advise(Access::Random);
  const ArrayMeta meta = ArrayMeta::contiguous(DType(TypeId::U8), {kImages, 512, 512});
  evict(path);
  ASSERT_LT(cached_fraction(m), 0.5) << "the kernel kept the test file's pages";
  // Reduce over axis 0: every task reads across the whole file.
  const ReducePlan across = make_reduce_plan(meta, {0}, 2 * kImage);
  ASSERT_GT(across.n_tasks(), 1);
  ReadAhead ra(m, across, 4 * kImage, 64 * kImage);
  for (std::int64_t t = 0; t < across.n_tasks(); ++t) ra.finished();
  EXPECT_EQ(ra.spans_read(), 0);
  EXPECT_LT(cached_fraction(m), 0.5);
}

}  // namespace
}  // namespace mmc::detail
