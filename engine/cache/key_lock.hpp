// KeyLock: one computation per cache key across threads and processes, by flock on a per-key
// lock file.
#pragma once

#include <sys/types.h>

#include <string>

#include "os/unique_fd.hpp"

namespace mmc::detail {

// Holds an exclusive flock on `path`. The lock file is removed by its holder on release, so the
// folder does not fill with them; acquire() retries when it locked a file that its previous
// holder had already removed, so at most one holder exists per path at any time. A process that
// dies releases its lock (the kernel drops the flock); the stale file is reused or removed
// later. Move-only.
class KeyLock {
 public:
  KeyLock() = default;
  KeyLock(KeyLock&& other) noexcept;
  KeyLock& operator=(KeyLock&& other) noexcept;
  KeyLock(const KeyLock&) = delete;
  KeyLock& operator=(const KeyLock&) = delete;
  ~KeyLock() { release(); }

  // Waits (polling, so an interrupt is noticed) until the lock is held. Returns an empty lock
  // and sets `*error` when the lock file cannot be created (read-only or unwritable folder).
  // Throws Error(Cancelled) after SIGINT/SIGTERM when the interrupt handlers are installed.
  static KeyLock acquire(const std::string& path, std::string* error);

  // Tries once; returns an empty lock when another holder has it or the file cannot be opened.
  static KeyLock try_acquire(const std::string& path);

  bool held() const noexcept { return fd_.valid(); }
  // Removes the lock file and drops the lock. Idempotent.
  void release() noexcept;

 private:
  KeyLock(std::string path, UniqueFd fd);

  std::string path_;
  UniqueFd fd_;
  // A child forked while the lock is held (a pool worker) must never remove the parent's file.
  pid_t owner_ = -1;
};

}  // namespace mmc::detail
