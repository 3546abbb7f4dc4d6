// convert: any array into raw, .npy, HDF5 or zarr (v2, v3, v3 sharded), in parallel tasks that
// follow the destination's chunks or shards (or slabs of ~8 MiB), each worker holding one
// task's data.
#include "mmc/convert.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "core/debug_hooks.hpp"
#include "mmc/attributes.hpp"
#include "mmc/error.hpp"
#include "mmc/hdf5.hpp"
#include "mmc/output.hpp"
#include "os/exact_io.hpp"

namespace mmc {
using detail::path_exists;
namespace {

constexpr std::uint64_t kConvertTaskBytes = std::uint64_t{8} << 20;

struct Destination {
  ArrayFormat format = ArrayFormat::Raw;
  std::string path;     // file or directory (a zarr group's, for a member)
  std::string dataset;  // HDF5 only
  std::string member;   // zarr only: the array's name in the group at `path` (STORE.zarr:/name)
};

Destination parse_destination(const std::string& dst) {
  Destination d;
  if (split_zarr_member(dst, &d.path, &d.member)) {
    d.format = ArrayFormat::Zarr;
    if (d.member.find('/') != std::string::npos || d.member[0] == '.' || d.member == "zarr.json") {
      throw_error(ErrorCode::InvalidArgument,
                  dst +
                      ": a zarr member is one name at the group's top level (no '/', not "
                      "starting with '.')");
    }
    return d;
  }
  d.format = format_of_destination(dst);
  d.path = dst;
  if (d.format == ArrayFormat::Hdf5) {
    if (!split_hdf5_spec(dst, &d.path, &d.dataset)) d.dataset = "/data";
  }
  while (d.format == ArrayFormat::Zarr && d.path.size() > 1 && d.path.back() == '/') {
    d.path.pop_back();
  }
  return d;
}

// Slabs of whole trailing axes: 1 along the axes before k, as many as fit in kConvertTaskBytes
// along axis k, everything after it, where k is the outermost axis whose trailing block fits.
Shape slab_shape(const Shape& shape, std::size_t itemsize) {
  const std::size_t nd = shape.size();
  Shape slab(nd, 1);
  std::uint64_t inner = itemsize;  // bytes of one index of axis k (the axes after k, whole)
  std::size_t k = nd;
  while (k > 0) {
    const std::uint64_t extent =
        static_cast<std::uint64_t>(std::max<std::int64_t>(shape[k - 1], 1));
    if (inner * extent > kConvertTaskBytes) break;
    inner *= extent;
    --k;
  }
  for (std::size_t i = k; i < nd; ++i) slab[i] = std::max<std::int64_t>(shape[i], 1);
  if (k > 0) {
    const std::uint64_t fit = std::max<std::uint64_t>(kConvertTaskBytes / inner, 1);
    slab[k - 1] = static_cast<std::int64_t>(std::min<std::uint64_t>(
        fit, static_cast<std::uint64_t>(std::max<std::int64_t>(shape[k - 1], 1))));
  }
  return slab;
}

// Where a zarr array is written. A plain destination: its own path. A group member
// (STORE.zarr:/name): into the existing group, whose consolidated metadata commit() writes
// again; or, when there is no store yet, into a new group made under a hidden temporary name
// beside it and moved into place by commit(), so a failed or killed convert leaves no store.
class GroupDestination {
 public:
  GroupDestination(const Destination& d, int zarr_format)
      : path_(d.path), member_(d.member), format_(zarr_format) {
    if (member_.empty()) return;
    if (path_exists(path_)) {
      const int existing = zarr_group_format(path_);
      if (existing == 0) {
        throw_error(ErrorCode::Io, path_ + " exists and is not a zarr group; a member '" + member_ +
                                       "' cannot be added to it");
      }
      if (existing != format_) {
        throw_error(ErrorCode::InvalidArgument,
                    path_ + " is a zarr v" + std::to_string(existing) +
                        " group: write its members with --zarr-format " + std::to_string(existing));
      }
      return;
    }
    const std::size_t slash = path_.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
    const std::string name = slash == std::string::npos ? path_ : path_.substr(slash + 1);
    temp_ = (slash == std::string::npos ? std::string() : parent) + "." + name + ".tmp-" +
            std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
    write_zarr_group(temp_, format_);
  }
  ~GroupDestination() {
    if (temp_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(temp_, ec);
  }
  GroupDestination(const GroupDestination&) = delete;
  GroupDestination& operator=(const GroupDestination&) = delete;

  std::string array_path() const {
    if (member_.empty()) return path_;
    return (temp_.empty() ? path_ : temp_) + "/" + member_;
  }

  // After the array's commit: the group's consolidated metadata, then the new group moved in.
  void commit() {
    if (member_.empty()) return;
    // A group we made gets consolidated metadata; an existing one only when it has some (a
    // .zmetadata other tools do not update would hide the arrays they add later).
    const std::string group = temp_.empty() ? path_ : temp_;
    if (format_ == 2 && (!temp_.empty() || path_exists(group + "/.zmetadata"))) {
      consolidate_zarr_metadata(group);
    }
    if (temp_.empty()) return;
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, path_.c_str(), RENAME_NOREPLACE) != 0) {
      // File systems without renameat2 (EINVAL, ENOSYS): a plain rename, after checking.
      const bool plain = (errno == EINVAL || errno == ENOSYS) && !path_exists(path_) &&
                         ::rename(temp_.c_str(), path_.c_str()) == 0;
      if (!plain) {
        const int err = errno;
        throw_error(ErrorCode::Io,
                    path_ + ": cannot move the new group into place: " + std::strerror(err));
      }
    }
    temp_.clear();
    // The rename made durable.
    const std::size_t slash = path_.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
    const detail::UniqueFd dir = detail::open_fd(parent.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir) ::fsync(dir.get());
  }

