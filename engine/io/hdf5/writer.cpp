// Writing one HDF5 dataset crash-safely: a hidden temporary file renamed into place on commit;
// contiguous data written by the caller at data_offset(), chunks encoded here (shuffle +
// deflate, byte for byte what libhdf5's filters produce) and stored with H5Dwrite_chunk.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "io/codecs.hpp"
#include "io/hdf5/attributes.hpp"
#include "io/hdf5/destination.hpp"
#include "io/hdf5/paths.hpp"
#include "io/hdf5/types.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {

using detail::check_target;
using detail::copy_whole_file;
using detail::file_type_of;
using detail::folder_of;
using detail::Hdf5Handle;
using detail::Hdf5Kind;
using detail::path_exists;
using detail::probe_destination;
using detail::sweep_dead_temps;
using detail::temp_name_for;
using detail::validate;

namespace {

constexpr hsize_t kAlignAbove = 64 << 10;
constexpr hsize_t kAlignment = 4096;

}  // namespace

struct Hdf5Writer::State {
  std::string file;
  std::string dataset;
  std::string temp;
  Hdf5WriteSpec spec;
  bool overwrite = false;
  // Adding to an existing HDF5 file: the dataset is created anonymous (unreachable, so a
  // killed writer leaves no visible half dataset, only unused bytes) and linked under its
  // name in commit(); `replace` says an existing dataset of that name goes then.
  bool in_place = false;
  bool replace = false;
  // The existing file is written as a copy (`temp`) renamed over it at commit: a superblock
  // v3 file (libver 'latest') gets a "file open for write" flag while open read-write, which a
  // killed writer leaves set and which makes every reader refuse the file.
  bool copy = false;
  pid_t owner = -1;
  Hdf5Handle file_id;
  Hdf5Handle dataset_id;
  std::uint64_t offset = 0;
  bool has_offset = false;
  Shape grid;
  std::uint64_t chunk_nbytes = 0;
  bool committed = false;

  std::string what() const { return file + ":" + dataset; }

  void commit_in_place();

  // The file the data goes into: the temporary file, or the existing file itself.
  const std::string& data_file() const { return temp.empty() ? file : temp; }

  // Closes the dataset and the file; throws Error(Io) when libhdf5 fails to write them out.
  void close_ids() {
    // Both are closed whatever the first gives.
    const bool dataset_closed = dataset_id.close();
    const bool file_closed = file_id.close();
    if (!dataset_closed || !file_closed) {
      throw_error(ErrorCode::Io, data_file() + ": cannot write the HDF5 metadata out: " +
                                     detail::hdf5_error_detail());
    }
  }
};

