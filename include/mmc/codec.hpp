// How values cross a process boundary: Bytes, the byte writer and reader, and mmc::Codec, which
// a type specializes to become Shippable (an argument or result of mmc::Pool's tasks).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmc/error.hpp"

namespace mmc {

using Bytes = std::vector<std::byte>;

struct ByteView {
  const std::byte* data = nullptr;
  std::size_t size = 0;
};

// Appends bytes to a buffer. Not thread-safe.
class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out) : out_(out) {}
  void raw(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
  }
  void u64(std::uint64_t value) { raw(&value, sizeof value); }

 private:
  Bytes& out_;
};

// Reads bytes written by ByteWriter. Throws Error(Corrupt) when a read runs past the end.
class ByteReader {
 public:
  explicit ByteReader(ByteView in) : in_(in) {}
  const std::byte* take(std::size_t size) {
    if (size > in_.size - pos_) {
      throw_error(ErrorCode::Corrupt, "codec: a value runs past the end of its " +
                                          std::to_string(in_.size) + "-byte message");
    }
    const std::byte* at = in_.data + pos_;
    pos_ += size;
    return at;
  }
  void raw(void* data, std::size_t size) {
    if (size != 0) std::memcpy(data, take(size), size);
  }
  std::uint64_t u64() {
    std::uint64_t value = 0;
    raw(&value, sizeof value);
    return value;
  }
  bool at_end() const noexcept { return pos_ == in_.size; }

 private:
  ByteView in_;
  std::size_t pos_ = 0;
};

// Specialize with `static void write(ByteWriter&, const T&)` and `static T read(ByteReader&)`.
template <class T, class Enable = void>
struct Codec;

// True when T can travel to a worker process and back.
template <class T>
concept Shippable = requires(ByteWriter& w, ByteReader& r, const T& value) {
  Codec<T>::write(w, value);
  { Codec<T>::read(r) } -> std::convertible_to<T>;
};

// Plain data (and closures that capture only plain data by value) travel as their bytes.
// Pointers inside point into the receiver's copy of memory: see mmc::Pool.
template <class T>
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T>>> {
  static void write(ByteWriter& w, const T& value) { w.raw(&value, sizeof(T)); }
  static T read(ByteReader& r) {
    // T may lack a default constructor (a closure): copy its bytes into storage, as its
    // trivially copyable type allows.
    alignas(T) unsigned char storage[sizeof(T)];
    r.raw(storage, sizeof(T));
    return *std::launder(reinterpret_cast<T*>(storage));
  }
};

template <>
struct Codec<std::string> {
  static void write(ByteWriter& w, const std::string& s) {
    w.u64(s.size());
    w.raw(s.data(), s.size());
  }
  static std::string read(ByteReader& r) {
    const std::uint64_t n = r.u64();
    const std::byte* at = r.take(n);
    return std::string(reinterpret_cast<const char*>(at), n);
  }
};

template <class T, class A>
struct Codec<std::vector<T, A>, std::enable_if_t<Shippable<T>>> {
  static void write(ByteWriter& w, const std::vector<T, A>& v) {
    w.u64(v.size());
    if constexpr (std::is_trivially_copyable_v<T>) {
      w.raw(v.data(), v.size() * sizeof(T));
    } else {
      for (const T& item : v) Codec<T>::write(w, item);
    }
  }
  static std::vector<T, A> read(ByteReader& r) {
    const std::uint64_t n = r.u64();
    std::vector<T, A> v;
    if constexpr (std::is_trivially_copyable_v<T> && std::is_default_constructible_v<T>) {
      const std::byte* at = r.take(n * sizeof(T));  // checks the size before allocating
      v.resize(n);
      if (n != 0) std::memcpy(v.data(), at, n * sizeof(T));
    } else {
      for (std::uint64_t i = 0; i < n; ++i) v.push_back(Codec<T>::read(r));
    }
    return v;
  }
};

template <class T>
struct Codec<std::optional<T>,
             std::enable_if_t<!std::is_trivially_copyable_v<std::optional<T>> && Shippable<T>>> {
  static void write(ByteWriter& w, const std::optional<T>& v) {
    w.u64(v ? 1 : 0);
    if (v) Codec<T>::write(w, *v);
  }
  static std::optional<T> read(ByteReader& r) {
    if (r.u64() == 0) return std::nullopt;
    return Codec<T>::read(r);
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>, std::enable_if_t<!std::is_trivially_copyable_v<std::pair<A, B>> &&
                                               Shippable<A> && Shippable<B>>> {
  static void write(ByteWriter& w, const std::pair<A, B>& p) {
    Codec<A>::write(w, p.first);
    Codec<B>::write(w, p.second);
  }
  static std::pair<A, B> read(ByteReader& r) {
    A a = Codec<A>::read(r);
    return std::pair<A, B>(std::move(a), Codec<B>::read(r));
  }
};

template <class... T>
struct Codec<std::tuple<T...>, std::enable_if_t<!std::is_trivially_copyable_v<std::tuple<T...>> &&
                                                (Shippable<T> && ...)>> {
  static void write(ByteWriter& w, const std::tuple<T...>& t) {
    std::apply([&w](const T&... item) { (Codec<T>::write(w, item), ...); }, t);
  }
  static std::tuple<T...> read(ByteReader& r) {
    // Braced initialization evaluates left to right.
    return std::tuple<T...>{Codec<T>::read(r)...};
  }
};

}  // namespace mmc
