// Exact reads and writes: every loop that must move all of its bytes, with EINTR and short
// transfers handled here once. Nothing throws: a failure returns with errno set, and the
// caller words the error (it knows the path and what it was doing).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "os/unique_fd.hpp"

namespace mmc::detail {

// open(2) with O_CLOEXEC added and EINTR retried. An empty UniqueFd (errno set) on failure.
UniqueFd open_fd(const char* path, int flags, mode_t mode = 0) noexcept;

// Writes all `size` bytes at the file position (write(2)) or at `offset` (pwrite(2)).
// False with errno set when a call fails (a write of 0 bytes counts as ENOSPC).
bool write_all(int fd, const void* data, std::size_t size) noexcept;
bool pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset) noexcept;

// Reads up to `size` bytes at `offset`, stopping early only at the end of the file. Returns
// the count read (less than `size`: the file ended), or -1 with errno set.
ssize_t pread_full(int fd, void* data, std::size_t size, std::uint64_t offset) noexcept;

// Appends what `fd` yields until its end (a pipe's writer closed it) to `out`. False with
// errno set when a read fails; what came before stays in `out`.
bool read_to_end(int fd, std::string& out);

// lstat succeeds: a file, folder or link (even dangling) is there.
bool path_exists(const std::string& path);

}  // namespace mmc::detail
