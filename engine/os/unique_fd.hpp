// UniqueFd: the one owner of a file descriptor in the engine; closes it on destruction, or in
// close() for a caller who must know the close succeeded (a write's last error shows there).
#pragma once

#include <unistd.h>

#include <utility>

namespace mmc::detail {

// Move-only owner of a descriptor. -1 means empty. Not thread-safe (like any value type).
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  int release() noexcept { return std::exchange(fd_, -1); }

  // Closes the held descriptor (if any) and takes `fd`; a failed close is not reported (a
  // destructor cannot): call close() where it matters. close(2) is not retried on EINTR: on
  // Linux the descriptor is released even then, and a retry could close someone else's.
  void reset(int fd = -1) noexcept {
    const int old = std::exchange(fd_, fd);
    if (old >= 0) ::close(old);
  }

  // Closes the held descriptor and says whether close(2) succeeded (false with errno set: on
  // NFS and some FUSE file systems a write's error is only reported here). Empty afterwards,
  // even on failure. Closing an empty UniqueFd succeeds.
  bool close() noexcept {
    const int old = std::exchange(fd_, -1);
    return old < 0 || ::close(old) == 0;
  }

 private:
  int fd_ = -1;
};

}  // namespace mmc::detail
