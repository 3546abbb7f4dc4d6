// .npy files: a strict parser of the header's dict literal, mapping of the data in place, and
// the header writer.
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

#include "io/npy_open.hpp"
#include "io/open_read_only.hpp"
#include "mmc/error.hpp"
#include "mmc/source.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;
constexpr std::uint64_t kAlign = 64;
// The longest header read: numpy writes a few hundred bytes (np.load refuses more than 10,000 by
// default); a longer one is hostile, and would otherwise cost an allocation of its length.
constexpr std::uint64_t kMaxHeaderBytes = 16 << 20;
// numpy 2 allows 64 dimensions (numpy 1, 32); more is a hostile header, not an array.
constexpr std::size_t kMaxDims = 64;

// Parses the header's Python dict literal, accepting exactly what numpy writes and what
// ast.literal_eval would read the same way for the three keys: no expressions, no escapes.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path, bool python2_ints)
      : text_(text), path_(path), python2_ints_(python2_ints) {}

  void parse(NpyHeader* header) {
    bool has_descr = false, has_fortran = false, has_shape = false;
    std::string_view descr;
    skip_ws();
    expect('{', "the header to start with '{'");
    skip_ws();
    if (!consume('}')) {
      while (true) {
        const std::string key = excerpt(parse_string("a quoted key"));
        skip_ws();
        expect(':', "':' after key '" + key + "'");
        skip_ws();
        if (key == "descr") {
          if (has_descr) fail("key 'descr' appears twice");
          has_descr = true;
          descr = parse_descr_text();
        } else if (key == "fortran_order") {
          if (has_fortran) fail("key 'fortran_order' appears twice");
          has_fortran = true;
          header->fortran_order = parse_bool("fortran_order");
        } else if (key == "shape") {
          if (has_shape) fail("key 'shape' appears twice");
          has_shape = true;
          header->shape = parse_shape_tuple();
        } else {
          fail("unknown key '" + key + "' (expected descr, fortran_order, shape)");
        }
        skip_ws();
        if (consume(',')) {
          skip_ws();
          if (consume('}')) break;
          continue;
        }
        expect('}', "',' or '}' after the value of '" + key + "'");
        break;
      }
    }
    skip_ws();
    if (pos_ != text_.size()) fail("unexpected text after the dict");
    if (!has_descr) fail("missing key 'descr'");
    if (!has_fortran) fail("missing key 'fortran_order'");
    if (!has_shape) fail("missing key 'shape'");
    // Only a well-formed header is worth a dtype error.
    if (descr.size() > 16) {
      throw Error(ErrorCode::InvalidArgument,
                  path_ + ": unsupported dtype '" + excerpt(descr) + "' in the .npy header");
    }
    try {
      header->dtype = DType::from_numpy_descr(descr);
    } catch (const Error& e) {
      throw Error(e.code(), path_ + ": " + e.what());
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::Corrupt, path_ + ": bad .npy header: " + what + " (at byte " +
                                        std::to_string(pos_) + " of the header)");
  }

  // Text from a hostile header, cut short so that messages stay one line of sane length.
  static std::string excerpt(std::string_view text) {
    constexpr std::size_t kMax = 40;
    return text.size() <= kMax ? std::string(text) : std::string(text.substr(0, kMax)) + "...";
  }

  bool at_end() const noexcept { return pos_ >= text_.size(); }
  char peek() const noexcept { return at_end() ? '\0' : text_[pos_]; }

  static bool is_ident_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }

  void skip_ws() noexcept {
    while (!at_end() && (peek() == ' ' || peek() == '\n' || peek() == '\t' || peek() == '\r')) {
      ++pos_;
    }
  }

  bool consume(char c) noexcept {
    if (at_end() || text_[pos_] != c) return false;
    ++pos_;
    return true;
  }

  void expect(char c, const std::string& what) {
    if (!consume(c)) fail("expected " + what);
  }

  // A '...' or "..." string without escapes (no descr or key numpy writes has one).
  std::string_view parse_string(const std::string& what) {
    const char quote = peek();
    if (at_end() || (quote != '\'' && quote != '"')) fail("expected " + what);
    const std::size_t start = ++pos_;
    while (!at_end() && peek() != quote) {
      if (peek() == '\\') fail("escape sequences in strings are not supported");
      if (peek() == '\n') break;
      ++pos_;
    }
    if (at_end() || peek() != quote) {
      pos_ = start - 1;
      fail("unterminated string");
    }
    return text_.substr(start, pos_++ - start);
  }

  std::string_view parse_descr_text() {
    if (peek() == '[') {
      throw Error(ErrorCode::InvalidArgument,
                  path_ + ": structured dtypes (a list of fields in 'descr') are not supported");
    }
    return parse_string("a string as the value of 'descr'");
  }

  bool parse_bool(const char* key) {
    const std::size_t start = pos_;
    while (!at_end() && is_ident_char(peek())) ++pos_;
    const std::string_view word = text_.substr(start, pos_ - start);
    if (word == "True") return true;
    if (word == "False") return false;
    pos_ = start;
    fail(std::string("expected True or False as the value of '") + key + "'");
  }

  std::int64_t parse_dim() {
    const std::size_t start = pos_;
    if (peek() == '-') fail("negative dimension in 'shape'");
    while (!at_end() && peek() >= '0' && peek() <= '9') ++pos_;
    const std::string_view digits = text_.substr(start, pos_ - start);
    if (digits.empty()) fail("expected a non-negative integer in 'shape'");
    if (digits.size() > 1 && digits[0] == '0') {
      pos_ = start;
      fail("integer with a leading zero in 'shape'");
    }
    std::int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) {
      pos_ = start;
      fail("dimension " + std::string(digits) + " in 'shape' does not fit 63 bits");
    }
    if (python2_ints_ && (peek() == 'L' || peek() == 'l')) ++pos_;  // Python 2's long suffix
    if (is_ident_char(peek())) fail("expected an integer in 'shape'");
    return value;
  }

  // A tuple of non-negative ints: (), (n,), (n, m), (n, m,).
  Shape parse_shape_tuple() {
    expect('(', "a tuple as the value of 'shape'");
    skip_ws();
    Shape shape;
    if (consume(')')) return shape;
    while (true) {
      if (shape.size() == kMaxDims) {
        fail("'shape' has more than " + std::to_string(kMaxDims) + " dimensions");
      }
      shape.push_back(parse_dim());
      skip_ws();
      if (consume(',')) {
        skip_ws();
        if (consume(')')) break;
        continue;
      }
      expect(')', "',' or ')' in 'shape'");
      if (shape.size() == 1) fail("'shape' (n) is not a tuple; a 1-d shape is written (n,)");
      break;
    }
    return shape;
  }

  std::string_view text_;
  const std::string& path_;
  bool python2_ints_;
  std::size_t pos_ = 0;
};

