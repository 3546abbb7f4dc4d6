// zarr v2 metadata: .zarray parsed strictly (every message names the file and the field) and
// written for a ZarrWriter's spec; the file helpers meta_parser.hpp declares.
#include "io/zarr/metadata.hpp"

#include <blosc.h>
#include <dirent.h>
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
#include "io/zarr/meta_parser.hpp"
#include "mmc/error.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail::zarr {
namespace {

// Deeper JSON is refused (real metadata nests a few levels; attributes a few more).
constexpr int kMaxJsonDepth = 64;

// A .zarray is a few hundred bytes; anything this large is not one.
constexpr std::uint64_t kMaxMetadataBytes = 16u << 20;

// The fields only a v2 .zarray has.
class V2Parser : public MetaParser {
 public:
  V2Parser(std::string file, const json& doc)
      : MetaParser(std::move(file), doc,
                   "a zarr v2 .zarray needs zarr_format, shape, chunks, dtype, order, "
                   "compressor and fill_value") {}

  void check_format() const {
    const json& v = required("zarr_format");
    if (!v.is_number_integer()) bad_field("zarr_format", "the integer 2");
    if (v.get<std::int64_t>() != 2) {
      fail(ErrorCode::InvalidArgument,
           "zarr_format " + brief(v) + " in a .zarray is not supported (a .zarray is zarr v2's)");
    }
  }

  DType dtype() const {
    const json& v = required("dtype");
    if (v.is_array()) {
      fail(ErrorCode::InvalidArgument,
           "structured dtype " + brief(v) +
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
      ids += f.is_object() && f.contains("id") ? brief(f["id"]) : brief(f);
    }
    fail(ErrorCode::InvalidArgument,
         "filters [" + ids + "] are not supported (only arrays without filters can be read)");
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
};

}  // namespace

void raise_group(const std::string& dir) {
  std::vector<std::string> arrays;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string entry = e->d_name;
      if (entry == "." || entry == "..") continue;
      if (exists(dir + "/" + entry + "/.zarray") || exists(dir + "/" + entry + "/zarr.json")) {
        arrays.push_back(entry);
      }
    }
    ::closedir(d);
  }
  std::sort(arrays.begin(), arrays.end());
  std::string listing;
  for (const std::string& a : arrays) listing += (listing.empty() ? "" : ", ") + a;
  throw_error(ErrorCode::NotFound,
              dir + ": is a zarr group, not an array; open one of its members (" +
                  (listing.empty() ? std::string("it has none at its top level") : listing) + ")");
}

namespace {

// Explains why `dir` has no .zarray: not there at all, a group, or a zarr v3 array.
[[noreturn]] void raise_no_array(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    throw_error(ErrorCode::NotFound, dir + ": no such zarr array (the path does not exist)");
  }
  if (!S_ISDIR(st.st_mode)) {
    throw_error(ErrorCode::NotFound,
                dir +
                    ": is not a zarr array (a zarr array is a directory holding .zarray or "
                    "zarr.json)");
  }
  if (exists(dir + "/.zgroup")) raise_group(dir);
  throw_error(ErrorCode::NotFound,
              dir + ": holds neither .zarray nor zarr.json, so it is not a zarr array");
}

}  // namespace

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

// The JSON of one fill element (dtype's byte order): numbers, booleans, and zarr's strings
// for non-finite floats.
json fill_json(DType dtype, const std::vector<std::byte>& fill) {
  std::vector<std::byte> native(fill);
  if (!dtype.is_native()) std::reverse(native.begin(), native.end());
  if (dtype.id() == TypeId::F16) {  // its exact value, as zarr-python writes it
    Float16 h;
    std::memcpy(&h.bits, native.data(), sizeof h.bits);
    const double v = h.value();
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
    return v;
  }
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
    case Codec::Crc32c:
      return "crc32c";
  }
  return "?";
}

