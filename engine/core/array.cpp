// ArrayMeta construction with overflow-checked sizes, and shape text.
#include "mmc/array.hpp"

#include <charconv>
#include <cstdio>
#include <limits>

#include "mmc/error.hpp"

namespace mmc {
namespace detail {

std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const char* what) {
  std::uint64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > static_cast<std::uint64_t>(INT64_MAX)) {
    throw Error(ErrorCode::InvalidArgument, std::string(what) + ": size overflows 63 bits");
  }
  return r;
}

std::uint64_t checked_add(std::uint64_t a, std::uint64_t b, const char* what) {
  std::uint64_t r;
  if (__builtin_add_overflow(a, b, &r) || r > static_cast<std::uint64_t>(INT64_MAX)) {
    throw Error(ErrorCode::InvalidArgument, std::string(what) + ": size overflows 63 bits");
  }
  return r;
}

bool nbytes_fit(std::uint64_t itemsize, const Shape& shape) noexcept {
  // numpy's rule (np.empty): a zero extent makes the array empty but does not excuse the
  // others, since strides, plans and output shapes are products over subsets of them.
  std::uint64_t bytes = itemsize;
  for (const std::int64_t extent : shape) {
    if (extent == 0) continue;
    if (extent < 0 || __builtin_mul_overflow(bytes, static_cast<std::uint64_t>(extent), &bytes) ||
        bytes > static_cast<std::uint64_t>(INT64_MAX)) {
      return false;
    }
  }
  return true;
}

}  // namespace detail

ArrayMeta ArrayMeta::contiguous(DType dtype, Shape shape, Order order) {
  ArrayMeta m;
  m.dtype = dtype;
  m.order = order;
  m.strides.assign(shape.size(), 0);
  for (const std::int64_t extent : shape) {
    if (extent < 0) {
      throw Error(ErrorCode::InvalidArgument,
                  "negative extent " + std::to_string(extent) + " in shape " + format_shape(shape));
    }
  }
  if (!detail::nbytes_fit(dtype.itemsize(), shape)) {
    throw Error(ErrorCode::InvalidArgument,
                "shape " + format_shape(shape) + ": size overflows 63 bits (its non-zero " +
                    "extents times the " + std::to_string(dtype.itemsize()) +
                    "-byte item size, as numpy counts it)");
  }
  std::uint64_t bytes = dtype.itemsize();
  const int n = static_cast<int>(shape.size());
  for (int k = 0; k < n; ++k) {
    const int axis = order == Order::C ? n - 1 - k : k;
    m.strides[axis] = static_cast<std::int64_t>(bytes);
    bytes *= static_cast<std::uint64_t>(shape[axis]);  // fits: checked above
  }
  m.shape = std::move(shape);
  return m;
}

std::int64_t ArrayMeta::size() const noexcept {
  std::int64_t n = 1;
  for (auto e : shape) n *= e;
  return n;
}

std::uint64_t ArrayMeta::nbytes() const {
  return static_cast<std::uint64_t>(size()) * dtype.itemsize();
}

std::string ArrayMeta::describe() const {
  return format_shape(shape) + " " + dtype.name() + (order == Order::C ? " C" : " F");
}

std::string format_bytes(std::uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

std::string format_shape(const Shape& shape, bool numpy_style) {
  std::string out = numpy_style ? "(" : "";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += numpy_style ? ", " : ",";
    out += std::to_string(shape[i]);
  }
  if (numpy_style) out += shape.size() == 1 ? ",)" : ")";
  return out;
}

Shape parse_shape(const std::string& text) {
  Shape shape;
  if (text.empty()) throw Error(ErrorCode::InvalidArgument, "empty shape");
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find_first_of(",x", pos);
    if (end == std::string::npos) end = text.size();
    const char* first = text.data() + pos;
    const char* last = text.data() + end;
    std::int64_t v = 0;
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (first == last || ec != std::errc() || ptr != last || v < 0) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad shape '" + text + "' (expected non-negative integers like 2048,1024,1024)");
    }
    shape.push_back(v);
    pos = end + 1;
  }
  return shape;
}

}  // namespace mmc
