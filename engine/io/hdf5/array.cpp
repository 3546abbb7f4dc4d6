// The chunk reader of an HDF5 dataset: each process opens its own ids; chunks are copied from
// the mapped file, fetched raw with H5Dread_chunk and decoded here, or read through libhdf5.
#include "io/hdf5/array.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>

#include "io/hdf5/filters.hpp"
#include "io/hdf5/paths.hpp"
#include "io/hdf5/types.hpp"
#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

// Datasets read through H5Dread (compact, external, virtual, never-written contiguous ones)
// get a synthetic C-order chunk grid of at most this many bytes per chunk, so read_box never
// needs a buffer of the whole dataset.
constexpr std::uint64_t kLibraryChunkBytes = std::uint64_t{8} << 20;

}  // namespace

hid_t ProcessDataset::dataset() const {
  std::lock_guard<std::mutex> lock(mu_);
  const pid_t pid = ::getpid();
  if (pid_ == pid) return dataset_.get();
  forget();
  detail::hdf5_quiet();
  Hdf5Handle file = open_file(file_, ErrorCode::Io);
  Hdf5Handle dataset =
      Hdf5Handle::adopt(H5Dopen2(file.get(), path_.c_str(), H5P_DEFAULT), Hdf5Kind::Dataset,
                        ErrorCode::Io, file_ + ":" + path_ + ": cannot reopen the dataset");
  Hdf5Handle space = Hdf5Handle::adopt(H5Dget_space(dataset.get()), Hdf5Kind::Dataspace,
                                       ErrorCode::Corrupt, file_ + ":" + path_);
  if (shape_of(space.get(), file_ + ":" + path_) != shape_) {
    throw_error(ErrorCode::Corrupt, file_ + ":" + path_ + ": the dataset's shape changed from " +
                                        format_shape(shape_) + " since it was opened");
  }
  file_id_ = std::move(file);
  dataset_ = std::move(dataset);
  pid_ = pid;
  return dataset_.get();
}

const std::byte* Hdf5Array::chunk_in_place(const Shape& coord) const {
  if (read_path_ != ReadPath::InPlace) return nullptr;
  const std::uint64_t offset = offsets_[linear_index(coord)];
  return offset == kAbsent ? nullptr : mapping_.data() + offset;
}

void Hdf5Array::read_chunk(const Shape& coord, std::byte* out) const {
  const std::size_t index = linear_index(coord);
  switch (read_path_) {
    case ReadPath::Fill:
      fill_chunk(out);
      return;
    case ReadPath::InPlace:
      if (offsets_[index] == kAbsent) {
        fill_chunk(out);
      } else {
        std::memcpy(out, mapping_.data() + offsets_[index], chunk_nbytes());
      }
      return;
    case ReadPath::Decode:
      read_raw_chunk(coord, out);
      return;
    case ReadPath::Library:
      read_through_library(coord, out);
      return;
  }
}

std::string Hdf5Array::chunk_what(const Shape& coord) const {
  return name() + ": chunk (" + format_shape(coord) + ")";
}

// Validates coord (a bad one is the caller's error, not a crash) and returns its C-order
// index in the grid.
std::size_t Hdf5Array::linear_index(const Shape& coord) const {
  if (coord.size() != grid_.size()) {
    throw_error(ErrorCode::InvalidArgument, name() + ": chunk coordinate (" + format_shape(coord) +
                                                ") has the wrong number of axes");
  }
  std::size_t index = 0;
  for (std::size_t i = 0; i < coord.size(); ++i) {
    if (coord[i] < 0 || coord[i] >= grid_[i]) {
      throw_error(ErrorCode::InvalidArgument, name() + ": chunk coordinate (" +
                                                  format_shape(coord) + ") is outside the grid (" +
                                                  format_shape(grid_) + ")");
    }
    index = index * static_cast<std::size_t>(grid_[i]) + static_cast<std::size_t>(coord[i]);
  }
  return index;
}

void Hdf5Array::fill_chunk(std::byte* out) const {
  const std::vector<std::byte>& fill = fill_value();
  const std::size_t n = chunk_nbytes();
  if (std::all_of(fill.begin(), fill.end(), [](std::byte b) { return b == std::byte{0}; })) {
    std::memset(out, 0, n);
    return;
  }
  // One element, then doubling copies.
  std::size_t have = std::min(fill.size(), n);
  std::memcpy(out, fill.data(), have);
  while (have < n) {
    const std::size_t step = std::min(have, n - have);
    std::memcpy(out + have, out, step);
    have += step;
  }
}

// H5Dget_chunk_storage_size of an unallocated chunk: 1.10.8 fails with exactly this
// innermost error (later versions succeed with size 0, handled by the caller); a damaged
// index fails deeper down (B-tree, file driver) and stays an error.
bool Hdf5Array::absent_chunk_error() {
  struct Innermost {
    hid_t maj = -1;
    hid_t min = -1;
    std::string func;
  } innermost;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        if (n == 0) {
          auto* in = static_cast<Innermost*>(data);
          in->maj = e->maj_num;
          in->min = e->min_num;
          in->func = e->func_name != nullptr ? e->func_name : "";
        }
        return 0;
      },
      &innermost);
  const bool absent = innermost.maj == H5E_DATASET && innermost.min == H5E_CANTGET &&
                      innermost.func == "H5D__get_chunk_storage_size";
  if (absent) H5Eclear2(H5E_DEFAULT);
  return absent;
}

