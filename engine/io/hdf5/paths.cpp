// HDF5 names: parsing FILE.h5:/dataset, opening files, and walking a dataset path with errors
// in the user's terms.
#include "io/hdf5/paths.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "mmc/chunked.hpp"
#include "mmc/hdf5.hpp"

namespace mmc {

namespace {

bool has_suffix(const std::string& text, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return text.size() >= n && text.compare(text.size() - n, n, suffix) == 0;
}

// Names that say "HDF5" by their extension, for FILE:name without a leading slash.
bool hdf5_file_name(const std::string& file) {
  for (const char* suffix : {".h5", ".hdf5", ".he5", ".hdf", ".nxs"}) {
    if (has_suffix(file, suffix)) return true;
  }
  return false;
}

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

bool split_hdf5_spec(const std::string& spec, std::string* file, std::string* dataset) {
  // "FILE:/path": the first ':/' splits (a dataset path may hold ':' but a file name before
  // it rarely holds ':/').
  const std::size_t pos = spec.find(":/");
  if (pos != std::string::npos && pos != 0) {
    *file = spec.substr(0, pos);
    *dataset = spec.substr(pos + 1);
    return true;
  }
  // "FILE.h5:name", as h5py users write names: the dataset /name. Only when the part before
  // the last ':' has an HDF5 extension and the whole spec is not itself an existing file.
  const std::size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size()) return false;
  const std::string head = spec.substr(0, colon);
  if (!hdf5_file_name(head) || is_regular_file(spec)) return false;
  *file = head;
  *dataset = "/" + spec.substr(colon + 1);
  return true;
}

namespace detail {

// Checks before H5Fopen, for errors in the user's terms rather than libhdf5's.
void check_file(const std::string& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      throw_error(ErrorCode::NotFound, file + ": no such file (expected an HDF5 file)");
    }
    throw_errno(file + ": cannot stat");
  }
  if (S_ISDIR(st.st_mode)) {
    throw_error(ErrorCode::InvalidArgument, file + ": is a folder, not an HDF5 file");
  }
  if (::access(file.c_str(), R_OK) != 0) throw_errno(file + ": cannot read");
  if (!is_hdf5_file(file)) {
    throw_error(ErrorCode::Corrupt, file +
                                        ": not an HDF5 file (no HDF5 signature at offset 0, 512, "
                                        "1024, ...); check the path");
  }
}

std::string locked_message(const std::string& file) {
  return file +
         ": another process holds it open for writing (HDF5 file lock); wait for it to finish, "
         "or set HDF5_USE_FILE_LOCKING=FALSE for a read-only look at a file being written";
}

bool is_lock_error(const std::string& detail) {
  return detail.find("unable to lock") != std::string::npos ||
         detail.find("errno = 11") != std::string::npos;
}

Hdf5Handle open_file(const std::string& file, ErrorCode code) {
  const hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) {
    const std::string detail = hdf5_error_detail();
    if (is_lock_error(detail)) throw_error(ErrorCode::Io, locked_message(file));
    // libhdf5 1.10 marks a superblock v3 file while a writer has it open; a killed writer
    // leaves the mark, and the library refuses the file until it is cleared.
    if (detail.find("already open for write") != std::string::npos) {
      throw_error(ErrorCode::Io, file +
                                     ": the file's write flag is set (a writer was killed?); if no "
                                     "program is writing it, run `h5clear -s " +
                                     file + "`");
    }
    throw_error(code, file + ": cannot open as an HDF5 file (damaged or truncated?): " + detail);
  }
  return Hdf5Handle::adopt(id, Hdf5Kind::File, code, file);
}

std::string holding_file_of(hid_t object, const std::string& where) {
  const ssize_t n = H5Fget_name(object, nullptr, 0);
  if (n <= 0) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot tell which file holds the dataset: " + hdf5_error_detail());
  }
  std::string name(static_cast<std::size_t>(n) + 1, '\0');
  if (H5Fget_name(object, name.data(), name.size()) < 0) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot tell which file holds the dataset: " + hdf5_error_detail());
  }
  name.resize(static_cast<std::size_t>(n));
  return name;
}

