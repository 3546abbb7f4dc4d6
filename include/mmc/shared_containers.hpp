// Containers in shared memory: a vector, a map and a string that the workers of an mmc::Pool
// read and grow, like multiprocessing.Manager's list and dict but with no server process: the
// elements live in a shared segment every process maps, and each call locks it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "mmc/shared.hpp"

namespace mmc {

// The fixed size of a container's segment, chosen at creation. It never grows: the elements,
// the allocator's bookkeeping and, while a vector grows, its old and new element arrays must
// all fit. The memory is reserved at creation (a segment of 64 MiB takes 64 MiB of shared
// memory at once), so a full machine fails then, not later with SIGBUS.
struct SegmentSize {
  std::uint64_t bytes = 0;
};

namespace detail {

enum class ContainerKind : std::uint32_t { Vector = 1, Map = 2, String = 3 };

// A container's segment as this process sees it: in the process that made it, the segment
// itself (shared by copies); elsewhere, the ArrayRef it arrived as, mapped when it arrives. The
// only place a container touches the pool's transport: it travels as an ArrayRef<std::byte>.
class ContainerSegment {
 public:
  // Makes a segment of size.bytes and formats it for `kind`. Throws Error(InvalidArgument) for
  // a size under 4 KiB, Error(Io) when the memory cannot be reserved.
  ContainerSegment(ContainerKind kind, SegmentSize size);
  // A segment that arrived as `ref`; maps it now. Throws Error(NotFound) when it is gone,
  // Error(InvalidArgument) when it holds another kind of container.
  ContainerSegment(ContainerKind kind, ArrayRef<std::byte> ref);

  std::byte* payload() const noexcept { return payload_; }
  std::uint64_t payload_bytes() const noexcept { return payload_bytes_; }
  SegmentLock lock() const { return owner_ ? owner_->lock() : ref_.lock(); }
  ArrayRef<std::byte> ref() const { return owner_ ? owner_->ref() : ref_; }
  ContainerKind kind() const noexcept { return kind_; }

 private:
  ContainerKind kind_;
  std::shared_ptr<SharedArray<std::byte>> owner_;  // set in the creating process
  ArrayRef<std::byte> ref_;                        // set elsewhere
  std::byte* payload_ = nullptr;
  std::uint64_t payload_bytes_ = 0;
};

// The untyped operations (engine/pool/shared_containers.cpp, over Boost.Interprocess). Each
// takes the segment's lock for its duration. Items are the bytes Codec<T> writes.
std::size_t vector_push_back(const ContainerSegment& s, ByteView item);
Bytes vector_get(const ContainerSegment& s, std::size_t index);
void vector_set(const ContainerSegment& s, std::size_t index, ByteView item);
std::vector<Bytes> vector_items(const ContainerSegment& s);

// True when the key was new.
bool map_put(const ContainerSegment& s, ByteView key, ByteView value, bool overwrite);
std::optional<Bytes> map_get(const ContainerSegment& s, ByteView key);
bool map_erase(const ContainerSegment& s, ByteView key);
std::vector<std::pair<Bytes, Bytes>> map_items(const ContainerSegment& s);
// Under the lock: fn(the current value or nullptr) gives the new value, which is stored.
Bytes map_update(const ContainerSegment& s, ByteView key,
                 const std::function<Bytes(const Bytes* current)>& fn);

std::size_t string_append(const ContainerSegment& s, std::string_view text);
std::string string_get(const ContainerSegment& s);

std::size_t container_size(const ContainerSegment& s);
void container_clear(const ContainerSegment& s);
// Empties the container and clears its inconsistent mark.
void container_reset(const ContainerSegment& s);
std::uint64_t container_free_bytes(const ContainerSegment& s);

template <class T>
Bytes encode(const T& value) {
  Bytes out;
  // Reserved first: small values need no regrowth (and GCC 12 then sees no false overflow in
  // vector::insert of the first bytes).
  out.reserve(64);
  ByteWriter w(out);
  Codec<T>::write(w, value);
  return out;
}
template <class T>
T decode(const Bytes& bytes) {
  ByteReader r(ByteView{bytes.data(), bytes.size()});
  return Codec<T>::read(r);
}
inline ByteView view_of(const Bytes& bytes) { return ByteView{bytes.data(), bytes.size()}; }

std::string describe_container(const ContainerSegment& s);

// What the three containers share: the segment, capacity figures, clear/reset.
class SharedContainer {
 public:
  // The segment's fixed size and what is still free in it (the allocator's view: a free total
  // split in pieces may not hold one element of that size).
  std::uint64_t capacity_bytes() const noexcept { return segment_.payload_bytes(); }
  std::uint64_t free_bytes() const { return container_free_bytes(segment_); }
  std::size_t size() const { return container_size(segment_); }
  bool empty() const { return size() == 0; }
  void clear() const { container_clear(segment_); }
  // Empties the container and clears the mark a writer's death leaves (see SharedVector): the
  // way to use it again after Error(Corrupt). Other processes see the empty container.
  void reset() const { container_reset(segment_); }
  const ContainerSegment& segment() const noexcept { return segment_; }