std::string describe_codecs(const std::vector<CodecSpec>& codecs) {
  std::string out;
  for (const CodecSpec& c : codecs) out += (out.empty() ? "" : "+") + describe_codec(c);
  return out.empty() ? "none" : out;
}

json parse_document(const std::string& file, std::string (*filter)(const std::string& text)) {
  const std::string text =
      filter != nullptr ? filter(read_small_file(file)) : read_small_file(file);
  json doc;
  try {
    // Nesting is bounded before it is built: printing or copying a value recurses once per
    // level, and a few hundred KiB of '[' would overflow the stack.
    doc = json::parse(text, [&file](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) {
        throw_error(ErrorCode::Corrupt, file + ": JSON nested more than " +
                                            std::to_string(kMaxJsonDepth) +
                                            " levels deep; not zarr metadata");
      }
      return true;
    });
  } catch (const json::exception& e) {
    throw_error(ErrorCode::Corrupt, file + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) throw_error(ErrorCode::Corrupt, file + ": is not a JSON object");
  return doc;
}

ArrayMeta checked_meta(const MetaParser& p, DType dtype, Shape shape, const Shape& chunks,
                       Order order, const char* chunks_field) {
  if (chunks.size() != shape.size()) {
    p.fail(ErrorCode::Corrupt,
           std::string("field '") + chunks_field + "' " + format_shape(chunks, true) + " has " +
               std::to_string(chunks.size()) + " axes, 'shape' " + format_shape(shape, true) +
               " has " + std::to_string(shape.size()));
  }
  ArrayMeta meta;
  std::uint64_t chunk_bytes = dtype.itemsize();
  try {
    meta = ArrayMeta::contiguous(dtype, std::move(shape), order);
    for (std::int64_t c : chunks) {
      chunk_bytes = checked_mul(chunk_bytes, static_cast<std::uint64_t>(c), "chunk");
    }
  } catch (const Error& e) {
    p.fail(e.code(), std::string("the shape or the chunk shape: ") + e.what());
  }
  const std::string problem = chunk_size_problem(chunk_bytes, meta.nbytes());
  if (!problem.empty())
    p.fail(ErrorCode::Corrupt, "chunks " + format_shape(chunks) + " " + problem);
  return meta;
}

Metadata read_metadata(const std::string& dir) {
  const std::string file = dir + "/.zarray";
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    // Only a missing .zarray means "not an array"; EACCES on the folder is said as such.
    if (errno != ENOENT && errno != ENOTDIR) throw_errno(file + ": cannot read");
    if (exists(dir + "/zarr.json")) return read_metadata_v3(dir + "/zarr.json");
    raise_no_array(dir);
  }
  const json doc = parse_document(file);
  const V2Parser p(file, doc);
  try {
    p.check_format();
    Metadata m;
    const DType dtype = p.dtype();
    Shape shape = p.extents("shape", 0);
    m.chunks = p.extents("chunks", 1);
    const Order order = p.order();
    p.check_filters();
    const CodecSpec codec = p.compressor();
    if (codec.codec != Codec::None) m.codecs.push_back(codec);
    m.keys.separator = p.separator();
    m.fill = p.fill_value(dtype);
    m.meta = checked_meta(p, dtype, std::move(shape), m.chunks, order, "chunks");
    return m;
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

std::vector<CodecSpec> writer_codecs(const ZarrSpec& spec) {
  CodecSpec c;
  c.level = spec.level;
  switch (spec.compressor) {
    case Compressor::None:
      return {};
    case Compressor::Zlib:
      // zarr v3 has no zlib codec: its gzip holds the same deflate stream in gzip's wrapper.
      c.codec = spec.zarr_format == 3 ? Codec::Gzip : Codec::Zlib;
      break;
    case Compressor::Zstd:
      c.codec = Codec::Zstd;
      break;
    case Compressor::Blosc:
      c.codec = Codec::Blosc;
      c.cname = spec.blosc_cname;
      c.shuffle = spec.blosc_shuffle;
      break;
  }
  return {c};
}

}  // namespace mmc::detail::zarr
