// Shared state for mmc::Pool: SharedArray and SharedValue (multiprocessing.Array / Value, with
// a process-shared lock) and ArrayRef, which hands an array to workers by reference: a shared
// segment or a file region is mapped by the worker, never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "mmc/array.hpp"
#include "mmc/error.hpp"
#include "mmc/mapped_file.hpp"
#include "mmc/parallel.hpp"

namespace mmc {
namespace detail {

// True for the C++ types of mmc's dtypes (those type_id_of<T> knows).
template <class T>
inline constexpr bool kIsNumpyScalar =
    std::is_same_v<T, bool> || std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t> ||
    std::is_same_v<T, std::int16_t> || std::is_same_v<T, std::uint16_t> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::uint32_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::uint64_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, double>;

// What an ArrayRef names. A segment by a descriptor open in this process (its owner's, or the
// copy that came with the task: SCM_RIGHTS), checked against `uid`; a file region by path and
// offset.
struct ArrayDesc {
  std::uint64_t uid = 0;                  // segments: a random id; 0 for a file region
  int fd = -1;                            // segments: open while the owner, or fd_keeper, lives
  std::shared_ptr<const void> fd_keeper;  // a ref that arrived in a message: keeps fd open
  std::uint64_t offset = 0;               // bytes before element 0 (in the segment or the file)
  std::uint64_t nbytes = 0;
  MapMode mode = MapMode::ReadOnly;
  std::string path;  // file regions
};

// A mapping of what a desc names, alive while any holder keeps it.
struct ArrayMapping {
  std::byte* base = nullptr;   // the segment's start (its lock header) or nullptr for files
  std::byte* data = nullptr;   // element 0
  std::shared_ptr<void> keep;  // unmaps when the last holder lets go
};

// Maps what `desc` names in this process, with desc.mode. r and r+ mappings are cached per
// process (a worker maps an array once, whatever the number of tasks; a segment is known by its
// descriptor's device and inode and its uid); c gets a fresh private mapping each time. Throws
// Error(NotFound | Io | InvalidArgument) naming the array.
ArrayMapping resolve_array(const ArrayDesc& desc);

// Codec<ArrayRef>'s descriptor: adds a copy of the segment's descriptor to the message `w`
// writes and returns its index there. Throws Error(InvalidArgument) when `w` has no descriptor
// list (a value stored in a shared container: a segment cannot live inside another).
std::uint64_t pass_segment(ByteWriter& w, const ArrayDesc& desc);
// Fills desc.fd (and fd_keeper) with the message's descriptor `index`. Throws Error(Corrupt)
// when the message carried no such descriptor.
void take_segment(const ByteReader& r, std::uint64_t index, ArrayDesc& desc);

// The process-shared lock at the start of a segment (a robust mutex: a holder that dies
// releases it).
void lock_segment(std::byte* base);
void unlock_segment(std::byte* base) noexcept;

// Owns a shared segment: a lock header then `payload_bytes` zeroed bytes. memfd, else a file in
// the temp folder (MMC_TEMP_FOLDER, then /dev/shm when it has room, then TMPDIR, then /tmp),
// unlinked at once; space is reserved up front so a full tmpfs fails here, naming the folder,
// instead of killing a worker with SIGBUS later. Move-only.
class SharedSegmentOwner {
 public:
  static SharedSegmentOwner create(std::uint64_t payload_bytes);
  SharedSegmentOwner() = default;
  ~SharedSegmentOwner();
  SharedSegmentOwner(SharedSegmentOwner&& other) noexcept;
  SharedSegmentOwner& operator=(SharedSegmentOwner&& other) noexcept;
  SharedSegmentOwner(const SharedSegmentOwner&) = delete;
  SharedSegmentOwner& operator=(const SharedSegmentOwner&) = delete;

  std::byte* base() const noexcept { return base_; }
  std::byte* data() const noexcept;
  std::uint64_t payload_bytes() const noexcept { return payload_bytes_; }
  ArrayDesc describe(MapMode mode) const;