 protected:
  explicit SharedContainer(ContainerSegment segment) : segment_(std::move(segment)) {}
  ContainerSegment segment_;
};

}  // namespace detail

// A vector of T in shared memory (multiprocessing.Manager().list()). T is any type an mmc::Pool
// can ship (plain data, std::string, vectors, ... : anything with an mmc::Codec); elements are
// stored in their encoded form and every read returns a copy.
//
// Sharing: copies of a SharedVector name the same elements. Pass it to workers as a task
// argument (it travels by reference, like ArrayRef: a few dozen bytes, whatever its size); the
// segment lives while the creating process holds a copy, or a worker a mapping of it. Works
// with every backend (process, thread, serial) and from any thread: each call locks.
// Capacity: fixed at creation (SegmentSize); a call that needs more throws
// Error(InvalidArgument) saying the segment is full, and leaves the container unchanged.
// A process killed while it holds the lock (a killed worker, a timeout) never blocks the others:
// the lock is a robust process-shared mutex. If it was reading, or running update's function,
// nothing changed and the container stays usable. If it was inside a change (a push_back, set,
// insert, erase, clear), that change may be half done: the container is then marked
// inconsistent and every later call, in every process, throws Error(Corrupt) until reset().
template <class T>
class SharedVector : public detail::SharedContainer {
 public:
  explicit SharedVector(SegmentSize size)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::Vector, size)) {}
  // The vector an ArrayRef names (what Codec uses).
  explicit SharedVector(ArrayRef<std::byte> ref)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::Vector, std::move(ref))) {}

  // Appends a copy of value; returns its index.
  std::size_t push_back(const T& value) const {
    return detail::vector_push_back(segment_, detail::view_of(detail::encode(value)));
  }
  // Element i. Throws Error(InvalidArgument) past the end.
  T get(std::size_t i) const { return detail::decode<T>(detail::vector_get(segment_, i)); }
  T operator[](std::size_t i) const { return get(i); }
  void set(std::size_t i, const T& value) const {
    detail::vector_set(segment_, i, detail::view_of(detail::encode(value)));
  }
  // A copy of every element, in order, taken under one lock.
  std::vector<T> to_vector() const {
    std::vector<T> out;
    for (const Bytes& item : detail::vector_items(segment_)) out.push_back(detail::decode<T>(item));
    return out;
  }
};

// A map from K to V in shared memory (multiprocessing.Manager().dict()), same rules as
// SharedVector. Keys are ordered by their encoded bytes inside; to_map() gives a std::map.
template <class K, class V>
class SharedMap : public detail::SharedContainer {
 public:
  explicit SharedMap(SegmentSize size)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::Map, size)) {}
  explicit SharedMap(ArrayRef<std::byte> ref)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::Map, std::move(ref))) {}

  // Sets key to value; true when the key was new.
  bool insert_or_assign(const K& key, const V& value) const {
    return detail::map_put(segment_, detail::view_of(detail::encode(key)),
                           detail::view_of(detail::encode(value)), /*overwrite=*/true);
  }
  // Adds key with value unless key is there; true when it was added.
  bool insert(const K& key, const V& value) const {
    return detail::map_put(segment_, detail::view_of(detail::encode(key)),
                           detail::view_of(detail::encode(value)), /*overwrite=*/false);
  }
  std::optional<V> get(const K& key) const {
    std::optional<Bytes> found = detail::map_get(segment_, detail::view_of(detail::encode(key)));
    if (!found) return std::nullopt;
    return detail::decode<V>(*found);
  }
  bool contains(const K& key) const { return get(key).has_value(); }
  // True when key was there.
  bool erase(const K& key) const {
    return detail::map_erase(segment_, detail::view_of(detail::encode(key)));
  }
  // Atomic read-modify-write (Manager's `d[k] += 1` is not): under the lock, fn(value&) on the
  // current value, or on `initial` when key is new; stores and returns the result. fn runs in
  // the calling process with the lock held: keep it short, and do not call this map from it.
  template <class Fn>
  V update(const K& key, const V& initial, Fn fn) const {
    const Bytes stored = detail::map_update(
        segment_, detail::view_of(detail::encode(key)), [&](const Bytes* current) {
          V value = current ? detail::decode<V>(*current) : initial;
          fn(value);
          return detail::encode(value);
        });
    return detail::decode<V>(stored);
  }
  // A copy of every entry, taken under one lock.
  std::map<K, V> to_map() const {
    std::map<K, V> out;
    for (const auto& [key, value] : detail::map_items(segment_)) {
      out.insert_or_assign(detail::decode<K>(key), detail::decode<V>(value));
    }
    return out;
  }
};

// A string in shared memory that workers append to (a shared log, a growing text). Same rules
// as SharedVector; size() counts bytes.
class SharedString : public detail::SharedContainer {
 public:
  explicit SharedString(SegmentSize size)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::String, size)) {}
  explicit SharedString(ArrayRef<std::byte> ref)
      : SharedContainer(detail::ContainerSegment(detail::ContainerKind::String, std::move(ref))) {}

  // Appends text as one piece (appends of several processes never interleave inside a piece);
  // returns the new length.
  std::size_t append(std::string_view text) const { return detail::string_append(segment_, text); }
  std::string str() const { return detail::string_get(segment_); }
};

namespace detail {
template <class C>
inline constexpr bool kIsSharedContainer = std::is_base_of_v<SharedContainer, C>;

template <class C>
struct TransportNote<C, std::enable_if_t<kIsSharedContainer<C>>> {
  static std::string by_reference(const C& c) { return describe_container(c.segment()); }
};
}  // namespace detail

// The containers travel as the ArrayRef of their segment.
template <class C>
struct Codec<C, std::enable_if_t<detail::kIsSharedContainer<C>>> {
  static void write(ByteWriter& w, const C& c) {
    Codec<ArrayRef<std::byte>>::write(w, c.segment().ref());
  }
  static C read(ByteReader& r) { return C(Codec<ArrayRef<std::byte>>::read(r)); }
};

}  // namespace mmc
