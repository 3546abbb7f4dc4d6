// The field reader both zarr metadata versions share (metadata.cpp, metadata_v3.cpp): strict
// checks, every message naming the file and the field. Private to engine/io/zarr.
#pragma once

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/error.hpp"

namespace mmc::detail::zarr {

using nlohmann::json;

// A JSON value as text for a message: at most 120 characters (a hostile file's values can be
// megabytes).
inline std::string brief(const json& v) {
  std::string text = v.dump();
  if (text.size() > 120) text = text.substr(0, 117) + "...";
  return text;
}

// Reads the small text file `path` whole (metadata: at most 16 MiB). Throws Error(NotFound)
// when it is missing, Error(Corrupt) when it is not a regular file or far too large.
std::string read_small_file(const std::string& path);
// True when `path` exists (stat succeeds).
bool exists(const std::string& path);
// The JSON of one fill element (dtype's byte order): numbers, booleans, and zarr's strings
// for non-finite floats.
json fill_json(DType dtype, const std::vector<std::byte>& fill);
// Parses `file` (read_small_file) as one JSON object, its text passed through `filter` first
// when given; Error(Corrupt) otherwise.
json parse_document(const std::string& file,
                    std::string (*filter)(const std::string& text) = nullptr);
// Throws Error(NotFound): `dir` is a zarr group, naming its members (arrays and groups).
[[noreturn]] void raise_group(const std::string& dir);

class MetaParser;
// The array's layout from its dtype, shape, chunk shape (the field `chunks_field`) and chunk
// order, the byte counts checked (overflow, chunks larger than kMaxDecodedChunkBytes): failures
// go through p.fail.
ArrayMeta checked_meta(const MetaParser& p, DType dtype, Shape shape, const Shape& chunks,
                       Order order, const char* chunks_field);

// Reads the fields of one metadata document (a .zarray, a zarr.json), every message prefixed
// with its file. `needs` completes the message for a missing field ("a zarr v2 .zarray needs
// ...").
class MetaParser {
 public:
  MetaParser(std::string file, const json& doc, std::string needs)
      : file_(std::move(file)), doc_(doc), needs_(std::move(needs)) {}

  [[noreturn]] void fail(ErrorCode code, const std::string& message) const {
    throw_error(code, file_ + ": " + message);
  }
  [[noreturn]] void bad_field(const char* name, const std::string& expected) const {
    fail(ErrorCode::Corrupt,
         std::string("field '") + name + "' is " + brief(doc_.at(name)) + ", expected " + expected);
  }

  const json& required(const char* name) const {
    const auto it = doc_.find(name);
    if (it == doc_.end()) {
      fail(ErrorCode::Corrupt, std::string("missing field '") + name + "' (" + needs_ + ")");
    }
    return *it;
  }
  const json* optional(const char* name) const {
    const auto it = doc_.find(name);
    return it == doc_.end() ? nullptr : &*it;
  }

  // shape: non-negative extents; chunks: positive extents.
  Shape extents(const char* name, std::int64_t minimum) const {
    const json& v = required(name);
    const std::string expected = std::string("a list of integers >= ") + std::to_string(minimum);
    if (!v.is_array()) bad_field(name, expected);
    Shape out;
    for (const json& e : v) {
      if (e.is_number_unsigned() && e.get<std::uint64_t>() > INT64_MAX) {
        fail(ErrorCode::InvalidArgument, std::string("field '") + name + "' has extent " +
                                             brief(e) + ", which overflows 63 bits");
      }
      if (!e.is_number_integer()) bad_field(name, expected);
      const auto x = e.get<std::int64_t>();
      if (x < minimum) {
        fail(ErrorCode::Corrupt, std::string("field '") + name + "' has extent " +
                                     std::to_string(x) + " (" + brief(v) + "), expected " +
                                     expected);
      }
      out.push_back(x);
    }
    return out;
  }

  int int_option(const json& codec, const char* key, int fallback) const {
    const auto it = codec.find(key);
    if (it == codec.end() || it->is_null()) return fallback;
    if (!it->is_number_integer() || it->get<std::int64_t>() < INT_MIN ||
        it->get<std::int64_t>() > INT_MAX) {
      fail(ErrorCode::Corrupt, std::string("compressor option '") + key + "' is " + it->dump() +
                                   ", expected an integer");
    }
    return static_cast<int>(it->get<std::int64_t>());
  }

