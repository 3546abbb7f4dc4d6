// Result sinks: atomic files (temp name + rename) and the .npy, CSV, JSON and text formats.
//
// Number formatting, shared by CSV, JSON and text: integers exactly, f64 with %.17g and f32
// with %.9g (both round-trip), bool as 0/1 (true/false in JSON). Non-finite floats are written
// "nan", "inf", "-inf" in CSV and text (numpy.loadtxt reads them) and null in JSON, which has
// no spelling for them.
#include "mmc/output.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/source.hpp"
#include "os/exact_io.hpp"

namespace mmc {
namespace {

// Temporaries not yet committed, with the pid that created them: a forked child that ever runs
// a destructor must not remove its parent's file. Process-wide by necessity, since the
// interrupt path has no other way to reach them.
std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::map<std::string, pid_t>& registry() {
  static std::map<std::string, pid_t> r;
  return r;
}

void register_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry()[path] = getpid();
}

// True when this process created the temporary (and so may remove it).
bool unregister_temp(const std::string& path) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(path);
  if (it == registry().end()) return false;
  const bool mine = it->second == getpid();
  if (mine) registry().erase(it);
  return mine;
}

std::pair<std::string, std::string> split_path(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// The array a sink was given, checked against its shape.
struct Values {
  DType dtype;
  const Shape& shape;
  const std::byte* data;
  std::int64_t size() const noexcept { return ArrayMeta::contiguous(dtype, shape).size(); }
};

Values values_of(DType dtype, const Shape& shape, std::span<const std::byte> bytes) {
  // contiguous() refuses negative extents and byte counts past 63 bits.
  const std::uint64_t want = ArrayMeta::contiguous(dtype, shape).nbytes();
  if (bytes.size() != want) {
    throw Error(ErrorCode::InvalidArgument, "an array of shape " + format_shape(shape, true) +
                                                " and dtype " + dtype.name() + " holds " +
                                                std::to_string(want) + " bytes, not " +
                                                std::to_string(bytes.size()));
  }
  return Values{dtype, shape, bytes.data()};
}

// One value as text. `json` selects JSON spellings for bool and non-finite floats.
template <class T>
void append_value(std::string& out, T v, bool json) {
  char buf[40];
  int n = 0;
  if constexpr (std::is_same_v<T, bool>) {
    out += json ? (v ? "true" : "false") : (v ? "1" : "0");
    return;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) {
      out += json ? "null" : "nan";
      return;
    }
    if (std::isinf(v)) {
      out += json ? "null" : (v > 0 ? "inf" : "-inf");
      return;
    }
    n = std::snprintf(buf, sizeof buf, std::is_same_v<T, float> ? "%.9g" : "%.17g",
                      static_cast<double>(v));
  } else if constexpr (std::is_signed_v<T>) {
    n = std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    n = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
  }
  out.append(buf, static_cast<std::size_t>(n));
}

// A float16 value: the fewest digits that read back as the same float16 (numpy's repr).
void append_value(std::string& out, Float16 h, bool json) {
  const double v = h.value();
  if (!std::isfinite(v)) return append_value(out, v, json);
  char buf[40];
  int n = 0;
  for (int digits = 1; digits <= 17; ++digits) {
    n = std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (Float16::from(std::strtod(buf, nullptr)) == h) break;
  }
  out.append(buf, static_cast<std::size_t>(n));
}

// visit_type, and Float16 for float16 (stored, never computed on: only written out here).
template <class F>
decltype(auto) visit_stored_type(TypeId id, F&& f) {
  if (id == TypeId::F16) return f(Float16{});
  return visit_type(id, std::forward<F>(f));
}

// Calls f(out, index) with a formatter bound to the result's element type.
template <class F>
void with_values(const Values& result, F&& f) {
  visit_stored_type(result.dtype.id(), [&](auto tag) {
    using T = decltype(tag);
    const T* values = reinterpret_cast<const T*>(result.data);
    f([values](std::string& out, std::int64_t i, bool json) {
      append_value(out, values[i], json);
    });
  });
}

// Rows of the last axis: (prod of leading extents) rows of `cols` values; a scalar or 1-d
// array is one value per row.
void row_layout(const Values& result, std::int64_t* rows, std::int64_t* cols) {
  if (result.shape.size() < 2) {
    *cols = 1;
    *rows = result.size();
    return;
  }
  *cols = result.shape.back();
  *rows = 1;
  for (std::size_t k = 0; k + 1 < result.shape.size(); ++k) *rows *= result.shape[k];
}

// An empty result has no rows to write: a (3, 10**12, 0) result would otherwise be 3 * 10**12
// empty lines, and its JSON as many empty lists.
bool is_empty_result(const Values& result) noexcept {
  for (const std::int64_t extent : result.shape) {
    if (extent == 0) return true;
  }
  return false;
}

