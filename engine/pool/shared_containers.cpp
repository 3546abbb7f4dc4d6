// The shared containers' engine: Boost.Interprocess containers (vector, map, string of bytes)
// built by its segment manager inside a SharedArray segment (memfd, robust lock), through
// managed_external_buffer. Every pointer inside is an offset_ptr, so each process may map the
// segment at its own address.
//
// Locking is ours, not Boost's: Boost's allocator would take its own process-shared mutex, which
// is not robust (a worker killed inside an allocation would block everyone for ever), so the
// heap runs with null_mutex_family and every call holds the segment's robust mutex instead.
// That mutex recovers from a dead holder (EOWNERDEAD, made consistent in lock_segment); to know
// whether the holder died inside a change, a writer sets `changing` in the header for the
// duration of the change: whoever takes the lock and finds it set marks the container
// inconsistent.
#include "mmc/shared_containers.hpp"

#include <signal.h>

#include <atomic>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/map.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>
#include <cstring>
#include <stdexcept>
#include <string>

#include "pool/shared_containers_debug.hpp"

namespace mmc::detail {
namespace {

namespace bip = boost::interprocess;

using MemoryAlgorithm = bip::rbtree_best_fit<bip::null_mutex_family, bip::offset_ptr<void>>;
using Heap = bip::basic_managed_external_buffer<char, MemoryAlgorithm, bip::iset_index>;
using SegmentManager = Heap::segment_manager;
template <class T>
using Alloc = bip::allocator<T, SegmentManager>;
using Blob = bip::basic_string<char, std::char_traits<char>, Alloc<char>>;

// A key to look up without building a Blob (which would allocate in the segment).
struct Key {
  const char* data;
  std::size_t size;
};
Key key_of(const Blob& b) { return {b.data(), b.size()}; }
Key key_of(const Key& k) { return k; }

struct BlobLess {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    const Key x = key_of(a);
    const Key y = key_of(b);
    const int c = std::memcmp(x.data, y.data, std::min(x.size, y.size));
    return c < 0 || (c == 0 && x.size < y.size);
  }
};

using BlobVector = bip::vector<Blob, Alloc<Blob>>;
using BlobMap = bip::map<Blob, Blob, BlobLess, Alloc<std::pair<const Blob, Blob>>>;

constexpr std::uint64_t kContainerMagic = 0x6d6d632d636f6e74ull;  // "mmc-cont"
constexpr std::size_t kContainerHeaderBytes = 64;                 // then the heap, 64-aligned
constexpr std::uint64_t kMinBytes = 4096;

struct ContainerHeader {
  std::uint64_t magic;
  std::uint32_t kind;
  std::uint32_t changing;      // 1 while a writer is inside a change
  std::uint32_t inconsistent;  // 1 once a writer died inside a change
  std::uint32_t unused;
  std::uint64_t container;  // offset of the container from the payload's start
  std::uint64_t manager;    // offset of the segment manager
};
static_assert(sizeof(ContainerHeader) <= kContainerHeaderBytes);

ContainerHeader* header_of(const ContainerSegment& s) {
  return reinterpret_cast<ContainerHeader*>(s.payload());
}

const char* name_of(ContainerKind kind) {
  switch (kind) {
    case ContainerKind::Vector:
      return "shared vector";
    case ContainerKind::Map:
      return "shared map";
    case ContainerKind::String:
      return "shared string";
  }
  return "shared container";
}

std::atomic<bool> die_in_change{false};

// Builds an empty heap and container over the payload, whatever was there.
void format(std::byte* payload, std::uint64_t payload_bytes, ContainerKind kind) {
  Heap heap(bip::create_only, payload + kContainerHeaderBytes,
            payload_bytes - kContainerHeaderBytes);
  SegmentManager* manager = heap.get_segment_manager();
  void* container = nullptr;
  switch (kind) {
    case ContainerKind::Vector:
      container = heap.construct<BlobVector>(bip::anonymous_instance)(Alloc<Blob>(manager));
      break;
    case ContainerKind::Map:
      container = heap.construct<BlobMap>(bip::anonymous_instance)(
          BlobLess{}, Alloc<std::pair<const Blob, Blob>>(manager));
      break;
    case ContainerKind::String:
      container = heap.construct<Blob>(bip::anonymous_instance)(Alloc<char>(manager));
      break;
  }
  auto* header = reinterpret_cast<ContainerHeader*>(payload);
  header->kind = static_cast<std::uint32_t>(kind);
  header->changing = 0;
  header->inconsistent = 0;
  header->container = static_cast<std::uint64_t>(static_cast<std::byte*>(container) - payload);
  header->manager = static_cast<std::uint64_t>(reinterpret_cast<std::byte*>(manager) - payload);
  header->magic = kContainerMagic;
}

// The container's lock, held for one call. Refuses an inconsistent container unless told not to.
class Locked {
 public:
  explicit Locked(const ContainerSegment& s, bool check = true)
      : segment_(s), lock_(s.lock()), header_(header_of(s)) {
    if (header_->changing != 0) {  // the last writer died inside a change
      header_->changing = 0;
      header_->inconsistent = 1;
    }
    if (check && header_->inconsistent != 0) {
      throw_error(
          ErrorCode::Corrupt,
          std::string(name_of(s.kind())) +
              ": a process died while changing it (it held the lock inside a change: a killed "
              "or timed-out worker), so its contents cannot be trusted; reset() empties it "
              "for reuse");
    }
  }
  ~Locked() { header_->changing = 0; }
  Locked(const Locked&) = delete;
  Locked& operator=(const Locked&) = delete;