 private:
  void release() noexcept;
  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t payload_bytes_ = 0;
  std::uint64_t uid_ = 0;
};

}  // namespace detail

// Holds a segment's lock; unlocks on destruction. Move-only.
class SegmentLock {
 public:
  explicit SegmentLock(std::byte* base) : base_(base) { detail::lock_segment(base_); }
  ~SegmentLock() {
    if (base_ != nullptr) detail::unlock_segment(base_);
  }
  SegmentLock(SegmentLock&& other) noexcept : base_(other.base_) { other.base_ = nullptr; }
  SegmentLock(const SegmentLock&) = delete;
  SegmentLock& operator=(const SegmentLock&) = delete;
  SegmentLock& operator=(SegmentLock&&) = delete;

 private:
  std::byte* base_;
};

// An array passed by reference: pass it as a task argument and the worker maps the same bytes
// (shared segment or file), with numpy.memmap's modes: r (read-only; a write kills the worker
// with SIGSEGV, reported as WorkerLost), r+ (writes are seen by everyone), c (copy-on-write:
// writes stay in that task's private mapping). What a worker may do never depends on the size.
// Cheap to copy. Not thread-safe for the first data() call on one object.
template <class T>
class ArrayRef {
  static_assert(std::is_trivially_copyable_v<T>, "ArrayRef<T> needs a plain-data T");

 public:
  ArrayRef() = default;
  explicit ArrayRef(detail::ArrayDesc desc) : desc_(std::move(desc)) {}

  // The elements of a file-backed array (an mmc::Source, or anything with meta(), path() and
  // data_offset(): the pool needs no format), by reference (path + offset), never copied, in
  // storage order (a Fortran-order source's first axis varies fastest). Throws
  // Error(InvalidArgument) unless the source holds T in this machine's byte order: for the
  // numpy scalar types (bool, int8_t ... uint64_t, float, double) its dtype must be T's; for any
  // other T its item size must be sizeof(T) and, past one byte, its byte order native.
  template <class FileArray>
  static ArrayRef of(const FileArray& source, MapMode mode = MapMode::ReadOnly) {
    const ArrayMeta& meta = source.meta();
    using Element = std::remove_cv_t<T>;
    if constexpr (detail::kIsNumpyScalar<Element>) {
      const DType want(type_id_of<Element>());
      if (meta.dtype.id() != want.id()) {
        throw_error(ErrorCode::InvalidArgument, source.path() + ": elements are " +
                                                    meta.dtype.numpy_descr() +
                                                    ", cannot be viewed as " + want.numpy_descr() +
                                                    " (convert the file first)");
      }
    } else if (meta.dtype.itemsize() != sizeof(T)) {
      throw_error(ErrorCode::InvalidArgument,
                  source.path() + ": items of " + std::to_string(meta.dtype.itemsize()) +
                      " bytes cannot be viewed as " + std::to_string(sizeof(T)) + "-byte elements");
    }
    if (!meta.dtype.is_native()) {
      throw_error(
          ErrorCode::InvalidArgument,
          source.path() + ": elements are " + meta.dtype.numpy_descr() +
              ", stored in the other byte order than this machine's: an ArrayRef would read "
              "them byte-swapped (convert the file to native order first)");
    }
    detail::ArrayDesc desc;
    desc.path = source.path();
    desc.offset = source.data_offset();
    desc.nbytes = meta.nbytes();
    desc.mode = mode;
    return ArrayRef(std::move(desc));
  }

  std::size_t size() const noexcept { return desc_.nbytes / sizeof(T); }
  MapMode mode() const noexcept { return desc_.mode; }
  T* data() const {
    if (!mapping_.keep) mapping_ = detail::resolve_array(desc_);
    return reinterpret_cast<T*>(mapping_.data);
  }
  T& operator[](std::size_t i) const { return data()[i]; }
  T* begin() const { return data(); }
  T* end() const { return data() + size(); }
  // The lock of the SharedArray/SharedValue this refers to. Throws Error(InvalidArgument) for
  // a file region.
  SegmentLock lock() const {
    data();
    if (mapping_.base == nullptr) {
      throw_error(ErrorCode::InvalidArgument, "ArrayRef::lock: a file region has no lock");
    }
    return SegmentLock(mapping_.base);
  }
  const detail::ArrayDesc& desc() const noexcept { return desc_; }

