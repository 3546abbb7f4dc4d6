// HDF5's filter pipeline undone outside libhdf5 (filters.cpp). Private to engine/io.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mmc::detail {

// h5py's LZF filter (registered by h5py, not libhdf5): decoded here with liblzf.
inline constexpr H5Z_filter_t kFilterLzf = 32000;

struct FilterStep {
  H5Z_filter_t id = 0;
  std::size_t shuffle_size = 0;  // shuffle: the element size it was set up with
};

// Scratch buffers of one thread, reused across chunks (a chunk's worth each).
struct Scratch {
  std::vector<std::byte> raw;
  std::vector<std::byte> a;
  std::vector<std::byte> b;
};
Scratch& thread_scratch();

// Undoes the pipeline on one stored chunk: filters in reverse order, skipping those whose bit
// is set in `mask`. Throws Error(Corrupt) naming `what` for bytes that do not decode to exactly
// out_n bytes.
void decode_pipeline(const std::vector<FilterStep>& filters, std::uint32_t mask,
                     const std::byte* stored, std::size_t n, std::byte* out, std::size_t out_n,
                     const std::string& what);

// "gzip", "shuffle", "blosc", ... for messages and `info`.
std::string filter_name(H5Z_filter_t id, const char* name_in_file);

}  // namespace mmc::detail
