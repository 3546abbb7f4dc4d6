// ZarrWriter: zarr v2 and v3 stores written crash-safely (hidden temporary directory, chunks or
// shards written into it, .zarray or zarr.json last, the directory renamed into place on commit).
//
// Choices:
// - Chunks whose bytes are all the fill value are not written (zarr-python's
//   write_empty_chunks=False): readers give the fill value for a missing chunk, so the array
//   reads the same and sparse outputs cost no disk. Rewriting such a chunk removes a file
//   written for it earlier.
// - Durability: commit() syncs the file system that holds the temporary directory once
//   (syncfs), after every worker wrote its chunks into the page cache, then renames the store
//   into place and fsyncs its parent; a worker never syncs.
// - v3 shards: a shard's chunks are encoded one after another into one buffer, in C order of
//   the shard's chunk grid, then its index ((offset, nbytes) u64 little endian per chunk, 2^64-1
//   twice for a chunk not stored) and the index's CRC-32C; the file is written whole.
// - commit() replaces an existing store (overwrite) with renameat2(RENAME_EXCHANGE), so the
//   path always names a complete store; where the file system lacks it, the old store is
//   renamed away, the new one renamed in, and only then is the old one removed. Only a zarr
//   array (a directory holding .zarray) or an empty directory is ever replaced.
// - A writer killed before commit() leaves a hidden ".<name>.tmp-<pid>-<random>" directory
//   beside the destination and nothing at the destination.
#include <blosc.h>  // for BLOSC_MAX_BUFFERSIZE only
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "io/codecs.hpp"
#include "io/zarr/meta_parser.hpp"
#include "io/zarr/metadata.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
using detail::path_exists;
namespace {

// A per-thread encoding buffer above this is released after use: a long-lived process (Python)
// would otherwise hold one of the largest chunk's size in every thread that wrote.
constexpr std::size_t kKeptBufferBytes = std::size_t{64} << 20;

void release_if_large(std::vector<std::byte>& buffer) {
  if (buffer.capacity() > kKeptBufferBytes) std::vector<std::byte>().swap(buffer);
}

// Chunk files at least this large start their write-back as soon as they are written.
constexpr std::size_t kEarlyWritebackBytes = std::size_t{1} << 20;

[[noreturn]] void raise_io(const std::string& what) {
  const int err = errno;
  throw_error(ErrorCode::Io, what + ": " + std::strerror(err));
}

void write_all_or_raise(int fd, const std::byte* data, std::size_t n, const std::string& path) {
  if (!detail::write_all(fd, data, n)) raise_io(path + ": cannot write");
}

void fsync_path(const std::string& path, int flags) {
  const detail::UniqueFd fd = detail::open_fd(path.c_str(), flags);
  if (!fd) raise_io(path + ": cannot open to flush");
  if (::fsync(fd.get()) != 0) raise_io(path + ": cannot flush to disk");
}

std::string random_suffix() {
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

bool is_directory(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// What overwrite may replace: a zarr array, or an empty directory. Never a file or a folder
// of other things, which a mistyped path could name.
bool replaceable(const std::string& path) {
  if (!is_directory(path)) return false;
  if (path_exists(path + "/.zarray")) return true;
  if (path_exists(path + "/zarr.json")) {  // an array's, not a group's: a group holds others
    try {
      return detail::zarr::parse_document(path + "/zarr.json").value("node_type", "") == "array";
    } catch (const Error&) {
      return false;
    }
  }
  std::error_code ec;
  return std::filesystem::is_empty(path, ec) && !ec;
}

}  // namespace

Compressor parse_compressor(const std::string& text) {
  if (text == "none") return Compressor::None;
  if (text == "zlib") return Compressor::Zlib;
  if (text == "zstd") return Compressor::Zstd;
  if (text == "blosc") return Compressor::Blosc;
  throw_error(ErrorCode::InvalidArgument,
              "unknown compressor '" + text + "' (expected none, zlib, zstd or blosc)");
}

struct ZarrWriter::State {
  std::string path;  // the destination, without trailing '/'
  std::string parent;
  std::string name;
  std::string temp;  // hidden temporary directory beside path
  ZarrSpec spec;     // fill resolved to one element
  bool overwrite = false;
  Shape grid;
  std::uint64_t chunk_nbytes = 0;
  std::vector<detail::zarr::CodecSpec> codecs;  // what each chunk goes through
  Shape shard_grid;                             // sharded specs
  Shape per_shard;                              // chunks per shard along each axis
  std::uint64_t shard_nbytes = 0;
  pid_t owner = 0;  // only this process removes the temporary directory
  bool committed = false;

  // Encodes one chunk into `out` (grown as needed, reused across chunks); returns the size.
  // Only for specs with a compressor.
  std::size_t encode(const std::byte* data, std::vector<std::byte>& out) const;
  bool all_fill(const std::byte* data) const;
  // The file of a cell of the file grid (a chunk, or a shard), its folders made when v3's keys
  // have them.
  std::string file_for(const Shape& cell) const;
  // Writes `size` bytes as `file`, created or truncated.
  void write_file(const std::string& file, const std::byte* bytes, std::size_t size) const;
  void check_destination() const;
  void flush_temp_dir() const;
  void move_into_place() const;
};

std::size_t ZarrWriter::State::encode(const std::byte* data, std::vector<std::byte>& out) const {
  const detail::zarr::CodecSpec& c = codecs.front();  // writers apply one compressor
  switch (c.codec) {
    case detail::zarr::Codec::Zstd:
      return detail::zstd_encode_into(data, chunk_nbytes, c.level, out);
    case detail::zarr::Codec::Blosc:
      return detail::blosc_encode_into(data, chunk_nbytes, spec.dtype.itemsize(), c.cname, c.level,
                                       c.shuffle, out);
    default:
      return detail::zlib_encode_into(data, chunk_nbytes, c.level,
                                      c.codec == detail::zarr::Codec::Gzip, out);
  }
}

bool ZarrWriter::State::all_fill(const std::byte* data) const {
  const std::size_t itemsize = spec.dtype.itemsize();
  for (std::uint64_t at = 0; at < chunk_nbytes; at += itemsize) {
    if (std::memcmp(data + at, spec.fill.data(), itemsize) != 0) return false;
  }
  return true;
}

std::string ZarrWriter::State::file_for(const Shape& cell) const {
  if (spec.zarr_format == 2) {
    std::string key;
    for (std::size_t i = 0; i < cell.size(); ++i) key += (i ? "." : "") + std::to_string(cell[i]);
    return temp + "/" + (cell.empty() ? std::string("0") : key);
  }
  // v3's default key encoding: "c/0/1/2", each component but the last a folder.
  std::string file = temp + "/c";
  for (std::int64_t k : cell) {
    if (::mkdir(file.c_str(), 0777) != 0 && errno != EEXIST) raise_io(file + ": cannot create");
    file += "/" + std::to_string(k);
  }
  return file;
}

void ZarrWriter::State::write_file(const std::string& file, const std::byte* bytes,
                                   std::size_t size) const {
  // Written in place, not under a temporary name renamed over it: the whole store is the
  // temporary (commit() renames it into place only after every task succeeded), and a task
  // run again after its worker died truncates what that worker left. One directory operation
  // per chunk instead of two: with small chunks those are most of the time.
  detail::UniqueFd fd = detail::open_fd(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (!fd) raise_io(file + ": cannot create chunk file");
  write_all_or_raise(fd.get(), bytes, size, file);
  // Write-back starts now, while the workers go on encoding, rather than all at commit's sync
  // (which then waits for little). Advice only: its failure changes nothing.
  if (size >= kEarlyWritebackBytes) ::sync_file_range(fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
  if (!fd.close()) raise_io(file + ": cannot write");
}

void ZarrWriter::State::check_destination() const {
  if (!path_exists(path)) return;
  if (!overwrite) {
    throw_error(ErrorCode::Io, path + ": already exists; remove it or ask to overwrite it");
  }
  if (!replaceable(path)) {
    throw_error(ErrorCode::Io, path +
                                   ": exists and is not a zarr array; refusing to "
                                   "replace it, remove it yourself if it should go");
  }
}

namespace {

// True on kernels whose syncfs returns write-back errors (Linux 5.8 and later).
bool syncfs_reports_errors() {
  static const bool reports = [] {
    utsname u;
    int major = 0;
    int minor = 0;
    if (::uname(&u) != 0 || std::sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
    return major > 5 || (major == 5 && minor >= 8);
  }();
  return reports;
}

// fsyncs every file and folder under `dir`, and `dir`.
void fsync_tree(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) raise_io(dir + ": cannot list");
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    if (entry != "." && entry != "..") names.push_back(entry);
  }
  ::closedir(d);
  for (const std::string& entry : names) {
    const std::string path = dir + "/" + entry;
    if (is_directory(path)) {
      fsync_tree(path);
    } else {
      fsync_path(path, O_RDONLY);
    }
  }
  fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

}  // namespace

// Writes the metadata (.zarray or zarr.json) and makes the whole store durable.
void ZarrWriter::State::flush_temp_dir() const {
  const bool v3 = spec.zarr_format == 3;
  const std::string file = temp + (v3 ? "/zarr.json" : "/.zarray");
  const std::string text =
      v3 ? detail::zarr::metadata_text_v3(spec) : detail::zarr::metadata_text(spec);
  {
    const detail::UniqueFd fd = detail::open_fd(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (!fd) raise_io(file + ": cannot create");
    write_all_or_raise(fd.get(), reinterpret_cast<const std::byte*>(text.data()), text.size(),
                       file);
  }
  if (const std::string attrs = v3 ? std::string() : detail::zarr::zattrs_text(spec);
      !attrs.empty()) {
    const std::string zattrs = temp + "/.zattrs";
    const detail::UniqueFd fd = detail::open_fd(zattrs.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (!fd) raise_io(zattrs + ": cannot create");
    write_all_or_raise(fd.get(), reinterpret_cast<const std::byte*>(attrs.data()), attrs.size(),
                       zattrs);
  }
  // Every chunk, folder and metadata file made durable by one syncfs of the file system that
  // holds them (an fsync per file cost a system call and a journal commit per chunk). syncfs
  // reports write-back errors from Linux 5.8 on; older kernels get an fsync per file.
  if (!syncfs_reports_errors()) {
    fsync_tree(temp);
    return;
  }
  const detail::UniqueFd dir = detail::open_fd(temp.c_str(), O_RDONLY | O_DIRECTORY);
  if (!dir) raise_io(temp + ": cannot open to flush");
  if (::syncfs(dir.get()) != 0) raise_io(temp + ": cannot flush to disk");
}

void ZarrWriter::State::move_into_place() const {
  check_destination();
  if (!path_exists(path)) {
    // RENAME_NOREPLACE: a store that appeared meanwhile is not silently replaced.
    if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0) {
      return;
    }
    if (errno == EEXIST || errno == ENOTEMPTY) {
      throw_error(ErrorCode::Io,
                  path + ": appeared while the store was being written; not replaced");
    }
    if (errno != EINVAL && errno != ENOSYS) raise_io(path + ": cannot move the new store in");
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      raise_io(path + ": cannot move the new store in");
    }
    return;
  }
  // Overwrite: swap atomically, so path names the old store or the new one, never neither.
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, path.c_str(), RENAME_EXCHANGE) == 0) {
    std::error_code ec;
    std::filesystem::remove_all(temp, ec);  // now the old store; leftovers are harmless
    return;
  }
  if (errno != EINVAL && errno != ENOSYS) raise_io(path + ": cannot swap in the new store");
  const std::string old =
      parent + "/." + name + ".old-" + std::to_string(::getpid()) + "-" + random_suffix();
  if (::rename(path.c_str(), old.c_str()) != 0) raise_io(path + ": cannot move the old store away");
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::rename(old.c_str(), path.c_str());  // put the old store back
    errno = err;
    raise_io(path + ": cannot move the new store in");
  }
  std::error_code ec;
  std::filesystem::remove_all(old, ec);
}

ZarrWriter::ZarrWriter(const std::string& path, const ZarrSpec& spec, bool overwrite)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  s.path = path;
  while (s.path.size() > 1 && s.path.back() == '/') s.path.pop_back();
  const std::size_t slash = s.path.rfind('/');
  s.parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : s.path.substr(0, slash));
  s.name = slash == std::string::npos ? s.path : s.path.substr(slash + 1);
  if (s.name.empty() || s.name == "." || s.name == ".." || s.name == "/") {
    throw_error(ErrorCode::InvalidArgument, "'" + path + "' does not name a zarr store to create");
  }
  s.spec = spec;
  s.overwrite = overwrite;

  // The spec.
  const std::string where = path + ": ";
  // A chunk or shard shape (`what`) of as many axes as the array's.
  const auto check_axes = [&](const char* what, const Shape& unit) {
    if (unit.size() != spec.shape.size()) {
      throw_error(ErrorCode::InvalidArgument, where + what + " " + format_shape(unit) + " has " +
                                                  std::to_string(unit.size()) +
                                                  " axes, the shape " + format_shape(spec.shape) +
                                                  " has " + std::to_string(spec.shape.size()));
    }
  };
  check_axes("chunks", spec.chunks);
  std::uint64_t chunk_bytes = spec.dtype.itemsize();
  try {
    ArrayMeta::contiguous(spec.dtype, spec.shape, spec.order);  // negative extents, overflow
    for (std::int64_t c : spec.chunks) {
      if (c < 1) {
        throw_error(ErrorCode::InvalidArgument,
                    "chunks " + format_shape(spec.chunks) + " has an extent below 1");
      }
      chunk_bytes = detail::checked_mul(chunk_bytes, static_cast<std::uint64_t>(c), "chunk");
    }
  } catch (const Error& e) {
    throw_error(e.code(), where + e.what());
  }
  if (chunk_bytes > kMaxDecodedChunkBytes) {  // what could be written could not be read back
    throw_error(ErrorCode::InvalidArgument, where + "chunks " + format_shape(spec.chunks) +
                                                " make chunks of over 2 GiB; use smaller chunks");
  }
  s.chunk_nbytes = chunk_bytes;
  if (spec.compressor == Compressor::Blosc &&
      chunk_bytes > static_cast<std::uint64_t>(BLOSC_MAX_BUFFERSIZE)) {
    throw_error(ErrorCode::InvalidArgument, where + "blosc cannot compress chunks of " +
                                                std::to_string(chunk_bytes) +
                                                " bytes (its limit is 2 GiB); use smaller chunks");
  }
  if (s.spec.fill.empty()) s.spec.fill.assign(spec.dtype.itemsize(), std::byte{0});
  if (s.spec.fill.size() != spec.dtype.itemsize()) {
    throw_error(ErrorCode::InvalidArgument, where + "fill value has " +
                                                std::to_string(spec.fill.size()) +
                                                " bytes, the dtype " + spec.dtype.numpy_descr() +
                                                " " + std::to_string(spec.dtype.itemsize()));
  }
  // Levels and blosc's codec name: encoding one byte reports them as the codecs word them.
  try {
    const std::byte probe[1] = {};
    switch (spec.compressor) {
      case Compressor::None:
        break;
      case Compressor::Zlib:
        if (spec.level < 1 || spec.level > 9) {
          throw_error(ErrorCode::InvalidArgument,
                      "zlib level " + std::to_string(spec.level) + " is out of range (use 1..9)");
        }
        break;
      case Compressor::Zstd:
        if (spec.level < 1 || spec.level > 22) {
          throw_error(ErrorCode::InvalidArgument,
                      "zstd level " + std::to_string(spec.level) + " is out of range (use 1..22)");
        }
        break;
      case Compressor::Blosc:
        detail::blosc_encode(probe, 1, 1, spec.blosc_cname, spec.level, spec.blosc_shuffle);
        break;
    }
  } catch (const Error& e) {
    throw_error(e.code(), where + e.what());
  }
  s.grid.resize(spec.shape.size());
  for (std::size_t i = 0; i < spec.shape.size(); ++i) {
    s.grid[i] = spec.shape[i] / spec.chunks[i] + (spec.shape[i] % spec.chunks[i] != 0);
  }
  if (!spec.dimension_names.empty() && spec.dimension_names.size() != spec.shape.size()) {
    throw_error(ErrorCode::InvalidArgument, where + std::to_string(spec.dimension_names.size()) +
                                                " dimension names for " +
                                                std::to_string(spec.shape.size()) + " axes");
  }
  try {
    detail::zarr::zattrs_text(spec);  // the attributes: a JSON object
  } catch (const Error& e) {
    throw_error(e.code(), where + e.what());
  }
  if (spec.zarr_format != 2 && spec.zarr_format != 3) {
    throw_error(ErrorCode::InvalidArgument,
                where + "zarr format " + std::to_string(spec.zarr_format) + " is not 2 or 3");
  }
  s.codecs = detail::zarr::writer_codecs(spec);
  if (!spec.shards.empty()) {
    if (spec.zarr_format != 3) {
      throw_error(ErrorCode::InvalidArgument, where + "shards need zarr format 3");
    }
    check_axes("shards", spec.shards);
    std::uint64_t shard_bytes = spec.dtype.itemsize();
    std::uint64_t per_shard = 1;
    s.per_shard.resize(spec.shape.size());
    s.shard_grid.resize(spec.shape.size());
    for (std::size_t i = 0; i < spec.shape.size(); ++i) {
      if (spec.shards[i] < 1 || spec.shards[i] % spec.chunks[i] != 0) {
        throw_error(ErrorCode::InvalidArgument, where + "shards " + format_shape(spec.shards) +
                                                    " are not a multiple of the chunks " +
                                                    format_shape(spec.chunks) + " on every axis");
      }
      s.per_shard[i] = spec.shards[i] / spec.chunks[i];
      s.shard_grid[i] = s.grid[i] / s.per_shard[i] + (s.grid[i] % s.per_shard[i] != 0);
      shard_bytes =
          detail::checked_mul(shard_bytes, static_cast<std::uint64_t>(spec.shards[i]), "shard");
      per_shard = detail::checked_mul(per_shard, static_cast<std::uint64_t>(s.per_shard[i]),
                                      "chunks per shard");
    }
    if (shard_bytes > kMaxDecodedChunkBytes || per_shard > detail::zarr::kMaxChunksPerShard) {
      throw_error(ErrorCode::InvalidArgument,
                  where + "shards " + format_shape(spec.shards) +
                      " are over 2 GiB or hold over 2^20 chunks; use smaller shards");
    }
    s.shard_nbytes = shard_bytes;
  }

  s.check_destination();
  s.owner = ::getpid();
  s.temp = s.parent + "/." + s.name + ".tmp-" + std::to_string(s.owner) + "-" + random_suffix();
  if (::mkdir(s.temp.c_str(), 0777) != 0) {
    raise_io(path + ": cannot create the temporary directory " + s.temp);
  }
}

