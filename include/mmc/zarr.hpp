// zarr v2 directory stores: opening one as a ChunkedArray, and writing one chunk by chunk.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"

namespace mmc {

// Opens a zarr v2 array: a directory holding .zarray. Throws Error(NotFound) when there is no
// .zarray, Error(Corrupt) for broken JSON or metadata (naming the field), Error(InvalidArgument)
// for a dtype, compressor or filter we do not support, or a shape whose byte count overflows.
std::unique_ptr<ChunkedArray> open_zarr(const std::string& path);

enum class Compressor : std::uint8_t { None, Zlib, Zstd, Blosc };
// "none", "zlib", "zstd", "blosc". Throws Error(InvalidArgument).
Compressor parse_compressor(const std::string& text);

struct ZarrSpec {
  DType dtype;
  Shape shape;
  Shape chunks;
  Order order = Order::C;
  Compressor compressor = Compressor::None;
  int level = 5;                    // zlib 1..9, zstd 1..22, blosc clevel 1..9
  std::string blosc_cname = "lz4";  // blosc's inner codec
  int blosc_shuffle = 1;            // 0 none, 1 byte shuffle, 2 bit shuffle
  std::vector<std::byte> fill;      // one element in dtype's byte order; empty: zero fill
};

// Writes a zarr v2 store crash-safely: everything goes into a hidden temporary directory next
// to `path`; commit() writes .zarray and renames the directory into place, so a writer killed
// before commit() leaves no store at `path` (and the temporary directory is removed by the
// destructor when not committed). write_chunk may be called from several threads, and from
// forked workers between construction and commit() (each chunk is written under a temporary
// name and renamed). Throws Error(InvalidArgument) for a bad spec, Error(Io) when `path`
// exists and overwrite is false or the folder cannot be written.
class ZarrWriter {
 public:
  ZarrWriter(const std::string& path, const ZarrSpec& spec, bool overwrite = false);
  ~ZarrWriter();
  ZarrWriter(const ZarrWriter&) = delete;
  ZarrWriter& operator=(const ZarrWriter&) = delete;

  const ZarrSpec& spec() const noexcept;
  Shape grid() const;
  std::uint64_t chunk_nbytes() const noexcept;
  // Encodes and writes one chunk: `data` is the full chunk shape in spec.order, dtype's byte
  // order (edge chunks: the part outside the array is written as given; pass fill there).
  void write_chunk(const Shape& coord, const std::byte* data) const;
  // Writes .zarray and moves the store into place. Idempotent; throws Error(Io).
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mmc
