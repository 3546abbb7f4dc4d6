// How values cross a process boundary: Bytes, the byte writer and reader, and mmc::Codec, which
// a type specializes to become Shippable (an argument or result of mmc::Pool's tasks).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
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

namespace detail {

// The descriptors a message carries beside its bytes (SCM_RIGHTS between processes); an
// encoded value names one by its index in the list. Copies share the descriptors; the last one
// closes them. Not thread-safe for changes; reads of an unchanging list are.
class MessageFds {
 public:
  // Adds a duplicate of `fd` (close-on-exec) unless this list already holds one of the same
  // file; returns its index. Throws Error(Io).
  std::uint64_t add_copy(int fd);
  // Takes ownership of `fd` (appended).
  void adopt(int fd);
  // The descriptor at `index`, open while this list (or a keeper()) lives. Throws
  // Error(Corrupt) when the message carried no such descriptor.
  int at(std::uint64_t index) const;
  std::size_t size() const noexcept;
  bool empty() const noexcept { return size() == 0; }
  // Keeps every descriptor of the list open while held.
  std::shared_ptr<const void> keeper() const noexcept { return owned_; }

 private:
  struct Owned;
  std::shared_ptr<Owned> owned_;
};

}  // namespace detail

// Appends bytes to a buffer, and descriptors (ArrayRef's segments) to `fds` when given: a
// ByteWriter without a list cannot encode a value that needs one. Not thread-safe.
class ByteWriter {
 public:
  explicit ByteWriter(Bytes& out, detail::MessageFds* fds = nullptr) : out_(out), fds_(fds) {}
  void raw(const void* data, std::size_t size) {
    const auto* bytes = static_cast<const std::byte*>(data);
    out_.insert(out_.end(), bytes, bytes + size);
  }
  void u64(std::uint64_t value) { raw(&value, sizeof value); }
  detail::MessageFds* fds() const noexcept { return fds_; }

 private:
  Bytes& out_;
  detail::MessageFds* fds_;
};

// Reads bytes written by ByteWriter, and the descriptors that came with them. Throws
// Error(Corrupt) when a read runs past the end.
class ByteReader {
 public:
  explicit ByteReader(ByteView in, const detail::MessageFds* fds = nullptr) : in_(in), fds_(fds) {}
  const detail::MessageFds* fds() const noexcept { return fds_; }
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
  const detail::MessageFds* fds_;
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
