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
  // Why the attributes could not be read, when they could not (they are then left out: json
  // "{}", no dims); empty otherwise.
  std::string problem;
  bool empty() const { return json == "{}" && dims.empty(); }
};

// Reads `array`'s attributes (none for raw and .npy files). Never throws for what a file holds:
// attribute metadata that does not parse is said in `problem`. Non-finite numbers (the bare
// NaN and Infinity Python's json writes) are left out, as JSON cannot hold them.
ArrayAttributes read_attributes(const AnyArray& array);

}  // namespace mmc
