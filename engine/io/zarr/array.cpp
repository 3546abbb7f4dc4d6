// zarr v2 and v3 directory stores opened for reading: metadata parsed strictly, chunks mapped
// in place (uncompressed, unsharded) or read with pread and decoded through their codecs (zlib,
// gzip, zstd, blosc, crc32c checked); v3 shards read chunk by chunk through their index.
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
#include <memory>
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
using detail::zarr::describe_codecs;

// Uncompressed chunks are mapped one mapping each and stay mapped for the array's lifetime
// (chunk_in_place's pointers must stay valid). Past this many mappings chunk_in_place returns
// nullptr and read_chunk reads with pread instead, so a store of millions of chunks cannot
// exhaust vm.max_map_count (65530 by default). Mappings hold no file descriptor.
constexpr std::size_t kMaxMappedChunks = 4096;
// Shard indexes kept, each read once per shard (the cache starts over when full): at most this
// many, and this many bytes.
constexpr std::size_t kMaxCachedIndexes = 256;
constexpr std::uint64_t kMaxCachedIndexBytes = std::uint64_t{64} << 20;

// The largest file any of our codecs can make of n bytes (deflate's stored blocks, zstd's
// raw blocks and blosc's memcpy mode all add well under n/8 + 64 KiB). A bigger chunk file is
// corrupt, and is rejected before it is read into memory.
std::uint64_t max_encoded_size(std::uint64_t n) { return n + n / 8 + 65536; }

// A key's folder is a file: the store's layout is broken (reading on would give fill values
// for every chunk below it).
[[noreturn]] void raise_not_folder(const std::string& file) {
  throw_error(ErrorCode::Corrupt, file +
                                      ": a file stands where a folder of the chunk's key "
                                      "should be; the store is damaged");
}

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
  ZarrArray(std::string path, detail::zarr::Metadata m)
      : ChunkedArray(std::move(m.meta), std::move(m.chunks), std::move(m.fill)),
        path_(std::move(path)),
        codecs_(std::move(m.codecs)),
        keys_(std::move(m.keys)),
        sharding_(std::move(m.sharding)),
        permutation_(std::move(m.permutation)),
        grid_(grid()) {
    file_grid_ = grid_;
    for (const CodecSpec& c : codecs_) crcs_ += c.codec == Codec::Crc32c ? 1 : 0;
    if (sharding_.enabled) {
      per_shard_.resize(grid_.size());
      for (std::size_t a = 0; a < grid_.size(); ++a) {
        per_shard_[a] = sharding_.shape[a] / chunk_shape()[a];
        file_grid_[a] = grid_[a] / per_shard_[a] + (grid_[a] % per_shard_[a] != 0);
        chunks_per_shard_ *= static_cast<std::uint64_t>(per_shard_[a]);
      }
    }
  }

  StorageInfo storage() const override;
  std::string name() const override { return path_; }
  const std::byte* chunk_in_place(const Shape& coord) const override;
  void read_chunk(const Shape& coord, std::byte* out) const override;

 private:
  // One shard's index: (offset, nbytes) per chunk in C order over the shard's chunk grid,
  // every stored entry checked to lie inside the shard's data.
  using ShardIndex = std::vector<std::uint64_t>;

  bool sharded() const { return sharding_.enabled; }
  // C-order index of a chunk; throws Error(InvalidArgument) for a coordinate off the grid.
  std::int64_t linear_index(const Shape& coord) const;
  // The key of a cell of the file grid (chunks, or shards when sharded).
  std::string key_of(const Shape& cell) const;
  // Opens the file of a chunk or shard (`kind`, for messages) and gives its size; an absent one
  // fills `out` with the fill value and comes back invalid.
  detail::UniqueFd open_stored(const std::string& file, const char* kind, std::byte* out,
                               std::uint64_t* size) const;
  // Reads the chunk stored as `size` bytes at `offset` of `fd` into out, decoding it; the size
  // is checked against what the codecs can make before anything is read.
  void read_stored(int fd, std::uint64_t offset, std::uint64_t size, std::byte* out,
                   const std::string& what) const;
  [[noreturn]] void raise_wrong_size(const std::string& what, std::uint64_t size) const;
  // Decodes `size` stored bytes of a chunk through the codecs into out[0, chunk_nbytes()); the
  // caller bounded `size`.
  void decode(const std::byte* src, std::uint64_t size, std::byte* out,
              const std::string& what) const;
  // Reads the bytes stored for a chunk of an unsharded store, or the fill value.
  void read_unsharded(const Shape& coord, std::byte* out) const;
  void read_sharded(const Shape& coord, std::byte* out) const;
  // Puts a chunk decoded in its stored axis order (permutation_) back in C order, in place.
  void untranspose(std::byte* chunk) const;
  std::shared_ptr<const ShardIndex> shard_index(std::int64_t shard, int fd, std::uint64_t size,
                                                const std::string& file) const;
  // True when `name` is the key of a cell of the grid (components canonical and in range).
  bool key_component_ok(const std::string& text, std::size_t axis) const;
  void count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const;

  std::string path_;
  std::vector<CodecSpec> codecs_;
  detail::zarr::KeyEncoding keys_;
  detail::zarr::Sharding sharding_;
  std::vector<std::int64_t> permutation_;  // a general transpose, undone per chunk
  Shape grid_;                             // chunks per axis
  Shape file_grid_;                        // files per axis: chunks, or shards when sharded
  Shape per_shard_;                        // chunks per shard along each axis (sharded)
  std::uint64_t chunks_per_shard_ = 1;
  int crcs_ = 0;              // crc32c codecs among codecs_: 4 bytes each
  mutable std::mutex mutex_;  // guards mapped_ and indexes_
  mutable std::unordered_map<std::int64_t, MappedFile> mapped_;
  mutable std::unordered_map<std::int64_t, std::shared_ptr<const ShardIndex>> indexes_;
  mutable std::uint64_t cached_index_bytes_ = 0;
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

