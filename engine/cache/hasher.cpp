// Hasher: the canonical, type-tagged encoding of a key's inputs, digested with XXH3-128.
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>

#include "cache/xxh.hpp"
#include "mmc/cache.hpp"

namespace mmc {
namespace {

// Tags that start every value of the encoding.
constexpr char kTagBool = 'b';
constexpr char kTagInt = 'i';
constexpr char kTagUint = 'u';
constexpr char kTagDouble = 'd';
constexpr char kTagString = 's';
constexpr char kTagSequence = 'q';
constexpr char kTagBytes = 'x';
constexpr char kTagArray = 'a';
constexpr char kTagSource = 'S';

// Fixed-width little-endian, so a key does not depend on the machine's byte order.
void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

void put_key(std::string& out, const CacheKey& key) {
  put_u64(out, key.high);
  put_u64(out, key.low);
}

std::string real_path(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> resolved(::realpath(path.c_str(), nullptr),
                                                       &std::free);
  if (!resolved) throw_errno("cache: cannot resolve the source path " + path);
  return resolved.get();
}

std::int64_t nanoseconds(const struct timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

}  // namespace

std::string CacheKey::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[static_cast<std::size_t>(15 - i)] = kDigits[(high >> (4 * i)) & 0xf];
    out[static_cast<std::size_t>(31 - i)] = kDigits[(low >> (4 * i)) & 0xf];
  }
  return out;
}

Hasher& Hasher::add(bool v) {
  encoding_ += kTagBool;
  encoding_ += v ? '\1' : '\0';
  return *this;
}

Hasher& Hasher::add(std::int64_t v) {
  encoding_ += kTagInt;
  put_u64(encoding_, static_cast<std::uint64_t>(v));
  return *this;
}

Hasher& Hasher::add(std::uint64_t v) {
  encoding_ += kTagUint;
  put_u64(encoding_, v);
  return *this;
}

Hasher& Hasher::add(double v) {
  // Values that compare equal hash equal: -0.0 == 0.0; all NaNs are one value.
  if (v == 0.0) v = 0.0;
  if (std::isnan(v)) v = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  encoding_ += kTagDouble;
  put_u64(encoding_, bits);
  return *this;
}

Hasher& Hasher::add(std::string_view v) {
  encoding_ += kTagString;
  put_u64(encoding_, v.size());
  encoding_.append(v.data(), v.size());
  return *this;
}

void Hasher::begin_sequence(std::size_t n) {
  encoding_ += kTagSequence;
  put_u64(encoding_, n);
}

Hasher& Hasher::add_bytes(const void* data, std::size_t size) {
  encoding_ += kTagBytes;
  put_u64(encoding_, size);
  put_key(encoding_, detail::xxh3_128(data, size));
  return *this;
}

Hasher& Hasher::add_array(const ArrayMeta& meta, const void* data) {
  encoding_ += kTagArray;
  add(meta.dtype.numpy_descr());
  add(meta.shape);
  add(meta.strides);
  add(static_cast<std::uint64_t>(meta.order));
  return add_bytes(data, meta.nbytes());
}

Hasher& Hasher::add(const Source& source, SourceHash how) {
  // The file's identity is read from its path, not from the mapping: a file replaced between
  // opening the source and this call would be keyed as the new file; MappedFile keeps no
  // descriptor to fstat instead.
  const std::string path = real_path(source.path());
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw_errno("cache: cannot stat the source " + path);
  const ArrayMeta& meta = source.meta();
  encoding_ += kTagSource;
  add(source.kind());
  add(meta.dtype.numpy_descr());
  add(meta.shape);
  add(meta.strides);
  add(static_cast<std::uint64_t>(meta.order));
  add(source.data_offset());
  add(path);
  add(static_cast<std::uint64_t>(st.st_dev));
  add(static_cast<std::uint64_t>(st.st_ino));
  add(static_cast<std::int64_t>(st.st_size));
  add(nanoseconds(st.st_mtim));
  add(nanoseconds(st.st_ctim));
  add(how == SourceHash::Content);
  if (how == SourceHash::Content) add_bytes(source.data(), source.mapping().size());
  return *this;
}

CacheKey Hasher::digest() const { return detail::xxh3_128(encoding_.data(), encoding_.size()); }

}  // namespace mmc
