// The result cache: joblib.Memory for reductions and user functions, with keys that cover the
// source's identity, entries stored atomically and checked on every read, and an LRU byte budget.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"
#include "mmc/source.hpp"

namespace mmc {

// Bumped whenever a reduction's answer or the entry layout changes, so old entries miss. 2:
// float sums of byte-swapped data add 4096-element blocks (their last bits changed).
inline constexpr std::uint32_t kResultFormatVersion = 2;

// A 128-bit cache key (XXH3-128 of a canonical encoding).
struct CacheKey {
  std::uint64_t high = 0;
  std::uint64_t low = 0;

  // 32 lowercase hex digits, high half first: the entry's file name without extension.
  std::string hex() const;
  friend bool operator==(const CacheKey& a, const CacheKey& b) noexcept {
    return a.high == b.high && a.low == b.low;
  }
  friend bool operator!=(const CacheKey& a, const CacheKey& b) noexcept { return !(a == b); }
};

// How a Source enters a key: by identity (path, device, inode, size, mtime and ctime in ns; no
// byte is read) or additionally by the XXH3 hash of its mapped bytes (reads the whole source).
enum class SourceHash : std::uint8_t { Identity, Content };

// Builds a key from plain data. Every value is written with a type tag and a length, so
// ("ab", "c") and ("a", "bc") differ, as do 1 (int) and 1.0 (double). Arrays are hashed by content
// at memory speed and enter the encoding as their 128-bit digest. Value type: not thread-safe,
// cheap to copy.
class Hasher {
 public:
  Hasher& add(bool v);
  Hasher& add(std::int64_t v);
  Hasher& add(std::uint64_t v);
  Hasher& add(double v);  // by bit pattern, with -0.0 and every NaN folded to one value
  Hasher& add(std::string_view v);
  Hasher& add(const char* v) { return add(std::string_view(v)); }
  Hasher& add(const std::string& v) { return add(std::string_view(v)); }
  // Any other integer type is widened to 64 bits (so int 3 and long 3 are the same value).
  template <class T, class = std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>>
  Hasher& add(T v) {
    if constexpr (std::is_signed_v<T>) {
      return add(static_cast<std::int64_t>(v));
    } else {
      return add(static_cast<std::uint64_t>(v));
    }
  }
  Hasher& add(float v) { return add(static_cast<double>(v)); }
  // A vector of values: its length, then each value.
  template <class T>
  Hasher& add(const std::vector<T>& values) {
    begin_sequence(values.size());
    for (const auto& v : values) add(v);
    return *this;
  }
  // Raw bytes, hashed by content (XXH3-128).
  Hasher& add_bytes(const void* data, std::size_t size);
  // A dense array: element type, shape and the content of `data` (REQUIRES: `data` holds
  // meta.nbytes() bytes laid out as meta says).
  Hasher& add_array(const ArrayMeta& meta, const void* data);
  // A source: geometry, kind, real path, and identity or content as asked.
  // Throws Error(NotFound | Io) when the source's file cannot be stat'ed.
  Hasher& add(const Source& source, SourceHash how = SourceHash::Identity);

  // The key of everything added so far.
  CacheKey digest() const;
  // The canonical encoding itself (for tests and debugging).
  const std::string& encoding() const noexcept { return encoding_; }

 private:
  void begin_sequence(std::size_t n);
  std::string encoding_;
};

// What a cached call did.
struct CacheOutcome {
  bool hit = false;     // the answer came from the cache; nothing was computed
  bool stored = false;  // a miss whose answer is now in the cache
  CacheKey key;
  std::string entry_path;             // the entry's file (whether or not it exists)
  std::vector<std::string> warnings;  // what went wrong with the cache, if anything
};

// Receives one-line warnings (folder not writable, disk full, corrupt entry removed, ...).
using CacheWarningFn = std::function<void(const std::string& message)>;

struct CacheOptions {
  // The cache folder. Empty: $MMC_CACHE_DIR. Created (with parents) mode 0700 when missing.
  std::string folder;
  // Adds the XXH3 hash of the source's bytes to reduction keys, for files changed in place
  // without a new mtime (coarse timestamps, writes through a shared mapping). Reads the source
  // once per call.
  bool verify = false;
  // One computation per key: other callers wait on a per-key flock, then hit. When false,
  // concurrent misses all compute and the last rename wins (still never a torn entry).
  bool lock = true;
  // Where warnings go; empty: one line "mmc: cache: warning: ..." on stderr.
  CacheWarningFn on_warning;
};

// The folder CacheOptions would use: options.folder, else $MMC_CACHE_DIR, else "".
std::string resolve_cache_folder(const std::string& folder);

// One entry as `ls` shows it.
struct CacheEntryInfo {
  std::string key;               // 32 hex digits
  std::string path;              // the entry's file
  std::uint64_t size = 0;        // bytes on disk (header + payload)
  std::int64_t last_use_ns = 0;  // mtime: set when stored and on every hit (ns since the epoch)
  std::string what;   // "mean axes=1,2 ddof=0 of /data/cube.u8 (2048x1024x1024 u8 C raw)"
  bool valid = true;  // false when the header cannot be read (prune and clear remove it)
};

struct CacheRemoval {
  std::uint64_t removed_entries = 0;
  std::uint64_t removed_bytes = 0;
  std::uint64_t kept_entries = 0;
  std::uint64_t kept_bytes = 0;
};

// A cache folder. Every method is safe to call from several threads and processes at once on
// the same folder: entries appear by atomic rename and are checked (checksums) when read.
// A cache that cannot be used (folder not creatable or not writable, disk full) never fails a
// computation: it warns and computes.
class Cache {
 public:
  // Throws Error(InvalidArgument) when neither options.folder nor $MMC_CACHE_DIR names a folder.
  // Does not touch the disk.
  explicit Cache(CacheOptions options);