std::string ZarrArray::key_of(const Shape& cell) const {
  std::string key = keys_.prefix;
  if (cell.empty()) return key.empty() ? "0" : key;  // a 0-d array's one chunk
  for (std::size_t i = 0; i < cell.size(); ++i) {
    if (!key.empty()) key += keys_.separator;
    key += std::to_string(cell[i]);
  }
  return key;
}

const std::byte* ZarrArray::chunk_in_place(const Shape& coord) const {
  if (!codecs_.empty() || sharded() || !permutation_.empty()) return nullptr;
  const std::int64_t index = linear_index(coord);
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = mapped_.find(index);
    if (it != mapped_.end()) return it->second.data();
    if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  }
  const std::string file = path_ + "/" + key_of(coord);
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return nullptr;  // absent: reads as fill value
    if (errno == ENOTDIR) raise_not_folder(file);
    throw_errno(file + ": cannot stat chunk");
  }
  if (!S_ISREG(st.st_mode)) {
    throw_error(ErrorCode::Corrupt, file + ": chunk is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) != chunk_nbytes()) {
    raise_wrong_size(file, static_cast<std::uint64_t>(st.st_size));
  }
  MappedFile mapping = MappedFile::open(file, MapMode::ReadOnly, 0, chunk_nbytes());
  mapping.close_descriptor();  // up to kMaxMappedChunks mappings, but no open file each
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto it = mapped_.find(index);
  if (it != mapped_.end()) return it->second.data();  // another thread mapped it first
  if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  return mapped_.emplace(index, std::move(mapping)).first->second.data();
}

void ZarrArray::decode(const std::byte* src, std::uint64_t size, std::byte* out,
                       const std::string& what) const {
  const std::uint64_t n = chunk_nbytes();
  // Undone last to first: a crc32c drops its 4 bytes once they match; a compressor decodes
  // to the chunk's size plus the checksums a writer appended before compressing.
  std::vector<std::byte> buffer;
  int crcs_left = crcs_;
  for (std::size_t k = codecs_.size(); k-- > 0;) {
    const CodecSpec& c = codecs_[k];
    if (c.codec == Codec::Crc32c) {
      if (size < 4) throw_error(ErrorCode::Corrupt, what + ": too short for its crc32c checksum");
      std::uint32_t stored = 0;
      for (int b = 3; b >= 0; --b)
        stored = (stored << 8) | static_cast<std::uint8_t>(src[size - 4 + b]);
      size -= 4;
      const std::uint32_t actual = detail::crc32c(src, size);
      if (actual != stored) {
        throw_error(ErrorCode::Corrupt, what + ": crc32c checksum mismatch (stored " +
                                            std::to_string(stored) + ", computed " +
                                            std::to_string(actual) + "); the data is damaged");
      }
      --crcs_left;
      continue;
    }
    const std::uint64_t want = n + 4 * static_cast<std::uint64_t>(crcs_left);
    std::vector<std::byte> decoded;
    std::byte* dst = out;
    if (want != n) {
      decoded.resize(want);
      dst = decoded.data();
    }
    switch (c.codec) {
      case Codec::Zlib:
      case Codec::Gzip:
        detail::zlib_decode(src, size, dst, want, c.codec == Codec::Gzip, what);
        break;
      case Codec::Zstd:
        detail::zstd_decode(src, size, dst, want, what);
        break;
      case Codec::Blosc:
        detail::blosc_decode(src, size, dst, want, what);
        break;
      default:
        break;
    }
    if (want == n) {
      if (k == 0) return;  // decoded straight into out
      buffer.assign(out, out + n);
    } else {
      buffer = std::move(decoded);
    }
    src = buffer.data();
    size = buffer.size();
  }
  if (size != n) {
    throw_error(ErrorCode::Corrupt, what + ": holds " + std::to_string(size) +
                                        " bytes of data, expected " + std::to_string(n) +
                                        " (chunk shape " + format_shape(chunk_shape()) + " of " +
                                        meta().dtype.numpy_descr() + "); the store is damaged");
  }
  if (src != out) std::memmove(out, src, n);
}

