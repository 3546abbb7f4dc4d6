// SharedArray/SharedValue segments (a robust process-shared mutex, then the payload), the
// descriptors ArrayRefs carry, and the per-process cache of what they map: a worker maps a
// segment or file region once.
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <tuple>

#include "mmc/shared.hpp"
#include "os/unique_fd.hpp"
#include "pool/segment.hpp"

namespace mmc::detail {
namespace {

constexpr std::uint64_t kSegmentHeaderBytes = 128;  // the lock, then the uid; payload 128-aligned
constexpr std::size_t kMaxCachedMappings = 64;

struct SegmentHeader {
  pthread_mutex_t mutex;
  std::uint64_t uid;
};
static_assert(sizeof(SegmentHeader) <= kSegmentHeaderBytes);

std::uint64_t new_uid() {
  static std::mutex mutex;
  static std::mt19937_64 engine{std::random_device{}()};
  std::lock_guard lock(mutex);
  std::uint64_t uid = 0;
  while (uid == 0) uid = engine();
  return uid;
}

int prot_of(MapMode mode) { return mode == MapMode::ReadOnly ? PROT_READ : PROT_READ | PROT_WRITE; }

struct Unmapper {
  std::size_t length;
  void operator()(void* base) const noexcept {
    if (base != nullptr) munmap(base, length);
  }
};

// The identity of a segment's descriptor (device, inode), checked to be a segment that can hold
// desc's bytes.
struct stat segment_stat(const ArrayDesc& desc) {
  struct stat info {};
  if (desc.fd < 0 || fstat(desc.fd, &info) != 0) {
    throw_error(ErrorCode::NotFound, "shared array: its descriptor is not open here (" +
                                         std::string(std::strerror(errno)) +
                                         "); does its SharedArray still exist?");
  }
  if (static_cast<std::uint64_t>(info.st_size) < kSegmentHeaderBytes + desc.nbytes) {
    throw_error(ErrorCode::NotFound, "shared array: descriptor " + std::to_string(desc.fd) +
                                         " holds " + std::to_string(info.st_size) +
                                         " bytes, not the segment it names");
  }
  return info;
}

// Maps a segment through its descriptor (ours, or the copy that came with the task).
ArrayMapping map_segment(const ArrayDesc& desc) {
  segment_stat(desc);
  const std::size_t length = kSegmentHeaderBytes + desc.nbytes;
  // Private for c (a copy-on-write view of the shared pages), shared otherwise; the header
  // is always shared and writable so lock() works whatever the mode.
  const int flags = desc.mode == MapMode::CopyOnWrite ? MAP_PRIVATE : MAP_SHARED;
  const int prot = desc.mode == MapMode::CopyOnWrite ? PROT_READ | PROT_WRITE : prot_of(desc.mode);
  void* base = mmap(nullptr, length, prot, flags, desc.fd, 0);
  if (base == MAP_FAILED) throw_errno("mmap of a shared array");
  std::shared_ptr<void> keep(base, Unmapper{length});
  auto* bytes = static_cast<std::byte*>(base);
  if (reinterpret_cast<SegmentHeader*>(bytes)->uid != desc.uid) {
    throw_error(ErrorCode::NotFound, "shared array: descriptor " + std::to_string(desc.fd) +
                                         " is no longer the segment it named");
  }
  ArrayMapping mapping;
  mapping.base = bytes;
  mapping.data = bytes + kSegmentHeaderBytes;
  mapping.keep = std::move(keep);
  if (desc.mode == MapMode::CopyOnWrite) {
    // The lock must be the shared one: map the header page again, shared.
    void* header =
        mmap(nullptr, kSegmentHeaderBytes, PROT_READ | PROT_WRITE, MAP_SHARED, desc.fd, 0);
    if (header != MAP_FAILED) {
      auto both = std::make_shared<std::pair<std::shared_ptr<void>, std::shared_ptr<void>>>(
          mapping.keep, std::shared_ptr<void>(header, Unmapper{kSegmentHeaderBytes}));
      mapping.base = static_cast<std::byte*>(header);
      mapping.keep = std::shared_ptr<void>(both, both.get());
    }
  }
  return mapping;
}

ArrayMapping map_file(const ArrayDesc& desc) {
  auto file = std::make_shared<MappedFile>(
      MappedFile::open(desc.path, desc.mode, desc.offset, desc.nbytes));
  ArrayMapping mapping;
  mapping.data = file->mutable_data();
  mapping.keep = std::shared_ptr<void>(file, file.get());
  return mapping;
}

class MappingCache {
 public:
  // A segment by its uid and its descriptor's device and inode (a descriptor number is reused,
  // a file's identity is not while it is mapped); a file region by path.
  using Key = std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::string, std::uint64_t,
                         std::uint64_t, int>;
  ArrayMapping get(const ArrayDesc& desc) {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
    if (desc.uid != 0) {
      const struct stat info = segment_stat(desc);
      device = static_cast<std::uint64_t>(info.st_dev);
      inode = static_cast<std::uint64_t>(info.st_ino);
    }
    const Key key{
        desc.uid, device, inode, desc.path, desc.offset, desc.nbytes, static_cast<int>(desc.mode)};
    {
      std::lock_guard lock(mutex_);
      if (auto it = entries_.find(key); it != entries_.end()) return it->second;
    }
    ArrayMapping mapping = desc.uid != 0 ? map_segment(desc) : map_file(desc);
    std::lock_guard lock(mutex_);
    if (entries_.emplace(key, mapping).second) order_.push_back(key);
    while (order_.size() > kMaxCachedMappings) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    return mapping;
  }
  void forget(std::uint64_t uid) {
    std::lock_guard lock(mutex_);
    for (auto it = order_.begin(); it != order_.end();) {
      if (std::get<0>(*it) == uid) {
        entries_.erase(*it);
        it = order_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  std::mutex mutex_;
  std::map<Key, ArrayMapping> entries_;
  std::deque<Key> order_;
};

MappingCache& cache() {
  static MappingCache* instance = new MappingCache();  // never destroyed: used at exit
  return *instance;
}

}  // namespace

std::string describe_reference(const ArrayDesc& desc) {
  const char* mode = desc.mode == MapMode::ReadOnly      ? "r"
                     : desc.mode == MapMode::CopyOnWrite ? "c"
                                                         : "r+";
  std::string where = desc.uid == 0
                          ? "of file " + desc.path + " at offset " + std::to_string(desc.offset)
                          : "in a shared segment (SharedArray/SharedValue)";
  return "by reference: " + format_bytes(desc.nbytes) + " " + where +
         ", mapped by the worker in mode " + mode + ", never copied";
}

std::uint64_t pass_segment(ByteWriter& w, const ArrayDesc& desc) {
  if (w.fds() == nullptr) {
    throw_error(
        ErrorCode::InvalidArgument,
        "an ArrayRef to a shared segment (SharedArray, SharedValue, a shared container) travels "
        "only as an argument or result of a pool task, not inside a shared container's items");
  }
  return w.fds()->add_copy(desc.fd);
}

void take_segment(const ByteReader& r, std::uint64_t index, ArrayDesc& desc) {
  if (r.fds() == nullptr) {
    throw_error(ErrorCode::Corrupt,
                "codec: an ArrayRef to a shared segment outside a pool message");
  }
  desc.fd = r.fds()->at(index);
  desc.fd_keeper = r.fds()->keeper();
}

ArrayMapping resolve_array(const ArrayDesc& desc) {
  if (desc.mode == MapMode::Create) {
    throw_error(ErrorCode::InvalidArgument, "ArrayRef: mode w+ is for creating files; use r+");
  }
  if (desc.mode == MapMode::CopyOnWrite) {
    return desc.uid != 0 ? map_segment(desc) : map_file(desc);  // private to this holder
  }
  return cache().get(desc);
}

void lock_segment(std::byte* base) {
  auto* header = reinterpret_cast<SegmentHeader*>(base);
  const int rc = pthread_mutex_lock(&header->mutex);
  if (rc == EOWNERDEAD) {
    // The holder died (killed worker): the data may be half-updated, the lock is usable again.
    pthread_mutex_consistent(&header->mutex);
  } else if (rc != 0) {
    throw_error(ErrorCode::Internal, std::string("shared array lock: ") + std::strerror(rc));
  }
}

void unlock_segment(std::byte* base) noexcept {
  pthread_mutex_unlock(&reinterpret_cast<SegmentHeader*>(base)->mutex);
}

SharedSegmentOwner SharedSegmentOwner::create(std::uint64_t payload_bytes) {
  SharedSegmentOwner owner;
  owner.total_bytes_ = kSegmentHeaderBytes + payload_bytes;
  std::string where;
  UniqueFd fd = create_shared_file(owner.total_bytes_, &where);
  void* base = mmap(nullptr, owner.total_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) throw_errno("mmap of a shared array in " + where);
  owner.base_ = static_cast<std::byte*>(base);
  owner.fd_ = fd.release();
  owner.payload_bytes_ = payload_bytes;
  owner.uid_ = new_uid();
  auto* header = reinterpret_cast<SegmentHeader*>(owner.base_);
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&header->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  header->uid = owner.uid_;
  return owner;
}

SharedSegmentOwner::~SharedSegmentOwner() { release(); }

SharedSegmentOwner::SharedSegmentOwner(SharedSegmentOwner&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      base_(std::exchange(other.base_, nullptr)),
      total_bytes_(std::exchange(other.total_bytes_, 0)),
      payload_bytes_(std::exchange(other.payload_bytes_, 0)),
      uid_(std::exchange(other.uid_, 0)) {}

SharedSegmentOwner& SharedSegmentOwner::operator=(SharedSegmentOwner&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    total_bytes_ = std::exchange(other.total_bytes_, 0);
    payload_bytes_ = std::exchange(other.payload_bytes_, 0);
    uid_ = std::exchange(other.uid_, 0);
  }
  return *this;
}

std::byte* SharedSegmentOwner::data() const noexcept { return base_ + kSegmentHeaderBytes; }

ArrayDesc SharedSegmentOwner::describe(MapMode mode) const {
  ArrayDesc desc;
  desc.uid = uid_;
  desc.fd = fd_;
  desc.offset = kSegmentHeaderBytes;
  desc.nbytes = payload_bytes_;
  desc.mode = mode;
  return desc;
}

void SharedSegmentOwner::release() noexcept {
  if (uid_ != 0) cache().forget(uid_);
  if (base_ != nullptr) munmap(base_, total_bytes_);
  UniqueFd(std::exchange(fd_, -1));  // closes it
  base_ = nullptr;
  uid_ = 0;
}

}  // namespace mmc::detail
