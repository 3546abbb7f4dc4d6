// Any array mmcompute reads, opened from its name: one face for dense and chunked formats.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/source.hpp"

namespace mmc {

struct AxisSlice;  // select.hpp

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
  // A dense view's axes taken with a negative step, whose elements dense() holds in ascending
  // order (see select.hpp); empty for every other array.
  const std::vector<int>& reversed_axes() const noexcept { return reversed_; }

 private:
  friend AnyArray open_array(const std::string& spec, const RawSpec* raw);
  friend AnyArray select(const AnyArray& array, const std::vector<AxisSlice>& selection);
  std::shared_ptr<Source> dense_;
  std::shared_ptr<ChunkedArray> chunked_;
  std::string kind_;
  std::string name_;
  std::vector<int> reversed_;
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

}  // namespace mmc