void ZarrArray::read_chunk(const Shape& coord, std::byte* out) const {
  if (sharded()) {
    read_sharded(coord, out);
  } else {
    read_unsharded(coord, out);
  }
  // (A chunk read as the fill value is the same in any axis order.)
  if (!permutation_.empty()) untranspose(out);
}

void ZarrArray::untranspose(std::byte* chunk) const {
  const Shape& logical = chunk_shape();
  const std::size_t nd = logical.size();
  const std::size_t k = meta().dtype.itemsize();
  // C strides (elements) of the logical chunk, and the stored chunk's shape.
  std::vector<std::int64_t> stride(nd, 1);
  for (std::size_t a = nd; a-- > 1;) stride[a - 1] = stride[a] * logical[a];
  Shape stored(nd);
  std::vector<std::int64_t> step(nd);  // logical offset of one step along stored axis a
  for (std::size_t a = 0; a < nd; ++a) {
    stored[a] = logical[static_cast<std::size_t>(permutation_[a])];
    step[a] = stride[static_cast<std::size_t>(permutation_[a])];
  }
  thread_local std::vector<std::byte> copy;
  copy.assign(chunk, chunk + chunk_nbytes());
  Shape idx(nd, 0);
  std::int64_t to = 0;
  for (std::uint64_t from = 0; from < chunk_nbytes(); from += k) {
    std::memcpy(chunk + to * static_cast<std::int64_t>(k), copy.data() + from, k);
    for (std::size_t a = nd; a-- > 0;) {  // next stored element, C order
      to += step[a];
      if (++idx[a] < stored[a]) break;
      to -= step[a] * stored[a];
      idx[a] = 0;
    }
  }
}

detail::UniqueFd ZarrArray::open_stored(const std::string& file, const char* kind, std::byte* out,
                                        std::uint64_t* size) const {
  detail::UniqueFd fd =
      detail::open_fd(file.c_str(), O_RDONLY | O_NONBLOCK);  // a FIFO never blocks
  if (!fd) {
    if (errno == ENOENT) {
      fill_with(out, chunk_nbytes(), fill_value());
      return fd;
    }
    if (errno == ENOTDIR) raise_not_folder(file);
    throw_errno(file + ": cannot open " + kind);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno(file + ": cannot stat " + kind);
  if (!S_ISREG(st.st_mode)) {
    throw_error(ErrorCode::Corrupt, file + ": " + kind + " is not a regular file");
  }
  *size = static_cast<std::uint64_t>(st.st_size);
  return fd;
}

void ZarrArray::raise_wrong_size(const std::string& what, std::uint64_t size) const {
  throw_error(ErrorCode::Corrupt, what + ": uncompressed chunk has " + std::to_string(size) +
                                      " bytes, expected " + std::to_string(chunk_nbytes()) +
                                      " (chunk shape " + format_shape(chunk_shape()) + " of " +
                                      meta().dtype.numpy_descr() + "); the store is damaged");
}

void ZarrArray::read_stored(int fd, std::uint64_t offset, std::uint64_t size, std::byte* out,
                            const std::string& what) const {
  const std::uint64_t n = chunk_nbytes();
  if (codecs_.empty()) {
    if (size != n) raise_wrong_size(what, size);
    pread_exact(fd, out, n, what, offset);
    return;
  }
  // Bounded before the bytes are read into memory.
  if (size > max_encoded_size(n) + 4 * static_cast<std::uint64_t>(crcs_)) {
    throw_error(ErrorCode::Corrupt, what + ": holds " + std::to_string(size) +
                                        " bytes, more than any " + describe_codecs(codecs_) +
                                        " encoding of a " + std::to_string(n) + "-byte chunk");
  }
  std::vector<std::byte> encoded(size);
  pread_exact(fd, encoded.data(), size, what, offset);
  decode(encoded.data(), size, out, what);
}

void ZarrArray::read_unsharded(const Shape& coord, std::byte* out) const {
  const std::int64_t index = linear_index(coord);
  if (codecs_.empty()) {
    const std::byte* mapped = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto it = mapped_.find(index);
      if (it != mapped_.end()) mapped = it->second.data();
    }
    if (mapped != nullptr) {  // mappings are never dropped before the array is destroyed
      std::memcpy(out, mapped, chunk_nbytes());
      return;
    }
  }
  const std::string file = path_ + "/" + key_of(coord);
  std::uint64_t size = 0;
  const detail::UniqueFd fd = open_stored(file, "chunk", out, &size);
  if (fd) read_stored(fd.get(), 0, size, out, file);
}