 private:
  std::string path_;
  std::string member_;
  int format_;
  std::string temp_;  // the new group while it is written
};

// Throws unless `extents` (an option's shape: --chunks, --shards) has nd axes, each at least 1.
void check_extents(const char* option, const Shape& extents, std::size_t nd) {
  if (extents.size() != nd) {
    throw_error(ErrorCode::InvalidArgument, std::string(option) + " " + format_shape(extents) +
                                                " has " + std::to_string(extents.size()) +
                                                " axes, the array " + std::to_string(nd));
  }
  for (std::int64_t c : extents) {
    if (c < 1) {
      throw_error(ErrorCode::InvalidArgument, std::string(option) + " " + format_shape(extents) +
                                                  ": every extent must be at least 1");
    }
  }
}

// The chunk grid of `shape` cut by `chunks`: cell coordinates from a C-order index.
struct Grid {
  Shape shape;
  Shape chunks;
  Shape cells;
  std::int64_t count = 1;

  Grid(Shape s, Shape c) : shape(std::move(s)), chunks(std::move(c)), cells(shape.size()) {
    for (std::size_t i = 0; i < shape.size(); ++i) {
      cells[i] = (shape[i] + chunks[i] - 1) / chunks[i];
      count *= cells[i];
    }
  }
  Shape coord(std::int64_t index) const {
    Shape c(cells.size());
    for (std::size_t i = cells.size(); i-- > 0;) {
      c[i] = index % cells[i];
      index /= cells[i];
    }
    return c;
  }
  Box box(const Shape& coord) const {
    Box b{Shape(coord.size()), Shape(coord.size())};
    for (std::size_t i = 0; i < coord.size(); ++i) {
      b.start[i] = coord[i] * chunks[i];
      b.count[i] = std::min(chunks[i], shape[i] - b.start[i]);
    }
    return b;
  }
};

// Element offset of a box's first element in a C-order array of `shape`.
std::int64_t c_offset(const Shape& shape, const Shape& start) {
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < shape.size(); ++i) offset = offset * shape[i] + start[i];
  return offset;
}

void swap_bytes(std::byte* data, std::size_t n, std::size_t itemsize) {
  if (itemsize == 1) return;
  for (std::size_t i = 0; i < n; ++i) std::reverse(data + i * itemsize, data + (i + 1) * itemsize);
}

