// A file mapped into memory with numpy.memmap's modes, owned RAII-style.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mmc {

// numpy.memmap's modes: r (read-only, shared), r+ (read-write, shared, file must exist),
// w+ (create or truncate to `length`, read-write), c (copy-on-write: writes stay private).
enum class MapMode : std::uint8_t { ReadOnly, ReadWrite, Create, CopyOnWrite };

// Parses "r", "r+", "w+", "c". Throws Error(InvalidArgument).
MapMode parse_map_mode(const std::string& text);

// Access pattern hints passed to madvise.
enum class Access : std::uint8_t { Normal, Sequential, Random };

// A move-only mapping of [offset, offset + length) of a file. The offset need not be page
// aligned: the mapping starts at the page below and data() points at `offset`.
// Thread safety: const methods are safe from any thread; the mapping stays valid in forked
// children (MAP_SHARED for r/r+/w+, MAP_PRIVATE for c).
class MappedFile {
 public:
  MappedFile() = default;
  // Maps `length` bytes at `offset` of `path`; length == kToEnd maps to the end of the file.
  // REQUIRES for ReadOnly/ReadWrite/CopyOnWrite: the file exists and holds offset + length
  // bytes; otherwise throws Error(NotFound | Corrupt | Io) naming the path.
  // Create: makes (or truncates) the file to offset + length bytes.
  static constexpr std::uint64_t kToEnd = ~std::uint64_t{0};
  static MappedFile open(const std::string& path, MapMode mode, std::uint64_t offset = 0,
                         std::uint64_t length = kToEnd);
  // Maps a file the caller already opened (a reader that looked at its first bytes, such as a
  // .npy header): `fd` refers to `path`, opened read-only for r and c, read-write for r+ and
  // w+ (w+ maps what is there: the caller sized the file). The caller keeps `fd`; the mapping
  // keeps a copy of it (whatever became of the path since, these are the bytes of that open
  // file). Same checks and errors as open().
  static MappedFile map(int fd, const std::string& path, MapMode mode, std::uint64_t offset = 0,
                        std::uint64_t length = kToEnd);
  // Not a mapping: `length` bytes at `data` that the caller owns, read in place (an in-memory
  // array the Python module hands over without a copy). REQUIRES: they stay alive and
  // unchanged while any reader uses them; processes forked meanwhile see them as they were.
  // ReadOnly, no descriptor (a warm pool's workers cannot reach them), `label` names them in
  // messages; the hints (advise, will_need, populate, dont_need) do nothing: they would drop
  // the caller's pages.
  static MappedFile borrow(const std::byte* data, std::uint64_t length, std::string label);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const noexcept { return data_; }
  std::byte* mutable_data() const noexcept { return data_; }  // REQUIRES: mode != ReadOnly
  std::uint64_t size() const noexcept { return length_; }
  std::uint64_t offset() const noexcept { return offset_; }
  const std::string& path() const noexcept { return path_; }
  MapMode mode() const noexcept { return mode_; }
  // The mapped file's identity (st_dev, st_ino) as fstat saw it when mapped: another process
  // that opens path() again compares them to know it reached the same file.
  std::uint64_t device() const noexcept { return device_; }
  std::uint64_t inode() const noexcept { return inode_; }
  // The mapped file, held open (close-on-exec) while the mapping lives, so another process can
  // be handed these very bytes (SCM_RIGHTS) even after the path was renamed over or removed.
  // -1 once closed.
  int descriptor() const noexcept { return fd_; }
  // Closes the descriptor and keeps the mapping: for a reader that holds many mappings (a zarr
  // store's chunks) and must not hold as many open files (RLIMIT_NOFILE is often 1024).
  void close_descriptor() noexcept;
  bool valid() const noexcept { return base_ != nullptr || length_ == 0 || borrowed_; }
  // Made by borrow().
  bool borrowed() const noexcept { return borrowed_; }

  // Whole-mapping access hint.
  void advise(Access access) const noexcept;
  // Hints on a byte range relative to data(): will_need starts read-ahead, populate faults the
  // pages in now (MADV_POPULATE_READ where the kernel has it, else touches one byte per page),
  // dont_need lets the kernel drop clean pages behind a scan. Ranges are clipped to the mapping.
  void will_need(std::uint64_t pos, std::uint64_t len) const noexcept;
  void populate(std::uint64_t pos, std::uint64_t len) const noexcept;
  void dont_need(std::uint64_t pos, std::uint64_t len) const noexcept;

  // Flushes writes of r+/w+ mappings to the file (msync). Throws Error(Io).
  void sync() const;
  // Unmaps now and closes the descriptor; further access is undefined. Idempotent.
  void close() noexcept;

 private:
  // map() over `owned`, a descriptor the mapping owns from the call (closed if it throws).
  static MappedFile map_owned(int owned, const std::string& path, MapMode mode,
                              std::uint64_t offset, std::uint64_t length);

  std::string path_;
  int fd_ = -1;
  std::byte* base_ = nullptr;  // page-aligned start of the mapping
  std::size_t map_length_ = 0;
  std::byte* data_ = nullptr;  // base_ + (offset_ % page size)
  std::uint64_t length_ = 0;
  std::uint64_t offset_ = 0;
  MapMode mode_ = MapMode::ReadOnly;
  std::uint64_t device_ = 0;
  std::uint64_t inode_ = 0;
  bool borrowed_ = false;
};

}  // namespace mmc
