// zarr v2 and v3 directory stores: opening one as a ChunkedArray, and writing one chunk (or one
// v3 shard) at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"

namespace mmc {

// Opens a zarr array: a directory holding .zarray (v2) or zarr.json (v3: the bytes, transpose,
// gzip, zstd, blosc, crc32c and sharding_indexed codecs; the default and v2 chunk
// key encodings). Throws Error(NotFound) when there is neither (a group's message lists its
// members), Error(Corrupt) for broken JSON or metadata (naming the field), Error(InvalidArgument)
// for a dtype, codec or filter we do not support, or a shape whose byte count overflows. Reading
// a damaged chunk or shard throws Error(Corrupt) naming its file.
std::unique_ptr<ChunkedArray> open_zarr(const std::string& path);

// zarr groups: `path` made a group (v2: .zgroup; v3: zarr.json with node_type "group"), and a
// v2 group's consolidated metadata (.zmetadata: every .zgroup, .zarray and .zattrs below it, as
// zarr.consolidate_metadata writes it and xarray.open_zarr reads it first) written again,
// atomically. Throw Error(Io) when the folder cannot be written.
void write_zarr_group(const std::string& path, int zarr_format);
void consolidate_zarr_metadata(const std::string& group);
// The zarr format of the group at `path` (2 or 3), or 0 when it is not a zarr group.
int zarr_group_format(const std::string& path);

// "STORE.zarr:/name" or "STORE.zarr:name": the array `name` (a member, or a path of members)
// of the zarr group STORE.zarr. True when `spec` has that form, the part before the first ':'
// ending in ".zarr" or naming a directory; `member` comes back without a leading '/'.
bool split_zarr_member(const std::string& spec, std::string* store, std::string* member);

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
  int zarr_format = 2;              // 2 (.zarray) or 3 (zarr.json; Zlib is written as gzip)
  // zarr v3 only: the shard shape, a multiple of `chunks` on every axis; each shard is one
  // file holding its chunks and their index (sharding_indexed, index at the end with its
  // CRC-32C). Empty: no sharding.
  Shape shards;
  // The array's attributes (a JSON object's text) and axis names (empty: none), written as v2's
  // .zattrs (names under xarray's _ARRAY_DIMENSIONS) or in v3's zarr.json.
  std::string attributes = "{}";
  std::vector<std::string> dimension_names;
};

// Writes a zarr store crash-safely: everything goes into a hidden temporary directory next
// to `path`; commit() writes .zarray (zarr.json) and renames the directory into place, so a writer
// killed before commit() leaves no store at `path` (and the temporary directory is removed by the
// destructor when not committed). write_chunk may be called from several threads, and from
// forked workers between construction and commit() (chunk files are written in place inside the
// temporary directory; one rewritten by a task that ran again is truncated first). Throws
// Error(InvalidArgument) for a bad spec, Error(Io) when `path` exists and overwrite is false or the
// folder cannot be written.
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
  // Not for sharded specs (Error(InvalidArgument)): those are written a shard at a time.
  void write_chunk(const Shape& coord, const std::byte* data) const;

  // Sharded specs: the shard grid, the bytes of one shard (the full shard shape), and one
  // shard written whole: `data` is the full shard shape in spec.order, dtype's byte order.
  // Chunks whose bytes are all the fill value, or that lie wholly outside the array, are not
  // stored (their index entries say so); a shard with none left is not written.
  Shape shard_grid() const;
  std::uint64_t shard_nbytes() const noexcept;
  void write_shard(const Shape& coord, const std::byte* data) const;

  // Writes .zarray (zarr.json) and moves the store into place. Idempotent; throws Error(Io).
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mmc
