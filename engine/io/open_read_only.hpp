// Opening a file for reading, once for every reader of engine/io (os/exact_io.hpp's open_fd),
// failures thrown with the path and errno (so EACCES is said as such); what an open file is.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <string>

#include "mmc/error.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

inline UniqueFd open_read_only(const std::string& path) {
  UniqueFd fd = open_fd(path.c_str(), O_RDONLY);
  if (!fd) raise_errno(path + ": cannot open");
  return fd;
}

// fstat of the file open at `fd`, which must be a regular file: throws Error(InvalidArgument)
// for a directory or anything else, Error(Io) when fstat fails.
inline struct stat stat_regular_file(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) raise_errno(path + ": fstat");
  if (S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is not a regular file");
  }
  return st;
}

}  // namespace mmc::detail
