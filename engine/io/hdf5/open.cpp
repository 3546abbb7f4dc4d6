// Opening an HDF5 dataset: the probe first, then its layout read and the reader chosen (a dense
// Source mapped at the data's offset, or an Hdf5Array with its chunk shape, filters, storage
// figures and, for few unfiltered chunks, their places in the file).
#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "io/chunk_limits.hpp"
#include "io/hdf5/array.hpp"
#include "io/hdf5/filters.hpp"
#include "io/hdf5/paths.hpp"
#include "io/hdf5/probe.hpp"
#include "io/hdf5/types.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "mmc/source.hpp"

namespace mmc {

using detail::absolute_path;
using detail::check_file;
using detail::check_path;
using detail::dtype_of;
using detail::fill_value_of;
using detail::filter_name;
using detail::FilterStep;
using detail::hdf5_error_detail;
using detail::Hdf5Array;
using detail::Hdf5Handle;
using detail::Hdf5Kind;
using detail::kAbsent;
using detail::kMaxHdf5ChunkBytes;
using detail::library_chunks;
using detail::open_file;
using detail::ReadPath;
using detail::shape_of;

namespace {

// Unfiltered chunks are mapped in place only when their addresses can be listed cheaply. In
// 1.10.8 every H5Dget_chunk_info call walks the chunk index from its start, so listing n
// chunks costs O(n^2). Measured here (n chunks of 32 bytes): v1 B-tree index (h5py's default)
// 0.6 ms for 256 chunks, 11 ms for 1024, 180 ms for 4096; libver="latest" indexes are 5-20x
// slower (extensible array: 7 ms for 256, 127 ms for 1024). Reading a raw chunk with
// H5Dget_chunk_storage_size + H5Dread_chunk costs ~2 us whatever n is. 256 keeps the listing
// under ~10 ms with every index type; past it, the quadratic listing costs more than reading
// each chunk once through the library, and chunks are read (and copied) by read_chunk.
constexpr std::int64_t kMaxChunksToMap = 256;
// H5Dget_num_chunks is linear (~0.4 us a chunk here): count stored chunks up to ~25 ms.
constexpr std::int64_t kMaxChunksToCount = 65536;

std::uint64_t size_of_file(const std::string& file) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) throw_errno(file + ": cannot stat");
  return static_cast<std::uint64_t>(st.st_size);
}

// The file that holds a dataset's bytes: the file named by the user, or the target of an
// external link on the way. Offsets from libhdf5 are relative to this file's base address.
struct DataFile {
  std::string name;
  hsize_t userblock = 0;
};

DataFile data_file_of(hid_t dataset, const std::string& where) {
  DataFile data;
  data.name = detail::holding_file_of(dataset, where);
  Hdf5Handle file = Hdf5Handle::adopt(H5Iget_file_id(dataset), Hdf5Kind::File, ErrorCode::Corrupt,
                                      where + ": cannot find the file holding the dataset");
  Hdf5Handle fcpl = Hdf5Handle::adopt(H5Fget_create_plist(file.get()), Hdf5Kind::PropertyList,
                                      ErrorCode::Corrupt, where + ": cannot read " + data.name);
  if (H5Pget_userblock(fcpl.get(), &data.userblock) < 0) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot read the userblock of " + data.name + ": " + hdf5_error_detail());
  }
  return data;
}

// The chunk shape from the layout message, refused when no valid writer could have made it
// (every reader buffer is a chunk, so a damaged header must not size them):
//  - an extent of 0, or a chunk of 4 GiB or more (HDF5's own limits);
//  - on an axis that cannot grow (max extent = extent), a chunk extent beyond the extent:
//    libhdf5 refuses to create such a dataset;
//  - on growable axes, a chunk larger than both the dataset (in bytes) and 64 MiB: legal, but
//    nothing a writer needs, and far more often a damaged header.
Shape checked_chunk_shape(const hsize_t* dims, hid_t space, const ArrayMeta& meta,
                          const std::string& where) {
  const int rank = meta.ndim();
  hsize_t max_dims[H5S_MAX_RANK];
  if (H5Sget_simple_extent_dims(space, nullptr, max_dims) != rank) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot read the maximum extents: " + hdf5_error_detail());
  }
  Shape chunks(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) {
    chunks[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(
        std::min<hsize_t>(dims[i], static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max())));
  }
  const auto refuse = [&](const std::string& why) {
    throw_error(ErrorCode::Corrupt,
                where + ": chunk shape " + format_shape(chunks) + " " + why + " (damaged file?)");
  };
  std::uint64_t bytes = meta.dtype.itemsize();
  for (int i = 0; i < rank; ++i) {
    const auto k = static_cast<std::size_t>(i);
    if (dims[i] == 0) refuse("has an extent of 0");
    if (dims[i] > kMaxHdf5ChunkBytes) refuse("is beyond HDF5's 4 GiB chunk limit");
    const auto extent = static_cast<hsize_t>(meta.shape[k]);
    if (max_dims[i] == extent && dims[i] > std::max<hsize_t>(extent, 1)) {
      refuse("exceeds the dataset's fixed extent " + std::to_string(extent) + " on axis " +
             std::to_string(i));
    }
    bytes = detail::checked_mul(bytes, dims[i], "HDF5 chunk size");
  }
  if (bytes > kMaxHdf5ChunkBytes) refuse("makes chunks of 4 GiB or more, beyond HDF5's limit");
  if (bytes > meta.nbytes() && bytes > detail::kMaxChunkBeyondArrayBytes) {
    refuse("makes chunks of " + std::to_string(bytes) + " bytes for a dataset of " +
           std::to_string(meta.nbytes()) + " bytes");
  }
  return chunks;
}

