// AnyArray: one face for dense and chunked arrays; open_array tells formats apart by name and
// content.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "io/box.hpp"
#include "io/hdf5/attributes.hpp"
#include "io/npy_open.hpp"
#include "io/open_read_only.hpp"
#include "io/zarr/metadata.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "mmc/open.hpp"
#include "mmc/zarr.hpp"
#include "os/exact_io.hpp"
#include "os/unique_fd.hpp"

namespace mmc {
namespace {

// Copies a box of a dense strided array (any byte strides) into a C-order buffer.
void copy_dense_box(const std::byte* data, const ArrayMeta& meta, const Box& box, std::byte* out) {
  const std::size_t nd = meta.shape.size();
  const std::size_t itemsize = meta.dtype.itemsize();
  if (nd == 0) {
    std::memcpy(out, data, itemsize);
    return;
  }
  const std::int64_t run = box.count[nd - 1];
  const std::int64_t inner_stride = meta.strides[nd - 1];
  Shape idx = box.start;
  std::byte* dst = out;
  for (;;) {
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < nd; ++i) offset += idx[i] * meta.strides[i];
    const std::byte* src = data + offset;
    if (inner_stride == static_cast<std::int64_t>(itemsize)) {
      std::memcpy(dst, src, static_cast<std::size_t>(run) * itemsize);
    } else {
      for (std::int64_t k = 0; k < run; ++k) {
        std::memcpy(dst + k * static_cast<std::int64_t>(itemsize), src + k * inner_stride,
                    itemsize);
      }
    }
    dst += run * static_cast<std::int64_t>(itemsize);
    std::size_t ax = nd - 1;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++idx[ax] < box.start[ax] + box.count[ax]) break;
      idx[ax] = box.start[ax];
    }
  }
}

// True when the file open at `fd` starts with the n bytes of `magic`.
bool starts_with_bytes(int fd, const std::string& path, const char* magic, std::size_t n) {
  char head[8] = {};
  const ssize_t got = detail::pread_full(fd, head, n, 0);
  if (got < 0) throw_errno(path + ": cannot read");
  return static_cast<std::size_t>(got) == n && std::memcmp(head, magic, n) == 0;
}

constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr std::size_t kNpyMagicLen = 6;

// Throws for a file that exists but cannot be read (EACCES), which would otherwise be taken
// for a file of no known format.
bool has_npy_magic(const std::string& path) {
  const detail::UniqueFd fd = detail::open_read_only(path);
  return starts_with_bytes(fd.get(), path, kNpyMagic, kNpyMagicLen);
}

// s3://, gs://, http(s)://...: a scheme of letters before "://". Only local paths are read.
void refuse_remote_url(const std::string& spec) {
  const std::size_t colon = spec.find("://");
  if (colon == std::string::npos || colon == 0) return;
  for (std::size_t i = 0; i < colon; ++i) {
    const char c = spec[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
          c == '.' || c == '-')) {
      return;
    }
  }
  throw_error(ErrorCode::InvalidArgument,
              spec + ": remote URLs are not read; name a local path, or a mount of the bucket or " +
                  "server (e.g. s3fs, gcsfuse, rclone mount)");
}

}  // namespace

void check_raw_source(const std::string& spec) {
  refuse_remote_url(spec);
  std::string file, dataset;
  struct stat st;
  const char* kind = nullptr;
  if (::stat(spec.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      kind = "a directory (a zarr store?)";
    } else if (has_npy_magic(spec)) {
      kind = "a .npy file";
    } else if (is_hdf5_file(spec)) {
      kind = "an HDF5 file";
    }
  } else if (split_hdf5_spec(spec, &file, &dataset) && ::stat(file.c_str(), &st) == 0 &&
             S_ISREG(st.st_mode) && is_hdf5_file(file)) {
    kind = "an HDF5 dataset";
  }
  if (kind == nullptr) return;
  throw_error(ErrorCode::InvalidArgument,
              spec + " is " + kind + ", which records its own dtype and shape: the raw options " +
                  "(--dtype, --shape, --offset, --order) apply to raw files only; drop them");
}

AnyArray::AnyArray(Source dense)
    : dense_(std::make_shared<Source>(std::move(dense))),
      kind_(dense_->kind()),
      name_(dense_->path()) {}

AnyArray::AnyArray(std::unique_ptr<ChunkedArray> chunked)
    : chunked_(std::move(chunked)), kind_(chunked_->storage().kind), name_(chunked_->name()) {}

const ArrayMeta& AnyArray::meta() const noexcept {
  return dense_ ? dense_->meta() : chunked_->meta();
}

void AnyArray::read_box(const Box& box, std::byte* out) const {
  if (chunked_) {
    chunked_->read_box(box, out);
    return;
  }
  detail::check_box(dense_->meta(), box);
  if (box.size() == 0) return;
  copy_dense_box(dense_->data(), dense_->meta(), box, out);
}

void AnyArray::reopen_after_fork() const {
  if (chunked_) chunked_->reopen_after_fork();
}

AnyArray open_array(const std::string& spec, const RawSpec* raw) {
  refuse_remote_url(spec);
  std::string file, dataset;
  if (raw == nullptr && split_zarr_member(spec, &file, &dataset)) {
    return AnyArray(open_zarr(file + "/" + dataset));
  }
  if (raw == nullptr && split_hdf5_spec(spec, &file, &dataset)) {
    Hdf5Dataset h5 = open_hdf5(file, dataset);
    if (h5.dense) {
      AnyArray array(std::move(*h5.dense));
      array.name_ = spec;
      return array;
    }
    return AnyArray(std::move(h5.chunked));
  }
  if (raw != nullptr) {
    check_raw_source(spec);
    RawSpec copy = *raw;
    copy.path = spec;
    return AnyArray(open_raw(copy));
  }
  struct stat st;
  if (::stat(spec.c_str(), &st) != 0) throw_errno(spec);  // ENOENT, or EACCES on the way
  if (S_ISDIR(st.st_mode)) return AnyArray(open_zarr(spec));
  if (!S_ISREG(st.st_mode)) {  // a FIFO would block the open below
    throw_error(ErrorCode::InvalidArgument, spec + ": is not a regular file");
  }
  {
    // A .npy is opened once: its magic, header and mapping all come from this descriptor.
    const detail::UniqueFd fd = detail::open_read_only(spec);
    if (starts_with_bytes(fd.get(), spec, kNpyMagic, kNpyMagicLen)) {
      return AnyArray(detail::open_npy(fd.get(), spec, MapMode::ReadOnly));
    }
  }
  if (is_hdf5_file(spec)) {
    throw_error(ErrorCode::InvalidArgument, spec + " is an HDF5 file: name the dataset, as " +
                                                spec + ":/path/to/dataset (convert writes " + spec +
                                                ":/data by default)");
  }
  throw_error(ErrorCode::InvalidArgument,
              spec +
                  ": not a .npy file, a zarr store or FILE.h5:/dataset; give --dtype and --shape "
                  "to read it as a raw file");
}

ArrayAttributes read_attributes(const AnyArray& array) {
  const std::size_t ndim = array.meta().shape.size();
  try {
    if (array.kind() == "zarr" && array.chunked() != nullptr) {
      return detail::zarr::read_attributes(array.chunked()->name(), ndim);
    }
    std::string file, dataset;
    if (array.kind() == "hdf5" && split_hdf5_spec(array.name(), &file, &dataset)) {
      return detail::hdf5_attributes(file, dataset);
    }
  } catch (const Error& e) {
    ArrayAttributes none;
    none.problem = e.what();
    return none;
  }
  return {};
}

}  // namespace mmc
