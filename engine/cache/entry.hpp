// Cache entry files: a small checksummed header, then the payload (a .npy image for reductions,
// so numpy can map an entry at payload_offset).
//
// Layout (integers little-endian):
//   0  "MMCCACHE"            8  u32 layout version      12 u32 kind
//   16 u64 key high          24 u64 key low             32 u64 payload offset (multiple of 64)
//   40 u64 payload size      48 u64 XXH3-64 of payload  56 u64 XXH3-64 of header bytes [0,
//   payload offset) with this field zeroed             64 u32 length of `what`  68 u32 zero
//   72 `what` (UTF-8), zero padding up to the payload offset; the file ends with the payload.
#pragma once

#include <cstdint>
#include <string>

#include "mmc/cache.hpp"

namespace mmc::detail {

enum class EntryKind : std::uint32_t { ReduceNpy = 1, Bytes = 2 };

struct EntryHeader {
  EntryKind kind = EntryKind::Bytes;
  CacheKey key;
  std::uint64_t payload_offset = 0;
  std::uint64_t payload_size = 0;
  std::uint64_t payload_checksum = 0;
  std::string what;
};

enum class ReadStatus : std::uint8_t {
  Ok,          // payload checked and returned
  Missing,     // no entry
  Corrupt,     // the entry contradicts itself or the key (`problem` says how)
  Unreadable,  // the OS refused (`problem` has the error)
};

struct ReadResult {
  ReadStatus status = ReadStatus::Missing;
  std::string problem;
  Bytes payload;
  // Identity of the file read, so a corrupt entry is removed only if still the same file.
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
};

// Reads and checks the entry at `path` for `key` and `kind` (header checksum, sizes, payload
// checksum). On success marks it used now (mtime), silently skipping that on a read-only folder.
ReadResult read_entry(const std::string& path, const CacheKey& key, EntryKind kind);

// Reads and checks only the header (for ls and prune). Returns false with `problem` set when it
// is not a valid entry header or the file size disagrees with it.
bool read_entry_header(const std::string& path, EntryHeader* header, std::string* problem);

// Writes an entry atomically: a temporary in the same folder, fsync, rename, fsync of the
// folder. Throws Error(Io) (nothing is left behind).
void write_entry(const std::string& path, const CacheKey& key, EntryKind kind,
                 const std::string& what, const Bytes& payload);

// Unlinks `path` if it is still the file (dev, ino). Best effort.
void remove_entry_if_same(const std::string& path, std::uint64_t dev, std::uint64_t ino) noexcept;

}  // namespace mmc::detail