std::uint32_t read_le(const std::byte* p, int n) noexcept {
  std::uint32_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<std::uint32_t>(p[i]);
  return v;
}

// Bytes of the header's array, or Error(Corrupt) when the shape's size overflows (numpy's rule:
// non-zero extents count even when another extent is zero).
std::uint64_t data_nbytes(const std::string& path, const NpyHeader& h) {
  if (!detail::nbytes_fit(h.dtype.itemsize(), h.shape)) {
    throw Error(ErrorCode::Corrupt, path + ": header shape " + format_shape(h.shape, true) +
                                        " of " + std::to_string(h.dtype.itemsize()) +
                                        "-byte elements overflows 63 bits");
  }
  std::uint64_t n = h.dtype.itemsize();
  for (const std::int64_t extent : h.shape) n *= static_cast<std::uint64_t>(extent);
  return n;
}

// The header of the .npy file open at `fd`, a regular file of `size` bytes: the preamble and
// the header text read with pread, never more than the file holds or kMaxHeaderBytes.
NpyHeader parse_header(int fd, const std::string& path, std::uint64_t size) {
  char preamble[kMagicLen + 2 + 4] = {};
  const ssize_t got = detail::pread_full(fd, preamble, sizeof preamble, 0);
  if (got < 0) throw_errno(path + ": cannot read");
  const auto* bytes = reinterpret_cast<const std::byte*>(preamble);
  if (size < kMagicLen + 2 || static_cast<std::uint64_t>(got) < kMagicLen + 2 ||
      std::memcmp(preamble, kMagic, kMagicLen) != 0) {
    throw Error(ErrorCode::Corrupt, path + ": not a .npy file (no \\x93NUMPY magic in its " +
                                        std::to_string(size) + " bytes)");
  }
  NpyHeader h;
  h.major = static_cast<int>(bytes[6]);
  h.minor = static_cast<int>(bytes[7]);
  if (h.minor != 0 || h.major < 1 || h.major > 3) {
    throw Error(ErrorCode::Corrupt, path + ": unsupported .npy version " + std::to_string(h.major) +
                                        "." + std::to_string(h.minor) +
                                        " (expected 1.0, 2.0 or 3.0)");
  }
  const int len_bytes = h.major == 1 ? 2 : 4;
  const std::uint64_t prefix = kMagicLen + 2 + static_cast<std::uint64_t>(len_bytes);
  if (size < prefix || static_cast<std::uint64_t>(got) < prefix) {
    throw Error(ErrorCode::Corrupt, path + ": file of " + std::to_string(size) +
                                        " bytes ends inside the .npy preamble");
  }
  const std::uint64_t header_len = read_le(bytes + kMagicLen + 2, len_bytes);
  h.data_offset = prefix + header_len;
  if (h.data_offset > size) {
    throw Error(ErrorCode::Corrupt,
                path + ": header length " + std::to_string(header_len) + " goes past the end of " +
                    "the file (" + std::to_string(prefix) + " + " + std::to_string(header_len) +
                    " > " + std::to_string(size) + " bytes)");
  }
  if (header_len > kMaxHeaderBytes) {
    throw Error(ErrorCode::Corrupt, path + ": header of " + std::to_string(header_len) +
                                        " bytes; a .npy header of three keys is far shorter " +
                                        "(at most " + std::to_string(kMaxHeaderBytes) + " read)");
  }
  std::string text(static_cast<std::size_t>(header_len), '\0');
  const ssize_t text_got = detail::pread_full(fd, text.data(), text.size(), prefix);
  if (text_got < 0) throw_errno(path + ": cannot read");
  if (static_cast<std::uint64_t>(text_got) != header_len) {
    throw Error(ErrorCode::Corrupt, path + ": file shrank while its header was read");
  }
  HeaderParser(text, path, h.major < 3).parse(&h);
  data_nbytes(path, h);
  return h;
}

}  // namespace

