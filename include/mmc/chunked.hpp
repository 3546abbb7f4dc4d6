// Chunked arrays: zarr v2 stores and chunked (or compact) HDF5 datasets, read chunk by chunk.
//
// A ChunkedArray describes a logical n-d array cut into a regular grid of chunks. Each chunk
// is either stored raw in a file (then it can be mapped in place, zero copy), encoded (read and
// decoded into a caller's buffer), or absent (it reads as the fill value). Dense sources whose
// bytes are one run in a file (raw, .npy, contiguous HDF5) are a Source instead (source.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/source.hpp"

namespace mmc {

// A box of the index space: [start[i], start[i] + count[i]) on every axis.
struct Box {
  Shape start;
  Shape count;
  std::int64_t size() const noexcept;  // elements (1 for 0-d)
};

// How a chunked array is stored, for `mmcompute info` and for planning.
struct StorageInfo {
  std::string kind;                  // "zarr", "hdf5"
  std::string layout;                // "chunked", "compact", "external"
  std::string compressor;            // "none", "zlib", "gzip", "zstd", "blosc(lz4,shuffle,5)", ...
  std::vector<std::string> filters;  // e.g. HDF5 "shuffle", "fletcher32"; empty when none
  std::int64_t chunks_total = 0;     // cells of the chunk grid
  std::int64_t chunks_stored = -1;   // chunks present on disk; -1 when not counted (too costly)
  std::uint64_t stored_bytes = 0;    // bytes on disk (0 when unknown)
};

// One chunk of the grid.
struct ChunkRef {
  Shape coord;  // grid coordinates
  Box box;      // the array elements it holds (clipped at the array's edges)
};

// The largest decoded chunk read or written: 2 GiB. A chunk is decoded whole into memory even
// to read one element, and zlib, zstd and blosc count buffers in 32-bit ints; real stores use
// chunks of a few MiB (HDF5's own limit is 4 GiB). Larger chunks in metadata are refused as
// hostile or damaged rather than allocated.
inline constexpr std::uint64_t kMaxDecodedChunkBytes = std::uint64_t{2} << 30;

namespace detail {
// Chunks larger than both the whole array and 64 MiB are refused as well: legal in zarr and
// HDF5 (an array may grow into its chunks), but nothing a writer needs, while a tiny damaged or
// hostile header (shape [4], chunks [2**30]) would make every worker allocate the whole chunk
// to read one element.
inline constexpr std::uint64_t kMaxChunkBeyondArrayBytes = std::uint64_t{64} << 20;
// Empty when chunks of `chunk_bytes` are acceptable for an array of `array_bytes`; otherwise
// why not, as the end of a sentence ("make N-byte chunks, over ...").
std::string chunk_size_problem(std::uint64_t chunk_bytes, std::uint64_t array_bytes);
}  // namespace detail

class ChunkedArray {
 public:
  virtual ~ChunkedArray() = default;
  ChunkedArray(const ChunkedArray&) = delete;
  ChunkedArray& operator=(const ChunkedArray&) = delete;

  // The logical array: dtype (with its byte order as stored), shape, and the element order
  // inside each chunk (zarr's "order"; HDF5 is always C). strides are those of a dense array
  // of the full shape in that order (what the array would be as one contiguous file).
  const ArrayMeta& meta() const noexcept { return meta_; }
  // Full (unclipped) chunk shape; every chunk buffer holds this many elements.
  const Shape& chunk_shape() const noexcept { return chunk_shape_; }
  // Bytes of one decoded chunk: product(chunk_shape) * itemsize.
  std::uint64_t chunk_nbytes() const noexcept;
  // Chunks per axis: ceil(shape / chunk_shape) (0 on an axis of extent 0).
  Shape grid() const;
  std::int64_t n_chunks() const;
  // Grid coordinates <-> C-order linear chunk index.
  Shape chunk_coord(std::int64_t index) const;
  ChunkRef chunk(const Shape& coord) const;

  // The fill value's bytes (one element, in meta().dtype's byte order).
  const std::vector<std::byte>& fill_value() const noexcept { return fill_; }

  virtual StorageInfo storage() const = 0;
  // A short description of where the data is ("cube.zarr", "cube.h5:/images").
  virtual std::string name() const = 0;