// Reads a chunk's part of the array into a full-chunk C-order buffer (zeros outside the array).
void read_chunk_box(const AnyArray& src, const Box& box, const Shape& chunks, std::byte* chunk,
                    std::vector<std::byte>& scratch) {
  const std::size_t itemsize = src.meta().dtype.itemsize();
  const std::size_t nd = chunks.size();
  if (box.count == chunks) {
    src.read_box(box, chunk);
    return;
  }
  std::int64_t full = 1;
  for (std::int64_t c : chunks) full *= c;
  std::memset(chunk, 0, static_cast<std::size_t>(full) * itemsize);
  scratch.resize(static_cast<std::size_t>(box.size()) * itemsize);
  src.read_box(box, scratch.data());
  if (box.size() == 0) return;
  // Copy rows of the box into the chunk layout.
  const std::int64_t run = box.count[nd - 1];
  Shape idx(nd, 0);
  const std::byte* from = scratch.data();
  for (;;) {
    std::int64_t to = 0;
    for (std::size_t i = 0; i < nd; ++i) to = to * chunks[i] + idx[i];
    std::memcpy(chunk + to * static_cast<std::int64_t>(itemsize), from,
                static_cast<std::size_t>(run) * itemsize);
    from += run * static_cast<std::int64_t>(itemsize);
    std::size_t ax = nd - 1;
    for (;;) {
      if (ax == 0) return;
      --ax;
      if (++idx[ax] < box.count[ax]) break;
      idx[ax] = 0;
    }
  }
}

void pwrite_all(int fd, const std::byte* data, std::size_t size, std::uint64_t offset,
                const std::string& what) {
  if (!detail::pwrite_all(fd, data, size, offset)) throw_errno("writing " + what);
}

// `src` when it is a dense source whose elements lie in C order with no gaps (a writer can then
// encode its chunks where they are), else nullptr.
const Source* gapless_source(const AnyArray& src) {
  const Source* dense = src.dense();
  if (dense == nullptr || !src.reversed_axes().empty()) return nullptr;
  const ArrayMeta& m = dense->meta();
  if (m.order != Order::C || m.strides != ArrayMeta::contiguous(m.dtype, m.shape).strides) {
    return nullptr;
  }
  return dense;
}

// The bytes of `box` in place in a gapless source (gapless_source) when they are one run: every
// axis after the first one the box spans more than one index of is whole. nullptr otherwise.
const std::byte* box_in_place(const Source* dense, const Box& box) {
  if (dense == nullptr || box.size() == 0) return nullptr;
  const ArrayMeta& m = dense->meta();
  bool spanning = false;
  for (std::size_t i = 0; i < m.shape.size(); ++i) {
    if (spanning && (box.start[i] != 0 || box.count[i] != m.shape[i])) return nullptr;
    spanning = spanning || box.count[i] > 1;
  }
  return dense->data() + static_cast<std::int64_t>(c_offset(m.shape, box.start)) *
                             static_cast<std::int64_t>(m.dtype.itemsize());
}

// Lets the kernel drop a dense C-order source's pages behind the reader.
void release_source_range(const AnyArray& src, const Box& box) {
  const Source* dense = src.dense();
  if (dense == nullptr || dense->meta().order != Order::C || box.size() == 0) return;
  const std::size_t itemsize = dense->meta().dtype.itemsize();
  Shape last(box.start.size());
  for (std::size_t i = 0; i < last.size(); ++i) last[i] = box.start[i] + box.count[i] - 1;
  const auto first =
      static_cast<std::uint64_t>(c_offset(dense->meta().shape, box.start)) * itemsize;
  const auto end = (static_cast<std::uint64_t>(c_offset(dense->meta().shape, last)) + 1) * itemsize;
  dense->mapping().dont_need(first, end - first);
}

// A contiguous output's task: reads slab `task` of the grid and pwrites it at `base` plus its
// C-order offset (byte-swapped to native order when `swap`).
void write_slab(const AnyArray& src, const Grid& grid, std::size_t task, int fd, std::uint64_t base,
                bool swap, const std::string& what) {
  const std::size_t itemsize = src.meta().dtype.itemsize();
  const Box box = grid.box(grid.coord(static_cast<std::int64_t>(task)));
  std::vector<std::byte> buf(static_cast<std::size_t>(box.size()) * itemsize);
  src.read_box(box, buf.data());
  release_source_range(src, box);
  if (swap) swap_bytes(buf.data(), static_cast<std::size_t>(box.size()), itemsize);
  pwrite_all(fd, buf.data(), buf.size(),
             base + static_cast<std::uint64_t>(c_offset(grid.shape, box.start)) * itemsize, what);
}

}  // namespace