ZarrWriter::~ZarrWriter() {
  if (!state_ || state_->committed || state_->temp.empty()) return;
  // A forked worker that leaves through normal exit must not remove its parent's work.
  if (::getpid() != state_->owner) return;
  std::error_code ec;
  std::filesystem::remove_all(state_->temp, ec);
}

const ZarrSpec& ZarrWriter::spec() const noexcept { return state_->spec; }

Shape ZarrWriter::grid() const { return state_->grid; }

std::uint64_t ZarrWriter::chunk_nbytes() const noexcept { return state_->chunk_nbytes; }

Shape ZarrWriter::shard_grid() const { return state_->shard_grid; }

std::uint64_t ZarrWriter::shard_nbytes() const noexcept { return state_->shard_nbytes; }

namespace {

// Throws unless `coord` is a cell of `grid` and the store is still being written.
void check_cell(const std::string& path, bool committed, const Shape& coord, const Shape& grid,
                const char* what) {
  if (committed) throw_error(ErrorCode::InvalidArgument, path + ": write after commit()");
  bool inside = coord.size() == grid.size();
  for (std::size_t i = 0; inside && i < coord.size(); ++i) {
    inside = coord[i] >= 0 && coord[i] < grid[i];
  }
  if (!inside) {
    throw_error(ErrorCode::InvalidArgument, path + ": " + what + " coordinate " +
                                                format_shape(coord) + " lies outside the " + what +
                                                " grid " + format_shape(grid));
  }
}

// Copies the chunk at chunk coordinate `at` (within the shard) out of a shard buffer; both are
// dense in `order`.
void copy_chunk_out(const std::byte* shard, const Shape& shard_shape, const Shape& chunk_shape,
                    const Shape& at, Order order, std::size_t itemsize, std::byte* chunk) {
  const std::size_t nd = shard_shape.size();
  if (nd == 0) {
    std::memcpy(chunk, shard, itemsize);
    return;
  }
  // Axes in memory order, slowest first.
  Shape outer(nd), inner(nd), start(nd);
  for (std::size_t i = 0; i < nd; ++i) {
    const std::size_t a = order == Order::C ? i : nd - 1 - i;
    outer[i] = shard_shape[a];
    inner[i] = chunk_shape[a];
    start[i] = at[a] * chunk_shape[a];
  }
  const std::size_t row = static_cast<std::size_t>(inner[nd - 1]) * itemsize;
  Shape idx(nd, 0);
  for (;;) {
    std::int64_t from = 0;
    for (std::size_t i = 0; i < nd; ++i) from = from * outer[i] + start[i] + idx[i];
    std::memcpy(chunk, shard + from * static_cast<std::int64_t>(itemsize), row);
    chunk += row;
    std::size_t ax = nd - 1;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++idx[ax] < inner[ax]) break;
      idx[ax] = 0;
    }
  }
}

}  // namespace

