// HDF5 datasets: names, opening (mapped in place when contiguous, else a ChunkedArray),
// listing a file, and writing a dataset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"
#include "mmc/source.hpp"

namespace mmc {

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
// The file's metadata is first read in a forked child (see engine/io/hdf5/probe.hpp): call it
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
  // The dataset's attributes, a JSON object's text (mmc/attributes.hpp says how each kind of
  // value is stored).
  std::string attributes = "{}";
  // Axis names (empty: none; "" for an unnamed axis): each named axis gets a dimension scale
  // of that name at the file's root (made as netCDF-4 makes a dimension without values, or one
  // already there of the axis's length), so netCDF tools and xarray see the names.
  std::vector<std::string> dimension_names;
  // The dataset's fill value: one element in dtype's byte order; empty: libhdf5's (zero).
  std::vector<std::byte> fill;
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
