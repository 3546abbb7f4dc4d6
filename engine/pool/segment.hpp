// SharedSegment: an unlinked shared-memory file (memfd, or a temp file unlinked at once) that
// carries one payload larger than max_nbytes across a process boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mmc/pool.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

// A segment has no name anyone can find: it lives as long as some process holds its
// descriptor or mapping, so a crash or kill -9 cannot leave it behind.
// Move-only; not thread-safe.
class SharedSegment {
 public:
  // Creates a segment holding a copy of `contents` (size > 0) and seals it against change.
  // Where: memfd_create, unless MMC_DISABLE_MEMFD=1 or the kernel lacks it; then a file in
  // $MMC_TEMP_FOLDER (if set, and only there), else /dev/shm when it has room, else $TMPDIR,
  // else /tmp, unlinked as soon as it is open. Throws Error(Io) naming the folder.
  static SharedSegment create(ByteView contents);

  // Takes a received segment descriptor and maps its first `size` bytes read-only.
  // Throws Error(Internal) if the segment is shorter than `size`, Error(Io) if mmap fails.
  static SharedSegment map_received(UniqueFd fd, std::size_t size);

  SharedSegment() noexcept = default;
  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;
  SharedSegment(SharedSegment&& other) noexcept;
  SharedSegment& operator=(SharedSegment&& other) noexcept;

  int fd() const noexcept { return fd_.get(); }
  std::size_t size() const noexcept { return size_; }
  // The mapped bytes (only for segments made by map_received).
  ByteView view() const noexcept { return {data_, size_}; }

 private:
  SharedSegment(UniqueFd fd, std::size_t size) noexcept : fd_(std::move(fd)), size_(size) {}
  void unmap() noexcept;

  UniqueFd fd_;
  std::size_t size_ = 0;
  const std::byte* data_ = nullptr;  // mapping, when mapped
};

// The first of `folders` with room for `bytes` (plus slack) that this process can write, or
// nothing.
std::optional<std::string> first_folder_with_room(const std::vector<std::string>& folders,
                                                  std::uint64_t bytes);

// A writable, unnamed shared file of `bytes` bytes, its space reserved (fallocate) so a full
// folder fails now rather than with SIGBUS on first touch: memfd unless MMC_DISABLE_MEMFD=1,
// else an unlinked file in $MMC_TEMP_FOLDER (only there when set), else the first of /dev/shm,
// $TMPDIR, /tmp with room. Mode 0600. `where` gets the folder ("memfd" for memfd).
// Throws Error(Io) naming the folder, the bytes needed and what is free.
UniqueFd create_shared_file(std::uint64_t bytes, std::string* where);

}  // namespace mmc::detail