 private:
  detail::ArrayDesc desc_;
  mutable detail::ArrayMapping mapping_;
};

namespace detail {
// "by reference: 2.0 GiB of file cube.u8 at offset 128, mapped in mode r" and the like.
std::string describe_reference(const ArrayDesc& desc);
template <class T>
struct TransportNote<ArrayRef<T>> {
  static std::string by_reference(const ArrayRef<T>& ref) { return describe_reference(ref.desc()); }
};
}  // namespace detail

// A segment's descriptor travels beside the bytes (the message's descriptor list: SCM_RIGHTS to a
// worker), named by its index; a file region by its path.
template <class T>
struct Codec<ArrayRef<T>> {
  static void write(ByteWriter& w, const ArrayRef<T>& ref) {
    const detail::ArrayDesc& d = ref.desc();
    w.u64(d.uid);
    w.u64(d.uid != 0 ? detail::pass_segment(w, d) : 0);
    w.u64(d.offset);
    w.u64(d.nbytes);
    w.u64(static_cast<std::uint64_t>(d.mode));
    Codec<std::string>::write(w, d.path);
  }
  static ArrayRef<T> read(ByteReader& r) {
    detail::ArrayDesc d;
    d.uid = r.u64();
    const std::uint64_t index = r.u64();
    if (d.uid != 0) detail::take_segment(r, index, d);
    d.offset = r.u64();
    d.nbytes = r.u64();
    d.mode = static_cast<MapMode>(r.u64());
    d.path = Codec<std::string>::read(r);
    return ArrayRef<T>(std::move(d));
  }
};

// multiprocessing.Array: n elements in a shared segment, zero-filled, with one lock. Workers
// get it as an argument (ref()) and write into it directly: results never cross a pipe.
// Created before a process pool, it is also visible through a pointer captured by a lambda.
// Move-only; element access is as thread-safe as the caller makes it (lock()).
template <class T>
class SharedArray {
  static_assert(std::is_trivially_copyable_v<T>, "SharedArray<T> needs a plain-data T");

 public:
  explicit SharedArray(std::size_t n)
      : segment_(detail::SharedSegmentOwner::create(static_cast<std::uint64_t>(n) * sizeof(T))),
        size_(n) {}
  std::size_t size() const noexcept { return size_; }
  T* data() const noexcept { return reinterpret_cast<T*>(segment_.data()); }
  T& operator[](std::size_t i) const { return data()[i]; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size_; }
  SegmentLock lock() const { return SegmentLock(segment_.base()); }
  // A reference for task arguments; r+ by default (the point of a shared array).
  ArrayRef<T> ref(MapMode mode = MapMode::ReadWrite) const {
    return ArrayRef<T>(segment_.describe(mode));
  }

 private:
  detail::SharedSegmentOwner segment_;
  std::size_t size_;
};

// multiprocessing.Value: one T in a shared segment with a lock.
template <class T>
class SharedValue {
 public:
  explicit SharedValue(T initial = T{}) : array_(1) { array_[0] = initial; }
  T load() const {
    auto guard = array_.lock();
    return array_[0];
  }
  void store(T value) {
    auto guard = array_.lock();
    array_[0] = value;
  }
  SegmentLock lock() const { return array_.lock(); }
  T* get() const noexcept { return array_.data(); }  // under lock()
  ArrayRef<T> ref(MapMode mode = MapMode::ReadWrite) const { return array_.ref(mode); }

 private:
  SharedArray<T> array_;
};

// In a task: fn(value) on element 0 of `ref` under its lock, e.g. a shared counter.
template <class T, class Fn>
void with_lock(const ArrayRef<T>& ref, Fn fn) {
  auto guard = ref.lock();
  fn(ref[0]);
}

}  // namespace mmc