// Reads the chunked layout: chunk shape, filters (deciding between our decoding and libhdf5's),
// storage figures, and for few unfiltered chunks their places in the file.
std::unique_ptr<ChunkedArray> open_chunked(const DataFile& data, hid_t dataset, hid_t dcpl,
                                           hid_t space, const ArrayMeta& meta,
                                           std::vector<std::byte> fill, const std::string& file,
                                           const std::string& path, bool probing) {
  const std::string where = file + ":" + path;
  const int rank = meta.ndim();
  hsize_t dims[H5S_MAX_RANK];
  if (rank == 0 || H5Pget_chunk(dcpl, rank, dims) != rank) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot read the chunk shape: " + detail::hdf5_error_detail());
  }
  const Shape chunks = checked_chunk_shape(dims, space, meta, where);

  StorageInfo info;
  info.kind = "hdf5";
  info.layout = "chunked";
  std::vector<FilterStep> steps;
  std::vector<std::string> compressors;
  bool decodable = true;
  int compressors_count = 0;  // stages that restore a size the stored bytes do not tell
  const int nf = H5Pget_nfilters(dcpl);
  if (nf < 0) throw_error(ErrorCode::Corrupt, where + ": cannot read the filter pipeline");
  for (int i = 0; i < nf; ++i) {
    unsigned flags = 0, config = 0;
    unsigned cd[8] = {};
    std::size_t n_cd = 8;
    char name[128] = {};
    const H5Z_filter_t id = H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n_cd, cd,
                                           sizeof name, name, &config);
    if (id < 0) {
      throw_error(ErrorCode::Corrupt, where + ": cannot read filter " + std::to_string(i) + ": " +
                                          detail::hdf5_error_detail());
    }
    const std::string label = filter_name(id, name);
    if (id == H5Z_FILTER_DEFLATE) {
      compressors.push_back("gzip(" + std::to_string(n_cd > 0 ? cd[0] : 0) + ")");
      ++compressors_count;
    } else if (id == H5Z_FILTER_SHUFFLE || id == H5Z_FILTER_FLETCHER32 || id == H5Z_FILTER_NBIT ||
               id == H5Z_FILTER_SCALEOFFSET) {
      info.filters.push_back(label);
    } else {
      compressors.push_back(label);
    }
    if (id == detail::kFilterLzf) {
      ++compressors_count;
    } else if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE &&
               id != H5Z_FILTER_FLETCHER32) {
      decodable = false;
      if (H5Zfilter_avail(id) <= 0) {
        throw_error(ErrorCode::InvalidArgument,
                    where + ": chunks use filter " + std::to_string(id) + " (" + label +
                        "), which this libhdf5 cannot decode; install its HDF5 plugin and set "
                        "HDF5_PLUGIN_PATH, or rewrite the dataset with gzip");
      }
    }
    FilterStep step;
    step.id = id;
    step.shuffle_size = id == H5Z_FILTER_SHUFFLE && n_cd > 0 ? cd[0] : meta.dtype.itemsize();
    steps.push_back(step);
  }
  // Two compressors (deflate, lzf) leave an intermediate size we cannot know; libhdf5 decodes
  // those when it has both filters.
  if (compressors_count > 1) {
    decodable = false;
    for (const FilterStep& s : steps) {
      if (s.id == detail::kFilterLzf && H5Zfilter_avail(detail::kFilterLzf) <= 0) {
        throw_error(ErrorCode::InvalidArgument,
                    where +
                        ": chunks use lzf after another compressor, which only libhdf5 "
                        "could undo, and it has no lzf filter; rewrite the dataset with "
                        "one compressor");
      }
    }
  }
  if (compressors.empty()) {
    info.compressor = "none";
  } else {
    for (const std::string& c : compressors) {
      info.compressor += (info.compressor.empty() ? "" : "+") + c;
    }
  }
  info.stored_bytes = H5Dget_storage_size(dataset);

  auto array = std::make_unique<Hdf5Array>(meta, chunks, std::move(fill), file, path,
                                           decodable ? ReadPath::Decode : ReadPath::Library,
                                           std::move(steps));
  info.chunks_total = array->n_chunks();
  if (info.chunks_total <= kMaxChunksToCount) {
    hsize_t stored = 0;
    if (H5Dget_num_chunks(dataset, space, &stored) < 0) {
      throw_error(ErrorCode::Corrupt,
                  where + ": cannot count the stored chunks: " + detail::hdf5_error_detail());
    }
    info.chunks_stored = static_cast<std::int64_t>(stored);
  }

  if (nf == 0 && info.chunks_total <= kMaxChunksToMap && info.chunks_total > 0) {
    // Chunk addresses are relative to the base address of the file that holds the dataset
    // (an external link's target): add that file's userblock, map that file.
    const hsize_t userblock = data.userblock;
    // The probe (probing) reads the index but maps nothing: its address space is capped.
    const std::uint64_t file_size = size_of_file(data.name);
    std::vector<std::uint64_t> offsets(static_cast<std::size_t>(info.chunks_total), kAbsent);
    const Shape grid = array->grid();
    for (std::int64_t k = 0; k < info.chunks_stored; ++k) {
      hsize_t at[H5S_MAX_RANK];
      unsigned mask = 0;
      haddr_t address = HADDR_UNDEF;
      hsize_t size = 0;
      if (H5Dget_chunk_info(dataset, space, static_cast<hsize_t>(k), at, &mask, &address, &size) <
          0) {
        throw_error(ErrorCode::Corrupt,
                    where + ": cannot read the chunk index: " + detail::hdf5_error_detail());
      }
      std::size_t index = 0;
      for (int i = 0; i < rank; ++i) {
        const auto c = static_cast<std::int64_t>(at[i] / dims[i]);
        if (at[i] % dims[i] != 0 || c >= grid[static_cast<std::size_t>(i)]) {
          throw_error(ErrorCode::Corrupt, where +
                                              ": the chunk index holds a chunk at a position "
                                              "outside the chunk grid (damaged index)");
        }
        index = index * static_cast<std::size_t>(grid[static_cast<std::size_t>(i)]) +
                static_cast<std::size_t>(c);
      }
      // The address comes from a possibly damaged index: an overflowing sum is damage too.
      const bool overflows = address > std::numeric_limits<std::uint64_t>::max() - userblock;
      const std::uint64_t begin = overflows ? 0 : address + userblock;
      if (address == HADDR_UNDEF || overflows || size != array->chunk_nbytes() ||
          begin > file_size || file_size - begin < size) {
        throw_error(ErrorCode::Corrupt, where + ": chunk " + std::to_string(k) + " of the index (" +
                                            std::to_string(size) + " bytes at " +
                                            std::to_string(overflows ? address : begin) +
                                            ") does not fit the file of " +
                                            std::to_string(file_size) + " bytes or a chunk of " +
                                            std::to_string(array->chunk_nbytes()) +
                                            " bytes (truncated file?)");
      }
      offsets[index] = begin;
    }
    if (!probing) {
      MappedFile mapping = MappedFile::open(data.name, MapMode::ReadOnly);
      if (mapping.size() != file_size) {
        throw_error(ErrorCode::Io, data.name + ": changed size while being opened");
      }
      array->map_in_place(std::move(mapping), std::move(offsets));
    }
  }
  array->set_storage(std::move(info));
  return array;
}

}  // namespace

