// HDF5 attributes (attributes.cpp): a dataset's attributes read into JSON with the names of its
// dimension scales, and written back by Hdf5Writer. Private to engine/io.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/attributes.hpp"

namespace mmc::detail {

// The attributes of the dataset at `path` in `file`, and its axis names (the names of the
// dimension scales attached to it, as netCDF-4 and h5py's dims make them).
ArrayAttributes hdf5_attributes(const std::string& file, const std::string& path);

// Writes `attributes` (a JSON object's text) onto the object `target`: integers as int64 (or
// uint64), floats as float64, booleans as int8 0/1, strings as UTF-8 variable-length strings,
// flat lists of one of those kinds as 1-d arrays; anything else (objects, mixed lists) as its
// JSON text. Throws Error(InvalidArgument) for text that is not a JSON object, Error(Io) when
// libhdf5 fails.
void write_hdf5_attributes(hid_t target, const std::string& attributes, const std::string& where);

// Names the axes of `dataset` (linked at `path` in `file`) by dimension scales at the file's
// root: for each non-empty name, the dataset /NAME if it is a 1-d scale of the axis's length,
// else a new one (float32, no values written, marked as netCDF-4 marks a dimension that is no
// variable). A 1-d dataset named like its axis becomes that axis's scale itself (a coordinate
// variable, as netCDF-4 makes it). Best effort: a name that is not a plain HDF5 link name, or
// taken by another object, or that libhdf5 refuses, leaves its axis unnamed; never throws for
// that (the data is written either way).
void attach_dimension_scales(hid_t file, hid_t dataset, const std::string& path, const Shape& shape,
                             const std::vector<std::string>& names);

}  // namespace mmc::detail
