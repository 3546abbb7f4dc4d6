// MappedFile: numpy.memmap's modes over mmap(2), with page-rounded offsets and madvise hints.
#include "mmc/mapped_file.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "io/open_read_only.hpp"
#include "mmc/array.hpp"
#include "mmc/error.hpp"
#include "os/exact_io.hpp"

// Linux 5.14; older C library headers lack the constant even where the kernel has it.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

namespace mmc {
namespace {

std::uint64_t page_size() noexcept {
  static const std::uint64_t size = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

std::uint64_t round_down(std::uint64_t v, std::uint64_t page) noexcept { return v - v % page; }

std::uint64_t round_up(std::uint64_t v, std::uint64_t page) noexcept {
  return round_down(v + page - 1, page);
}

const char* mode_name(MapMode mode) noexcept {
  switch (mode) {
    case MapMode::ReadOnly:
      return "r";
    case MapMode::ReadWrite:
      return "r+";
    case MapMode::Create:
      return "w+";
    case MapMode::CopyOnWrite:
      return "c";
  }
  return "?";
}

// Throws for a failed system call; `err` is its errno, taken before building the message.
[[noreturn]] void raise_os(int err, const std::string& path, const std::string& what) {
  const ErrorCode code = (err == ENOENT || err == ENOTDIR) ? ErrorCode::NotFound : ErrorCode::Io;
  throw Error(code, path + ": " + what + ": " + std::strerror(err));
}

// Rejects what is not a regular file before open(2), which would block on a FIFO. A missing
// file is left for open(2) to report with the mode's own wording.
void require_regular_file(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is not a regular file");
  }
}

}  // namespace

MapMode parse_map_mode(const std::string& text) {
  // numpy.memmap accepts the long spellings too.
  if (text == "r" || text == "readonly") return MapMode::ReadOnly;
  if (text == "r+" || text == "readwrite") return MapMode::ReadWrite;
  if (text == "w+" || text == "write") return MapMode::Create;
  if (text == "c" || text == "copyonwrite") return MapMode::CopyOnWrite;
  throw Error(ErrorCode::InvalidArgument,
              "bad map mode '" + text + "' (expected r, r+, w+ or c, as numpy.memmap)");
}

MappedFile MappedFile::open(const std::string& path, MapMode mode, std::uint64_t offset,
                            std::uint64_t length) {
  if (mode == MapMode::Create && length == kToEnd) {
    throw Error(ErrorCode::InvalidArgument,
                path + ": mode w+ needs the length of the file to create");
  }
  // For w+, checked before O_TRUNC destroys anything.
  const std::uint64_t create_size =
      mode == MapMode::Create
          ? detail::checked_add(offset, length, (path + ": offset + length").c_str())
          : 0;
  require_regular_file(path);

  int flags = 0;
  switch (mode) {
    case MapMode::ReadOnly:
    case MapMode::CopyOnWrite:
      flags |= O_RDONLY;
      break;
    case MapMode::ReadWrite:
      flags |= O_RDWR;
      break;
    case MapMode::Create:
      flags |= O_RDWR | O_CREAT | O_TRUNC;
      break;
  }
  detail::UniqueFd fd = detail::open_fd(path.c_str(), flags, 0666);
  if (!fd) {
    if (errno == EISDIR) {
      throw Error(ErrorCode::InvalidArgument, path + ": is a directory, expected a file");
    }
    const int err = errno;
    raise_os(err, path, std::string("cannot open (mode ") + mode_name(mode) + ")");
  }

  if (mode == MapMode::Create && ::ftruncate(fd.get(), static_cast<off_t>(create_size)) != 0) {
    const int err = errno;
    raise_os(err, path, "cannot extend to " + std::to_string(create_size) + " bytes");
  }
  return map_owned(fd.release(), path, mode, offset, length);
}

MappedFile MappedFile::map(int fd, const std::string& path, MapMode mode, std::uint64_t offset,
                           std::uint64_t length) {
  detail::UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) raise_os(errno, path, "cannot duplicate its descriptor");
  return map_owned(copy.release(), path, mode, offset, length);
}

MappedFile MappedFile::map_owned(int owned, const std::string& path, MapMode mode,
                                 std::uint64_t offset, std::uint64_t length) {
  detail::UniqueFd fd(owned);
  const struct stat st = detail::stat_regular_file(fd.get(), path);

  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (offset > file_size) {
    throw Error(ErrorCode::Corrupt, path + ": offset " + std::to_string(offset) +
                                        " is past the end of the file (" +
                                        std::to_string(file_size) + " bytes)");
  }
  if (length == kToEnd) {
    length = file_size - offset;
  } else if (length > file_size - offset) {
    throw Error(ErrorCode::Corrupt,
                path + ": needs " + std::to_string(offset) + " + " + std::to_string(length) +
                    " bytes (offset + length), file has " + std::to_string(file_size) + " bytes");
  }

  MappedFile m;
  m.path_ = path;
  m.mode_ = mode;
  m.offset_ = offset;
  m.length_ = length;
  m.device_ = static_cast<std::uint64_t>(st.st_dev);
  m.inode_ = static_cast<std::uint64_t>(st.st_ino);
  if (length == 0) {  // mmap refuses empty mappings; an empty view needs none
    m.fd_ = fd.release();
    return m;
  }

  const std::uint64_t page = page_size();
  const std::uint64_t map_offset = round_down(offset, page);
  const std::uint64_t delta = offset - map_offset;
  const std::uint64_t map_length = delta + length;  // <= file_size, which fits off_t
  if (map_length > SIZE_MAX) {
    throw Error(ErrorCode::InvalidArgument,
                path + ": " + std::to_string(length) + " bytes do not fit the address space");
  }
  const int prot = mode == MapMode::ReadOnly ? PROT_READ : PROT_READ | PROT_WRITE;
  const int map_flags = mode == MapMode::CopyOnWrite ? MAP_PRIVATE : MAP_SHARED;
  void* base = ::mmap(nullptr, static_cast<std::size_t>(map_length), prot, map_flags, fd.get(),
                      static_cast<off_t>(map_offset));
  if (base == MAP_FAILED) {
    const int err = errno;
    raise_os(err, path,
             "cannot map " + std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                 " (mode " + mode_name(mode) + ")");
  }
  m.base_ = static_cast<std::byte*>(base);
  m.map_length_ = static_cast<std::size_t>(map_length);
  m.data_ = m.base_ + delta;
  m.fd_ = fd.release();
  return m;
}

