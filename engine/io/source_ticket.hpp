// A source ticket: what another process needs to open the same array as an opened Source or
// ChunkedArray (a warm pool worker forked before the array was opened), and the opening. A
// mapped file travels as its open descriptor (SCM_RIGHTS), a chunked array by its name.
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
  // Mapped: the file that holds the bytes (for messages). Chunked: the name open_array() opens
  // again ("cube.zarr", "cube.h5:/images").
  std::string path;
  std::uint64_t offset = 0;  // mapped: bytes before element 0
  std::uint64_t length = 0;  // mapped: bytes mapped
  // Mapped: the open file, valid in the process that holds the ticket (the caller's mapping's
  // own descriptor, or the copy that came with a task); it lives as long as its owner.
  int fd = -1;
  ArrayMeta meta;
  Shape chunk_shape;  // chunked
  // Chunked: the view of the array named by `path` (format_selection's text), or empty.
  std::string selection;
};

// The ticket of an opened array, or nothing (with `why`) when another process cannot reach
// the same bytes: a copy-on-write mapping (its private writes live only here). A mapped
// source's ticket names its open file, so a file removed or renamed over since it was mapped is
// still the one reached. No system call.
std::optional<SourceTicket> ticket_of(const Source& source, std::string* why);
std::optional<SourceTicket> ticket_of(const ChunkedArray& array, std::string* why);

// Opens what `ticket` names: a mapped file is mapped once, read-only, from ticket.fd (never
// reopened by path); a chunked array is opened by its name and must have the ticket's dtype,
// shape, order and chunks. Throws Error(Io) naming the array when it was changed since the
// ticket was made, or (chunked HDF5) when this process inherited open HDF5 files from its
// parent, and what mapping or opening throws.
AnyArray open_ticket(const SourceTicket& ticket);

}  // namespace mmc::detail
