// zarr v2 directory stores opened for reading: .zarray parsed strictly, chunks mapped in place
// (uncompressed) or read with pread and decoded (zlib, gzip, zstd, blosc).
//
// Fork: a child inherits the parent's chunk mappings and needs no reopen. The mapping table is
// guarded by a mutex held only around map lookups and inserts, so a child forked from a parent
// whose other threads were inside chunk_in_place could inherit it locked; fork from one thread
// (as run_tasks and the Pool's fork server do).
#include <blosc.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "io/codecs.hpp"
#include "io/open_read_only.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
namespace {

using nlohmann::json;

// Uncompressed chunks are mapped one mapping each and stay mapped for the array's lifetime
// (chunk_in_place's pointers must stay valid). Past this many mappings chunk_in_place returns
// nullptr and read_chunk reads with pread instead, so a store of millions of chunks cannot
// exhaust vm.max_map_count (65530 by default). Mappings hold no file descriptor.
constexpr std::size_t kMaxMappedChunks = 4096;
// A .zarray is a few hundred bytes; anything this large is not one.
constexpr std::uint64_t kMaxMetadataBytes = 16u << 20;

enum class Codec : std::uint8_t { None, Zlib, Gzip, Zstd, Blosc };

struct CodecSpec {
  Codec codec = Codec::None;
  int level = -1;  // -1: not given
  std::string cname;
  int shuffle = 0;
};

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

// The largest file any of our codecs can make of n bytes (deflate's stored blocks, zstd's
// raw blocks and blosc's memcpy mode all add well under n/8 + 64 KiB). A bigger chunk file is
// corrupt, and is rejected before it is read into memory.
std::uint64_t max_encoded_size(std::uint64_t n) { return n + n / 8 + 65536; }

// Reads exactly n bytes at offset 0 of fd. A short read means the file shrank under us.
void pread_exact(int fd, std::byte* out, std::uint64_t n, const std::string& path) {
  const ssize_t done = detail::pread_full(fd, out, n, 0);
  if (done < 0) raise_errno(path + ": cannot read");
  if (static_cast<std::uint64_t>(done) < n) {
    raise(ErrorCode::Corrupt, path + ": file ended after " + std::to_string(done) + " of " +
                                  std::to_string(n) + " bytes (was it truncated meanwhile?)");
  }
}

// Fills out[0, n) with copies of the one-element pattern.
void fill_with(std::byte* out, std::uint64_t n, const std::vector<std::byte>& pattern) {
  const std::size_t k = pattern.size();
  if (n == 0) return;
  if (std::all_of(pattern.begin(), pattern.end(), [&](std::byte b) { return b == pattern[0]; })) {
    std::memset(out, static_cast<int>(pattern[0]), n);
    return;
  }
  std::memcpy(out, pattern.data(), k);
  // Doubling copies: log2(n / k) memcpy calls.
  std::uint64_t have = k;
  while (have < n) {
    const std::uint64_t step = std::min(have, n - have);
    std::memcpy(out + have, out, step);
    have += step;
  }
}

// ---- .zarray parsing ----

// Parses metadata of one .zarray, every message prefixed with its path.
class MetaParser {
 public:
  MetaParser(std::string file, const json& doc) : file_(std::move(file)), doc_(doc) {}

  [[noreturn]] void fail(ErrorCode code, const std::string& message) const {
    raise(code, file_ + ": " + message);
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

// ---- the array ----

class ZarrArray final : public ChunkedArray {
 public:
  ZarrArray(std::string path, ArrayMeta meta, Shape chunks, std::vector<std::byte> fill,
            CodecSpec codec, char separator)
      : ChunkedArray(std::move(meta), std::move(chunks), std::move(fill)),
        path_(std::move(path)),
        codec_(std::move(codec)),
        separator_(separator),
        grid_(grid()) {}

  StorageInfo storage() const override;
  std::string name() const override { return path_; }
  const std::byte* chunk_in_place(const Shape& coord) const override;
  void read_chunk(const Shape& coord, std::byte* out) const override;

 private:
  // C-order index of a chunk; throws Error(InvalidArgument) for a coordinate off the grid.
  std::int64_t linear_index(const Shape& coord) const;
  std::string chunk_key(const Shape& coord) const;
  // True when `name` is the key of a cell of the grid (components canonical and in range).
  bool key_component_ok(const std::string& text, std::size_t axis) const;
  void count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const;

  std::string path_;
  CodecSpec codec_;
  char separator_;
  Shape grid_;
  mutable std::mutex mutex_;  // guards mapped_
  mutable std::unordered_map<std::int64_t, MappedFile> mapped_;
};

std::int64_t ZarrArray::linear_index(const Shape& coord) const {
  if (coord.size() != grid_.size()) {
    raise(ErrorCode::InvalidArgument, path_ + ": chunk coordinate " + format_shape(coord) +
                                          " has " + std::to_string(coord.size()) +
                                          " axes, the array " + std::to_string(grid_.size()));
  }
  std::int64_t index = 0;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= grid_[i]) {
      raise(ErrorCode::InvalidArgument, path_ + ": chunk coordinate " + format_shape(coord) +
                                            " lies outside the chunk grid " + format_shape(grid_));
    }
    index = index * grid_[i] + coord[i];
  }
  return index;
}

std::string ZarrArray::chunk_key(const Shape& coord) const {
  if (coord.empty()) return "0";  // zarr's key of the one chunk of a 0-d array
  std::string key;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (i) key += separator_;
    key += std::to_string(coord[i]);
  }
  return key;
}