std::string format_rows(const Values& result, char separator) {
  if (is_empty_result(result)) return {};
  std::int64_t rows = 0, cols = 0;
  row_layout(result, &rows, &cols);
  std::string out;
  with_values(result, [&](auto append) {
    for (std::int64_t r = 0; r < rows; ++r) {
      for (std::int64_t c = 0; c < cols; ++c) {
        if (c) out += separator;
        append(out, r * cols + c, false);
      }
      out += '\n';
    }
  });
  return out;
}

// `result` as a list of lists (a scalar: a bare number).
std::string json_data(const Values& result);

// {"dtype": ..., "shape": [...], "data": ...} with `extra`'s arrays as more keys (lists).
std::string format_json(const Values& result, const std::vector<NamedArray>& extra = {}) {
  std::string out = "{\"dtype\": \"" + result.dtype.name() + "\", \"shape\": [";
  for (std::size_t k = 0; k < result.shape.size(); ++k) {
    if (k) out += ", ";
    out += std::to_string(result.shape[k]);
  }
  out += "], \"data\": " + json_data(result);
  for (const NamedArray& more : extra) {
    const Values values = values_of(more.dtype, more.shape, more.bytes);
    out += ", \"" + more.name + "\": " + json_data(values);
  }
  return out + "}";
}

std::string json_data(const Values& result) {
  std::string out;
  if (is_empty_result(result)) return "[]";
  with_values(result, [&](auto append) {
    std::int64_t next = 0;
    // Nested lists, one level per axis; a scalar is a bare number.
    auto emit = [&](auto&& self, std::size_t axis) -> void {
      if (axis == result.shape.size()) {
        append(out, next++, true);
        return;
      }
      out += '[';
      for (std::int64_t i = 0; i < result.shape[axis]; ++i) {
        if (i) out += ", ";
        self(self, axis + 1);
      }
      out += ']';
    };
    emit(emit, 0);
  });
  return out;
}

// ---- .npz: a ZIP archive of .npy members, stored, as np.savez writes ----

void put_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint32_t crc_of(std::uint32_t crc, const void* data, std::size_t size) {
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const auto n = static_cast<uInt>(std::min<std::size_t>(size, std::size_t{1} << 30));
    crc = static_cast<std::uint32_t>(::crc32(crc, p, n));
    p += n;
    size -= n;
  }
  return crc;
}

// Writes the archive: each member's local header and data, then the central directory. Sizes or
// offsets that do not fit 32 bits go in ZIP64 extra fields (0xFFFFFFFF in the plain field), and
// the end record gets its ZIP64 twin, as the ZIP format (APPNOTE 4.5) says.
void write_npz(AtomicFile& file, const std::vector<NamedArray>& arrays) {
  constexpr std::uint64_t kMax32 = 0xFFFFFFFFu;
  constexpr std::uint16_t kDosDate = (0 << 9) | (1 << 5) | 1;  // 1980-01-01, 00:00
  std::string central;
  std::uint64_t offset = 0;
  for (const NamedArray& a : arrays) {
    const Values values = values_of(a.dtype, a.shape, a.bytes);
    const std::string header = make_npy_header(values.dtype, values.shape, false);
    const std::string name = a.name + ".npy";
    const std::uint64_t size = detail::checked_add(header.size(), a.bytes.size(), "npz member");
    const std::uint32_t crc = crc_of(crc_of(::crc32(0, nullptr, 0), header.data(), header.size()),
                                     a.bytes.data(), a.bytes.size());
    const bool big = size >= kMax32;
    std::string local;
    put_le(local, 0x04034b50, 4);
    put_le(local, big ? 45 : 20, 2);  // version needed: 4.5 for ZIP64
    put_le(local, 0, 2);              // flags
    put_le(local, 0, 2);              // stored
    put_le(local, 0, 2);              // time
    put_le(local, kDosDate, 2);
    put_le(local, crc, 4);
    put_le(local, big ? kMax32 : size, 4);
    put_le(local, big ? kMax32 : size, 4);
    put_le(local, name.size(), 2);
    put_le(local, big ? 20 : 0, 2);
    local += name;
    if (big) {
      put_le(local, 0x0001, 2);
      put_le(local, 16, 2);
      put_le(local, size, 8);
      put_le(local, size, 8);
    }
    file.write(local.data(), local.size());
    file.write(header.data(), header.size());
    file.write(a.bytes.data(), a.bytes.size());

    const bool far = offset >= kMax32;
    const int extra = (big ? 16 : 0) + (far ? 8 : 0);
    put_le(central, 0x02014b50, 4);
    put_le(central, (3 << 8) | 45, 2);  // made by: Unix, 4.5
    put_le(central, big || far ? 45 : 20, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, kDosDate, 2);
    put_le(central, crc, 4);
    put_le(central, big ? kMax32 : size, 4);
    put_le(central, big ? kMax32 : size, 4);
    put_le(central, name.size(), 2);
    put_le(central, extra > 0 ? extra + 4 : 0, 2);
    put_le(central, 0, 2);                             // comment
    put_le(central, 0, 2);                             // disk
    put_le(central, 0, 2);                             // internal attributes
    put_le(central, std::uint64_t{0100644} << 16, 4);  // a regular file, 0644
    put_le(central, far ? kMax32 : offset, 4);
    central += name;
    if (extra > 0) {
      put_le(central, 0x0001, 2);
      put_le(central, extra, 2);
      if (big) {
        put_le(central, size, 8);
        put_le(central, size, 8);
      }
      if (far) put_le(central, offset, 8);
    }
    offset = detail::checked_add(offset, detail::checked_add(local.size(), size, "npz"), "npz");
  }
  const std::uint64_t count = arrays.size();
  const bool zip64 = offset >= kMax32 || central.size() >= kMax32 || count >= 0xFFFF;
  std::string end;
  if (zip64) {
    const std::uint64_t at = detail::checked_add(offset, central.size(), "npz");
    put_le(end, 0x06064b50, 4);  // ZIP64 end of central directory record
    put_le(end, 44, 8);
    put_le(end, (3 << 8) | 45, 2);
    put_le(end, 45, 2);
    put_le(end, 0, 4);
    put_le(end, 0, 4);
    put_le(end, count, 8);
    put_le(end, count, 8);
    put_le(end, central.size(), 8);
    put_le(end, offset, 8);
    put_le(end, 0x07064b50, 4);  // its locator
    put_le(end, 0, 4);
    put_le(end, at, 8);
    put_le(end, 1, 4);
  }
  put_le(end, 0x06054b50, 4);
  put_le(end, 0, 2);
  put_le(end, 0, 2);
  put_le(end, zip64 ? 0xFFFF : count, 2);
  put_le(end, zip64 ? 0xFFFF : count, 2);
  put_le(end, zip64 ? kMax32 : central.size(), 4);
  put_le(end, zip64 ? kMax32 : offset, 4);
  put_le(end, 0, 2);
  file.write(central.data(), central.size());
  file.write(end.data(), end.size());
}