  // Marks a change as begun until this call ends: a holder that dies before leaves the mark.
  void begin_change() {
    header_->changing = 1;
    if (die_in_change.exchange(false)) ::raise(SIGKILL);
  }
  template <class C>
  C& get() const {
    return *reinterpret_cast<C*>(segment_.payload() + header_->container);
  }
  SegmentManager* manager() const {
    return reinterpret_cast<SegmentManager*>(segment_.payload() + header_->manager);
  }
  std::string name() const { return name_of(segment_.kind()); }

 private:
  const ContainerSegment& segment_;
  SegmentLock lock_;
  ContainerHeader* header_;
};

[[noreturn]] void raise_full(const Locked& locked, std::uint64_t payload_bytes) {
  throw_error(ErrorCode::InvalidArgument,
              locked.name() + ": its segment of " + format_bytes(payload_bytes) + " is full (" +
                  format_bytes(locked.manager()->get_free_memory()) +
                  " free, in pieces too small for this change); a shared container's size is fixed "
                  "at creation: make it with a larger SegmentSize");
}

// Runs fn(locked) under the lock; a full segment becomes a clear Error (Boost's strong
// guarantee leaves the container as it was). Boost throws bad_alloc when the heap has no room,
// length_error when one piece is larger than the whole segment.
template <class Fn>
auto locked_call(const ContainerSegment& s, Fn fn) {
  Locked locked(s);
  try {
    return fn(locked);
  } catch (const bip::bad_alloc&) {
    raise_full(locked, s.payload_bytes());
  } catch (const std::length_error&) {
    raise_full(locked, s.payload_bytes());
  }
}

Blob blob(const Locked& l, ByteView bytes) {
  return Blob(reinterpret_cast<const char*>(bytes.data), bytes.size, Alloc<char>(l.manager()));
}

Bytes bytes_of(const Blob& b) {
  const auto* data = reinterpret_cast<const std::byte*>(b.data());
  return Bytes(data, data + b.size());
}

Key key_of(ByteView v) { return {reinterpret_cast<const char*>(v.data), v.size}; }

void check_index(const Locked& l, std::size_t index, std::size_t size) {
  if (index >= size) {
    throw_error(ErrorCode::InvalidArgument, l.name() + ": index " + std::to_string(index) +
                                                " is out of range (size " + std::to_string(size) +
                                                ")");
  }
}

}  // namespace

void die_in_next_container_change() noexcept { die_in_change = true; }

ContainerSegment::ContainerSegment(ContainerKind kind, SegmentSize size) : kind_(kind) {
  if (size.bytes < kMinBytes) {
    throw_error(ErrorCode::InvalidArgument,
                std::string(name_of(kind)) + ": a segment of " + std::to_string(size.bytes) +
                    " bytes is too small; give at least " + std::to_string(kMinBytes));
  }
  owner_ = std::make_shared<SharedArray<std::byte>>(size.bytes);
  payload_ = owner_->data();
  payload_bytes_ = size.bytes;
  format(payload_, payload_bytes_, kind);
}

ContainerSegment::ContainerSegment(ContainerKind kind, ArrayRef<std::byte> ref)
    : kind_(kind), ref_(std::move(ref)) {
  payload_ = ref_.data();  // maps it now, so later calls only read (thread-safe)
  payload_bytes_ = ref_.size();
  const auto* header = reinterpret_cast<const ContainerHeader*>(payload_);
  if (payload_bytes_ < kMinBytes || header->magic != kContainerMagic ||
      header->kind != static_cast<std::uint32_t>(kind)) {
    throw_error(ErrorCode::InvalidArgument, std::string(name_of(kind)) +
                                                ": the shared segment it was given holds something "
                                                "else (another kind of container, or an array)");
  }
}

std::size_t vector_push_back(const ContainerSegment& s, ByteView item) {
  return locked_call(s, [&](Locked& l) {
    auto& v = l.get<BlobVector>();
    Blob element = blob(l, item);
    l.begin_change();
    v.push_back(std::move(element));
    return v.size() - 1;
  });
}

Bytes vector_get(const ContainerSegment& s, std::size_t index) {
  return locked_call(s, [&](Locked& l) {
    const auto& v = l.get<BlobVector>();
    check_index(l, index, v.size());
    return bytes_of(v[index]);
  });
}