  std::vector<std::byte> fill_value(DType dtype) const {
    const json& v = required("fill_value");
    if (v.is_null()) return {};
    std::vector<std::byte> out(dtype.itemsize());
    if (dtype.id() == TypeId::F16) {  // a storage type: visit_type has no C++ type for it
      const std::uint16_t bits = float16_bits(v);
      std::memcpy(out.data(), &bits, sizeof bits);
    } else {
      visit_type(dtype.id(), [&](auto tag) {
        using T = decltype(tag);
        const T x = convert<T>(v);
        std::memcpy(out.data(), &x, sizeof x);
      });
    }
    if (!dtype.is_native()) std::reverse(out.begin(), out.end());
    return out;
  }

 private:
  template <class T>
  T convert(const json& v) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (v.is_boolean()) return v.get<bool>();
      if (v.is_number_integer() && (v == 0 || v == 1)) return v == 1;
      bad_field("fill_value", "true or false for a bool array");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (v.is_number()) {
        const double d = v.get<double>();
        // A finite value outside the type's range has no T (the conversion is undefined).
        if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<T>::max())) {
          bad_field("fill_value", "a number within the data type's range");
        }
        return static_cast<T>(d);
      }
      if (v == "NaN") return std::numeric_limits<T>::quiet_NaN();
      if (v == "Infinity") return std::numeric_limits<T>::infinity();
      if (v == "-Infinity") return -std::numeric_limits<T>::infinity();
      using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
      Bits bits = 0;
      if (hex_bits(v, &bits)) {
        T x;
        std::memcpy(&x, &bits, sizeof x);
        return x;
      }
      bad_field("fill_value",
                "a number, null, \"NaN\", \"Infinity\", \"-Infinity\" or "
                "the bits in hex (\"0x7fc00000\")");
    } else {
      const std::string expected = std::string("an integer in the range of ") +
                                   std::to_string(+std::numeric_limits<T>::min()) + ".." +
                                   std::to_string(+std::numeric_limits<T>::max());
      if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u <= static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
          return static_cast<T>(u);
        }
      } else if (v.is_number_integer()) {
        const auto i = v.get<std::int64_t>();
        if (std::is_signed_v<T> ? (i >= static_cast<std::int64_t>(std::numeric_limits<T>::min()) &&
                                   i <= static_cast<std::int64_t>(std::numeric_limits<T>::max()))
                                : i >= 0) {
          return static_cast<T>(i);
        }
      } else if (v.is_number_float()) {
        // Some writers store integral fill values as floats ("0.0"). T's range is
        // [min, 2^digits), both ends exact in a double.
        const double d = v.get<double>();
        if (std::trunc(d) == d && d >= static_cast<double>(std::numeric_limits<T>::min()) &&
            d < std::ldexp(1.0, std::numeric_limits<T>::digits)) {
          return static_cast<T>(d);
        }
      }
      bad_field("fill_value", expected);
    }
  }

  // zarr v3: an element's bits as hex, most significant byte first, exactly 2 digits a byte
  // ("0x7fc00000" for float32, "0x7e00" for float16). False for anything else.
  template <class Bits>
  static bool hex_bits(const json& v, Bits* out) {
    if (!v.is_string()) return false;
    const std::string& text = v.get_ref<const std::string&>();
    if (text.size() != 2 + 2 * sizeof(Bits) || text[0] != '0' || text[1] != 'x') return false;
    Bits bits = 0;
    for (std::size_t i = 2; i < text.size(); ++i) {
      const char ch = text[i];
      const int digit = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
      if (digit < 0) return false;
      bits = static_cast<Bits>((bits << 4) | static_cast<Bits>(digit));
    }
    *out = bits;
    return true;
  }

  // A float16 fill value's bits: a number rounded as numpy's astype(float16) rounds it (one
  // that would round to infinity is refused, as float32's out-of-range values are), the
  // non-finite strings, or zarr v3's hex bits ("0x7e00").
  std::uint16_t float16_bits(const json& v) const {
    if (v.is_number()) {
      const double d = v.get<double>();
      const Float16 h = Float16::from(d);
      if (std::isfinite(d) && !std::isfinite(h.value())) {
        bad_field("fill_value", "a number within float16's range (at most 65504 in magnitude)");
      }
      return h.bits;
    }
    if (v == "NaN") return Float16::from(std::numeric_limits<double>::quiet_NaN()).bits;
    if (v == "Infinity") return Float16::from(std::numeric_limits<double>::infinity()).bits;
    if (v == "-Infinity") return Float16::from(-std::numeric_limits<double>::infinity()).bits;
    std::uint16_t bits = 0;
    if (hex_bits(v, &bits)) return bits;
    bad_field("fill_value",
              "a number, null, \"NaN\", \"Infinity\", \"-Infinity\" or "
              "the bits in hex (\"0x7e00\")");
  }

  std::string file_;
  const json& doc_;
  std::string needs_;
};

}  // namespace mmc::detail::zarr
