// HDF5 files and dataset paths: checks before opening, opening read-only, walking a path with
// errors in the user's terms (paths.cpp). Private to engine/io.
#pragma once

#include <hdf5.h>

#include <string>

#include "io/hdf5/handles.hpp"
#include "mmc/error.hpp"

namespace mmc::detail {

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

}  // namespace mmc::detail