namespace {

// Opens the dataset; `probing` (in the probe's child) skips mapping the data, which the
// child's capped address space could not hold.
Hdf5Dataset open_unprobed(const std::string& file, const std::string& path, bool probing) {
  detail::hdf5_quiet();
  const std::string where = file + ":" + path;
  check_file(file);
  Hdf5Handle file_id = open_file(file, ErrorCode::Corrupt);
  check_path(file_id.get(), file, path);
  Hdf5Handle dset =
      Hdf5Handle::adopt(H5Dopen2(file_id.get(), path.c_str(), H5P_DEFAULT), Hdf5Kind::Dataset,
                        ErrorCode::Corrupt, where + ": cannot open the dataset");
  const DataFile data = data_file_of(dset.get(), where);
  Hdf5Handle type = Hdf5Handle::adopt(H5Dget_type(dset.get()), Hdf5Kind::Datatype,
                                      ErrorCode::Corrupt, where + ": cannot read the datatype");
  const DType dtype = dtype_of(type.get(), where);
  Hdf5Handle space = Hdf5Handle::adopt(H5Dget_space(dset.get()), Hdf5Kind::Dataspace,
                                       ErrorCode::Corrupt, where + ": cannot read the dataspace");
  const ArrayMeta meta = ArrayMeta::contiguous(dtype, shape_of(space.get(), where));
  Hdf5Handle dcpl =
      Hdf5Handle::adopt(H5Dget_create_plist(dset.get()), Hdf5Kind::PropertyList, ErrorCode::Corrupt,
                        where + ": cannot read the creation properties");
  std::vector<std::byte> fill = fill_value_of(dcpl.get(), type.get(), dtype.itemsize(), where);

  Hdf5Dataset result;
  const auto through_library = [&](const char* layout, ReadPath read_path) {
    StorageInfo info;
    info.kind = "hdf5";
    info.layout = layout;
    info.compressor = "none";
    info.stored_bytes = H5Dget_storage_size(dset.get());
    auto array = std::make_unique<Hdf5Array>(meta, library_chunks(meta.shape, dtype.itemsize()),
                                             std::move(fill), file, path, read_path,
                                             std::vector<FilterStep>{});
    info.chunks_total = array->n_chunks();
    info.chunks_stored = read_path == ReadPath::Fill ? 0 : info.chunks_total;
    array->set_storage(std::move(info));
    result.chunked = std::move(array);
  };
  switch (H5Pget_layout(dcpl.get())) {
    case H5D_CONTIGUOUS: {
      const int external = H5Pget_external_count(dcpl.get());
      if (external < 0) {
        throw_error(ErrorCode::Corrupt,
                    where + ": cannot read the external file list: " + detail::hdf5_error_detail());
      }
      if (external > 0) {
        through_library("external", ReadPath::Library);
        break;
      }
      const haddr_t offset = H5Dget_offset(dset.get());
      if (offset == HADDR_UNDEF) {  // never written: no storage yet
        detail::hdf5_error_detail();
        through_library("contiguous", ReadPath::Fill);
        break;
      }
      // The offset counts from the start of the file holding the dataset (userblock included).
      const std::uint64_t size = size_of_file(data.name);
      if (offset > size || size - offset < meta.nbytes()) {
        throw_error(ErrorCode::Corrupt, where + ": the data needs bytes " + std::to_string(offset) +
                                            ".." + std::to_string(offset + meta.nbytes()) +
                                            " but " + data.name + " has " + std::to_string(size) +
                                            " bytes (truncated file?)");
      }
      if (probing) break;
      result.dense = std::make_unique<Source>(
          meta, MappedFile::open(data.name, MapMode::ReadOnly, offset, meta.nbytes()), "hdf5");
      break;
    }
    case H5D_CHUNKED:
      result.chunked = open_chunked(data, dset.get(), dcpl.get(), space.get(), meta,
                                    std::move(fill), file, path, probing);
      break;
    case H5D_COMPACT:
      through_library("compact", ReadPath::Library);
      break;
    case H5D_VIRTUAL:
      through_library("virtual", ReadPath::Library);
      break;
    default:
      throw_error(ErrorCode::Corrupt,
                  where + ": cannot read the storage layout: " + detail::hdf5_error_detail());
  }
  // Every id opened here closes now (handles leave scope): workers forked after this return
  // inherit no open HDF5 file, and each process opens its own on its first read.
  return result;
}

}  // namespace

Hdf5Dataset open_hdf5(const std::string& file, const std::string& dataset) {
  const std::string path = absolute_path(file, dataset);
  // libhdf5 can crash on damaged metadata: everything the open reads, and the data of a
  // compact dataset (stored in its header), is read first in a disposable child.
  detail::probe_hdf5(file, [&] {
    const Hdf5Dataset d = open_unprobed(file, path, /*probing=*/true);
    if (d.chunked && d.chunked->storage().layout == "compact") {
      const ArrayMeta& meta = d.chunked->meta();
      std::vector<std::byte> out(meta.nbytes());
      d.chunked->read_box({Shape(meta.shape.size(), 0), meta.shape}, out.data());
    }
  });
  return open_unprobed(file, path, /*probing=*/false);
}

}  // namespace mmc
