// KeyLock: flock on a per-key file, polled so that waiting stays interruptible.
#include "cache/key_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "mmc/error.hpp"
#include "mmc/interrupt.hpp"

namespace mmc::detail {
namespace {

// True when `fd` is still the file at `path` (its holder did not remove it meanwhile).
bool still_linked(int fd, const std::string& path) {
  struct stat by_fd, by_path;
  return ::fstat(fd, &by_fd) == 0 && ::stat(path.c_str(), &by_path) == 0 &&
         by_fd.st_dev == by_path.st_dev && by_fd.st_ino == by_path.st_ino;
}

UniqueFd open_lock_file(const std::string& path) {
  return UniqueFd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
}

}  // namespace

KeyLock::KeyLock(std::string path, UniqueFd fd)
    : path_(std::move(path)), fd_(std::move(fd)), owner_(::getpid()) {}

KeyLock::KeyLock(KeyLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::move(other.fd_)), owner_(other.owner_) {}

KeyLock& KeyLock::operator=(KeyLock&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = std::move(other.fd_);
    owner_ = other.owner_;
  }
  return *this;
}

KeyLock KeyLock::acquire(const std::string& path, std::string* error) {
  for (;;) {
    UniqueFd fd = open_lock_file(path);
    if (!fd) {
      *error = "cannot create the lock file " + path + ": " + std::strerror(errno);
      return KeyLock();
    }
    auto delay = std::chrono::microseconds(500);
    while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EINTR) continue;
      if (errno != EWOULDBLOCK) {
        *error = "cannot lock " + path + ": " + std::strerror(errno);
        return KeyLock();
      }
      if (interrupted()) {
        throw Error(ErrorCode::Cancelled,
                    "interrupted while waiting for another process computing the cache entry "
                    "locked by " +
                        path);
      }
      std::this_thread::sleep_for(delay);
      delay = std::min(delay * 2, std::chrono::microseconds(50000));
    }
    if (still_linked(fd.get(), path)) return KeyLock(path, std::move(fd));
    // We locked a file its previous holder had already removed: start over on the new one.
  }
}

KeyLock KeyLock::try_acquire(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd || ::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 || !still_linked(fd.get(), path)) {
    return KeyLock();
  }
  return KeyLock(path, std::move(fd));
}

void KeyLock::release() noexcept {
  if (!fd_.valid()) return;
  // Unlink before unlocking: a waiter that then gets the lock sees the file is gone and retries.
  if (owner_ == ::getpid()) ::unlink(path_.c_str());
  fd_.reset();
}

}  // namespace mmc::detail
