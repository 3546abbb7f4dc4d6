// Exact reads and writes over read(2)/write(2)/pread(2)/pwrite(2), EINTR retried.
#include "os/exact_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace mmc::detail {

UniqueFd open_fd(const char* path, int flags, mode_t mode) noexcept {
  int fd;
  do {
    fd = ::open(path, flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return UniqueFd(fd);
}

namespace {

// One loop for write(2) and pwrite(2): `at` < 0 writes at the file position.
bool write_loop(int fd, const void* data, std::size_t size, std::int64_t at) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = at < 0 ? ::write(fd, p, size) : ::pwrite(fd, p, size, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {  // only for a full device that does not say so; never loop on it
      errno = ENOSPC;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    if (at >= 0) at += n;
  }
  return true;
}

}  // namespace

bool write_all(int fd, const void* data, std::size_t size) noexcept {
  return write_loop(fd, data, size, -1);
}

bool pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset) noexcept {
  return write_loop(fd, data, size, static_cast<std::int64_t>(offset));
}

ssize_t pread_full(int fd, void* data, std::size_t size, std::uint64_t offset) noexcept {
  auto* p = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, p + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

bool read_to_end(int fd, std::string& out) {
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace mmc::detail