Hdf5Writer::Hdf5Writer(const std::string& file, const std::string& dataset,
                       const Hdf5WriteSpec& spec, bool overwrite)
    : state_(std::make_unique<State>()) {
  detail::hdf5_quiet();
  validate(file, dataset, spec);
  State& s = *state_;
  s.file = file;
  s.dataset = dataset.front() == '/' ? dataset : "/" + dataset;
  s.spec = spec;
  s.overwrite = overwrite;
  s.owner = ::getpid();
  const std::string what = s.what();
  if (path_exists(file)) {
    // An HDF5 file gets the dataset added (its other objects kept); anything else is only
    // replaced whole when asked to.
    s.in_place = is_hdf5_file(file);
    if (!s.in_place && !overwrite) {
      throw_error(ErrorCode::Io, file +
                                     ": already exists and is not an HDF5 file; remove it or pass "
                                     "overwrite to replace it");
    }
    if (s.in_place) s.copy = probe_destination(file, s.dataset) >= 3;
  }
  sweep_dead_temps(file);
  if (!s.in_place || s.copy) s.temp = temp_name_for(file);
  // Contiguous data of 64 KiB or more starts on a page boundary: callers pwrite whole pages
  // and readers map it without sharing a page with metadata.
  Hdf5Handle fapl = Hdf5Handle::adopt(H5Pcreate(H5P_FILE_ACCESS), Hdf5Kind::PropertyList,
                                      ErrorCode::Internal, what);
  if (spec.chunks.empty() && H5Pset_alignment(fapl.get(), kAlignAbove, kAlignment) < 0) {
    throw_error(ErrorCode::Internal,
                what + ": cannot set the alignment: " + detail::hdf5_error_detail());
  }
  try {
    if (s.in_place) {
      if (s.copy) copy_whole_file(file, s.temp);
      const hid_t id = H5Fopen(s.data_file().c_str(), H5F_ACC_RDWR, fapl.get());
      if (id < 0) {
        const std::string detail = detail::hdf5_error_detail();
        if (detail::is_lock_error(detail)) throw_error(ErrorCode::Io, detail::locked_message(file));
        throw_error(ErrorCode::Io, file + ": cannot open to add " + s.dataset + ": " + detail);
      }
      s.file_id = Hdf5Handle::adopt(id, Hdf5Kind::File, ErrorCode::Io, file);
      s.replace = check_target(s.file_id.get(), file, s.dataset);
      if (s.replace && !overwrite) {
        throw_error(ErrorCode::Io, what +
                                       ": the dataset already exists; pass --overwrite to replace "
                                       "it (the file's other objects are kept)");
      }
    } else {
      s.file_id = Hdf5Handle::adopt(
          H5Fcreate(s.temp.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl.get()), Hdf5Kind::File,
          ErrorCode::Io, s.temp + ": cannot create the temporary HDF5 file");
    }
    Hdf5Handle type = file_type_of(spec.dtype, what);
    hsize_t dims[H5S_MAX_RANK];
    for (std::size_t i = 0; i < spec.shape.size(); ++i) dims[i] = spec.shape[i];
    Hdf5Handle space = Hdf5Handle::adopt(
        spec.shape.empty() ? H5Screate(H5S_SCALAR)
                           : H5Screate_simple(static_cast<int>(spec.shape.size()), dims, nullptr),
        Hdf5Kind::Dataspace, ErrorCode::Internal, what);
    Hdf5Handle lcpl = Hdf5Handle::adopt(H5Pcreate(H5P_LINK_CREATE), Hdf5Kind::PropertyList,
                                        ErrorCode::Internal, what);
    Hdf5Handle dcpl = Hdf5Handle::adopt(H5Pcreate(H5P_DATASET_CREATE), Hdf5Kind::PropertyList,
                                        ErrorCode::Internal, what);
    bool ok = H5Pset_create_intermediate_group(lcpl.get(), 1) >= 0;
    if (spec.chunks.empty()) {
      // Storage now (so its offset is known) and never a fill written by libhdf5 over the
      // bytes callers pwrite there.
      ok = ok && H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS) >= 0 &&
           H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY) >= 0 &&
           H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER) >= 0;
    } else {
      hsize_t chunk_dims[H5S_MAX_RANK];
      for (std::size_t i = 0; i < spec.chunks.size(); ++i) chunk_dims[i] = spec.chunks[i];
      ok = ok && H5Pset_chunk(dcpl.get(), static_cast<int>(spec.chunks.size()), chunk_dims) >= 0;
      // Pipeline order shuffle, then deflate: encode_chunk applies them in that order.
      if (spec.gzip_level > 0 && spec.shuffle) ok = ok && H5Pset_shuffle(dcpl.get()) >= 0;
      if (spec.gzip_level > 0) {
        ok = ok && H5Pset_deflate(dcpl.get(), static_cast<unsigned>(spec.gzip_level)) >= 0;
      }
    }
    if (!spec.fill.empty()) {
      ok = ok && spec.fill.size() == spec.dtype.itemsize() &&
           H5Pset_fill_value(dcpl.get(), type.get(), spec.fill.data()) >= 0;
    }
    if (!ok) {
      throw_error(ErrorCode::Internal,
                  what + ": cannot set the dataset properties: " + detail::hdf5_error_detail());
    }
    s.dataset_id = Hdf5Handle::adopt(
        s.in_place
            ? H5Dcreate_anon(s.file_id.get(), type.get(), space.get(), dcpl.get(), H5P_DEFAULT)
            : H5Dcreate2(s.file_id.get(), s.dataset.c_str(), type.get(), space.get(), lcpl.get(),
                         dcpl.get(), H5P_DEFAULT),
        Hdf5Kind::Dataset, ErrorCode::Io, what + ": cannot create the dataset");
    if (spec.attributes != "{}") {
      detail::write_hdf5_attributes(s.dataset_id.get(), spec.attributes, what);
    }
    // A new file (a temporary one until commit) gets the scales now; an existing file only
    // after the dataset is linked at commit, so a failed write leaves its objects untouched.
    if (!spec.dimension_names.empty() && !s.in_place) {
      detail::attach_dimension_scales(s.file_id.get(), s.dataset_id.get(), s.dataset, spec.shape,
                                      spec.dimension_names);
    }
    if (spec.chunks.empty()) {
      const haddr_t offset = H5Dget_offset(s.dataset_id.get());
      s.has_offset = offset != HADDR_UNDEF;
      if (!s.has_offset) detail::hdf5_error_detail();  // empty datasets have no storage
      s.offset = s.has_offset ? offset : 0;
      // A new file: write the metadata now, so it is complete but for the caller's bytes. An
      // existing file is left alone until commit(): its objects change only then.
      if (!s.in_place && H5Fflush(s.file_id.get(), H5F_SCOPE_LOCAL) < 0) {
        throw_error(ErrorCode::Io, s.temp + ": cannot write: " + detail::hdf5_error_detail());
      }
    } else {
      s.grid.resize(spec.shape.size());
      s.chunk_nbytes = spec.dtype.itemsize();
      for (std::size_t i = 0; i < spec.shape.size(); ++i) {
        s.grid[i] = (spec.shape[i] + spec.chunks[i] - 1) / spec.chunks[i];
        s.chunk_nbytes *= static_cast<std::uint64_t>(spec.chunks[i]);
      }
    }
  } catch (...) {
    s.dataset_id.close();
    s.file_id.close();
    if (!s.temp.empty()) ::unlink(s.temp.c_str());
    throw;
  }
}