void Hdf5Array::chunk_offset(const Shape& coord, hsize_t* offset) const {
  for (std::size_t i = 0; i < coord.size(); ++i) {
    offset[i] = static_cast<hsize_t>(coord[i] * chunk_shape()[i]);
  }
}

void Hdf5Array::read_raw_chunk(const Shape& coord, std::byte* out) const {
  detail::hdf5_quiet();
  const hid_t dataset = ids_.dataset();
  hsize_t offset[H5S_MAX_RANK];
  chunk_offset(coord, offset);
  hsize_t stored = 0;
  if (H5Dget_chunk_storage_size(dataset, offset, &stored) < 0) {
    if (absent_chunk_error()) {
      fill_chunk(out);
      return;
    }
    throw_error(ErrorCode::Corrupt,
                chunk_what(coord) + ": cannot look it up: " + detail::hdf5_error_detail());
  }
  if (stored == 0) {
    fill_chunk(out);
    return;
  }
  if (stored > max_stored_) {
    throw_error(ErrorCode::Corrupt, chunk_what(coord) + ": index says " + std::to_string(stored) +
                                        " stored bytes for a chunk of " +
                                        std::to_string(chunk_nbytes()) + " (damaged index?)");
  }
  // Without filters a chunk of the right size goes straight into out.
  const bool direct = filters_.empty() && stored == chunk_nbytes();
  std::vector<std::byte>& raw = thread_scratch().raw;
  if (!direct && raw.size() < stored) raw.resize(stored);
  std::byte* dst = direct ? out : raw.data();
  std::uint32_t mask = 0;
  if (H5Dread_chunk(dataset, H5P_DEFAULT, offset, &mask, dst) < 0) {
    throw_error(ErrorCode::Corrupt,
                chunk_what(coord) + ": cannot be read: " + detail::hdf5_error_detail());
  }
  if (direct) return;
  // Decoding runs outside libhdf5's global lock, so threads overlap here.
  decode_pipeline(filters_, mask, dst, stored, out, chunk_nbytes(), chunk_what(coord));
}

void Hdf5Array::read_through_library(const Shape& coord, std::byte* out) const {
  detail::hdf5_quiet();
  const std::string what = chunk_what(coord);
  const hid_t dataset = ids_.dataset();
  const ChunkRef ref = chunk(coord);
  const std::size_t nd = coord.size();
  Hdf5Handle type =
      Hdf5Handle::adopt(H5Dget_type(dataset), Hdf5Kind::Datatype, ErrorCode::Corrupt, what);
  // A selection per call: concurrent reads must not share one dataspace's selection.
  Hdf5Handle file_space =
      Hdf5Handle::adopt(H5Dget_space(dataset), Hdf5Kind::Dataspace, ErrorCode::Corrupt, what);
  Hdf5Handle memory_space;
  if (nd == 0) {
    memory_space =
        Hdf5Handle::adopt(H5Screate(H5S_SCALAR), Hdf5Kind::Dataspace, ErrorCode::Internal, what);
  } else {
    hsize_t start[H5S_MAX_RANK], count[H5S_MAX_RANK], dims[H5S_MAX_RANK], zero[H5S_MAX_RANK];
    for (std::size_t i = 0; i < nd; ++i) {
      start[i] = static_cast<hsize_t>(ref.box.start[i]);
      count[i] = static_cast<hsize_t>(ref.box.count[i]);
      dims[i] = static_cast<hsize_t>(chunk_shape()[i]);
      zero[i] = 0;
    }
    memory_space = Hdf5Handle::adopt(H5Screate_simple(static_cast<int>(nd), dims, nullptr),
                                     Hdf5Kind::Dataspace, ErrorCode::Internal, what);
    if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr) < 0 ||
        H5Sselect_hyperslab(memory_space.get(), H5S_SELECT_SET, zero, nullptr, count, nullptr) <
            0) {
      throw_error(ErrorCode::Internal, what + ": cannot select: " + detail::hdf5_error_detail());
    }
  }
  // Memory type = file type: libhdf5 copies the stored bytes without conversion.
  if (H5Dread(dataset, type.get(), memory_space.get(), file_space.get(), H5P_DEFAULT, out) < 0) {
    throw_error(ErrorCode::Corrupt,
                what + ": libhdf5 cannot read it: " + detail::hdf5_error_detail());
  }
}

// A C-order chunk shape of at most kLibraryChunkBytes: whole trailing axes while they fit,
// part of the next one, 1 on the outer axes.
Shape library_chunks(const Shape& shape, std::size_t itemsize) {
  Shape chunks(shape.size(), 1);
  std::uint64_t budget = std::max<std::uint64_t>(kLibraryChunkBytes / itemsize, 1);
  for (std::size_t i = shape.size(); i-- > 0;) {
    const std::uint64_t extent = static_cast<std::uint64_t>(std::max<std::int64_t>(shape[i], 1));
    if (extent <= budget) {
      chunks[i] = static_cast<std::int64_t>(extent);
      budget /= extent;
    } else {
      chunks[i] = static_cast<std::int64_t>(budget);
      budget = 1;
    }
  }
  return chunks;
}

}  // namespace mmc::detail
