// SharedSegment: memfd first, then an unlinked file in the temp folder; written with pwrite so a
// full tmpfs reports ENOSPC instead of raising SIGBUS on a mapped store.
#include "pool/segment.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "os/exact_io.hpp"
#include "pool/options.hpp"

namespace mmc::detail {
namespace {

bool env_is_set(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0';
}

bool memfd_disabled() {
  const char* value = std::getenv("MMC_DISABLE_MEMFD");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

// memfd with sealing, so the receiver can trust the size it maps. Empty if unavailable.
UniqueFd try_memfd() {
  if (memfd_disabled()) return UniqueFd();
  UniqueFd fd(memfd_create("mmc-segment", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd && errno != ENOSYS && errno != EINVAL) throw_errno("memfd_create");
  return fd;
}

bool has_room(const std::string& folder, std::size_t bytes) {
  struct statvfs info {};
  if (statvfs(folder.c_str(), &info) != 0) return false;
  // Keep some slack: other processes share the folder.
  const unsigned long long free_bytes =
      static_cast<unsigned long long>(info.f_bavail) * info.f_frsize;
  return free_bytes >= static_cast<unsigned long long>(bytes) + (16u << 20);
}

// An unnamed file in `folder`: O_TMPFILE where the file system has it, else a unique name
// unlinked right after open. Mode 0600 either way.
UniqueFd open_unlinked_file(const std::string& folder) {
  UniqueFd fd(open(folder.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (fd) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
    throw_errno("temp folder " + folder);
  }
  std::string path = folder + "/mmc-segment-XXXXXX";
  std::vector<char> name(path.begin(), path.end());
  name.push_back('\0');
  fd.reset(mkostemp(name.data(), O_CLOEXEC));
  if (!fd) throw_errno("temp folder " + folder);
  if (unlink(name.data()) != 0) throw_errno("unlink " + std::string(name.data()));
  return fd;
}

UniqueFd temp_file_for(std::size_t bytes) {
  if (env_is_set("MMC_TEMP_FOLDER")) return open_unlinked_file(std::getenv("MMC_TEMP_FOLDER"));
  if (has_room("/dev/shm", bytes)) return open_unlinked_file("/dev/shm");
  if (env_is_set("TMPDIR")) return open_unlinked_file(std::getenv("TMPDIR"));
  return open_unlinked_file("/tmp");
}

std::string folder_of_fd(int fd) {
  char link[64];
  std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  char target[4096];
  const ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return "segment";
  return std::string(target, static_cast<std::size_t>(n));
}

void write_contents(int fd, ByteView contents) {
  if (!pwrite_all(fd, contents.data, contents.size, 0))
    throw_errno("writing " + std::to_string(contents.size) + " bytes to " + folder_of_fd(fd));
}

unsigned long long free_bytes_of(const std::string& folder) {
  struct statvfs info {};
  if (statvfs(folder.c_str(), &info) != 0) return 0;
  return static_cast<unsigned long long>(info.f_bavail) * info.f_frsize;
}

}  // namespace

std::optional<std::string> first_folder_with_room(const std::vector<std::string>& folders,
                                                  std::uint64_t bytes) {
  for (const std::string& folder : folders) {
    if (!folder.empty() && has_room(folder, bytes) && access(folder.c_str(), W_OK | X_OK) == 0) {
      return folder;
    }
  }
  return std::nullopt;
}

UniqueFd create_shared_file(std::uint64_t bytes, std::string* where) {
  check_shared_memory_room(bytes, "a " + format_bytes(bytes) + " shared array");
  UniqueFd fd = try_memfd();
  std::string folder = "memfd";
  if (!fd) {
    if (env_is_set("MMC_TEMP_FOLDER")) {
      folder = std::getenv("MMC_TEMP_FOLDER");
    } else {
      std::vector<std::string> candidates = {"/dev/shm"};
      if (env_is_set("TMPDIR")) candidates.emplace_back(std::getenv("TMPDIR"));
      candidates.emplace_back("/tmp");
      folder = first_folder_with_room(candidates, bytes).value_or("/tmp");
    }
    try {
      fd = open_unlinked_file(folder);
    } catch (const Error& error) {
      throw_error(ErrorCode::Io,
                  std::string(error.what()) +
                      ": cannot create a shared array there; point MMC_TEMP_FOLDER at a "
                      "writable folder");
    }
  }
  if (ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    throw_errno("sizing a " + std::to_string(bytes) + "-byte shared array in " + folder);
  }
  const int rc = posix_fallocate(fd.get(), 0, static_cast<off_t>(bytes));
  if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
    throw_error(ErrorCode::Io,
                "temp folder " + folder + ": no room for a shared array of " +
                    std::to_string(bytes) + " bytes (" +
                    (folder == "memfd" ? std::string("memory")
                                       : std::to_string(free_bytes_of(folder)) + " bytes free") +
                    ": " + std::strerror(rc) + "); point MMC_TEMP_FOLDER at a folder with room");
  }
  if (where != nullptr) *where = folder;
  return fd;
}

SharedSegment SharedSegment::create(ByteView contents) {
  check_shared_memory_room(contents.size, "a " + format_bytes(contents.size) + " message");
  UniqueFd fd = try_memfd();
  const bool sealable = fd.valid();
  if (!fd) fd = temp_file_for(contents.size);
  write_contents(fd.get(), contents);
  if (sealable &&
      fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    throw_errno("sealing a memfd segment");
  }
  return SharedSegment(std::move(fd), contents.size);
}

SharedSegment SharedSegment::map_received(UniqueFd fd, std::size_t size) {
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) throw_errno("fstat of a received segment");
  if (static_cast<unsigned long long>(info.st_size) < size) {
    throw_error(ErrorCode::Internal, "received segment has " + std::to_string(info.st_size) +
                                         " bytes, its frame says " + std::to_string(size));
  }
  void* data = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (data == MAP_FAILED) throw_errno("mmap of a " + std::to_string(size) + "-byte segment");
  SharedSegment segment(std::move(fd), size);
  segment.data_ = static_cast<const std::byte*>(data);
  return segment;
}

SharedSegment::~SharedSegment() { unmap(); }

SharedSegment::SharedSegment(SharedSegment&& other) noexcept
    : fd_(std::move(other.fd_)),
      size_(std::exchange(other.size_, 0)),
      data_(std::exchange(other.data_, nullptr)) {}

SharedSegment& SharedSegment::operator=(SharedSegment&& other) noexcept {
  if (this != &other) {
    unmap();
    fd_ = std::move(other.fd_);
    size_ = std::exchange(other.size_, 0);
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

void SharedSegment::unmap() noexcept {
  if (data_ != nullptr) munmap(const_cast<std::byte*>(data_), size_);
  data_ = nullptr;
}

}  // namespace mmc::detail