void ZarrWriter::write_chunk(const Shape& coord, const std::byte* data) const {
  const State& s = *state_;
  if (!s.spec.shards.empty()) {
    throw_error(ErrorCode::InvalidArgument, s.path + ": a sharded store is written by write_shard");
  }
  check_cell(s.path, s.committed, coord, s.grid, "chunk");
  const std::string file = s.file_for(coord);
  if (s.all_fill(data)) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) raise_io(file + ": cannot remove");
    return;
  }
  if (s.codecs.empty()) {
    s.write_file(file, data, s.chunk_nbytes);
    return;
  }
  thread_local std::vector<std::byte> encoded;  // reused: no chunk pays for fresh pages
  const std::size_t size = s.encode(data, encoded);
  s.write_file(file, encoded.data(), size);
  release_if_large(encoded);
}

void ZarrWriter::write_shard(const Shape& coord, const std::byte* data) const {
  const State& s = *state_;
  if (s.spec.shards.empty()) {
    throw_error(ErrorCode::InvalidArgument, s.path + ": write_shard on a store without shards");
  }
  check_cell(s.path, s.committed, coord, s.shard_grid, "shard");
  const std::size_t nd = coord.size();
  std::uint64_t per_shard = 1;
  for (std::int64_t k : s.per_shard) per_shard *= static_cast<std::uint64_t>(k);
  std::vector<std::uint64_t> index(2 * per_shard, UINT64_MAX);
  std::vector<std::byte> body, chunk(s.chunk_nbytes);
  Shape at(nd, 0);
  for (std::uint64_t c = 0; c < per_shard; ++c) {
    // `at`: the chunk's coordinate within the shard, C order over the shard's chunk grid.
    std::uint64_t rest = c;
    bool inside = true;
    for (std::size_t a = nd; a-- > 0;) {
      at[a] = static_cast<std::int64_t>(rest % static_cast<std::uint64_t>(s.per_shard[a]));
      rest /= static_cast<std::uint64_t>(s.per_shard[a]);
      inside = inside && coord[a] * s.per_shard[a] + at[a] < s.grid[a];
    }
    if (!inside) continue;  // past the array's edge: never stored
    copy_chunk_out(data, s.spec.shards, s.spec.chunks, at, s.spec.order, s.spec.dtype.itemsize(),
                   chunk.data());
    if (s.all_fill(chunk.data())) continue;
    index[2 * c] = body.size();
    if (s.codecs.empty()) {
      body.insert(body.end(), chunk.begin(), chunk.end());
    } else {
      thread_local std::vector<std::byte> encoded;
      const std::size_t size = s.encode(chunk.data(), encoded);
      body.insert(body.end(), encoded.begin(), encoded.begin() + static_cast<std::ptrdiff_t>(size));
      release_if_large(encoded);
    }
    index[2 * c + 1] = body.size() - index[2 * c];
  }
  const std::string file = s.file_for(coord);
  if (body.empty() &&
      std::all_of(index.begin(), index.end(), [](std::uint64_t v) { return v == UINT64_MAX; })) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) raise_io(file + ": cannot remove");
    return;
  }
  // The index: u64 little endian, then its CRC-32C (little endian).
  const std::size_t index_at = body.size();
  body.resize(index_at + 8 * index.size() + 4);
  for (std::size_t e = 0; e < index.size(); ++e) {
    for (int b = 0; b < 8; ++b) {
      body[index_at + 8 * e + static_cast<std::size_t>(b)] =
          static_cast<std::byte>((index[e] >> (8 * b)) & 0xFF);
    }
  }
  const std::uint32_t crc = detail::crc32c(body.data() + index_at, 8 * index.size());
  for (int b = 0; b < 4; ++b) {
    body[index_at + 8 * index.size() + static_cast<std::size_t>(b)] =
        static_cast<std::byte>((crc >> (8 * b)) & 0xFF);
  }
  s.write_file(file, body.data(), body.size());
}

void ZarrWriter::commit() {
  State& s = *state_;
  if (s.committed) return;
  s.flush_temp_dir();
  s.move_into_place();
  s.committed = true;
  fsync_path(s.parent, O_RDONLY | O_DIRECTORY);  // makes the rename itself durable
}

}  // namespace mmc
