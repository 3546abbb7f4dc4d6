// Chunked arrays: the chunk grid every chunked format (zarr.hpp, hdf5.hpp) reads through.
//
// A ChunkedArray describes a logical n-d array cut into a regular grid of chunks. Each chunk
// is either stored raw in a file (then it can be mapped in place, zero copy), encoded (read and
// decoded into a caller's buffer), or absent (it reads as the fill value). Dense sources whose
// bytes are one run in a file (raw, .npy, contiguous HDF5) are a Source instead (source.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmc/array.hpp"

namespace mmc {

// A box of the index space: [start[i], start[i] + count[i]) on every axis.
struct Box {
  Shape start;
  Shape count;
  std::int64_t size() const noexcept;  // elements (1 for 0-d)
};

// How a chunked array is stored, for `mmcompute info` and for planning.
struct StorageInfo {
  std::string kind;                  // "zarr", "hdf5"
  std::string layout;                // "chunked", "compact", "external", "sharded"
  std::string compressor;            // "none", "zlib", "gzip", "zstd", "blosc(lz4,shuffle,5)", ...
  std::vector<std::string> filters;  // e.g. HDF5 "shuffle", "fletcher32"; empty when none
  std::int64_t chunks_total = 0;     // cells of the chunk grid
  std::int64_t chunks_stored = -1;   // chunks present on disk; -1 when not counted (too costly)
  std::uint64_t stored_bytes = 0;    // bytes on disk (0 when unknown)
  Shape shards;                      // zarr v3 sharded: the shard shape; empty otherwise
  std::int64_t shard_files = -1;     // sharded: shard files present; -1 when not counted
};

// One chunk of the grid.
struct ChunkRef {
  Shape coord;  // grid coordinates
  Box box;      // the array elements it holds (clipped at the array's edges)
};

// The largest decoded chunk read or written: 2 GiB. A chunk is decoded whole into memory even
// to read one element, and zlib, zstd and blosc count buffers in 32-bit ints; real stores use
// chunks of a few MiB (HDF5's own limit is 4 GiB). Larger chunks in metadata are refused as
// hostile or damaged rather than allocated.
inline constexpr std::uint64_t kMaxDecodedChunkBytes = std::uint64_t{2} << 30;

class ChunkedArray {
 public:
  virtual ~ChunkedArray() = default;
  ChunkedArray(const ChunkedArray&) = delete;
  ChunkedArray& operator=(const ChunkedArray&) = delete;

  // The logical array: dtype (with its byte order as stored), shape, and the element order
  // inside each chunk (zarr's "order"; HDF5 is always C). strides are those of a dense array
  // of the full shape in that order (what the array would be as one contiguous file).
  const ArrayMeta& meta() const noexcept { return meta_; }
  // Full (unclipped) chunk shape; every chunk buffer holds this many elements.
  const Shape& chunk_shape() const noexcept { return chunk_shape_; }
  // Bytes of one decoded chunk: product(chunk_shape) * itemsize.
  std::uint64_t chunk_nbytes() const noexcept;
  // Chunks per axis: ceil(shape / chunk_shape) (0 on an axis of extent 0).
  Shape grid() const;
  std::int64_t n_chunks() const;
  // Grid coordinates <-> C-order linear chunk index.
  Shape chunk_coord(std::int64_t index) const;
  ChunkRef chunk(const Shape& coord) const;

  // The fill value's bytes (one element, in meta().dtype's byte order).
  const std::vector<std::byte>& fill_value() const noexcept { return fill_; }

  virtual StorageInfo storage() const = 0;
  // A short description of where the data is ("cube.zarr", "cube.h5:/images").
  virtual std::string name() const = 0;

  // Zero-copy access: the chunk's bytes in place in a mapped file (full chunk shape, chunk
  // order, stored byte order), or nullptr when the chunk is encoded, absent, or not mappable.
  // Keeps any mapping alive as long as the array.
  virtual const std::byte* chunk_in_place(const Shape& coord) const = 0;
  // Decodes one chunk into `out` (chunk_nbytes() bytes, full chunk shape in chunk order; the
  // part outside the array on edge chunks holds unspecified bytes). An absent chunk is filled
  // with the fill value. Throws Error(Corrupt) for a chunk whose bytes do not decode to
  // exactly chunk_nbytes(), naming the chunk and file. Safe to call from several threads
  // of one process, and from forked workers after reopen_after_fork().
  virtual void read_chunk(const Shape& coord, std::byte* out) const = 0;
  // Called in a forked worker before its first read_chunk (HDF5 drops the parent's handles and
  // opens the file again; zarr does nothing).
  virtual void reopen_after_fork() {}

  // Reads any box of the array into `out` as a dense C-order array of box.count elements in
  // meta().dtype (stored byte order). Generic: decodes each chunk the box touches once.
  // Throws Error(InvalidArgument) for a box outside the array.
  void read_box(const Box& box, std::byte* out) const;
  // Reads a box into a strided destination: element idx (array coordinates) goes to
  // base + sum(idx[i] * strides[i]) (byte strides, e.g. those of meta() to rebuild the array's
  // dense layout in place). Decodes each chunk the box touches once.
  void read_into(const Box& box, std::byte* base, const std::vector<std::int64_t>& strides) const;

 protected:
  ChunkedArray(ArrayMeta meta, Shape chunk_shape, std::vector<std::byte> fill);

 private:
  void copy_box(const Box& box, std::byte* out, const Shape& origin,
                const std::vector<std::int64_t>& out_strides) const;
  // True when a chunk lies whole in [lo, hi) and out_strides lay it out as it decodes.
  bool lands_whole(const Box& chunk_box, const Shape& lo, const Shape& hi,
                   const std::vector<std::int64_t>& out_strides) const;

  ArrayMeta meta_;
  Shape chunk_shape_;
  std::vector<std::byte> fill_;
};

}  // namespace mmc
