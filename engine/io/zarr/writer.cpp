// ZarrWriter: zarr v2 stores written crash-safely (hidden temporary directory, chunks renamed
// into it, .zarray last, the directory renamed into place on commit).
//
// Choices:
// - Chunks whose bytes are all the fill value are not written (zarr-python's
//   write_empty_chunks=False): readers give the fill value for a missing chunk, so the array
//   reads the same and sparse outputs cost no disk. Rewriting such a chunk removes a file
//   written for it earlier.
// - Chunk files are fsynced once, by commit(), which walks the temporary directory; a worker
//   writes into the page cache only.
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
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "io/codecs.hpp"
#include "io/zarr/metadata.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
using detail::path_exists;
namespace {

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
  pid_t owner = 0;  // only this process removes the temporary directory
  bool committed = false;
  mutable std::atomic<std::uint64_t> counter{0};  // unique temporary chunk names per process

  // The encoded bytes of one chunk (empty for Compressor::None: the data is written as is).
  std::vector<std::byte> encode(const std::byte* data) const;
  void check_destination() const;
  void flush_temp_dir() const;
  void move_into_place() const;
};

std::vector<std::byte> ZarrWriter::State::encode(const std::byte* data) const {
  const std::size_t n = chunk_nbytes;
  switch (spec.compressor) {
    case Compressor::None:
      return {};
    case Compressor::Zlib:
      return detail::zlib_encode(data, n, spec.level, false);
    case Compressor::Zstd:
      return detail::zstd_encode(data, n, spec.level);
    case Compressor::Blosc:
      return detail::blosc_encode(data, n, spec.dtype.itemsize(), spec.blosc_cname, spec.level,
                                  spec.blosc_shuffle);
  }
  return {};
}

void ZarrWriter::State::check_destination() const {
  if (!path_exists(path)) return;
  if (!overwrite) {
    throw_error(ErrorCode::Io, path + ": already exists; remove it or ask to overwrite it");
  }
  if (!replaceable(path)) {
    throw_error(ErrorCode::Io,
                path +
                    ": exists and is not a zarr array (no .zarray inside); refusing to "
                    "replace it, remove it yourself if it should go");
  }
}

// Writes .zarray and makes every file and the directory durable, dropping the temporary files
// of workers that died between creating a chunk and renaming it.
void ZarrWriter::State::flush_temp_dir() const {
  const std::string zarray = temp + "/.zarray";
  const std::string text = detail::zarr::metadata_text(spec);
  {
    const detail::UniqueFd fd = detail::open_fd(zarray.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (!fd) raise_io(zarray + ": cannot create");
    write_all_or_raise(fd.get(), reinterpret_cast<const std::byte*>(text.data()), text.size(),
                       zarray);
    if (::fsync(fd.get()) != 0) raise_io(zarray + ": cannot flush to disk");
  }
  DIR* d = ::opendir(temp.c_str());
  if (d == nullptr) raise_io(temp + ": cannot list");
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    if (entry != "." && entry != ".." && entry != ".zarray") names.push_back(entry);
  }
  ::closedir(d);
  for (const std::string& entry : names) {
    const std::string file = temp + "/" + entry;
    if (entry.find(".part-") != std::string::npos) {
      ::unlink(file.c_str());
      continue;
    }
    fsync_path(file, O_RDONLY);
  }
  fsync_path(temp, O_RDONLY | O_DIRECTORY);
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
  if (spec.chunks.size() != spec.shape.size()) {
    throw_error(ErrorCode::InvalidArgument, where + "chunks " + format_shape(spec.chunks) +
                                                " has " + std::to_string(spec.chunks.size()) +
                                                " axes, the shape " + format_shape(spec.shape) +
                                                " has " + std::to_string(spec.shape.size()));
  }
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
    s.grid[i] = (spec.shape[i] + spec.chunks[i] - 1) / spec.chunks[i];
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

void ZarrWriter::write_chunk(const Shape& coord, const std::byte* data) const {
  const State& s = *state_;
  if (s.committed) {
    throw_error(ErrorCode::InvalidArgument, s.path + ": write_chunk after commit()");
  }
  if (coord.size() != s.grid.size()) {
    throw_error(ErrorCode::InvalidArgument, s.path + ": chunk coordinate " + format_shape(coord) +
                                                " has " + std::to_string(coord.size()) +
                                                " axes, the array " +
                                                std::to_string(s.grid.size()));
  }
  std::string key;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= s.grid[i]) {
      throw_error(ErrorCode::InvalidArgument, s.path + ": chunk coordinate " + format_shape(coord) +
                                                  " lies outside the chunk grid " +
                                                  format_shape(s.grid));
    }
    if (i) key += '.';
    key += std::to_string(coord[i]);
  }
  if (coord.empty()) key = "0";
  const std::string file = s.temp + "/" + key;

  const std::size_t itemsize = s.spec.dtype.itemsize();
  bool all_fill = true;
  for (std::uint64_t at = 0; at < s.chunk_nbytes && all_fill; at += itemsize) {
    all_fill = std::memcmp(data + at, s.spec.fill.data(), itemsize) == 0;
  }
  if (all_fill) {
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) raise_io(file + ": cannot remove");
    return;
  }

  const std::vector<std::byte> encoded = s.encode(data);
  const std::byte* bytes = s.spec.compressor == Compressor::None ? data : encoded.data();
  const std::size_t size = s.spec.compressor == Compressor::None ? s.chunk_nbytes : encoded.size();
  const std::string part =
      file + ".part-" + std::to_string(::getpid()) + "-" + std::to_string(s.counter.fetch_add(1));
  detail::UniqueFd fd = detail::open_fd(part.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0666);
  if (!fd) raise_io(part + ": cannot create chunk file");
  try {
    write_all_or_raise(fd.get(), bytes, size, part);
    if (!fd.close()) raise_io(part + ": cannot write");
    if (::rename(part.c_str(), file.c_str()) != 0) raise_io(file + ": cannot rename chunk");
  } catch (...) {
    ::unlink(part.c_str());
    throw;
  }
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