Hdf5Writer::~Hdf5Writer() {
  State& s = *state_;
  if (s.owner != ::getpid()) {
    // A forked worker's copy: the file belongs to the parent.
    s.dataset_id.forget();
    s.file_id.forget();
    return;
  }
  if (s.committed) return;
  // An anonymous dataset never linked is freed when closed: the existing file keeps its
  // objects as they were.
  s.dataset_id.close();
  s.file_id.close();
  detail::hdf5_error_detail();
  if (!s.temp.empty()) ::unlink(s.temp.c_str());
}

const std::string& Hdf5Writer::temp_path() const noexcept { return state_->data_file(); }

std::uint64_t Hdf5Writer::data_offset() const {
  const State& s = *state_;
  if (!s.spec.chunks.empty()) {
    throw_error(ErrorCode::InvalidArgument,
                s.what() + ": a chunked dataset has no single data offset; use write_chunk");
  }
  return s.offset;
}

std::vector<std::byte> Hdf5Writer::encode_chunk(const std::byte* data) const {
  const State& s = *state_;
  if (s.spec.chunks.empty()) {
    throw_error(ErrorCode::InvalidArgument,
                s.what() + ": a contiguous dataset has no chunks; write at data_offset()");
  }
  const std::size_t n = s.chunk_nbytes;
  if (s.spec.gzip_level == 0) return std::vector<std::byte>(data, data + n);
  const std::size_t itemsize = s.spec.dtype.itemsize();
  if (!s.spec.shuffle || itemsize == 1)
    return detail::zlib_encode(data, n, s.spec.gzip_level, false);
  std::vector<std::byte> shuffled(n);
  detail::byte_shuffle(data, shuffled.data(), n / itemsize, itemsize);
  return detail::zlib_encode(shuffled.data(), n, s.spec.gzip_level, false);
}

