// Hdf5Array: the chunk reader of one HDF5 dataset (chunks mapped in place, fetched raw with
// H5Dread_chunk and decoded here, or read through libhdf5), with its ids opened per process.
// Private to engine/io; open.cpp builds it.
#pragma once

#include <hdf5.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "io/hdf5/filters.hpp"
#include "io/hdf5/handles.hpp"
#include "mmc/chunked.hpp"
#include "mmc/mapped_file.hpp"

namespace mmc::detail {

// A chunk the index does not hold (an InPlace offset).
constexpr std::uint64_t kAbsent = std::numeric_limits<std::uint64_t>::max();

// ---- the dataset's ids, per process ----

// Opens the file and dataset lazily in each process: the parent closes its ids when open_hdf5
// returns (so workers forked later inherit no open HDF5 file), and a forked child that finds
// ids opened by another process forgets them without closing (closing could release file
// state the parent still uses) and opens its own.
class ProcessDataset {
 public:
  ProcessDataset(std::string file, std::string path, Shape shape)
      : file_(std::move(file)), path_(std::move(path)), shape_(std::move(shape)) {}
  ~ProcessDataset() {
    if (pid_ != ::getpid()) forget();
  }
  ProcessDataset(const ProcessDataset&) = delete;
  ProcessDataset& operator=(const ProcessDataset&) = delete;

  // The dataset's id in this process. Thread-safe.
  hid_t dataset() const;

  // For a forked child: drop the parent's ids; the next dataset() opens afresh.
  void forget_after_fork() noexcept {
    std::lock_guard<std::mutex> lock(mu_);
    if (pid_ != ::getpid()) forget();
  }

 private:
  void forget() const noexcept {
    dataset_.forget();
    file_id_.forget();
    pid_ = -1;
  }

  std::string file_;
  std::string path_;
  Shape shape_;
  mutable std::mutex mu_;
  mutable pid_t pid_ = -1;
  mutable Hdf5Handle file_id_;
  mutable Hdf5Handle dataset_;
};

// ---- the ChunkedArray ----

enum class ReadPath : std::uint8_t {
  Fill,     // no storage: every chunk is the fill value
  InPlace,  // unfiltered chunks, all mapped from the file
  Decode,   // H5Dread_chunk + our own decoding
  Library,  // H5Dread of the chunk's box (filters we do not decode, compact, external, virtual)
};

class Hdf5Array final : public ChunkedArray {
 public:
  Hdf5Array(ArrayMeta meta, Shape chunks, std::vector<std::byte> fill, std::string file,
            std::string path, ReadPath read_path, std::vector<FilterStep> filters)
      : ChunkedArray(meta, std::move(chunks), std::move(fill)),
        file_(std::move(file)),
        path_(std::move(path)),
        read_path_(read_path),
        filters_(std::move(filters)),
        grid_(grid()),
        ids_(file_, path_, meta.shape) {
    // Stored chunks may outgrow the chunk a little (deflate of incompressible bytes, checksum);
    // far larger is a damaged index, refused before allocating.
    max_stored_ = chunk_nbytes() + chunk_nbytes() / 16 + 4096;
  }

  StorageInfo storage() const override { return storage_; }
  std::string name() const override { return file_ + ":" + path_; }

  void set_storage(StorageInfo info) { storage_ = std::move(info); }

  void map_in_place(MappedFile file, std::vector<std::uint64_t> offsets) {
    mapping_ = std::move(file);
    offsets_ = std::move(offsets);
    read_path_ = ReadPath::InPlace;
  }

  const std::byte* chunk_in_place(const Shape& coord) const override;
  void read_chunk(const Shape& coord, std::byte* out) const override;
  void reopen_after_fork() override { ids_.forget_after_fork(); }

 private:
  std::string chunk_what(const Shape& coord) const;
  std::size_t linear_index(const Shape& coord) const;
  void fill_chunk(std::byte* out) const;
  static bool absent_chunk_error();
  void chunk_offset(const Shape& coord, hsize_t* offset) const;
  void read_raw_chunk(const Shape& coord, std::byte* out) const;
  void read_through_library(const Shape& coord, std::byte* out) const;

  std::string file_;
  std::string path_;
  ReadPath read_path_;
  std::vector<FilterStep> filters_;
  StorageInfo storage_;
  Shape grid_;
  std::uint64_t max_stored_ = 0;
  ProcessDataset ids_;
  MappedFile mapping_;                  // InPlace: the whole file
  std::vector<std::uint64_t> offsets_;  // InPlace: file offset per chunk, kAbsent if none
};

// The chunk grid of datasets read through H5Dread (compact, external, virtual, never-written
// contiguous ones): C-order chunks of at most 8 MiB, so read_box never needs a buffer of the
// whole dataset.
Shape library_chunks(const Shape& shape, std::size_t itemsize);

}  // namespace mmc::detail