ArrayFormat format_of_destination(const std::string& dst) {
  std::string file, dataset;
  if (split_zarr_member(dst, &file, &dataset)) return ArrayFormat::Zarr;
  if (split_hdf5_spec(dst, &file, &dataset)) return ArrayFormat::Hdf5;
  std::string path = dst;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  if (path.ends_with(".npy")) return ArrayFormat::Npy;
  if (path.ends_with(".h5") || path.ends_with(".hdf5")) return ArrayFormat::Hdf5;
  if (path.ends_with(".zarr")) return ArrayFormat::Zarr;
  return ArrayFormat::Raw;
}

ConvertStats convert(const AnyArray& src, const std::string& dst, const ConvertOptions& options) {
  const ArrayMeta& meta = src.meta();
  const std::size_t nd = meta.shape.size();
  const std::size_t itemsize = meta.dtype.itemsize();
  const Destination d = parse_destination(dst);
  ConvertStats stats;
  stats.format = d.format;
  stats.logical_bytes = meta.nbytes();

  if (!options.chunks.empty()) {
    if (d.format != ArrayFormat::Zarr && d.format != ArrayFormat::Hdf5) {
      throw_error(ErrorCode::InvalidArgument,
                  dst + ": --chunks applies to zarr and HDF5 outputs only");
    }
    check_extents("--chunks", options.chunks, nd);
  }
  if (options.zarr_format != 2 && options.zarr_format != 3) {
    throw_error(ErrorCode::InvalidArgument,
                "zarr format " + std::to_string(options.zarr_format) + " is not 2 or 3");
  }
  if (options.zarr_format != 2 && d.format != ArrayFormat::Zarr) {
    throw_error(ErrorCode::InvalidArgument, dst + ": --zarr-format applies to zarr outputs only");
  }
  if (!options.shards.empty()) {
    if (d.format != ArrayFormat::Zarr || options.zarr_format != 3) {
      throw_error(ErrorCode::InvalidArgument,
                  dst + ": --shards needs a zarr v3 output (--zarr-format 3)");
    }
    check_extents("--shards", options.shards, nd);
  }
  if (d.format == ArrayFormat::Hdf5 && options.compressor != Compressor::None &&
      options.compressor != Compressor::Zlib) {
    throw_error(ErrorCode::InvalidArgument,
                dst + ": HDF5 outputs take --compressor none or zlib (gzip with shuffle)");
  }
  if ((d.format == ArrayFormat::Raw || d.format == ArrayFormat::Npy) &&
      options.compressor != Compressor::None) {
    throw_error(ErrorCode::InvalidArgument, dst + ": raw and .npy outputs cannot be compressed");
  }
  // An existing HDF5 file gets the dataset added: Hdf5Writer checks the dataset's name.
  if (!options.overwrite && d.format != ArrayFormat::Hdf5 &&
      path_exists(d.member.empty() ? d.path : d.path + "/" + d.member)) {
    throw_error(ErrorCode::Io, d.path + " exists; pass --overwrite to replace it");
  }
  const bool chunked_out = d.format == ArrayFormat::Zarr ||
                           (d.format == ArrayFormat::Hdf5 &&
                            (!options.chunks.empty() || options.compressor != Compressor::None));
  Shape chunks = options.chunks;
  const Shape& shards = options.shards;
  if (chunked_out && chunks.empty() && !shards.empty()) {
    // Slabs of the shard, each extent cut down to one that divides the shard's.
    chunks = slab_shape(shards, itemsize);
    for (std::size_t i = 0; i < nd; ++i) {
      while (shards[i] % chunks[i] != 0) --chunks[i];
    }
  }
  if (chunked_out && chunks.empty()) chunks = slab_shape(meta.shape, itemsize);
  if (chunked_out) {
    // Zero extents: chunks must still be at least 1.
    for (std::int64_t& c : chunks) c = std::max<std::int64_t>(c, 1);
  }
  stats.chunks = chunked_out ? chunks : Shape();
  stats.shards = shards;
  // The unit a task writes: a shard, a chunk, or a slab.
  const Shape cells_of =
      !shards.empty() ? shards : (chunked_out ? chunks : slab_shape(meta.shape, itemsize));
  const Grid grid(meta.shape, cells_of);
  std::uint64_t cell_bytes = itemsize;
  for (std::int64_t c : cells_of) cell_bytes *= static_cast<std::uint64_t>(c);
  // Chunked outputs: consecutive chunks grouped into tasks of about kConvertTaskBytes.
  const std::int64_t per_task =
      chunked_out
          ? static_cast<std::int64_t>(std::max<std::uint64_t>(kConvertTaskBytes / cell_bytes, 1))
          : 1;
  const std::int64_t cells = meta.size() == 0 ? 0 : grid.count;
  const std::int64_t n_tasks = (cells + per_task - 1) / per_task;
  const pid_t parent = getpid();
  const int delay_ms = detail::debug_task_delay_ms();
  // Before every task: the test hook's pause, and HDF5 sources reopened in a forked worker.
  const auto prepare = [&src, parent, delay_ms] {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (getpid() != parent) src.reopen_after_fork();
  };

  TaskSet call;
  call.n_tasks = static_cast<std::size_t>(n_tasks);
  call.on_progress = options.progress;
  call.on_result = [](std::size_t, ByteView) {};

  // What the source records beside its values travels with them into zarr and HDF5 outputs.
  ArrayAttributes attributes;
  if (d.format == ArrayFormat::Zarr || d.format == ArrayFormat::Hdf5) {
    attributes = read_attributes(src);
    stats.attributes_problem = attributes.problem;
  }

  if (d.format == ArrayFormat::Zarr) {
    ZarrSpec spec;
    spec.dtype = meta.dtype;
    spec.shape = meta.shape;
    spec.chunks = chunks;
    spec.compressor = options.compressor;
    spec.level = options.level;
    spec.zarr_format = options.zarr_format;
    spec.shards = shards;
    spec.attributes = attributes.json;
    spec.dimension_names = attributes.dims;
    if (spec.dimension_names.empty() && !d.member.empty()) spec.dimension_names.resize(nd);
    for (std::size_t i = 0; i < spec.dimension_names.size(); ++i) {
      // xarray opens arrays by their axis names: unnamed ones get its default names.
      if (spec.dimension_names[i].empty()) spec.dimension_names[i] = "dim_" + std::to_string(i);
    }
    if (src.chunked() != nullptr) spec.fill = src.chunked()->fill_value();
    GroupDestination group(d, options.zarr_format);
    const Source* gapless = gapless_source(src);
    ZarrWriter writer(group.array_path(), spec, options.overwrite);
    call.run = [&](std::size_t task, ByteView, Bytes&) {
      prepare();
      // A worker's buffers outlive its tasks: no task pays for fresh pages.
      thread_local std::vector<std::byte> chunk, scratch;
      const std::uint64_t unit = shards.empty() ? writer.chunk_nbytes() : writer.shard_nbytes();
      const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
      for (std::int64_t i = first; i < std::min(first + per_task, cells); ++i) {
        const Shape coord = grid.coord(i);
        const Box box = grid.box(coord);
        const std::byte* data = box.count == cells_of ? box_in_place(gapless, box) : nullptr;
        if (data == nullptr) {
          if (chunk.size() < unit) chunk.resize(unit);
          read_chunk_box(src, box, cells_of, chunk.data(), scratch);
          data = chunk.data();
        }
        if (shards.empty()) {
          writer.write_chunk(coord, data);
        } else {
          writer.write_shard(coord, data);
        }
        release_source_range(src, box);
      }
      // Large buffers (shards) are not kept past the task: a long-lived process would hold them.
      if (chunk.capacity() > kConvertTaskBytes * 8) std::vector<std::byte>().swap(chunk);
      if (scratch.capacity() > kConvertTaskBytes * 8) std::vector<std::byte>().swap(scratch);
    };
    stats.call = run_tasks(options.pool, call);
    writer.commit();
    group.commit();
    return stats;
  }

  if (d.format == ArrayFormat::Hdf5) {
    Hdf5WriteSpec spec;
    spec.dtype = meta.dtype.native();
    spec.shape = meta.shape;
    spec.chunks = chunked_out ? chunks : Shape();
    spec.gzip_level = options.compressor == Compressor::Zlib ? options.level : 0;
    spec.shuffle = options.compressor == Compressor::Zlib;
    spec.attributes = attributes.json;
    spec.dimension_names = attributes.dims;
    if (src.chunked() != nullptr) {  // its fill value, in this machine's byte order as the data
      spec.fill = src.chunked()->fill_value();
      if (!meta.dtype.is_native()) std::reverse(spec.fill.begin(), spec.fill.end());
    }
    Hdf5Writer writer(d.path, d.dataset, spec, options.overwrite);
    const bool swap = !meta.dtype.is_native();
    if (chunked_out) {
      // Workers encode; the parent stores each encoded chunk (one HDF5 writer process).
      call.run = [&](std::size_t task, ByteView, Bytes& out) {
        prepare();
        std::vector<std::byte> chunk(cell_bytes), scratch;
        const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
        for (std::int64_t i = first; i < std::min(first + per_task, cells); ++i) {
          const Box box = grid.box(grid.coord(i));
          read_chunk_box(src, box, chunks, chunk.data(), scratch);
          release_source_range(src, box);
          if (swap) swap_bytes(chunk.data(), cell_bytes / itemsize, itemsize);
          const std::vector<std::byte> encoded = writer.encode_chunk(chunk.data());
          const std::uint64_t size = encoded.size();
          const auto* p = reinterpret_cast<const std::byte*>(&size);
          out.insert(out.end(), p, p + sizeof size);
          out.insert(out.end(), encoded.begin(), encoded.end());
        }
      };
      call.on_result = [&](std::size_t task, ByteView result) {
        std::size_t pos = 0;
        const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
        for (std::int64_t i = first; i < std::min(first + per_task, cells); ++i) {
          std::uint64_t size = 0;
          if (result.size - pos < sizeof size)
            throw_error(ErrorCode::Internal, "short chunk result");
          std::memcpy(&size, result.data + pos, sizeof size);
          pos += sizeof size;
          if (result.size - pos < size) throw_error(ErrorCode::Internal, "short chunk result");
          writer.write_encoded_chunk(
              grid.coord(i), std::vector<std::byte>(result.data + pos, result.data + pos + size));
          pos += size;
        }
      };
      stats.call = run_tasks(options.pool, call);
      writer.commit();
      return stats;
    }
    // Contiguous: workers pwrite at the dataset's offset in the temporary file.
    const int fd = ::open(writer.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw_errno("opening " + writer.temp_path());
    const std::uint64_t base = writer.data_offset();
    call.run = [&](std::size_t task, ByteView, Bytes&) {
      prepare();
      write_slab(src, grid, task, fd, base, swap, writer.temp_path());
    };
    try {
      stats.call = run_tasks(options.pool, call);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    writer.commit();
    return stats;
  }

  // Raw and .npy: one file, written at offsets by the workers, renamed into place at the end.
  AtomicFile file(d.path);
  std::uint64_t header_size = 0;
  if (d.format == ArrayFormat::Npy) {
    const std::string header = make_npy_header(meta.dtype, meta.shape, /*fortran_order=*/false);
    file.write(header.data(), header.size());
    header_size = header.size();
  }
  if (::ftruncate(file.fd(), static_cast<off_t>(header_size + meta.nbytes())) != 0) {
    throw_errno("sizing " + file.temp_path());
  }
  const int fd = file.fd();
  call.run = [&](std::size_t task, ByteView, Bytes&) {
    prepare();
    write_slab(src, grid, task, fd, header_size, /*swap=*/false, file.temp_path());
  };
  stats.call = run_tasks(options.pool, call);
  file.commit();
  return stats;
}

}  // namespace mmc