std::shared_ptr<const ZarrArray::ShardIndex> ZarrArray::shard_index(std::int64_t shard, int fd,
                                                                    std::uint64_t size,
                                                                    const std::string& file) const {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = indexes_.find(shard);
    if (it != indexes_.end()) return it->second;
  }
  const std::uint64_t entries = 2 * chunks_per_shard_;
  const std::uint64_t index_bytes = 8 * entries + (sharding_.index_crc32c ? 4 : 0);
  if (size < index_bytes) {
    throw_error(ErrorCode::Corrupt, file + ": shard file has " + std::to_string(size) +
                                        " bytes, fewer than its index's " +
                                        std::to_string(index_bytes) + "; the store is damaged");
  }
  const std::uint64_t at = sharding_.index_at_start ? 0 : size - index_bytes;
  // Read in place into the entries, then checked and put in this machine's byte order.
  auto index = std::make_shared<ShardIndex>(entries);
  auto* raw = reinterpret_cast<std::byte*>(index->data());
  pread_exact(fd, raw, 8 * entries, file, at);
  if (sharding_.index_crc32c) {
    std::byte stored_bytes[4];
    pread_exact(fd, stored_bytes, 4, file, at + 8 * entries);
    std::uint32_t stored = 0;
    for (int b = 3; b >= 0; --b)
      stored = (stored << 8) | static_cast<std::uint8_t>(stored_bytes[b]);
    if (detail::crc32c(raw, 8 * entries) != stored) {
      throw_error(
          ErrorCode::Corrupt,
          file + ": the shard index's crc32c checksum does not match; the shard is damaged");
    }
  }
  if (sharding_.index_big_endian != (native_byte_order() == ByteOrder::Big)) {
    for (std::uint64_t& v : *index) v = __builtin_bswap64(v);
  }
  const std::uint64_t lo = sharding_.index_at_start ? index_bytes : 0;
  const std::uint64_t hi = sharding_.index_at_start ? size : size - index_bytes;
  for (std::uint64_t c = 0; c < chunks_per_shard_; ++c) {
    const std::uint64_t offset = (*index)[2 * c];
    const std::uint64_t nbytes = (*index)[2 * c + 1];
    if (offset == UINT64_MAX && nbytes == UINT64_MAX) continue;  // not stored
    if (offset < lo || offset > hi || nbytes > hi - offset) {
      throw_error(ErrorCode::Corrupt,
                  file + ": shard index entry " + std::to_string(c) + " (offset " +
                      std::to_string(offset) + ", " + std::to_string(nbytes) +
                      " bytes) lies outside the shard's data [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "); the shard is damaged");
    }
  }
  const std::lock_guard<std::mutex> lock(mutex_);
  if (indexes_.size() >= kMaxCachedIndexes ||
      cached_index_bytes_ + 8 * entries > kMaxCachedIndexBytes) {
    indexes_.clear();  // the readers of an index dropped here still hold it
    cached_index_bytes_ = 0;
  }
  if (indexes_.emplace(shard, index).second) cached_index_bytes_ += 8 * entries;
  return index;
}

