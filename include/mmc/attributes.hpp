// What an array records beside its values: its attributes and the names of its axes, read from
// zarr (.zattrs and xarray's _ARRAY_DIMENSIONS; zarr.json's attributes and dimension_names) and
// HDF5 (the dataset's attributes; the names of the dimension scales attached to it), and
// written again by convert.
#pragma once

#include <string>
#include <vector>

namespace mmc {

class AnyArray;

struct ArrayAttributes {
  // A JSON object: the attributes, numbers, strings, booleans and lists of them (HDF5 attributes
  // of other types are left out).
  std::string json = "{}";
  // One name per axis ("" for an axis without one), or empty when none is recorded.
  std::vector<std::string> dims;
  bool empty() const { return json == "{}" && dims.empty(); }
};

// Reads `array`'s attributes (none for raw and .npy files). Throws Error(Corrupt) naming the
// file for attribute metadata that does not parse.
ArrayAttributes read_attributes(const AnyArray& array);

}  // namespace mmc