  // Zero-copy access: the chunk's bytes in place in a mapped file (full chunk shape, chunk
  // order, stored byte order), or nullptr when the chunk is encoded, absent, or not mappable.
  // Keeps any mapping alive as long as the array.
  virtual const std::byte* chunk_in_place(const Shape& coord) const = 0;
  // Decodes one chunk into `out` (chunk_nbytes() bytes, full chunk shape in chunk order; the
  // part outside the array on edge chunks holds unspecified bytes). An absent chunk is filled
  // with the fill value. Throws Error(Corrupt) for a chunk whose bytes do not decode to
  // exactly chunk_nbytes(), naming the chunk and file. Safe to call from several threads
  // of one process, and from forked workers after reopen_after_fork().
  virtual void read_chunk(const Shape& coord, std::byte* out) const = 0;
  // Called in a forked worker before its first read_chunk (HDF5 drops the parent's handles and
  // opens the file again; zarr does nothing).
  virtual void reopen_after_fork() {}

  // Reads any box of the array into `out` as a dense C-order array of box.count elements in
  // meta().dtype (stored byte order). Generic: decodes each chunk the box touches once.
  // Throws Error(InvalidArgument) for a box outside the array.
  void read_box(const Box& box, std::byte* out) const;
  // Reads a box into a strided destination: element idx (array coordinates) goes to
  // base + sum(idx[i] * strides[i]) (byte strides, e.g. those of meta() to rebuild the array's
  // dense layout in place). Decodes each chunk the box touches once.
  void read_into(const Box& box, std::byte* base, const std::vector<std::int64_t>& strides) const;

 protected:
  ChunkedArray(ArrayMeta meta, Shape chunk_shape, std::vector<std::byte> fill);

 private:
  void copy_box(const Box& box, std::byte* out, const Shape& origin,
                const std::vector<std::int64_t>& out_strides) const;
  // True when a chunk lies whole in [lo, hi) and out_strides lay it out as it decodes.
  bool lands_whole(const Box& chunk_box, const Shape& lo, const Shape& hi,
                   const std::vector<std::int64_t>& out_strides) const;

  ArrayMeta meta_;
  Shape chunk_shape_;
  std::vector<std::byte> fill_;
};

// ---- zarr v2 (directory store) ----

// Opens a zarr v2 array: a directory holding .zarray. Throws Error(NotFound) when there is no
// .zarray, Error(Corrupt) for broken JSON or metadata (naming the field), Error(InvalidArgument)
// for a dtype, compressor or filter we do not support, or a shape whose byte count overflows.
std::unique_ptr<ChunkedArray> open_zarr(const std::string& path);

enum class Compressor : std::uint8_t { None, Zlib, Zstd, Blosc };
// "none", "zlib", "zstd", "blosc". Throws Error(InvalidArgument).
Compressor parse_compressor(const std::string& text);

struct ZarrSpec {
  DType dtype;
  Shape shape;
  Shape chunks;
  Order order = Order::C;
  Compressor compressor = Compressor::None;
  int level = 5;                    // zlib 1..9, zstd 1..22, blosc clevel 1..9
  std::string blosc_cname = "lz4";  // blosc's inner codec
  int blosc_shuffle = 1;            // 0 none, 1 byte shuffle, 2 bit shuffle
  std::vector<std::byte> fill;      // one element in dtype's byte order; empty: zero fill
};

// Writes a zarr v2 store crash-safely: everything goes into a hidden temporary directory next
// to `path`; commit() writes .zarray and renames the directory into place, so a writer killed
// before commit() leaves no store at `path` (and the temporary directory is removed by the
// destructor when not committed). write_chunk may be called from several threads, and from
// forked workers between construction and commit() (each chunk is written under a temporary
// name and renamed). Throws Error(InvalidArgument) for a bad spec, Error(Io) when `path`
// exists and overwrite is false or the folder cannot be written.
class ZarrWriter {
 public:
  ZarrWriter(const std::string& path, const ZarrSpec& spec, bool overwrite = false);
  ~ZarrWriter();
  ZarrWriter(const ZarrWriter&) = delete;
  ZarrWriter& operator=(const ZarrWriter&) = delete;

