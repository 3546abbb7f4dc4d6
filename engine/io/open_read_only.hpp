// Opening a file for reading, once for every reader of engine/io (os/exact_io.hpp's open_fd),
// failures thrown with the path and errno (so EACCES is said as such).
#pragma once

#include <fcntl.h>

#include <cerrno>
#include <string>

#include "mmc/error.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

inline UniqueFd open_read_only(const std::string& path) {
  UniqueFd fd = open_fd(path.c_str(), O_RDONLY);
  if (!fd) throw_errno(path + ": cannot open");
  return fd;
}

}  // namespace mmc::detail
