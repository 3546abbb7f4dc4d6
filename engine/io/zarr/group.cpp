// zarr groups: made, recognized, and a v2 group's consolidated metadata (.zmetadata) written.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/zarr/meta_parser.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail::zarr {
namespace {

[[noreturn]] void raise_io(const std::string& what) {
  const int err = errno;
  throw_error(ErrorCode::Io, what + ": " + std::strerror(err));
}

// Writes `text` as `path` through a temporary name and a rename, flushed: readers see the old
// file or the new one.
void write_atomically(const std::string& path, const std::string& text) {
  const std::string part = path + ".part-" + std::to_string(::getpid());
  {
    const detail::UniqueFd fd = detail::open_fd(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (!fd) raise_io(part + ": cannot create");
    if (!detail::write_all(fd.get(), reinterpret_cast<const std::byte*>(text.data()),
                           text.size()) ||
        ::fsync(fd.get()) != 0) {
      ::unlink(part.c_str());
      raise_io(part + ": cannot write");
    }
  }
  if (::rename(part.c_str(), path.c_str()) != 0) {
    ::unlink(part.c_str());
    raise_io(path + ": cannot write");
  }
}

// Adds the metadata documents of `dir` (a path `prefix` below the group) to `out`, and those of
// its sub-folders.
void collect(const std::string& dir, const std::string& prefix, json* out, int depth) {
  if (depth > 32) return;  // a deeper tree is not a zarr hierarchy anyone wrote
  for (const char* name : {".zgroup", ".zarray", ".zattrs"}) {
    const std::string file = dir + "/" + name;
    if (exists(file)) (*out)[prefix + name] = parse_document(file);
  }
  if (exists(dir + "/.zarray")) return;  // an array's folder holds chunks only
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> entries;
  while (const dirent* e = ::readdir(d)) {
    const std::string entry = e->d_name;
    if (entry.empty() || entry[0] == '.') continue;
    entries.push_back(entry);
  }
  ::closedir(d);
  std::sort(entries.begin(), entries.end());
  for (const std::string& entry : entries) {
    struct stat st;
    const std::string sub = dir + "/" + entry;
    if (::lstat(sub.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      collect(sub, prefix + entry + "/", out, depth + 1);
    }
  }
}

}  // namespace
}  // namespace mmc::detail::zarr

namespace mmc {

void write_zarr_group(const std::string& path, int zarr_format) {
  if (::mkdir(path.c_str(), 0777) != 0 && errno != EEXIST)
    detail::zarr::raise_io(path + ": cannot create");
  if (zarr_format == 3) {
    detail::zarr::write_atomically(path + "/zarr.json",
                                   detail::zarr::json{{"zarr_format", 3},
                                                      {"node_type", "group"},
                                                      {"attributes", detail::zarr::json::object()}}
                                           .dump(4) +
                                       "\n");
  } else {
    detail::zarr::write_atomically(path + "/.zgroup",
                                   detail::zarr::json{{"zarr_format", 2}}.dump(4) + "\n");
  }
}

int zarr_group_format(const std::string& path) {
  if (detail::zarr::exists(path + "/.zgroup")) return 2;
  const std::string file = path + "/zarr.json";
  if (!detail::zarr::exists(file)) return 0;
  try {
    const detail::zarr::json doc = detail::zarr::parse_document(file);
    return doc.value("node_type", detail::zarr::json()) == "group" ? 3 : 0;
  } catch (const Error&) {
    return 0;
  }
}

void consolidate_zarr_metadata(const std::string& group) {
  detail::zarr::json metadata = detail::zarr::json::object();
  detail::zarr::collect(group, "", &metadata, 0);
  const detail::zarr::json doc = {{"zarr_consolidated_format", 1}, {"metadata", metadata}};
  detail::zarr::write_atomically(group + "/.zmetadata", doc.dump(4) + "\n");
}

}  // namespace mmc