NpyHeader read_npy_header(const std::string& path) {
  const detail::UniqueFd fd = detail::open_read_only(path);
  const struct stat st = detail::stat_regular_file(fd.get(), path);
  return parse_header(fd.get(), path, static_cast<std::uint64_t>(st.st_size));
}

namespace detail {

Source open_npy(int fd, const std::string& path, MapMode mode) {
  const struct stat st = stat_regular_file(fd, path);
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  const NpyHeader h = parse_header(fd, path, file_size);
  const std::uint64_t nbytes = data_nbytes(path, h);
  const std::uint64_t data_size = file_size - h.data_offset;  // parse_header checked the order
  if (data_size < nbytes) {
    throw Error(ErrorCode::Corrupt, path + ": header says shape " + format_shape(h.shape, true) +
                                        " of " + h.dtype.numpy_descr() + ", " +
                                        std::to_string(nbytes) + " bytes, file has " +
                                        std::to_string(data_size) + " bytes of data after " +
                                        "the header (" + std::to_string(h.data_offset) + " bytes)");
  }
  MappedFile mapping = MappedFile::map(fd, path, mode, h.data_offset, nbytes);
  return Source(ArrayMeta::contiguous(h.dtype, h.shape, h.fortran_order ? Order::F : Order::C),
                std::move(mapping), "npy");
}

}  // namespace detail

Source open_npy(const std::string& path, MapMode mode) {
  if (mode == MapMode::Create) {
    throw Error(ErrorCode::InvalidArgument,
                path + ": a .npy file cannot be opened in mode w+ (it would lose its header)");
  }
  // Opened once: the header is read from the descriptor that is then mapped. O_NONBLOCK: a
  // FIFO does not block the open (stat_regular_file refuses it); regular files ignore it.
  const int flags = (mode == MapMode::ReadWrite ? O_RDWR : O_RDONLY) | O_NONBLOCK;
  const detail::UniqueFd fd = detail::open_fd(path.c_str(), flags);
  if (!fd) {
    if (errno == EISDIR) {
      throw Error(ErrorCode::InvalidArgument, path + ": is a directory, expected a file");
    }
    throw_errno(path + ": cannot open");
  }
  return detail::open_npy(fd.get(), path, mode);
}

std::string make_npy_header(DType dtype, const Shape& shape, bool fortran_order) {
  std::string dict = "{'descr': '" + dtype.numpy_descr() +
                     "', 'fortran_order': " + (fortran_order ? "True" : "False") +
                     ", 'shape': " + format_shape(shape, true) + ", }";
  // The header is padded with spaces and ends with '\n', so the data starts at a multiple of 64.
  auto padded = [&](std::uint64_t prefix) {
    const std::uint64_t unpadded = prefix + dict.size() + 1;
    return (kAlign - unpadded % kAlign) % kAlign + dict.size() + 1;
  };
  int major = 1;
  std::uint64_t header_len = padded(10);
  if (header_len > 0xffff) {
    major = 2;
    header_len = padded(12);
  }
  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(major);
  out += '\0';
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) {
    out += static_cast<char>((header_len >> (8 * i)) & 0xff);
  }
  out += dict;
  out.append(header_len - dict.size() - 1, ' ');
  out += '\n';
  return out;
}

}  // namespace mmc
