// zarr v2 metadata: .zarray parsed strictly (every message names the file and the field) and
// written for a ZarrWriter's spec.
#include "io/zarr/metadata.hpp"

#include <blosc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/chunk_limits.hpp"
#include "io/open_read_only.hpp"
#include "mmc/error.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail::zarr {
namespace {

using nlohmann::json;

// A .zarray is a few hundred bytes; anything this large is not one.
constexpr std::uint64_t kMaxMetadataBytes = 16u << 20;

// Parses metadata of one .zarray, every message prefixed with its path.
class MetaParser {
 public:
  MetaParser(std::string file, const json& doc) : file_(std::move(file)), doc_(doc) {}

  [[noreturn]] void fail(ErrorCode code, const std::string& message) const {
    throw_error(code, file_ + ": " + message);
  }
  [[noreturn]] void bad_field(const char* name, const std::string& expected) const {
    fail(ErrorCode::Corrupt,
         std::string("field '") + name + "' is " + doc_.at(name).dump() + ", expected " + expected);
  }

  const json& required(const char* name) const {
    const auto it = doc_.find(name);
    if (it == doc_.end()) {
      fail(ErrorCode::Corrupt, std::string("missing field '") + name +
                                   "' (a zarr v2 .zarray needs zarr_format, shape, chunks, "
                                   "dtype, order, compressor and fill_value)");
    }
    return *it;
  }
  const json* optional(const char* name) const {
    const auto it = doc_.find(name);
    return it == doc_.end() ? nullptr : &*it;
  }

