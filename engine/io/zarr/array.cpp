// zarr v2 directory stores opened for reading: .zarray parsed strictly, chunks mapped in place
// (uncompressed) or read with pread and decoded (zlib, gzip, zstd, blosc).
//
// Fork: a child inherits the parent's chunk mappings and needs no reopen. The mapping table is
// guarded by a mutex held only around map lookups and inserts, so a child forked from a parent
// whose other threads were inside chunk_in_place could inherit it locked; fork from one thread
// (as run_tasks and the Pool's fork server do).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "io/codecs.hpp"
#include "io/open_read_only.hpp"
#include "io/zarr/metadata.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
namespace {

using detail::pread_exact;
using detail::zarr::Codec;
using detail::zarr::CodecSpec;
using detail::zarr::describe_codec;

// Uncompressed chunks are mapped one mapping each and stay mapped for the array's lifetime
// (chunk_in_place's pointers must stay valid). Past this many mappings chunk_in_place returns
// nullptr and read_chunk reads with pread instead, so a store of millions of chunks cannot
// exhaust vm.max_map_count (65530 by default). Mappings hold no file descriptor.
constexpr std::size_t kMaxMappedChunks = 4096;

// The largest file any of our codecs can make of n bytes (deflate's stored blocks, zstd's
// raw blocks and blosc's memcpy mode all add well under n/8 + 64 KiB). A bigger chunk file is
// corrupt, and is rejected before it is read into memory.
std::uint64_t max_encoded_size(std::uint64_t n) { return n + n / 8 + 65536; }

// Fills out[0, n) with copies of the one-element pattern.
void fill_with(std::byte* out, std::uint64_t n, const std::vector<std::byte>& pattern) {
  const std::size_t k = pattern.size();
  if (n == 0) return;
  if (std::all_of(pattern.begin(), pattern.end(), [&](std::byte b) { return b == pattern[0]; })) {
    std::memset(out, static_cast<int>(pattern[0]), n);
    return;
  }
  std::memcpy(out, pattern.data(), k);
  // Doubling copies: log2(n / k) memcpy calls.
  std::uint64_t have = k;
  while (have < n) {
    const std::uint64_t step = std::min(have, n - have);
    std::memcpy(out + have, out, step);
    have += step;
  }
}

// ---- the array ----

class ZarrArray final : public ChunkedArray {
 public:
  ZarrArray(std::string path, ArrayMeta meta, Shape chunks, std::vector<std::byte> fill,
            CodecSpec codec, char separator)
      : ChunkedArray(std::move(meta), std::move(chunks), std::move(fill)),
        path_(std::move(path)),
        codec_(std::move(codec)),
        separator_(separator),
        grid_(grid()) {}

  StorageInfo storage() const override;
  std::string name() const override { return path_; }
  const std::byte* chunk_in_place(const Shape& coord) const override;
  void read_chunk(const Shape& coord, std::byte* out) const override;

 private:
  // C-order index of a chunk; throws Error(InvalidArgument) for a coordinate off the grid.
  std::int64_t linear_index(const Shape& coord) const;
  std::string chunk_key(const Shape& coord) const;
  // True when `name` is the key of a cell of the grid (components canonical and in range).
  bool key_component_ok(const std::string& text, std::size_t axis) const;
  void count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const;

  std::string path_;
  CodecSpec codec_;
  char separator_;
  Shape grid_;
  mutable std::mutex mutex_;  // guards mapped_
  mutable std::unordered_map<std::int64_t, MappedFile> mapped_;
};

std::int64_t ZarrArray::linear_index(const Shape& coord) const {
  if (coord.size() != grid_.size()) {
    throw_error(ErrorCode::InvalidArgument, path_ + ": chunk coordinate " + format_shape(coord) +
                                                " has " + std::to_string(coord.size()) +
                                                " axes, the array " + std::to_string(grid_.size()));
  }
  std::int64_t index = 0;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= grid_[i]) {
      throw_error(ErrorCode::InvalidArgument, path_ + ": chunk coordinate " + format_shape(coord) +
                                                  " lies outside the chunk grid " +
                                                  format_shape(grid_));
    }
    index = index * grid_[i] + coord[i];
  }
  return index;
}

std::string ZarrArray::chunk_key(const Shape& coord) const {
  if (coord.empty()) return "0";  // zarr's key of the one chunk of a 0-d array
  std::string key;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (i) key += separator_;
    key += std::to_string(coord[i]);
  }
  return key;
}

const std::byte* ZarrArray::chunk_in_place(const Shape& coord) const {
  if (codec_.codec != Codec::None) return nullptr;
  const std::int64_t index = linear_index(coord);
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = mapped_.find(index);
    if (it != mapped_.end()) return it->second.data();
    if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  }
  const std::string file = path_ + "/" + chunk_key(coord);
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return nullptr;  // absent: reads as fill value
    throw_errno(file + ": cannot stat chunk");
  }
  if (!S_ISREG(st.st_mode)) {
    throw_error(ErrorCode::Corrupt, file + ": chunk is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) != chunk_nbytes()) {
    throw_error(ErrorCode::Corrupt, file + ": uncompressed chunk has " +
                                        std::to_string(st.st_size) + " bytes, expected " +
                                        std::to_string(chunk_nbytes()) + " (chunk shape " +
                                        format_shape(chunk_shape()) + " of " +
                                        meta().dtype.numpy_descr() + "); the store is damaged");
  }
  MappedFile mapping = MappedFile::open(file, MapMode::ReadOnly, 0, chunk_nbytes());
  mapping.close_descriptor();  // up to kMaxMappedChunks mappings, but no open file each
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto it = mapped_.find(index);
  if (it != mapped_.end()) return it->second.data();  // another thread mapped it first
  if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  return mapped_.emplace(index, std::move(mapping)).first->second.data();
}

