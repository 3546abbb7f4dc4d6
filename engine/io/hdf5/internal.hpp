// What the HDF5 reader's files share: type and shape conversion, file and path checks, the
// filter pipeline. Private to engine/io.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/hdf5/handles.hpp"
#include "mmc/source.hpp"

namespace mmc::detail {

// ---- types and shapes (types.cpp) ----

// A short description of an HDF5 datatype for messages ("variable-length string").
std::string describe_type(hid_t type);
// The DType of a dataset's file type, in the file's byte order. Throws
// Error(InvalidArgument) naming the type for anything mmcompute does not compute on.
DType dtype_of(hid_t type, const std::string& where);
// The dataspace's extents; throws Error(InvalidArgument) for a null dataspace.
Shape shape_of(hid_t space, const std::string& where);
// One element of the dataset's fill value in the file's byte order (zeros when undefined).
std::vector<std::byte> fill_value_of(hid_t dcpl, hid_t type, std::size_t itemsize,
                                     const std::string& where);

// ---- files and paths (paths.cpp) ----

// Checks before H5Fopen, for errors in the user's terms rather than libhdf5's.
void check_file(const std::string& file);
// True when libhdf5's error detail says another process holds the file's lock.
bool is_lock_error(const std::string& detail);
// "FILE: another process holds it open for writing ...", with what to do.
std::string locked_message(const std::string& file);
// H5Fopen read-only; a file locked by a writer is reported as such.
Hdf5Handle open_file(const std::string& file, ErrorCode code);
// Walks `path` ("/a/b/c") so a missing dataset is reported as the first missing name. Throws
// Error(NotFound) for a missing or dangling name, Error(InvalidArgument) for a group or a
// named datatype.
void check_path(hid_t file, const std::string& file_name, const std::string& path);
// "/a/b" from "a/b" or "/a/b".
std::string absolute_path(const std::string& file, const std::string& dataset);
// The name of the file that holds an object (the target of an external link, not the file the
// link is in), as libhdf5 opened it.
std::string holding_file_of(hid_t object, const std::string& where);

// ---- the filter pipeline (filters.cpp) ----

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
