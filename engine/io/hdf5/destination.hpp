// Where an HDF5 dataset is written (destination.cpp): checks on the spec and the destination
// before anything is created, temporary names, whole-file copies and tidying up after killed
// writers. Private to engine/io; used by writer.cpp.
#pragma once

#include <hdf5.h>

#include <string>

#include "mmc/hdf5.hpp"

namespace mmc::detail {

// "dir/.name.tmp-<pid>-<n>": hidden, in the destination's folder so rename() stays atomic.
std::string temp_name_for(const std::string& file);
// The folder holding `file` ("." for a bare name).
std::string folder_of(const std::string& file);
// Throws Error(InvalidArgument) for a dataset path, shape, chunk shape or gzip level HDF5 or
// the writer cannot take.
void validate(const std::string& file, const std::string& dataset, const Hdf5WriteSpec& spec);
// Checks where `path` would go in an open file: every parent that exists must be a group.
// Returns true when `path` itself names a dataset (or a link to one) already.
bool check_target(hid_t file, const std::string& file_name, const std::string& path);
// Reads the destination's metadata in the probe's child first (libhdf5 can crash on a damaged
// file, and check_target's lookups are where it does), then its superblock version here.
// A damaged file is refused whatever `overwrite` says: it is neither edited nor replaced.
unsigned probe_destination(const std::string& file, const std::string& dataset);
// Copies `from` whole into the new file `to` (in the same folder: copy_file_range can share
// the blocks instead of copying them on file systems that do so).
void copy_whole_file(const std::string& from, const std::string& to);
// Removes the hidden temporary files of `file` left by writers that were killed (their pid is
// gone): a later write into the same destination tidies up after them.
void sweep_dead_temps(const std::string& file);

}  // namespace mmc::detail
