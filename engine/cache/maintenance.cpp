// Cache folder maintenance: listing entries, pruning by least recent use, clearing.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <memory>

#include "cache/entry.hpp"
#include "cache/key_lock.hpp"
#include "mmc/cache.hpp"

namespace mmc {
namespace {

// Leftovers of interrupted writes younger than this may belong to a write in progress.
constexpr std::int64_t kStaleTempNs = std::int64_t{3600} * 1000000000;

enum class FileKind : std::uint8_t { Entry, Lock, Temp, Other };

bool is_key(std::string_view s) {
  return s.size() == 32 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Only names the cache makes are ever touched: a folder shared with other files stays intact.
FileKind classify(std::string_view name) {
  if (name.size() == 36 && name.ends_with(".mmc") && is_key(name.substr(0, 32))) {
    return FileKind::Entry;
  }
  if (name.size() == 37 && name.ends_with(".lock") && is_key(name.substr(0, 32))) {
    return FileKind::Lock;
  }
  // AtomicFile's temporaries: ".<key>.mmc.tmp.XXXXXX".
  if (name.size() == 1 + 36 + 11 && name[0] == '.' && is_key(name.substr(1, 32)) &&
      name.substr(33, 9) == ".mmc.tmp.") {
    return FileKind::Temp;
  }
  return FileKind::Other;
}

struct FolderFile {
  std::string name;
  std::string path;
  FileKind kind;
  std::uint64_t size;
  std::int64_t mtime_ns;
};

std::int64_t now_ns() {
  struct timespec t;
  ::clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// The cache's files in `folder`; none when it does not exist. Throws Error(Io).
std::vector<FolderFile> scan(const std::string& folder) {
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(folder.c_str()), &::closedir);
  if (!dir) {
    if (errno == ENOENT) return {};
    throw_errno("cannot list the cache folder " + folder);
  }
  std::vector<FolderFile> files;
  while (const dirent* e = ::readdir(dir.get())) {
    const FileKind kind = classify(e->d_name);
    if (kind == FileKind::Other) continue;
    FolderFile f{e->d_name, folder + "/" + e->d_name, kind, 0, 0};
    struct stat st;
    if (::lstat(f.path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // gone meanwhile
    f.size = static_cast<std::uint64_t>(st.st_size);
    f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    files.push_back(std::move(f));
  }
  return files;
}

CacheEntryInfo describe(const FolderFile& f) {
  CacheEntryInfo info;
  info.key = f.name.substr(0, 32);
  info.path = f.path;
  info.size = f.size;
  info.last_use_ns = f.mtime_ns;
  detail::EntryHeader header;
  std::string problem;
  info.valid = detail::read_entry_header(f.path, &header, &problem) && header.key.hex() == info.key;
  info.what = info.valid ? header.what : "(unreadable: " + problem + ")";
  return info;
}

// Removes lock files nobody holds (taking the lock first, so a holder is never disturbed) and
// temporaries older than `min_age_ns`.
void remove_leftovers(const std::vector<FolderFile>& files, std::int64_t min_age_ns) {
  const std::int64_t now = now_ns();
  for (const FolderFile& f : files) {
    if (f.kind == FileKind::Lock) {
      detail::KeyLock lock = detail::KeyLock::try_acquire(f.path);
      lock.release();
    } else if (f.kind == FileKind::Temp && now - f.mtime_ns >= min_age_ns) {
      ::unlink(f.path.c_str());
    }
  }
}

// Most recently used first; ties by key, so the order is stable.
void sort_by_recent_use(std::vector<CacheEntryInfo>& entries) {
  std::sort(entries.begin(), entries.end(), [](const CacheEntryInfo& a, const CacheEntryInfo& b) {
    return a.last_use_ns != b.last_use_ns ? a.last_use_ns > b.last_use_ns : a.key < b.key;
  });
}

}  // namespace

std::vector<CacheEntryInfo> Cache::list() const {
  std::vector<CacheEntryInfo> entries;
  for (const FolderFile& f : scan(folder_)) {
    if (f.kind == FileKind::Entry) entries.push_back(describe(f));
  }
  sort_by_recent_use(entries);
  return entries;
}

CacheRemoval Cache::prune(std::uint64_t max_bytes) const {
  const std::vector<FolderFile> files = scan(folder_);
  std::vector<CacheEntryInfo> entries;
  for (const FolderFile& f : files) {
    if (f.kind == FileKind::Entry) entries.push_back(describe(f));
  }
  sort_by_recent_use(entries);
  CacheRemoval r;
  // Keep the most recent entries that fit in the budget, in order; the first that does not fit
  // and everything older goes, so what stays is exactly a most-recently-used prefix.
  bool full = false;
  for (const CacheEntryInfo& e : entries) {
    if (e.valid && !full && r.kept_bytes + e.size <= max_bytes) {
      r.kept_bytes += e.size;
      ++r.kept_entries;
      continue;
    }
    if (e.valid) full = true;
    if (::unlink(e.path.c_str()) == 0 || errno == ENOENT) {
      r.removed_bytes += e.size;
      ++r.removed_entries;
    } else {
      throw_errno("cannot remove the cache entry " + e.path);
    }
  }
  remove_leftovers(files, kStaleTempNs);
  return r;
}

CacheRemoval Cache::clear() const {
  const std::vector<FolderFile> files = scan(folder_);
  CacheRemoval r;
  for (const FolderFile& f : files) {
    if (f.kind != FileKind::Entry) continue;
    if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) {
      throw_errno("cannot remove the cache entry " + f.path);
    }
    r.removed_bytes += f.size;
    ++r.removed_entries;
  }
  remove_leftovers(files, 0);
  return r;
}

}  // namespace mmc