  void check_format() const {
    const json& v = required("zarr_format");
    if (!v.is_number_integer()) bad_field("zarr_format", "the integer 2");
    if (v.get<std::int64_t>() != 2) {
      fail(ErrorCode::InvalidArgument, "zarr_format " + v.dump() +
                                           " is not supported (only zarr v2 stores can be read; "
                                           "convert the array with zarr-python 2)");
    }
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
                                             e.dump() + ", which overflows 63 bits");
      }
      if (!e.is_number_integer()) bad_field(name, expected);
      const auto x = e.get<std::int64_t>();
      if (x < minimum) {
        fail(ErrorCode::Corrupt, std::string("field '") + name + "' has extent " +
                                     std::to_string(x) + " (" + v.dump() + "), expected " +
                                     expected);
      }
      out.push_back(x);
    }
    return out;
  }

  DType dtype() const {
    const json& v = required("dtype");
    if (v.is_array()) {
      fail(ErrorCode::InvalidArgument,
           "structured dtype " + v.dump() +
               " is not supported (only bool, integer and float elements can be read)");
    }
    if (!v.is_string()) bad_field("dtype", "a numpy dtype string such as \"<f8\"");
    try {
      return DType::from_numpy_descr(v.get<std::string>());
    } catch (const Error& e) {
      fail(ErrorCode::InvalidArgument, std::string("field 'dtype': ") + e.what());
    }
  }

  Order order() const {
    const json& v = required("order");
    if (v == "C") return Order::C;
    if (v == "F") return Order::F;
    bad_field("order", "\"C\" or \"F\"");
  }

  char separator() const {
    const json* v = optional("dimension_separator");
    if (v == nullptr || v->is_null() || *v == ".") return '.';
    if (*v == "/") return '/';
    bad_field("dimension_separator", "\".\" or \"/\"");
  }

  void check_filters() const {
    const json* v = optional("filters");  // required by the spec; treated as null if absent
    if (v == nullptr || v->is_null() || (v->is_array() && v->empty())) return;
    if (!v->is_array()) bad_field("filters", "null or a list of codecs");
    std::string ids;
    for (const json& f : *v) {
      if (!ids.empty()) ids += ", ";
      ids += f.is_object() && f.contains("id") ? f["id"].dump() : f.dump();
    }
    fail(ErrorCode::InvalidArgument,
         "filters [" + ids + "] are not supported (only arrays without filters can be read)");
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

  CodecSpec compressor() const {
    const json& v = required("compressor");
    CodecSpec c;
    if (v.is_null()) return c;
    if (!v.is_object() || !v.contains("id") || !v["id"].is_string()) {
      bad_field("compressor", "null or an object with a string \"id\"");
    }
    const std::string id = v["id"].get<std::string>();
    if (id == "zlib" || id == "gzip" || id == "zstd") {
      c.codec = id == "zlib" ? Codec::Zlib : (id == "gzip" ? Codec::Gzip : Codec::Zstd);
      c.level = int_option(v, "level", -1);
      return c;
    }
    if (id == "blosc") {
      c.codec = Codec::Blosc;
      const auto cname = v.find("cname");
      if (cname != v.end() && !cname->is_string()) {
        fail(ErrorCode::Corrupt, "compressor option 'cname' is " + cname->dump() +
                                     ", expected a string such as \"lz4\"");
      }
      c.cname = cname != v.end() ? cname->get<std::string>() : "lz4";
      if (blosc_compname_to_compcode(c.cname.c_str()) < 0) {
        fail(ErrorCode::InvalidArgument, "blosc codec '" + c.cname +
                                             "' is not available in this libblosc (it has " +
                                             blosc_list_compressors() + ")");
      }
      c.level = int_option(v, "clevel", 5);
      c.shuffle = int_option(v, "shuffle", 1);
      return c;
    }
    fail(ErrorCode::InvalidArgument,
         "compressor '" + id +
             "' is not supported (supported: null, zlib, gzip, zstd, blosc); recompress the "
             "array with one of those");
  }

  // One element in dtype's byte order, or empty for null (zeros).
  std::vector<std::byte> fill_value(DType dtype) const {
    const json& v = required("fill_value");
    if (v.is_null()) return {};
    std::vector<std::byte> out(dtype.itemsize());
    visit_type(dtype.id(), [&](auto tag) {
      using T = decltype(tag);
      const T x = convert<T>(v);
      std::memcpy(out.data(), &x, sizeof x);
    });
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
      if (v.is_number()) return static_cast<T>(v.get<double>());
      if (v == "NaN") return std::numeric_limits<T>::quiet_NaN();
      if (v == "Infinity") return std::numeric_limits<T>::infinity();
      if (v == "-Infinity") return -std::numeric_limits<T>::infinity();
      bad_field("fill_value", "a number, null, \"NaN\", \"Infinity\" or \"-Infinity\"");
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

  std::string file_;
  const json& doc_;
};

// Reads the small text file `path` whole. Throws Error(NotFound) when it is missing.
std::string read_small_file(const std::string& path) {
  const UniqueFd fd = open_read_only(path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw_errno(path + ": cannot stat");
  if (!S_ISREG(st.st_mode)) throw_error(ErrorCode::Corrupt, path + ": is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > kMaxMetadataBytes) {
    throw_error(ErrorCode::Corrupt,
          path + ": " + std::to_string(size) + " bytes is far too large for zarr metadata");
  }
  std::string text(size, '\0');
  pread_exact(fd.get(), reinterpret_cast<std::byte*>(text.data()), size, path);
  return text;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// Explains why `dir` has no .zarray: not there at all, a group, or a zarr v3 array.
[[noreturn]] void raise_no_array(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    throw_error(ErrorCode::NotFound, dir + ": no such zarr array (the path does not exist)");
  }
  if (!S_ISDIR(st.st_mode)) {
    throw_error(ErrorCode::NotFound,
          dir + ": is not a zarr array (a zarr v2 array is a directory holding .zarray)");
  }
  if (exists(dir + "/.zgroup")) {
    throw_error(ErrorCode::NotFound, dir +
                                   ": is a zarr group, not an array; open one of its arrays "
                                   "(a subdirectory holding .zarray)");
  }
  if (exists(dir + "/zarr.json")) {
    throw_error(ErrorCode::NotFound,
          dir + ": holds zarr.json, a zarr v3 store; only zarr v2 arrays (.zarray) are read");
  }
  throw_error(ErrorCode::NotFound, dir + ": no .zarray inside, so it is not a zarr v2 array");
}

// The JSON of one fill element (dtype's byte order): numbers, booleans, and zarr's strings
// for non-finite floats.
json fill_json(DType dtype, const std::vector<std::byte>& fill) {
  std::vector<std::byte> native(fill);
  if (!dtype.is_native()) std::reverse(native.begin(), native.end());
  return visit_type(dtype.id(), [&](auto tag) -> json {
    using T = decltype(tag);
    T v;
    std::memcpy(&v, native.data(), sizeof v);
    if constexpr (std::is_same_v<T, bool>) {
      return native[0] != std::byte{0};
    } else if constexpr (std::is_floating_point_v<T>) {
      if (std::isnan(v)) return "NaN";
      if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
      return static_cast<double>(v);
    } else {
      return v;
    }
  });
}

}  // namespace

std::string describe_codec(const CodecSpec& c) {
  const std::string level = c.level >= 0 ? "(level=" + std::to_string(c.level) + ")" : "";
  switch (c.codec) {
    case Codec::None:
      return "none";
    case Codec::Zlib:
      return "zlib" + level;
    case Codec::Gzip:
      return "gzip" + level;
    case Codec::Zstd:
      return "zstd" + level;
    case Codec::Blosc:
      return "blosc(" + c.cname + ",shuffle=" + std::to_string(c.shuffle) +
             ",clevel=" + std::to_string(c.level) + ")";
  }
  return "?";
}

Metadata read_metadata(const std::string& dir) {
  const std::string file = dir + "/.zarray";
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    // Only a missing .zarray means "not an array"; EACCES on the folder is said as such.
    if (errno == ENOENT || errno == ENOTDIR) raise_no_array(dir);
    throw_errno(file + ": cannot read");
  }
  const std::string text = read_small_file(file);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    throw_error(ErrorCode::Corrupt, file + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) throw_error(ErrorCode::Corrupt, file + ": is not a JSON object");

  const MetaParser p(file, doc);
  try {
    p.check_format();
    const DType dtype = p.dtype();
    Shape shape = p.extents("shape", 0);
    Shape chunks = p.extents("chunks", 1);
    if (chunks.size() != shape.size()) {
      p.fail(ErrorCode::Corrupt, "field 'chunks' " + doc["chunks"].dump() + " has " +
                                     std::to_string(chunks.size()) + " axes, 'shape' " +
                                     doc["shape"].dump() + " has " + std::to_string(shape.size()));
    }
    const Order order = p.order();
    p.check_filters();
    CodecSpec codec = p.compressor();
    const char separator = p.separator();
    std::vector<std::byte> fill = p.fill_value(dtype);

    ArrayMeta meta;
    std::uint64_t chunk_bytes = dtype.itemsize();
    try {
      meta = ArrayMeta::contiguous(dtype, std::move(shape), order);
      for (std::int64_t c : chunks) {
        chunk_bytes = checked_mul(chunk_bytes, static_cast<std::uint64_t>(c), "chunk");
      }
    } catch (const Error& e) {
      p.fail(e.code(), std::string("field 'shape' or 'chunks': ") + e.what());
    }
    const std::string problem = chunk_size_problem(chunk_bytes, meta.nbytes());
    if (!problem.empty())
      p.fail(ErrorCode::Corrupt, "chunks " + doc["chunks"].dump() + " " + problem);
    return Metadata{std::move(meta), std::move(chunks), std::move(fill), std::move(codec),
                    separator};
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type that a check above let through.
    throw_error(ErrorCode::Corrupt, file + ": malformed metadata (" + e.what() + ")");
  }
}

std::string metadata_text(const ZarrSpec& spec) {
  json compressor = nullptr;
  switch (spec.compressor) {
    case Compressor::None:
      break;
    case Compressor::Zlib:
      compressor = {{"id", "zlib"}, {"level", spec.level}};
      break;
    case Compressor::Zstd:
      compressor = {{"id", "zstd"}, {"level", spec.level}};
      break;
    case Compressor::Blosc:
      compressor = {{"id", "blosc"},
                    {"cname", spec.blosc_cname},
                    {"clevel", spec.level},
                    {"shuffle", spec.blosc_shuffle},
                    {"blocksize", 0}};
      break;
  }
  json doc;
  doc["zarr_format"] = 2;
  doc["shape"] = spec.shape;
  doc["chunks"] = spec.chunks;
  doc["dtype"] = spec.dtype.numpy_descr();
  doc["order"] = spec.order == Order::C ? "C" : "F";
  doc["compressor"] = compressor;
  doc["filters"] = nullptr;
  doc["fill_value"] = fill_json(spec.dtype, spec.fill);
  doc["dimension_separator"] = ".";
  return doc.dump(4) + "\n";
}

}  // namespace mmc::detail::zarr
