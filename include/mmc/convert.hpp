// Any array mmcompute reads, opened from its name, and conversion between formats.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "mmc/chunked.hpp"
#include "mmc/pool.hpp"
#include "mmc/source.hpp"

namespace mmc {

// A dense Source (raw, .npy, contiguous HDF5: mapped in place) or a ChunkedArray (zarr, chunked
// or compact HDF5). Cheap to copy (shared ownership); const methods are thread-safe.
class AnyArray {
 public:
  explicit AnyArray(Source dense);
  explicit AnyArray(std::unique_ptr<ChunkedArray> chunked);

  const ArrayMeta& meta() const noexcept;
  const Source* dense() const noexcept { return dense_.get(); }
  const ChunkedArray* chunked() const noexcept { return chunked_.get(); }
  // "raw", "npy", "hdf5" or "zarr".
  const std::string& kind() const noexcept { return kind_; }
  // Where it lives: "cube.u8", "cube.h5:/images", "cube.zarr".
  const std::string& name() const noexcept { return name_; }

  // Reads a box into `out` as a dense C-order array of meta().dtype (stored byte order).
  // Throws Error(InvalidArgument) for a box outside the array, what decoding throws otherwise.
  void read_box(const Box& box, std::byte* out) const;
  // In a forked worker, before reading (HDF5 opens its file again).
  void reopen_after_fork() const;

 private:
  friend AnyArray open_array(const std::string& spec, const RawSpec* raw);
  std::shared_ptr<Source> dense_;
  std::shared_ptr<ChunkedArray> chunked_;
  std::string kind_;
  std::string name_;
};

// Opens an array from its name:
//  - "FILE.h5:/path/to/dataset" (any file name, ':' then an absolute dataset path): HDF5;
//  - a directory holding .zarray: zarr v2;
//  - with `raw` given: a raw file described by it (its path is `spec`), unless check_raw_source
//    refuses it;
//  - a file starting with numpy's magic: .npy.
// Throws Error(NotFound) for a missing file, Error(InvalidArgument) when the format cannot be
// told ("give --dtype and --shape for a raw file"), and what each format's opener throws.
AnyArray open_array(const std::string& spec, const RawSpec* raw = nullptr);

// Throws Error(InvalidArgument) naming the conflict when `spec` is a .npy file, an HDF5 file or
// dataset, or a directory (zarr): they record their own dtype and shape, and read as raw bytes
// their header would be taken for data. Also refuses remote URLs (s3://, https://, ...).
void check_raw_source(const std::string& spec);

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
  bool overwrite = false;
  PoolOptions pool;
  ProgressFn progress;  // caller's thread, after each task
};

struct ConvertStats {
  ArrayFormat format = ArrayFormat::Raw;
  std::uint64_t logical_bytes = 0;  // elements × itemsize
  Shape chunks;                     // chunks used (empty: contiguous)
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