// Refuses a name used twice (an .npz member, a JSON key or a CSV column would be lost).
void check_names(const std::vector<NamedArray>& arrays) {
  for (std::size_t i = 0; i < arrays.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (arrays[i].name == arrays[j].name) {
        throw Error(ErrorCode::InvalidArgument, "two results are named '" + arrays[i].name + "'");
      }
    }
  }
}

}  // namespace

AtomicFile::AtomicFile(std::string target) : target_(std::move(target)) {
  if (target_.empty() || target_.back() == '/') {
    throw Error(ErrorCode::InvalidArgument, "'" + target_ + "' is not a file name");
  }
  const auto [dir, name] = split_path(target_);
  std::string tmpl = dir + "/." + name + ".tmp.XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  fd_ = mkostemp(buf.data(), O_CLOEXEC);
  if (fd_ < 0) throw_errno("cannot create a temporary file in " + dir + " for " + target_);
  temp_ = buf.data();
  register_temp(temp_);
  // mkostemp makes the file 0600; outputs are ordinary files (0644 before the umask applies).
  const mode_t mask = umask(0);
  umask(mask);
  if (fchmod(fd_, 0644 & ~mask) != 0) {
    const int err = errno;
    ::close(fd_);
    ::unlink(temp_.c_str());
    unregister_temp(temp_);
    errno = err;
    throw_errno("cannot set the mode of " + temp_);
  }
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : target_(std::move(other.target_)),
      temp_(std::move(other.temp_)),
      fd_(std::exchange(other.fd_, -1)),
      committed_(std::exchange(other.committed_, true)) {
  other.temp_.clear();
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_ && !temp_.empty() && unregister_temp(temp_)) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, std::size_t size) {
  if (!detail::write_all(fd_, data, size)) throw_errno("cannot write " + target_);
}

