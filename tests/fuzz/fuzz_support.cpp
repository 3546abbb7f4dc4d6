// The fuzz targets' scratch files and bounded reads.
#include "fuzz_support.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/reduce.hpp"

namespace mmc::fuzz {
namespace {

struct ScratchDir {
  std::string path;
  ScratchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string root = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "";
    if (root.empty()) root = base != nullptr ? base : "/tmp";
    std::string pattern = root + "/mmc-fuzz-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror("mmc fuzz: mkdtemp");
      std::abort();
    }
    path = pattern;
  }
  ~ScratchDir() { remove_all(path); }
};

}  // namespace

const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

void write_bytes(const std::string& path, const std::uint8_t* data, std::size_t n) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::perror(path.c_str());
    std::abort();
  }
  std::size_t done = 0;
  while (done < n) {
    const ssize_t w = ::write(fd, data + done, n - done);
    if (w <= 0) {
      std::perror(path.c_str());
      std::abort();
    }
    done += static_cast<std::size_t>(w);
  }
  ::close(fd);
}

void remove_all(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

void read_bounded(const AnyArray& array) {
  const ArrayMeta& meta = array.meta();
  // A small array also goes through the planner and the kernels: a sum over axis 0 in this
  // process (empty arrays with huge extents included: their byte count is 0).
  if (meta.nbytes() <= kReadCap && !meta.shape.empty()) {
    ReduceOptions options;
    options.op = ReduceOp::Sum;
    options.axes = {0};
    options.axes_given = true;
    options.pool.backend = Backend::Serial;
    (void)reduce(array, options);
  }
  const std::uint64_t itemsize = meta.dtype.itemsize();
  if (const ChunkedArray* chunked = array.chunked()) {
    if (chunked->chunk_nbytes() > kReadCap) return;
    std::vector<std::byte> chunk(chunked->chunk_nbytes());
    std::uint64_t budget = kReadCap;
    for (std::int64_t i = 0; i < chunked->n_chunks() && budget >= chunk.size(); ++i) {
      chunked->read_chunk(chunked->chunk_coord(i), chunk.data());
      budget -= std::max<std::uint64_t>(chunk.size(), 1);
    }
  }
  Box box;
  box.start.assign(meta.shape.size(), 0);
  box.count = meta.shape;
  // Bytes of one index of axis 0 (the whole array for 0-d); give up when even that is too big.
  std::uint64_t row = itemsize;
  for (std::size_t i = 1; i < meta.shape.size(); ++i) {
    const auto e = static_cast<std::uint64_t>(meta.shape[i]);
    if (e != 0 && row > kReadCap / e) return;
    row *= e;
  }
  if (!box.count.empty() && row != 0) {
    box.count[0] = std::min<std::int64_t>(box.count[0], static_cast<std::int64_t>(kReadCap / row));
  }
  if (row > kReadCap) return;
  std::vector<std::byte> out(static_cast<std::size_t>(box.size()) * itemsize);
  array.read_box(box, out.data());
}

}  // namespace mmc::fuzz
