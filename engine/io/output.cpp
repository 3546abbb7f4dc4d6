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

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
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

// Calls f(out, index) with a formatter bound to the result's element type.
template <class F>
void with_values(const Values& result, F&& f) {
  visit_type(result.dtype.id(), [&](auto tag) {
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

std::string format_json(const Values& result) {
  std::string out = "{\"dtype\": \"" + result.dtype.name() + "\", \"shape\": [";
  for (std::size_t k = 0; k < result.shape.size(); ++k) {
    if (k) out += ", ";
    out += std::to_string(result.shape[k]);
  }
  out += "], \"data\": ";
  if (is_empty_result(result)) return out + "[]}\n";
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
  out += "}\n";
  return out;
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
  if (ext == ".csv") return OutputFormat::Csv;
  if (ext == ".json") return OutputFormat::Json;
  throw Error(ErrorCode::InvalidArgument,
              path + ": unknown output format (name it .npy, .csv or .json)");
}

void write_result(DType dtype, const Shape& shape, std::span<const std::byte> bytes,
                  const std::string& path) {
  const Values result = values_of(dtype, shape, bytes);
  const OutputFormat format = output_format_for(path);
  AtomicFile file(path);
  switch (format) {
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
      const std::string text = format_json(result);
      file.write(text.data(), text.size());
      break;
    }
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
