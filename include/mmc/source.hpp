// Sources: an n-dimensional array whose bytes live in a mapped file (raw cube or .npy).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "mmc/array.hpp"
#include "mmc/mapped_file.hpp"

namespace mmc {

// A raw file's description: numpy.memmap's arguments.
struct RawSpec {
  std::string path;
  DType dtype;  // required: an unset dtype is refused, never taken for u8
  Shape shape;
  std::uint64_t offset = 0;  // bytes before the first element
  Order order = Order::C;
};

// The header of a .npy file, parsed strictly.
struct NpyHeader {
  int major = 1;
  int minor = 0;
  DType dtype;  // required: an unset dtype is refused, never taken for u8
  bool fortran_order = false;
  Shape shape;
  std::uint64_t data_offset = 0;  // where the array's bytes start in the file
};

// An array whose elements are read in place from a mapped file; never copied.
// Move-only. Thread and fork safe for reading: workers forked after open() share the mapping.
class Source {
 public:
  Source() = default;
  Source(ArrayMeta meta, MappedFile mapping, std::string kind);

  const ArrayMeta& meta() const noexcept { return meta_; }
  // The first element (the mapping starts at the data offset).
  const std::byte* data() const noexcept { return mapping_.data(); }
  const MappedFile& mapping() const noexcept { return mapping_; }
  const std::string& path() const noexcept { return mapping_.path(); }
  std::uint64_t data_offset() const noexcept { return mapping_.offset(); }
  // "raw" or "npy".
  const std::string& kind() const noexcept { return kind_; }

 private:
  ArrayMeta meta_;
  MappedFile mapping_;
  std::string kind_;
};

// Opens a raw file. Throws Error(NotFound) when missing, Error(Corrupt) when the file holds
// fewer than offset + nbytes bytes (the message gives both figures), Error(InvalidArgument) for
// shapes whose byte count overflows.
Source open_raw(const RawSpec& spec, MapMode mode = MapMode::ReadOnly);

// Parses the header of a .npy file (versions 1.0, 2.0, 3.0). Throws Error(Corrupt) for
// anything but a well-formed header naming the path and what is wrong.
NpyHeader read_npy_header(const std::string& path);

// Opens a .npy file, mapping its data in place. Same errors as read_npy_header and open_raw.
Source open_npy(const std::string& path, MapMode mode = MapMode::ReadOnly);

// Makes the .npy header bytes (version 1.0, or 2.0 when the header does not fit) for an array,
// padded so the data starts on a multiple of 64 bytes.
std::string make_npy_header(DType dtype, const Shape& shape, bool fortran_order);

}  // namespace mmc
