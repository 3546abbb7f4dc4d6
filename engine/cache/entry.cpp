// Cache entry files: writing them atomically, reading them back only when every check passes.
#include "cache/entry.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cache/xxh.hpp"
#include "mmc/output.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {
namespace {

constexpr char kEntryMagic[8] = {'M', 'M', 'C', 'C', 'A', 'C', 'H', 'E'};
constexpr std::uint32_t kLayoutVersion = 1;
constexpr std::size_t kFixedSize = 72;
constexpr std::size_t kChecksumAt = 56;
constexpr std::size_t kEntryAlign = 64;
// `what` is a one-line summary; anything longer is a corrupt header, not a summary.
constexpr std::uint32_t kMaxWhat = 64 * 1024;

void put_le(std::string& out, std::size_t at, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i)
    out[at + static_cast<std::size_t>(i)] = static_cast<char>(v >> (8 * i));
}

std::uint64_t get_le(const std::string& in, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>(in[at + static_cast<std::size_t>(i)])} << (8 * i);
  }
  return v;
}

std::uint64_t align_up(std::uint64_t n) {
  return (n + kEntryAlign - 1) / kEntryAlign * kEntryAlign;
}

// Reads exactly `size` bytes at `offset`; false (errno set, 0 at end of file) otherwise.
bool read_exact(int fd, void* data, std::size_t size, std::uint64_t offset) {
  const ssize_t n = pread_full(fd, data, size, offset);
  if (n >= 0 && static_cast<std::size_t>(n) < size) errno = 0;
  return n >= 0 && static_cast<std::size_t>(n) == size;
}

std::string make_header(const CacheKey& key, EntryKind kind, const std::string& what,
                        const Bytes& payload) {
  const std::uint64_t offset = align_up(kFixedSize + what.size());
  std::string h(offset, '\0');
  std::memcpy(h.data(), kEntryMagic, sizeof kEntryMagic);
  put_le(h, 8, kLayoutVersion, 4);
  put_le(h, 12, static_cast<std::uint32_t>(kind), 4);
  put_le(h, 16, key.high, 8);
  put_le(h, 24, key.low, 8);
  put_le(h, 32, offset, 8);
  put_le(h, 40, payload.size(), 8);
  put_le(h, 48, xxh3_64(payload.data(), payload.size()), 8);
  put_le(h, 64, what.size(), 4);
  std::memcpy(h.data() + kFixedSize, what.data(), what.size());
  put_le(h, kChecksumAt, xxh3_64(h.data(), h.size()), 8);
  return h;
}

// Reads and checks the header of an open entry of `file_size` bytes into `*header`.
bool parse_entry_header(int fd, std::uint64_t file_size, EntryHeader* header,
                        std::string* problem) {
  std::string h(kFixedSize, '\0');
  if (file_size < kFixedSize || !read_exact(fd, h.data(), kFixedSize, 0)) {
    *problem = "file of " + std::to_string(file_size) + " bytes is shorter than an entry header";
    return false;
  }
  if (std::memcmp(h.data(), kEntryMagic, sizeof kEntryMagic) != 0) {
    *problem = "not a cache entry (bad magic)";
    return false;
  }
  const auto version = static_cast<std::uint32_t>(get_le(h, 8, 4));
  if (version != kLayoutVersion) {
    *problem = "entry layout version " + std::to_string(version) + ", this build reads " +
               std::to_string(kLayoutVersion);
    return false;
  }
  header->kind = static_cast<EntryKind>(get_le(h, 12, 4));
  header->key = CacheKey{get_le(h, 16, 8), get_le(h, 24, 8)};
  header->payload_offset = get_le(h, 32, 8);
  header->payload_size = get_le(h, 40, 8);
  header->payload_checksum = get_le(h, 48, 8);
  const auto what_len = static_cast<std::uint32_t>(get_le(h, 64, 4));
  if (what_len > kMaxWhat || header->payload_offset != align_up(kFixedSize + what_len) ||
      header->payload_size > file_size || header->payload_offset > file_size ||
      header->payload_offset + header->payload_size != file_size) {
    *problem = "header says payload of " + std::to_string(header->payload_size) +
               " bytes at offset " + std::to_string(header->payload_offset) + ", file has " +
               std::to_string(file_size) + " bytes (truncated?)";
    return false;
  }
  h.resize(header->payload_offset);
  if (!read_exact(fd, h.data() + kFixedSize, h.size() - kFixedSize, kFixedSize)) {
    *problem = "cannot read the header";
    return false;
  }
  const std::uint64_t stored = get_le(h, kChecksumAt, 8);
  put_le(h, kChecksumAt, 0, 8);
  if (xxh3_64(h.data(), h.size()) != stored) {
    *problem = "header checksum mismatch";
    return false;
  }
  header->what.assign(h.data() + kFixedSize, what_len);
  return true;
}

}  // namespace

ReadResult read_entry(const std::string& path, const CacheKey& key, EntryKind kind) {
  ReadResult r;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return r;  // no entry, or no folder yet
    r.status = ReadStatus::Unreadable;
    r.problem = std::strerror(errno);
    return r;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    r.status = ReadStatus::Unreadable;
    r.problem = std::strerror(errno);
    return r;
  }
  r.dev = st.st_dev;
  r.ino = st.st_ino;
  r.status = ReadStatus::Corrupt;
  EntryHeader header;
  if (!parse_entry_header(fd.get(), static_cast<std::uint64_t>(st.st_size), &header, &r.problem)) {
    return r;
  }
  if (header.key != key || header.kind != kind) {
    r.problem = "entry holds key " + header.key.hex() + " (kind " +
                std::to_string(static_cast<std::uint32_t>(header.kind)) + "), expected " +
                key.hex();
    return r;
  }
  r.payload.resize(header.payload_size);
  if (!read_exact(fd.get(), r.payload.data(), r.payload.size(), header.payload_offset)) {
    r.problem = "cannot read the payload";
    r.payload.clear();
    return r;
  }
  if (xxh3_64(r.payload.data(), r.payload.size()) != header.payload_checksum) {
    r.problem = "payload checksum mismatch";
    r.payload.clear();
    return r;
  }
  r.status = ReadStatus::Ok;
  // Last use for LRU. A read-only cache still serves hits; it just cannot record them.
  const struct timespec times[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  (void)::futimens(fd.get(), times);
  return r;
}

bool read_entry_header(const std::string& path, EntryHeader* header, std::string* problem) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!fd || ::fstat(fd.get(), &st) != 0) {
    *problem = std::strerror(errno);
    return false;
  }
  return parse_entry_header(fd.get(), static_cast<std::uint64_t>(st.st_size), header, problem);
}

void write_entry(const std::string& path, const CacheKey& key, EntryKind kind,
                 const std::string& what, const Bytes& payload) {
  const std::string header = make_header(key, kind, what, payload);
  AtomicFile file(path);
  file.write(header.data(), header.size());
  file.write(payload.data(), payload.size());
  file.commit();
}

void remove_entry_if_same(const std::string& path, std::uint64_t dev, std::uint64_t ino) noexcept {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && static_cast<std::uint64_t>(st.st_dev) == dev &&
      static_cast<std::uint64_t>(st.st_ino) == ino) {
    ::unlink(path.c_str());
  }
}

}  // namespace mmc::detail
