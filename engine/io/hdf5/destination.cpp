// Where an HDF5 dataset is written: the spec and the destination checked before anything is
// created, hidden temporary names beside the file, copying a file whole, and sweeping the
// temporary files of killed writers.
#include "io/hdf5/destination.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "io/hdf5/handles.hpp"
#include "io/hdf5/paths.hpp"
#include "io/hdf5/probe.hpp"
#include "io/hdf5/types.hpp"
#include "mmc/error.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {

std::string temp_name_for(const std::string& file) {
  static std::atomic<unsigned> counter{0};
  const std::size_t slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "" : file.substr(0, slash + 1);
  const std::string base = slash == std::string::npos ? file : file.substr(slash + 1);
  return dir + "." + base + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1));
}

std::string folder_of(const std::string& file) {
  const std::size_t slash = file.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : file.substr(0, slash);
}

void validate(const std::string& file, const std::string& dataset, const Hdf5WriteSpec& spec) {
  const std::string what = file + ":" + dataset;
  if (dataset.empty() || dataset == "/" || dataset.back() == '/' ||
      dataset.find("//") != std::string::npos) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": dataset path must name a dataset, like '/group/images'");
  }
  for (std::int64_t extent : spec.shape) {
    if (extent < 0) {
      throw_error(ErrorCode::InvalidArgument,
                  what + ": negative extent in shape " + format_shape(spec.shape));
    }
  }
  if (spec.shape.size() > H5S_MAX_RANK) {
    throw_error(ErrorCode::InvalidArgument, what + ": HDF5 allows at most 32 axes");
  }
  if (spec.chunks.empty()) {
    if (spec.gzip_level != 0) {
      throw_error(ErrorCode::InvalidArgument,
                  what + ": gzip needs a chunked dataset; give chunks or set gzip_level 0");
    }
    return;
  }
  if (spec.shape.empty()) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": a 0-d dataset cannot be chunked; leave chunks empty");
  }
  if (spec.chunks.size() != spec.shape.size()) {
    throw_error(ErrorCode::InvalidArgument, what + ": chunks " + format_shape(spec.chunks) +
                                                " and shape " + format_shape(spec.shape) +
                                                " have different numbers of axes");
  }
  std::uint64_t bytes = spec.dtype.itemsize();
  for (std::int64_t c : spec.chunks) {
    if (c < 1) {
      throw_error(ErrorCode::InvalidArgument,
                  what + ": chunk extents must be at least 1, got " + format_shape(spec.chunks));
    }
    bytes = detail::checked_mul(bytes, static_cast<std::uint64_t>(c), "HDF5 chunk size");
  }
  if (bytes > kMaxHdf5ChunkBytes) {
    throw_error(ErrorCode::InvalidArgument, what + ": chunks " + format_shape(spec.chunks) +
                                                " make chunks of 4 GiB or more, HDF5's limit");
  }
  if (spec.gzip_level < 0 || spec.gzip_level > 9) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": gzip_level " + std::to_string(spec.gzip_level) + " is outside 0..9");
  }
}

bool check_target(hid_t file, const std::string& file_name, const std::string& path) {
  std::size_t begin = 1;
  while (begin <= path.size()) {
    std::size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    const std::string prefix = path.substr(0, end);
    const htri_t link = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (link < 0) {
      throw_error(ErrorCode::Corrupt,
                  file_name + ": cannot look up '" + prefix + "': " + detail::hdf5_error_detail());
    }
    if (link == 0) return false;  // parents from here on are created at commit
    const bool last = end == path.size();
    H5O_info_t info;
    if (H5Oget_info_by_name2(file, prefix.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
      detail::hdf5_error_detail();
      if (last) return true;  // a dangling link: replaced like a dataset
      throw_error(ErrorCode::InvalidArgument,
                  file_name + ": '" + prefix + "' is a dangling link, not a group; cannot write " +
                      path + " under it");
    }
    if (!last && info.type != H5O_TYPE_GROUP) {
      throw_error(ErrorCode::InvalidArgument, file_name + ": '" + prefix +
                                                  "' is not a group; cannot "
                                                  "write " +
                                                  path + " under it");
    }
    if (last && info.type == H5O_TYPE_GROUP) {
      throw_error(ErrorCode::InvalidArgument, file_name + ":" + path +
                                                  " is a group; name a dataset (a group is never "
                                                  "replaced)");
    }
    begin = end + 1;
  }
  return true;
}

unsigned probe_destination(const std::string& file, const std::string& dataset) {
  try {
    detail::probe_hdf5(file, [&] {
      detail::hdf5_quiet();
      const Hdf5Handle id = detail::open_file(file, ErrorCode::Corrupt);
      check_target(id.get(), file, dataset);
    });
  } catch (const Error& e) {
    if (e.code() != ErrorCode::Corrupt) throw;
    throw_error(ErrorCode::Corrupt, std::string(e.what()) +
                                        "; a damaged HDF5 file is not written into or replaced: "
                                        "remove it, or write to another file");
  }
  const Hdf5Handle id = detail::open_file(file, ErrorCode::Corrupt);
  H5F_info2_t info;
  if (H5Fget_info2(id.get(), &info) < 0) {
    throw_error(ErrorCode::Corrupt,
                file + ": cannot read the superblock: " + detail::hdf5_error_detail());
  }
  return info.super.version;
}

void copy_whole_file(const std::string& from, const std::string& to) {
  detail::UniqueFd in(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
  struct stat st;
  if (!in || ::fstat(in.get(), &st) != 0) throw_errno(from + ": cannot open to copy");
  detail::UniqueFd out(
      ::open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 07777));
  if (!out) throw_errno(to + ": cannot create");
  auto left = static_cast<std::uint64_t>(st.st_size);
  bool plain = false;  // sendfile where copy_file_range is not supported
  while (left > 0) {
    const std::size_t step = std::min<std::uint64_t>(left, std::uint64_t{1} << 30);
    const ssize_t n = plain ? ::sendfile(out.get(), in.get(), nullptr, step)
                            : ::copy_file_range(in.get(), nullptr, out.get(), nullptr, step, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && !plain &&
        (errno == ENOSYS || errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP)) {
      plain = true;
      continue;
    }
    if (n < 0) throw_errno(to + ": cannot copy " + from + " into it");
    if (n == 0) throw_error(ErrorCode::Io, from + ": became shorter while being copied");
    left -= static_cast<std::uint64_t>(n);
  }
}

void sweep_dead_temps(const std::string& file) {
  const std::string dir = folder_of(file);
  const std::size_t slash = file.rfind('/');
  const std::string prefix =
      "." + (slash == std::string::npos ? file : file.substr(slash + 1)) + ".tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::size_t dash = name.find('-', prefix.size());
    if (dash == std::string::npos || dash == prefix.size() || dash - prefix.size() > 9) continue;
    const std::string digits = name.substr(prefix.size(), dash - prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) {
      ::unlinkat(::dirfd(d), name.c_str(), 0);
    }
  }
  ::closedir(d);
}

}  // namespace mmc::detail