  const ZarrSpec& spec() const noexcept;
  Shape grid() const;
  std::uint64_t chunk_nbytes() const noexcept;
  // Encodes and writes one chunk: `data` is the full chunk shape in spec.order, dtype's byte
  // order (edge chunks: the part outside the array is written as given; pass fill there).
  void write_chunk(const Shape& coord, const std::byte* data) const;
  // Writes .zarray and moves the store into place. Idempotent; throws Error(Io).
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// ---- HDF5 ----

// "cube.h5:/group/images" -> {"cube.h5", "/group/images"}; "cube.h5:images" (no slash, when
// the part before the last ':' ends in .h5, .hdf5, .he5, .hdf or .nxs and the whole name is
// not an existing file) -> {"cube.h5", "/images"}. Returns false otherwise.
bool split_hdf5_spec(const std::string& spec, std::string* file, std::string* dataset);

// An HDF5 dataset opened for reading. Contiguous datasets whose file type matches a dtype we
// read are returned as a dense Source mapped at the dataset's offset (zero copy; no HDF5 call
// after open); everything else as a ChunkedArray (chunked, with or without filters; compact
// and external datasets as one chunk read through libhdf5).
struct Hdf5Dataset {
  std::unique_ptr<Source> dense;          // set for mappable contiguous datasets
  std::unique_ptr<ChunkedArray> chunked;  // set otherwise
};

// Links are followed; data is mapped from the file that holds it (an external link's target).
// The file's metadata is first read in a forked child (see engine/io/hdf5_probe.hpp): call it
// while no other thread is inside libhdf5. Throws Error(NotFound) for a missing file or
// dataset path (naming it), Error(Corrupt) for a file that is not HDF5 or is damaged (also
// when libhdf5 crashes on it), Error(Io) for a file another process holds open for writing,
// Error(InvalidArgument) for a datatype we do not support.
Hdf5Dataset open_hdf5(const std::string& file, const std::string& dataset);

// One object of an HDF5 file as `info FILE.h5` lists it.
struct Hdf5Entry {
  std::string path;    // "/group/images"
  std::string kind;    // "group", "dataset", "datatype", "dangling" (a link to nothing)
  Shape shape;         // datasets
  std::string dtype;   // datasets: numpy descr ("<f8"), or libhdf5's words for other types
  std::string layout;  // datasets: "contiguous", "chunked (8, 64) gzip+shuffle", "compact", ...
  std::string note;    // "soft link to /x", "external link to data.h5:/img", what failed
};

// Every object reachable from the root, depth first by name, like `h5ls -r`: hard-linked
// groups are walked (once each); soft and external links are listed with their target and
// the object they lead to, not walked. Throws what open_hdf5 throws for the file.
std::vector<Hdf5Entry> list_hdf5(const std::string& file);
// True when `path` is a file with an HDF5 signature (at 0, 512, 1024, ...).
bool is_hdf5_file(const std::string& path);

struct Hdf5WriteSpec {
  DType dtype;
  Shape shape;
  Shape chunks;        // empty: contiguous
  int gzip_level = 0;  // chunked only: 0 no filter, 1..9 deflate (with shuffle when > 0)
  bool shuffle = true;
};

// Writes one dataset crash-safely. A new file: temporary file, renamed into place on commit().
// An existing HDF5 file: the dataset is created unnamed in it and linked under its name on
// commit() (replacing a dataset of that name only with `overwrite`; other objects are never
// touched), so an uncommitted or killed writer leaves the file's objects as they were.
// Contiguous: storage is allocated at creation, so data_offset() lets workers pwrite or map
// the bytes directly; chunked: write_chunk() encodes (shuffle + deflate) in the caller and
// stores the chunk with H5Dwrite_chunk. Not thread safe; call from one process.
class Hdf5Writer {
 public:
  Hdf5Writer(const std::string& file, const std::string& dataset, const Hdf5WriteSpec& spec,
             bool overwrite = false);
  ~Hdf5Writer();
  Hdf5Writer(const Hdf5Writer&) = delete;
  Hdf5Writer& operator=(const Hdf5Writer&) = delete;

  // Contiguous datasets: the file to pwrite the data into (the temporary file, or the existing
  // file itself) and the absolute byte offset of the data.
  const std::string& temp_path() const noexcept;
  std::uint64_t data_offset() const;
  // Chunked datasets: `data` is the full chunk shape in C order, native byte order.
  void write_chunk(const Shape& coord, const std::byte* data);
  // Encodes a chunk without touching the file (safe in forked workers): returns the bytes to
  // pass to write_encoded_chunk.
  std::vector<std::byte> encode_chunk(const std::byte* data) const;
  void write_encoded_chunk(const Shape& coord, const std::vector<std::byte>& encoded);
  // Closes the file and renames it into place. Throws Error(Io).
  void commit();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace mmc
