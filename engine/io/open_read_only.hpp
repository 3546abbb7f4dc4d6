// Opening a file for reading, once for every reader of engine/io: O_CLOEXEC, EINTR retried,
// failures thrown with the path and errno (so EACCES is said as such).
#pragma once

#include <fcntl.h>

#include <cerrno>
#include <string>

#include "mmc/error.hpp"
#include "pool/unique_fd.hpp"

namespace mmc::detail {

inline UniqueFd open_read_only(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) raise_errno(path + ": cannot open");
  return UniqueFd(fd);
}

}  // namespace mmc::detail
