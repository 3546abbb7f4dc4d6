// Array geometry: shape, byte strides, memory order and dtype of an n-dimensional array.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmc/dtype.hpp"

namespace mmc {

using Shape = std::vector<std::int64_t>;

enum class Order : std::uint8_t { C, F };

// What an array is, independent of where its bytes live. Strides are in bytes, as numpy's.
struct ArrayMeta {
  DType dtype;
  Shape shape;
  std::vector<std::int64_t> strides;
  Order order = Order::C;

  // A dense array in C or Fortran order. Throws Error(InvalidArgument) for a negative
  // extent or when the byte count overflows 63 bits, counting as numpy does: the item size
  // times the product of the non-zero extents must fit, so (0, 2**62, 2**62) is refused too.
  static ArrayMeta contiguous(DType dtype, Shape shape, Order order = Order::C);

  int ndim() const noexcept { return static_cast<int>(shape.size()); }
  // Number of elements (1 for a 0-d array).
  std::int64_t size() const noexcept;
  // Bytes spanned by a dense array of this shape: size() * itemsize.
  std::uint64_t nbytes() const;  // throws Error(InvalidArgument) when dtype is unset
  // "2048x1024x1024 u8 C" style summary.
  std::string describe() const;
};

// Formats a shape as "2048,1024,1024" (the CLI's syntax) or "(2048, 1024, 1024)" (numpy's).
std::string format_shape(const Shape& shape, bool numpy_style = false);
// A byte count for people: "512 B", "8.0 KiB", "2.0 GiB" (binary units up to PiB, one decimal).
std::string format_bytes(std::uint64_t bytes);
// Parses "2048,1024,1024" or "2048x1024x1024". Throws Error(InvalidArgument).
Shape parse_shape(const std::string& text);

namespace detail {
// Overflow-checked arithmetic on sizes; throw Error(InvalidArgument) naming `what`.
std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what);
std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what);
// True when itemsize times the product of shape's non-zero extents fits 63 bits (numpy's rule
// for np.empty), and no extent is negative. Every product over a subset of the extents then
// fits too, whether or not the array is empty.
bool nbytes_fit(std::uint64_t itemsize, const Shape& shape) noexcept;
}  // namespace detail

}  // namespace mmc