namespace {

// Up to five member names of a group, for the message telling the user what to name instead.
std::string some_members(hid_t file, const std::string& group) {
  H5G_info_t info;
  if (H5Gget_info_by_name(file, group.c_str(), &info, H5P_DEFAULT) < 0) {
    detail::hdf5_error_detail();
    return "";
  }
  if (info.nlinks == 0) return " (it is empty)";
  std::string list;
  for (hsize_t i = 0; i < std::min<hsize_t>(info.nlinks, 5); ++i) {
    char name[256] = {};
    if (H5Lget_name_by_idx(file, group.c_str(), H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name,
                           H5P_DEFAULT) < 0) {
      detail::hdf5_error_detail();
      break;
    }
    list += (list.empty() ? "" : ", ") + std::string(name);
  }
  if (info.nlinks > 5) list += ", ...";
  return " (it holds " + list + ")";
}

}  // namespace

// Walks `path` ("/a/b/c") component by component so a missing dataset is reported as the first
// missing name (H5Lexists fails, rather than answering, when a parent is missing). Throws
// Error(NotFound) for a missing or dangling name, Error(InvalidArgument) when the path names a
// group or a named datatype.
void check_path(hid_t file, const std::string& file_name, const std::string& path) {
  const std::string where = file_name + ":" + path;
  if (path == "/") {
    throw_error(
        ErrorCode::InvalidArgument,
        where + " is the root group, not a dataset; name a dataset" + some_members(file, "/"));
  }
  std::size_t begin = 1;
  while (begin <= path.size()) {
    std::size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    const std::string prefix = path.substr(0, end);
    const std::string parent = begin == 1 ? "/" : path.substr(0, begin - 1);
    if (end == begin) {
      throw_error(ErrorCode::InvalidArgument,
                  where + ": the dataset path has an empty name after '" + parent + "'");
    }
    const htri_t link = H5Lexists(file, prefix.c_str(), H5P_DEFAULT);
    if (link < 0) {
      throw_error(ErrorCode::Corrupt,
                  where + ": cannot look up '" + prefix + "': " + detail::hdf5_error_detail());
    }
    if (link == 0) {
      throw_error(ErrorCode::NotFound, file_name + ": no dataset '" + path + "': group '" + parent +
                                           "' has no member '" + path.substr(begin, end - begin) +
                                           "'" + some_members(file, parent));
    }
    const htri_t object = H5Oexists_by_name(file, prefix.c_str(), H5P_DEFAULT);
    if (object <= 0) {
      const std::string why = object < 0 ? detail::hdf5_error_detail() : "nothing";
      throw_error(ErrorCode::NotFound, file_name + ": no dataset '" + path + "': the link '" +
                                           prefix + "' leads to " + why +
                                           " (dangling soft or external link)");
    }
    H5O_info_t info;
    if (H5Oget_info_by_name2(file, prefix.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
      throw_error(ErrorCode::Corrupt,
                  where + ": cannot read object '" + prefix + "': " + detail::hdf5_error_detail());
    }
    const bool last = end == path.size();
    if (!last && info.type != H5O_TYPE_GROUP) {
      throw_error(ErrorCode::NotFound,
                  file_name + ": no dataset '" + path + "': '" + prefix + "' is not a group");
    }
    if (last && info.type == H5O_TYPE_GROUP) {
      throw_error(
          ErrorCode::InvalidArgument,
          where + " is a group, not a dataset; name a dataset in it" + some_members(file, path));
    }
    if (last && info.type != H5O_TYPE_DATASET) {
      throw_error(ErrorCode::InvalidArgument, where + " is a named datatype, not a dataset");
    }
    begin = end + 1;
  }
}

// "/a/b" from "a/b" or "/a/b" (HDF5 resolves both from the root; we name it one way).
std::string absolute_path(const std::string& file, const std::string& dataset) {
  if (dataset.empty()) {
    throw_error(ErrorCode::InvalidArgument, file + ": empty dataset path; give one like '/images'");
  }
  return dataset.front() == '/' ? dataset : "/" + dataset;
}

}  // namespace detail
}  // namespace mmc