void Hdf5Writer::write_encoded_chunk(const Shape& coord, const std::vector<std::byte>& encoded) {
  State& s = *state_;
  const std::string what = s.what();
  if (s.spec.chunks.empty()) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": a contiguous dataset has no chunks; write at data_offset()");
  }
  if (s.committed || !s.dataset_id) {
    throw_error(ErrorCode::InvalidArgument, what + ": the writer is already committed");
  }
  if (s.owner != ::getpid()) {
    throw_error(ErrorCode::InvalidArgument, what +
                                                ": write_encoded_chunk called in a forked worker; "
                                                "encode there, write in the process that made "
                                                "the writer");
  }
  if (coord.size() != s.grid.size()) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": chunk (" + format_shape(coord) + ") has the wrong number of axes");
  }
  hsize_t offset[H5S_MAX_RANK];
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= s.grid[i]) {
      throw_error(ErrorCode::InvalidArgument, what + ": chunk (" + format_shape(coord) +
                                                  ") is outside the grid (" + format_shape(s.grid) +
                                                  ")");
    }
    offset[i] = static_cast<hsize_t>(coord[i] * s.spec.chunks[i]);
  }
  if (s.spec.gzip_level == 0 && encoded.size() != s.chunk_nbytes) {
    throw_error(ErrorCode::InvalidArgument, what + ": chunk (" + format_shape(coord) + ") has " +
                                                std::to_string(encoded.size()) +
                                                " bytes, expected " +
                                                std::to_string(s.chunk_nbytes));
  }
  if (encoded.empty() || encoded.size() > detail::kMaxHdf5ChunkBytes) {
    throw_error(ErrorCode::InvalidArgument,
                what + ": encoded chunk of " + std::to_string(encoded.size()) + " bytes");
  }
  if (H5Dwrite_chunk(s.dataset_id.get(), H5P_DEFAULT, 0, offset, encoded.size(), encoded.data()) <
      0) {
    throw_error(ErrorCode::Io, what + ": cannot write chunk (" + format_shape(coord) +
                                   "): " + detail::hdf5_error_detail());
  }
}

void Hdf5Writer::write_chunk(const Shape& coord, const std::byte* data) {
  write_encoded_chunk(coord, encode_chunk(data));
}

