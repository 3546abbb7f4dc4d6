// Opening a file for reading, once for every reader of engine/io (os/exact_io.hpp's open_fd),
// failures thrown with the path and errno (so EACCES is said as such); what an open file is;
// reading it exactly.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

#include "mmc/error.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

inline UniqueFd open_read_only(const std::string& path) {
  // O_NONBLOCK: a FIFO opens at once instead of waiting for a writer (the caller's regular-file
  // check then refuses it); reads of regular files never block on it.
  UniqueFd fd = open_fd(path.c_str(), O_RDONLY | O_NONBLOCK);
  if (!fd) throw_errno(path + ": cannot open");
  return fd;
}

// fstat of the file open at `fd`, which must be a regular file: throws Error(InvalidArgument)
// for a directory or anything else, Error(Io) when fstat fails.
inline struct stat stat_regular_file(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno(path + ": fstat");
  if (S_ISDIR(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is a directory, expected a file");
  }
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::InvalidArgument, path + ": is not a regular file");
  }
  return st;
}

// Reads exactly n bytes at `offset` of fd. A short read means the file shrank under us.
inline void pread_exact(int fd, std::byte* out, std::uint64_t n, const std::string& path,
                        std::uint64_t offset = 0) {
  const ssize_t done = detail::pread_full(fd, out, n, static_cast<off_t>(offset));
  if (done < 0) throw_errno(path + ": cannot read");
  if (static_cast<std::uint64_t>(done) < n) {
    throw_error(ErrorCode::Corrupt, path + ": file ended after " + std::to_string(done) + " of " +
                                        std::to_string(n) + " bytes (was it truncated meanwhile?)");
  }
}

}  // namespace mmc::detail
