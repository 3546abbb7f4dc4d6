// Conversion between formats: copies any array (mmc/open.hpp) into a new raw, .npy, HDF5 or
// zarr array, in parallel on the pool.
#pragma once

#include <cstdint>
#include <string>

#include "mmc/chunked.hpp"
#include "mmc/open.hpp"
#include "mmc/pool.hpp"
#include "mmc/zarr.hpp"

namespace mmc {

enum class ArrayFormat : std::uint8_t { Raw, Npy, Hdf5, Zarr };

// The format a destination name asks for: "x.npy" → npy, "x.h5:/d" or "x.h5"/"x.hdf5" → HDF5
// (dataset "/data" when none is named), "x.zarr" → zarr, anything else → raw.
ArrayFormat format_of_destination(const std::string& dst);

struct ConvertOptions {
  // Chunk shape of a zarr or HDF5 destination. Empty: zarr gets slabs of whole trailing axes of
  // about 8 MiB; HDF5 is written contiguous (unless a compressor is asked for, which needs
  // chunks: then the zarr default applies).
  Shape chunks;
  Compressor compressor = Compressor::None;  // zarr: any; HDF5: None or Zlib (gzip+shuffle)
  int level = 5;
  // zarr outputs: format 2 (.zarray) or 3 (zarr.json), and v3's shard shape (a multiple of the
  // chunks; empty: no sharding). With shards and no chunks, the chunks are slabs of about 8 MiB
  // that divide the shard.
  int zarr_format = 2;
  Shape shards;
  bool overwrite = false;
  PoolOptions pool;
  ProgressCallback progress;  // caller's thread, after each task
};

struct ConvertStats {
  ArrayFormat format = ArrayFormat::Raw;
  std::uint64_t logical_bytes = 0;  // elements × itemsize
  Shape chunks;                     // chunks used (empty: contiguous)
  Shape shards;                     // zarr v3 shards used (empty: none)
  // Why the source's attributes could not be carried (they were left out); empty otherwise.
  std::string attributes_problem;
  CallStats call;
};

// Copies `src` into a new array at `dst`, in parallel (tasks follow the destination's chunks
// or slabs of ~8 MiB) and in bounded memory: each worker holds one task's data, so a cube
// larger than RAM converts with flat anonymous memory. The destination appears whole or not
// at all (temporary name, renamed at the end). The dtype is kept (HDF5 stores it in this
// machine's byte order); F-order sources are written in C order.
// Throws Error(InvalidArgument) for bad options, Error(Io) when `dst` exists without
// overwrite, and what reading, decoding and writing throw; nothing is left at `dst` then.
ConvertStats convert(const AnyArray& src, const std::string& dst, const ConvertOptions& options);

}  // namespace mmc