const std::byte* ZarrArray::chunk_in_place(const Shape& coord) const {
  if (codec_.codec != Codec::None) return nullptr;
  const std::int64_t index = linear_index(coord);
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto it = mapped_.find(index);
    if (it != mapped_.end()) return it->second.data();
    if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  }
  const std::string file = path_ + "/" + chunk_key(coord);
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return nullptr;  // absent: reads as fill value
    raise_errno(file + ": cannot stat chunk");
  }
  if (!S_ISREG(st.st_mode)) {
    raise(ErrorCode::Corrupt, file + ": chunk is not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) != chunk_nbytes()) {
    raise(ErrorCode::Corrupt, file + ": uncompressed chunk has " + std::to_string(st.st_size) +
                                  " bytes, expected " + std::to_string(chunk_nbytes()) +
                                  " (chunk shape " + format_shape(chunk_shape()) + " of " +
                                  meta().dtype.numpy_descr() + "); the store is damaged");
  }
  MappedFile mapping = MappedFile::open(file, MapMode::ReadOnly, 0, chunk_nbytes());
  const std::lock_guard<std::mutex> lock(mutex_);
  const auto it = mapped_.find(index);
  if (it != mapped_.end()) return it->second.data();  // another thread mapped it first
  if (mapped_.size() >= kMaxMappedChunks) return nullptr;
  return mapped_.emplace(index, std::move(mapping)).first->second.data();
}

void ZarrArray::read_chunk(const Shape& coord, std::byte* out) const {
  const std::int64_t index = linear_index(coord);
  const std::uint64_t n = chunk_nbytes();
  if (codec_.codec == Codec::None) {
    const std::byte* mapped = nullptr;
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      const auto it = mapped_.find(index);
      if (it != mapped_.end()) mapped = it->second.data();
    }
    if (mapped != nullptr) {  // mappings are never dropped before the array is destroyed
      std::memcpy(out, mapped, n);
      return;
    }
  }
  const std::string file = path_ + "/" + chunk_key(coord);
  const detail::UniqueFd fd = detail::open_fd(file.c_str(), O_RDONLY);
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) {
      fill_with(out, n, fill_value());
      return;
    }
    raise_errno(file + ": cannot open chunk");
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) raise_errno(file + ": cannot stat chunk");
  if (!S_ISREG(st.st_mode)) raise(ErrorCode::Corrupt, file + ": chunk is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (codec_.codec == Codec::None) {
    if (size != n) {
      raise(ErrorCode::Corrupt, file + ": uncompressed chunk has " + std::to_string(size) +
                                    " bytes, expected " + std::to_string(n) + " (chunk shape " +
                                    format_shape(chunk_shape()) + " of " +
                                    meta().dtype.numpy_descr() + "); the store is damaged");
    }
    pread_exact(fd.get(), out, n, file);
    return;
  }
  if (size > max_encoded_size(n)) {
    raise(ErrorCode::Corrupt, file + ": compressed chunk has " + std::to_string(size) +
                                  " bytes, more than any " + describe_codec(codec_) +
                                  " encoding of a " + std::to_string(n) + "-byte chunk");
  }
  std::vector<std::byte> encoded(size);
  pread_exact(fd.get(), encoded.data(), size, file);
  switch (codec_.codec) {
    case Codec::Zlib:
    case Codec::Gzip:
      detail::zlib_decode(encoded.data(), size, out, n, codec_.codec == Codec::Gzip, file);
      break;
    case Codec::Zstd:
      detail::zstd_decode(encoded.data(), size, out, n, file);
      break;
    case Codec::Blosc:
      detail::blosc_decode(encoded.data(), size, out, n, file);
      break;
    case Codec::None:
      break;
  }
}

bool ZarrArray::key_component_ok(const std::string& text, std::size_t axis) const {
  if (text.empty() || text.size() > 19) return false;
  if (text.size() > 1 && text[0] == '0') return false;  // zarr never writes leading zeros
  std::int64_t v = 0;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  return grid_.empty() ? v == 0 : v < grid_[axis];
}