  const std::string& folder() const noexcept { return folder_; }
  const CacheOptions& options() const noexcept { return options_; }

  // The key of reduce(source, options): format version, op, normalized axes, ddof (var/std),
  // task blocking, the source's geometry, kind, real path and identity (plus its content hash
  // with verify). n_jobs, backend and max_nbytes are left out: they never change the answer.
  // Throws what normalize_axes and Hasher::add(Source) throw.
  CacheKey reduce_key(const Source& source, const ReduceOptions& options) const;

  // reduce() through the cache. On a hit returns the stored result without starting any worker
  // (stats are zero); on a miss computes with mmc::reduce and stores. A corrupt entry is removed
  // with a warning and recomputed. Throws what reduce() throws, and Error(Cancelled) when
  // interrupted while waiting for another process computing the same key.
  ReduceResult reduce(const Source& source, const ReduceOptions& options,
                      CacheOutcome* outcome = nullptr) const;

  // reduce_each() through the cache: each op of options.ops has its own entry (that of
  // reduce() for the op alone, so either call hits what the other stored). The ops without an
  // entry are computed together, in one pass over the data, when the first of them misses. The
  // one-computation-per-key lock is held for that first op only: two processes missing the same
  // ops at once may both compute the later ones (both store the same bits). outcomes, when
  // given, receives one CacheOutcome per op. Throws what reduce_each() throws.
  std::vector<ReduceResult> reduce_each(const Source& source, const ReduceOptions& options,
                                        std::vector<CacheOutcome>* outcomes = nullptr) const;

  // Memoizes compute() under (function_name, function_version, args): bump the version when the
  // function's answer changes. compute() runs at most once per key across processes sharing the
  // folder (unless options.lock is false); what it throws propagates and nothing is stored.
  Bytes memoize(std::string_view function_name, std::uint64_t function_version, const Hasher& args,
                const std::function<Bytes()>& compute, CacheOutcome* outcome = nullptr) const;

  // memoize for a trivially copyable result.
  template <class T>
  T memoize_value(std::string_view function_name, std::uint64_t function_version,
                  const Hasher& args, const std::function<T()>& compute,
                  CacheOutcome* outcome = nullptr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    const Bytes bytes = memoize(
        function_name, function_version, typed(args, sizeof(T), 0),
        [&] {
          const T value = compute();
          Bytes out(sizeof(T));
          std::memcpy(out.data(), &value, sizeof(T));
          return out;
        },
        outcome);
    if (bytes.size() != sizeof(T)) throw_size_mismatch(function_name, bytes.size(), sizeof(T));
    T value;
    std::memcpy(&value, bytes.data(), sizeof(T));
    return value;
  }

  // memoize for a std::vector of a trivially copyable type.
  template <class T>
  std::vector<T> memoize_vector(std::string_view function_name, std::uint64_t function_version,
                                const Hasher& args, const std::function<std::vector<T>()>& compute,
                                CacheOutcome* outcome = nullptr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    const Bytes bytes = memoize(
        function_name, function_version, typed(args, sizeof(T), 1),
        [&] {
          const std::vector<T> values = compute();
          Bytes out(values.size() * sizeof(T));
          if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
          return out;
        },
        outcome);
    if (bytes.size() % sizeof(T) != 0) throw_size_mismatch(function_name, bytes.size(), sizeof(T));
    std::vector<T> values(bytes.size() / sizeof(T));
    if (!values.empty()) std::memcpy(values.data(), bytes.data(), bytes.size());
    return values;
  }

  // Entries, most recently used first. A missing folder has none. Throws Error(Io) when the
  // folder exists but cannot be read.
  std::vector<CacheEntryInfo> list() const;
  // Removes least recently used entries until the entries' total size is at most max_bytes,
  // then unreadable entries and leftovers of interrupted writes older than an hour.
  CacheRemoval prune(std::uint64_t max_bytes) const;
  // Removes every entry (and every leftover temporary and free lock file).
  CacheRemoval clear() const;

 private:
  // Lets the typed helpers key their results apart from memoize()'s raw bytes.
  static Hasher typed(const Hasher& args, std::size_t item_size, int shape);
  [[noreturn]] static void throw_size_mismatch(std::string_view function_name, std::size_t size,
                                               std::size_t item_size);
  // reduce() of one op through the cache, computing with compute() on a miss.
  ReduceResult reduce_one(const Source& source, const ReduceOptions& options, CacheOutcome* outcome,
                          const std::function<ReduceResult()>& compute) const;

  CacheOptions options_;
  std::string folder_;
};

// Cache(cache_options).reduce(source, options, outcome).
ReduceResult cached_reduce(const Source& source, const ReduceOptions& options,
                           const CacheOptions& cache_options, CacheOutcome* outcome = nullptr);

}  // namespace mmc