void vector_set(const ContainerSegment& s, std::size_t index, ByteView item) {
  locked_call(s, [&](Locked& l) {
    auto& v = l.get<BlobVector>();
    check_index(l, index, v.size());
    Blob element = blob(l, item);
    l.begin_change();
    v[index].swap(element);
  });
}

std::vector<Bytes> vector_items(const ContainerSegment& s) {
  return locked_call(s, [&](Locked& l) {
    std::vector<Bytes> out;
    for (const Blob& b : l.get<BlobVector>()) out.push_back(bytes_of(b));
    return out;
  });
}

bool map_put(const ContainerSegment& s, ByteView key, ByteView value, bool overwrite) {
  return locked_call(s, [&](Locked& l) {
    auto& m = l.get<BlobMap>();
    auto it = m.find(key_of(key));
    if (it != m.end()) {
      if (overwrite) {
        Blob element = blob(l, value);
        l.begin_change();
        it->second.swap(element);
      }
      return false;
    }
    Blob k = blob(l, key);
    Blob v = blob(l, value);
    l.begin_change();
    m.emplace(std::move(k), std::move(v));
    return true;
  });
}

std::optional<Bytes> map_get(const ContainerSegment& s, ByteView key) {
  return locked_call(s, [&](Locked& l) -> std::optional<Bytes> {
    const auto& m = l.get<BlobMap>();
    auto it = m.find(key_of(key));
    if (it == m.end()) return std::nullopt;
    return bytes_of(it->second);
  });
}

bool map_erase(const ContainerSegment& s, ByteView key) {
  return locked_call(s, [&](Locked& l) {
    auto& m = l.get<BlobMap>();
    auto it = m.find(key_of(key));
    if (it == m.end()) return false;
    l.begin_change();
    m.erase(it);
    return true;
  });
}

std::vector<std::pair<Bytes, Bytes>> map_items(const ContainerSegment& s) {
  return locked_call(s, [&](Locked& l) {
    std::vector<std::pair<Bytes, Bytes>> out;
    for (const auto& [k, v] : l.get<BlobMap>()) out.emplace_back(bytes_of(k), bytes_of(v));
    return out;
  });
}

Bytes map_update(const ContainerSegment& s, ByteView key,
                 const std::function<Bytes(const Bytes* current)>& fn) {
  return locked_call(s, [&](Locked& l) {
    auto& m = l.get<BlobMap>();
    auto it = m.find(key_of(key));
    std::optional<Bytes> current;
    if (it != m.end()) current = bytes_of(it->second);
    // The caller's function runs before the change begins: dying in it changes nothing.
    Bytes next = fn(current ? &*current : nullptr);
    Blob v = blob(l, view_of(next));
    if (it != m.end()) {
      l.begin_change();
      it->second.swap(v);
    } else {
      Blob k = blob(l, key);
      l.begin_change();
      m.emplace(std::move(k), std::move(v));
    }
    return next;
  });
}

std::size_t string_append(const ContainerSegment& s, std::string_view text) {
  return locked_call(s, [&](Locked& l) {
    auto& str = l.get<Blob>();
    l.begin_change();
    str.append(text.data(), text.size());
    return str.size();
  });
}

std::string string_get(const ContainerSegment& s) {
  return locked_call(s, [&](Locked& l) {
    const auto& str = l.get<Blob>();
    return std::string(str.data(), str.size());
  });
}

std::size_t container_size(const ContainerSegment& s) {
  return locked_call(s, [&](Locked& l) -> std::size_t {
    switch (s.kind()) {
      case ContainerKind::Vector:
        return l.get<BlobVector>().size();
      case ContainerKind::Map:
        return l.get<BlobMap>().size();
      case ContainerKind::String:
        return l.get<Blob>().size();
    }
    return 0;
  });
}

void container_clear(const ContainerSegment& s) {
  locked_call(s, [&](Locked& l) {
    l.begin_change();
    switch (s.kind()) {
      case ContainerKind::Vector:
        l.get<BlobVector>().clear();
        break;
      case ContainerKind::Map:
        l.get<BlobMap>().clear();
        break;
      case ContainerKind::String:
        l.get<Blob>().clear();
        break;
    }
  });
}

void container_reset(const ContainerSegment& s) {
  Locked locked(s, /*check=*/false);
  format(s.payload(), s.payload_bytes(), s.kind());
}

std::uint64_t container_free_bytes(const ContainerSegment& s) {
  return locked_call(s, [&](Locked& l) -> std::uint64_t { return l.manager()->get_free_memory(); });
}

std::string describe_container(const ContainerSegment& s) {
  return std::string("by reference: a ") + name_of(s.kind()) + " in a " +
         format_bytes(s.payload_bytes()) + " shared segment, mapped by the worker, never copied";
}

}  // namespace mmc::detail