// Counts the chunk files under `dir`, which holds keys from component `axis` on. With the "."
// separator every key is one file name; with "/" each component but the last is a folder.
void ZarrArray::count_stored(const std::string& dir, std::size_t axis, StorageInfo* info) const {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    if (axis == 0) info->chunks_stored = -1;  // the store itself cannot be listed
    return;
  }
  const std::size_t nd = std::max<std::size_t>(grid_.size(), 1);
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    const std::string full = dir + "/" + entry;
    if (separator_ == '/' && axis + 1 < nd) {
      if (!key_component_ok(entry, axis)) continue;
      struct stat st;
      if (::stat(full.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        count_stored(full, axis + 1, info);
      }
      continue;
    }
    // The remaining components, joined by '.', make up this name.
    std::size_t start = 0;
    std::size_t a = axis;
    bool ok = true;
    for (;;) {
      const std::size_t end = separator_ == '.' ? entry.find('.', start) : std::string::npos;
      const std::string part =
          entry.substr(start, end == std::string::npos ? std::string::npos : end - start);
      if (a >= nd || !key_component_ok(part, a)) {
        ok = false;
        break;
      }
      ++a;
      if (end == std::string::npos) break;
      start = end + 1;
    }
    if (!ok || a != nd) continue;
    struct stat st;
    if (::stat(full.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    ++info->chunks_stored;
    info->stored_bytes += static_cast<std::uint64_t>(st.st_size);
  }
  ::closedir(d);
}

StorageInfo ZarrArray::storage() const {
  StorageInfo info;
  info.kind = "zarr";
  info.layout = "chunked";
  info.compressor = describe_codec(codec_);
  info.chunks_total = n_chunks();
  info.chunks_stored = 0;
  count_stored(path_, 0, &info);
  if (info.chunks_stored < 0) info.stored_bytes = 0;
  return info;
}

// Reads the small text file `path` whole. Throws Error(NotFound) when it is missing.
std::string read_small_file(const std::string& path) {
  const detail::UniqueFd fd = detail::open_read_only(path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) raise_errno(path + ": cannot stat");
  if (!S_ISREG(st.st_mode)) raise(ErrorCode::Corrupt, path + ": is not a regular file");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > kMaxMetadataBytes) {
    raise(ErrorCode::Corrupt,
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
    raise(ErrorCode::NotFound, dir + ": no such zarr array (the path does not exist)");
  }
  if (!S_ISDIR(st.st_mode)) {
    raise(ErrorCode::NotFound,
          dir + ": is not a zarr array (a zarr v2 array is a directory holding .zarray)");
  }
  if (exists(dir + "/.zgroup")) {
    raise(ErrorCode::NotFound, dir +
                                   ": is a zarr group, not an array; open one of its arrays "
                                   "(a subdirectory holding .zarray)");
  }
  if (exists(dir + "/zarr.json")) {
    raise(ErrorCode::NotFound,
          dir + ": holds zarr.json, a zarr v3 store; only zarr v2 arrays (.zarray) are read");
  }
  raise(ErrorCode::NotFound, dir + ": no .zarray inside, so it is not a zarr v2 array");
}

}  // namespace

std::unique_ptr<ChunkedArray> open_zarr(const std::string& path) {
  std::string dir = path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const std::string file = dir + "/.zarray";
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    // Only a missing .zarray means "not an array"; EACCES on the folder is said as such.
    if (errno == ENOENT || errno == ENOTDIR) raise_no_array(dir);
    raise_errno(file + ": cannot read");
  }
  const std::string text = read_small_file(file);
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    raise(ErrorCode::Corrupt, file + ": not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) raise(ErrorCode::Corrupt, file + ": is not a JSON object");

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
        chunk_bytes = detail::checked_mul(chunk_bytes, static_cast<std::uint64_t>(c), "chunk");
      }
    } catch (const Error& e) {
      p.fail(e.code(), std::string("field 'shape' or 'chunks': ") + e.what());
    }
    const std::string problem = detail::chunk_size_problem(chunk_bytes, meta.nbytes());
    if (!problem.empty())
      p.fail(ErrorCode::Corrupt, "chunks " + doc["chunks"].dump() + " " + problem);
    return std::make_unique<ZarrArray>(dir, std::move(meta), std::move(chunks), std::move(fill),
                                       std::move(codec), separator);
  } catch (const json::exception& e) {
    // A field of an unexpected JSON type that a check above let through.
    raise(ErrorCode::Corrupt, file + ": malformed metadata (" + e.what() + ")");
  }
}

}  // namespace mmc