void ZarrArray::read_sharded(const Shape& coord, std::byte* out) const {
  linear_index(coord);  // checks the coordinate
  Shape shard(coord.size());
  std::int64_t shard_linear = 0;
  std::uint64_t inner = 0;
  for (std::size_t a = 0; a < coord.size(); ++a) {
    shard[a] = coord[a] / per_shard_[a];
    shard_linear = shard_linear * file_grid_[a] + shard[a];
    inner = inner * static_cast<std::uint64_t>(per_shard_[a]) +
            static_cast<std::uint64_t>(coord[a] % per_shard_[a]);
  }
  const std::string file = path_ + "/" + key_of(shard);
  std::uint64_t size = 0;
  const detail::UniqueFd fd = open_stored(file, "shard", out, &size);
  if (!fd) return;
  const std::shared_ptr<const ShardIndex> index = shard_index(shard_linear, fd.get(), size, file);
  const std::uint64_t offset = (*index)[2 * inner];
  const std::uint64_t nbytes = (*index)[2 * inner + 1];
  if (offset == UINT64_MAX && nbytes == UINT64_MAX) {
    fill_with(out, chunk_nbytes(), fill_value());
    return;
  }
  read_stored(fd.get(), offset, nbytes, out, file + " (chunk " + format_shape(coord) + ")");
}

bool ZarrArray::key_component_ok(const std::string& text, std::size_t axis) const {
  if (text.empty() || text.size() > 19) return false;
  if (text.size() > 1 && text[0] == '0') return false;  // zarr never writes leading zeros
  std::int64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  return file_grid_.empty() ? v == 0 : v < file_grid_[axis];
}

// Counts the chunk (shard) files under `dir`, which holds keys from component `axis` on. With
// the "." separator every key is one file name (v3's default encoding: "c." first); with "/"
// each component but the last is a folder (storage() starts in v3's "c" folder).
void ZarrArray::count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (axis == 0) info->chunks_stored = -1;  // the store itself cannot be listed
    return;
  }
  const std::size_t nd = std::max<std::size_t>(file_grid_.size(), 1);
  const char separator = keys_.separator;
  const std::string prefix = keys_.prefix.empty() || separator == '/' ? "" : keys_.prefix + ".";
  while (const dirent* e = ::readdir(d)) {
    std::string entry = e->d_name;
    const std::string full = dir + "/" + entry;
    if (!prefix.empty()) {
      if (entry.compare(0, prefix.size(), prefix) != 0) continue;
      entry.erase(0, prefix.size());
    }
    if (separator == '/' && axis + 1 < nd) {
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
      const std::size_t end = separator == '.' ? entry.find('.', start) : std::string::npos;
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
  info.compressor = describe_codecs(codecs_);
  info.chunks_total = n_chunks();
  info.chunks_stored = 0;
  if (keys_.prefix.empty() || keys_.separator == '.') {
    count_stored(path_, 0, &info);
  } else if (grid_.empty()) {  // v3's default key of a 0-d array's chunk: the file "c"
    struct stat st;
    if (::stat((path_ + "/c").c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      info.chunks_stored = 1;
      info.stored_bytes = static_cast<std::uint64_t>(st.st_size);
    }
  } else {
    count_stored(path_ + "/" + keys_.prefix, 0, &info);
    info.chunks_stored = std::max<std::int64_t>(info.chunks_stored, 0);  // no "c" folder: none
  }
  if (info.chunks_stored < 0) info.stored_bytes = 0;
  if (sharded()) {
    // The files counted are shards; which chunks they hold only their indexes say.
    info.layout = "sharded";
    info.shards = sharding_.shape;
    info.shard_files = info.chunks_stored;
    info.chunks_stored = -1;
  }
  return info;
}

}  // namespace

bool split_zarr_member(const std::string& spec, std::string* store, std::string* member) {
  struct stat st;
  if (::stat(spec.c_str(), &st) == 0) return false;  // a path with ':' in it, as it is
  // The last ':' whose head is a store: a store's own path may hold ':' (/runs/10:00/a.zarr).
  for (std::size_t colon = spec.rfind(':'); colon != std::string::npos && colon > 0;
       colon = spec.rfind(':', colon - 1)) {
    std::string head = spec.substr(0, colon);
    std::string tail = spec.substr(colon + 1);
    while (!tail.empty() && tail.front() == '/') tail.erase(0, 1);
    while (head.size() > 1 && head.back() == '/') head.pop_back();
    const bool folder = ::stat(head.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    if (!tail.empty() && (head.ends_with(".zarr") || folder)) {
      *store = head;
      *member = tail;
      return true;
    }
  }
  return false;
}

std::unique_ptr<ChunkedArray> open_zarr(const std::string& path) {
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  detail::zarr::Metadata m = detail::zarr::read_metadata(dir);
  return std::make_unique<ZarrArray>(dir, std::move(m));
}

}  // namespace mmc
