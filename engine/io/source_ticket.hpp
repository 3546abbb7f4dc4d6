// A source ticket: what another process needs to open the same array as an opened Source or
// ChunkedArray (a warm pool worker forked before the array was opened), and the opening.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"
#include "mmc/source.hpp"

namespace mmc {
class AnyArray;
}  // namespace mmc

namespace mmc::detail {

struct SourceTicket {
  // Mapped: a file region mapped in place (raw, .npy, contiguous HDF5). Chunked: an array
  // read through its format's reader (zarr, chunked or compact HDF5).
  enum class Kind : std::uint8_t { Mapped, Chunked };
  Kind kind = Kind::Mapped;
  std::string format;  // "raw", "npy", "hdf5", "zarr"
  // Mapped: the file that holds the bytes. Chunked: the name open_array() opens again
  // ("cube.zarr", "cube.h5:/images").
  std::string path;
  std::uint64_t offset = 0;  // mapped: bytes before element 0
  std::uint64_t length = 0;  // mapped: bytes mapped
  std::uint64_t device = 0;  // mapped: the file's identity when the source was opened
  std::uint64_t inode = 0;
  ArrayMeta meta;
  Shape chunk_shape;  // chunked
};

// The ticket of an opened array, or nothing (with `why`) when another process cannot reach
// the same bytes: a copy-on-write mapping (its private writes live only here), or a file that
// was removed or replaced (renamed over) since it was mapped. Costs one stat(2) for a mapped
// source; no file is opened.
std::optional<SourceTicket> ticket_of(const Source& source, std::string* why);
std::optional<SourceTicket> ticket_of(const ChunkedArray& array, std::string* why);

// Opens what `ticket` names: a mapped file is opened and mapped once, read-only, and must be
// the very file (device and inode) the ticket was made from; a chunked array is opened by its
// name and must have the ticket's dtype, shape, order and chunks. Throws Error(Io) naming the
// file when it was replaced or changed since the ticket was made, or (chunked HDF5) when this
// process inherited open HDF5 files from its parent, and what opening throws.
AnyArray open_ticket(const SourceTicket& ticket);

}  // namespace mmc::detail