MappedFile MappedFile::borrow(const std::byte* data, std::uint64_t length, std::string label) {
  MappedFile m;
  m.path_ = std::move(label);
  m.data_ = const_cast<std::byte*>(data);  // ReadOnly: mutable_data() is never called
  m.length_ = length;
  m.borrowed_ = true;
  return m;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      map_length_(std::exchange(other.map_length_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      length_(std::exchange(other.length_, 0)),
      offset_(std::exchange(other.offset_, 0)),
      mode_(other.mode_),
      device_(other.device_),
      inode_(other.inode_),
      borrowed_(std::exchange(other.borrowed_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    close();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    map_length_ = std::exchange(other.map_length_, 0);
    data_ = std::exchange(other.data_, nullptr);
    length_ = std::exchange(other.length_, 0);
    offset_ = std::exchange(other.offset_, 0);
    mode_ = other.mode_;
    device_ = other.device_;
    inode_ = other.inode_;
    borrowed_ = std::exchange(other.borrowed_, false);
  }
  return *this;
}

MappedFile::~MappedFile() { close(); }

void MappedFile::close_descriptor() noexcept {
  detail::UniqueFd(std::exchange(fd_, -1));  // closes it
}

void MappedFile::close() noexcept {
  if (base_ != nullptr) ::munmap(base_, map_length_);
  detail::UniqueFd(std::exchange(fd_, -1));  // closes it
  base_ = nullptr;
  map_length_ = 0;
  data_ = nullptr;
  length_ = 0;
  borrowed_ = false;
}

void MappedFile::advise(Access access) const noexcept {
  if (base_ == nullptr) return;
  int advice = MADV_NORMAL;
  if (access == Access::Sequential) advice = MADV_SEQUENTIAL;
  if (access == Access::Random) advice = MADV_RANDOM;
  ::madvise(base_, map_length_, advice);  // a hint: failure changes nothing we rely on
}

namespace {

// A page-aligned address range inside a mapping, or empty.
struct PageRange {
  std::byte* start = nullptr;
  std::size_t length = 0;
};

// Clips [pos, pos + len) (relative to data) to [0, size) and widens it to whole pages; the
// widened range stays inside the mapping's pages since base is page-aligned.
PageRange page_range(std::byte* base, std::byte* data, std::uint64_t size, std::uint64_t pos,
                     std::uint64_t len) noexcept {
  if (base == nullptr || pos >= size) return {};
  const std::uint64_t end = len > size - pos ? size : pos + len;
  const std::uint64_t page = page_size();
  const auto delta = static_cast<std::uint64_t>(data - base);
  const std::uint64_t first = round_down(delta + pos, page);
  const std::uint64_t last = round_up(delta + end, page);
  return {base + first, static_cast<std::size_t>(last - first)};
}

}  // namespace

void MappedFile::will_need(std::uint64_t pos, std::uint64_t len) const noexcept {
  const PageRange r = page_range(base_, data_, length_, pos, len);
  if (r.length != 0) ::madvise(r.start, r.length, MADV_WILLNEED);
}

void MappedFile::populate(std::uint64_t pos, std::uint64_t len) const noexcept {
  const PageRange r = page_range(base_, data_, length_, pos, len);
  if (r.length == 0) return;
  if (::madvise(r.start, r.length, MADV_POPULATE_READ) == 0 || errno != EINVAL) return;
  // The kernel predates MADV_POPULATE_READ: fault the pages in by reading one byte of each.
  const std::uint64_t page = page_size();
  unsigned char sink = 0;
  for (std::size_t at = 0; at < r.length; at += page) {
    sink ^= *reinterpret_cast<const volatile unsigned char*>(r.start + at);
  }
  static_cast<void>(sink);
}

void MappedFile::dont_need(std::uint64_t pos, std::uint64_t len) const noexcept {
  // On a private mapping MADV_DONTNEED throws away the caller's copy-on-write changes.
  if (mode_ == MapMode::CopyOnWrite) return;
  const PageRange r = page_range(base_, data_, length_, pos, len);
  if (r.length != 0) ::madvise(r.start, r.length, MADV_DONTNEED);
}

void MappedFile::sync() const {
  if (base_ == nullptr || (mode_ != MapMode::ReadWrite && mode_ != MapMode::Create)) return;
  if (::msync(base_, map_length_, MS_SYNC) != 0) {
    const int err = errno;
    raise_os(err, path_, "cannot flush " + std::to_string(length_) + " mapped bytes");
  }
}

}  // namespace mmc