// Links the finished anonymous dataset under its name (replacing the old one when asked) and
// closes the file. The data is on disk first (fsync), then the metadata goes out in one flush
// at close: a kill before it leaves the file as it was. The old dataset is moved aside, not
// deleted, until the new link exists; any failure undoes what was done, so a failed commit
// leaves the file's objects as they were (or says where they are when even that fails). A
// copy is renamed over the original last.
void Hdf5Writer::State::commit_in_place() {
  const std::string& target = data_file();
  {
    detail::UniqueFd fd(::open(target.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0) throw_errno(target + ": cannot flush the data");
  }
  const hid_t id = file_id.get();
  const std::string aside = "/.mmcompute-replaced-" + std::to_string(::getpid());
  if (replace && H5Lmove(id, dataset.c_str(), id, aside.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0) {
    throw_error(ErrorCode::Io,
                what() + ": cannot move the old dataset aside: " + detail::hdf5_error_detail());
  }
  // Puts the old dataset back under its name, then reports `why` the commit failed.
  const auto undo = [&](const std::string& why) {
    if (replace && H5Lmove(id, aside.c_str(), id, dataset.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0) {
      throw_error(ErrorCode::Io,
                  what() + ": " + why + "; and the old dataset could not be put back (" +
                      detail::hdf5_error_detail() + "): it is at " + aside + " in the file");
    }
    throw_error(ErrorCode::Io, what() + ": " + why + "; the file is left as it was");
  };
  Hdf5Handle lcpl = Hdf5Handle::adopt(H5Pcreate(H5P_LINK_CREATE), Hdf5Kind::PropertyList,
                                      ErrorCode::Internal, what());
  if (H5Pset_create_intermediate_group(lcpl.get(), 1) < 0 ||
      H5Olink(dataset_id.get(), id, dataset.c_str(), lcpl.get(), H5P_DEFAULT) < 0) {
    undo("cannot link the dataset: " + detail::hdf5_error_detail());
  }
  if (replace && H5Ldelete(id, aside.c_str(), H5P_DEFAULT) < 0) {
    const std::string why = "cannot remove the old dataset: " + detail::hdf5_error_detail();
    if (H5Ldelete(id, dataset.c_str(), H5P_DEFAULT) < 0) {
      throw_error(ErrorCode::Io, what() + ": " + why + "; and the new link could not be undone (" +
                                     detail::hdf5_error_detail() + "): the old dataset is at " +
                                     aside + " in the file");
    }
    undo(why);
  }
  if (!spec.dimension_names.empty()) {
    detail::attach_dimension_scales(id, dataset_id.get(), dataset, spec.shape,
                                    spec.dimension_names);
  }
  close_ids();
  {
    detail::UniqueFd fd(::open(target.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || ::fsync(fd.get()) != 0) throw_errno(target + ": cannot flush");
  }
  if (copy && ::rename(temp.c_str(), file.c_str()) != 0) {
    throw_errno(file + ": cannot rename " + temp + " onto it");
  }
  committed = true;
  if (copy) {
    // Make the rename durable; failing here loses nothing the caller could act on.
    detail::UniqueFd dir(::open(folder_of(file).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir) ::fsync(dir.get());
  }
}

void Hdf5Writer::commit() {
  State& s = *state_;
  if (s.committed) return;
  if (s.owner != ::getpid()) {
    throw_error(ErrorCode::InvalidArgument, s.what() + ": commit() called in a forked worker");
  }
  detail::hdf5_quiet();
  if (s.in_place) {
    s.commit_in_place();
    return;
  }
  s.close_ids();
  {
    detail::UniqueFd fd(::open(s.temp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno(s.temp + ": cannot reopen to flush");
    if (::fsync(fd.get()) != 0) throw_errno(s.temp + ": cannot flush");
  }
  if (s.overwrite) {
    if (::rename(s.temp.c_str(), s.file.c_str()) != 0) {
      throw_errno(s.file + ": cannot rename " + s.temp + " onto it");
    }
  } else {
    // No-clobber rename: the destination may have appeared since construction.
    if (::renameat2(AT_FDCWD, s.temp.c_str(), AT_FDCWD, s.file.c_str(), RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) {
        throw_error(ErrorCode::Io,
                    s.file + ": already exists; remove it or pass overwrite to replace it");
      }
      if (errno != EINVAL && errno != ENOSYS) {
        throw_errno(s.file + ": cannot rename " + s.temp + " onto it");
      }
      // A file system without RENAME_NOREPLACE: link() refuses an existing name too.
      if (::link(s.temp.c_str(), s.file.c_str()) != 0) {
        if (errno == EEXIST) {
          throw_error(ErrorCode::Io,
                      s.file + ": already exists; remove it or pass overwrite to replace it");
        }
        throw_errno(s.file + ": cannot link " + s.temp + " to it");
      }
      ::unlink(s.temp.c_str());
    }
  }
  s.committed = true;
  // Make the rename durable; failing here loses nothing the caller could act on.
  detail::UniqueFd dir(::open(folder_of(s.file).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

}  // namespace mmc