void AtomicFile::commit(bool durable) {
  if (committed_ || fd_ < 0) throw Error(ErrorCode::Internal, "AtomicFile committed twice");
  if (durable && ::fsync(fd_) != 0) throw_errno("cannot flush " + target_);
  const int fd = std::exchange(fd_, -1);
  if (::close(fd) != 0) throw_errno("cannot close " + target_);
  if (::rename(temp_.c_str(), target_.c_str()) != 0) throw_errno("cannot rename onto " + target_);
  committed_ = true;
  unregister_temp(temp_);
  if (!durable) return;
  // Make the rename itself durable; failing here loses nothing the caller could act on.
  const int dir_fd = ::open(split_path(target_).first.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void remove_pending_atomic_files() noexcept {
  std::lock_guard<std::mutex> lock(registry_mutex());
  const pid_t self = getpid();
  for (auto it = registry().begin(); it != registry().end();) {
    if (it->second == self) {
      ::unlink(it->first.c_str());
      it = registry().erase(it);
    } else {
      ++it;
    }
  }
}

OutputFormat output_format_for(const std::string& path) {
  const auto name = split_path(path).second;
  const auto dot = name.rfind('.');
  std::string ext = dot == std::string::npos ? "" : name.substr(dot);
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".npy") return OutputFormat::Npy;
  if (ext == ".npz") return OutputFormat::Npz;
  if (ext == ".csv") return OutputFormat::Csv;
  if (ext == ".json") return OutputFormat::Json;
  throw Error(ErrorCode::InvalidArgument,
              path + ": unknown output format (name it .npy, .npz, .csv or .json)");
}

void write_result(DType dtype, const Shape& shape, std::span<const std::byte> bytes,
                  const std::string& path, const std::vector<NamedArray>& extra) {
  const Values result = values_of(dtype, shape, bytes);
  const OutputFormat format = output_format_for(path);
  AtomicFile file(path);
  switch (format) {
    case OutputFormat::Npz:
      write_npz(file, {NamedArray{"arr_0", dtype, shape, bytes}});
      break;
    case OutputFormat::Npy: {
      const std::string header = make_npy_header(result.dtype, result.shape, false);
      file.write(header.data(), header.size());
      file.write(bytes.data(), bytes.size());
      break;
    }
    case OutputFormat::Csv: {
      const std::string text = format_rows(result, ',');
      file.write(text.data(), text.size());
      break;
    }
    case OutputFormat::Json: {
      const std::string text = format_json(result, extra) + "\n";
      file.write(text.data(), text.size());
      break;
    }
  }
  file.commit();
}

std::string format_results_csv(const std::vector<NamedArray>& arrays) {
  check_names(arrays);
  std::vector<Values> columns;
  std::string out;
  for (const NamedArray& a : arrays) {
    columns.push_back(values_of(a.dtype, a.shape, a.bytes));
    if (columns.size() > 1 && columns.back().size() != columns.front().size()) {
      throw Error(ErrorCode::InvalidArgument,
                  "a CSV has one column per result, and '" + a.name + "' holds " +
                      std::to_string(columns.back().size()) + " values against " +
                      std::to_string(columns.front().size()) + " of '" + arrays.front().name +
                      "': write .npz or .json");
    }
    out += (out.empty() ? "" : ",") + a.name;
  }
  out += '\n';
  const std::int64_t rows = columns.empty() ? 0 : columns.front().size();
  std::vector<std::function<void(std::string&, std::int64_t)>> cells;
  for (const Values& column : columns) {
    visit_stored_type(column.dtype.id(), [&](auto tag) {
      using T = decltype(tag);
      const T* values = reinterpret_cast<const T*>(column.data);
      cells.emplace_back(
          [values](std::string& text, std::int64_t i) { append_value(text, values[i], false); });
    });
  }
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::size_t c = 0; c < cells.size(); ++c) {
      if (c) out += ',';
      cells[c](out, r);
    }
    out += '\n';
  }
  return out;
}

void write_results(const std::vector<NamedArray>& arrays, const std::string& path) {
  check_names(arrays);
  const OutputFormat format = output_format_for(path);
  if (format == OutputFormat::Npy) {
    throw Error(ErrorCode::InvalidArgument, path + ": a .npy holds one array, and there are " +
                                                std::to_string(arrays.size()) +
                                                ": write .npz, .json or .csv");
  }
  // Everything is checked before the temporary file exists.
  std::string text;
  if (format == OutputFormat::Csv) text = format_results_csv(arrays);
  if (format == OutputFormat::Json) {
    text = "{";
    for (const NamedArray& a : arrays) {
      text += (text.size() > 1 ? ", \"" : "\"") + a.name +
              "\": " + format_json(values_of(a.dtype, a.shape, a.bytes));
    }
    text += "}\n";
  }
  for (const NamedArray& a : arrays) values_of(a.dtype, a.shape, a.bytes);
  AtomicFile file(path);
  if (format == OutputFormat::Npz) {
    write_npz(file, arrays);
  } else {
    file.write(text.data(), text.size());
  }
  file.commit();
}

std::string format_result_text(DType dtype, const Shape& shape, std::span<const std::byte> bytes) {
  const Values result = values_of(dtype, shape, bytes);
  // numpy prints an empty array as [] with its shape, since no rows can show the shape.
  if (is_empty_result(result)) {
    return "[] (empty result of shape " + format_shape(result.shape, true) + ", " +
           result.dtype.name() + ")\n";
  }
  return format_rows(result, ' ');
}

}  // namespace mmc