void ZarrArray::read_chunk(const Shape& coord, std::byte* out) const {
  const std::int64_t index = linear_index(coord);
  const std::uint64_t n = chunk_nbytes();
  if (codec_.codec == Codec::None) {
    const std::byte* mapped = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto it = mapped_.find(index);
      if (it != mapped_.end()) mapped = it->second.data();
    }
    if (mapped != nullptr) {  // mappings are never dropped before the array is destroyed
      std::memcpy(out, mapped, n);
      return;
    }
  }
  const std::string file = path_ + "/" + chunk_key(coord);
  const detail::UniqueFd fd = detail::open_fd(file.c_str(), O_RDONLY);
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      fill_with(out, n, fill_value());
      return;
    }
    throw_errno(file + ": cannot open chunk");
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno(file + ": cannot stat chunk");
  if (!S_ISREG(st.st_mode)) throw_error(ErrorCode::Corrupt, file + ": chunk is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (codec_.codec == Codec::None) {
    if (size != n) {
      throw_error(ErrorCode::Corrupt, file + ": uncompressed chunk has " + std::to_string(size) +
                                          " bytes, expected " + std::to_string(n) +
                                          " (chunk shape " + format_shape(chunk_shape()) + " of " +
                                          meta().dtype.numpy_descr() + "); the store is damaged");
    }
    pread_exact(fd.get(), out, n, file);
    return;
  }
  if (size > max_encoded_size(n)) {
    throw_error(ErrorCode::Corrupt, file + ": compressed chunk has " + std::to_string(size) +
                                        " bytes, more than any " + describe_codec(codec_) +
                                        " encoding of a " + std::to_string(n) + "-byte chunk");
  }
  std::vector<std::byte> encoded(size);
  pread_exact(fd.get(), encoded.data(), size, file);
  switch (codec_.codec) {
    case Codec::Zlib:
    case Codec::Gzip:
      detail::zlib_decode(encoded.data(), size, out, n, codec_.codec == Codec::Gzip, file);
      break;
    case Codec::Zstd:
      detail::zstd_decode(encoded.data(), size, out, n, file);
      break;
    case Codec::Blosc:
      detail::blosc_decode(encoded.data(), size, out, n, file);
      break;
    case Codec::None:
      break;
  }
}

bool ZarrArray::key_component_ok(const std::string& text, std::size_t axis) const {
  if (text.empty() || text.size() > 19) return false;
  if (text.size() > 1 && text[0] == '0') return false;  // zarr never writes leading zeros
  std::int64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  return grid_.empty() ? v == 0 : v < grid_[axis];
}

// Counts the chunk files under `dir`, which holds keys from component `axis` on. With the "."
// separator every key is one file name; with "/" each component but the last is a folder.
void ZarrArray::count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (axis == 0) info->chunks_stored = -1;  // the store itself cannot be listed
    return;
  }
  const std::size_t nd = std::max<std::size_t>(grid_.size(), 1);
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    const std::string full = dir + "/" + entry;
    if (separator_ == '/' && axis + 1 < nd) {
      if (!key_component_ok(entry, axis)) continue;
      struct stat st;
      if (::stat(full.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        count_stored(full, axis + 1, info);
      }
      continue;
    }
    // The remaining components, joined by '.', make up this name.
    std::size_t start = 0;
    std::size_t a = axis;
    bool ok = true;
    for (;;) {
      const std::size_t end = separator_ == '.' ? entry.find('.', start) : std::string::npos;
      const std::string part =
          entry.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (a >= nd || !key_component_ok(part, a)) {
        ok = false;
        break;
      }
      ++a;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (!ok || a != nd) continue;
    struct stat st;
    if (::stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ++info->chunks_stored;
    info->stored_bytes += static_cast<std::uint64_t>(st.st_size);
  }
  ::closedir(d);
}

StorageInfo ZarrArray::storage() const {
  StorageInfo info;
  info.kind = "zarr";
  info.layout = "chunked";
  info.compressor = describe_codec(codec_);
  info.chunks_total = n_chunks();
  info.chunks_stored = 0;
  count_stored(path_, 0, &info);
  if (info.chunks_stored < 0) info.stored_bytes = 0;
  return info;
}

}  // namespace

std::unique_ptr<ChunkedArray> open_zarr(const std::string& path) {
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  detail::zarr::Metadata m = detail::zarr::read_metadata(dir);
  return std::make_unique<ZarrArray>(dir, std::move(m.meta), std::move(m.chunks), std::move(m.fill),
                                     std::move(m.codec), m.separator);
}

}  // namespace mmc
