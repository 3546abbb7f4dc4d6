// HDF5 datatypes, dataspaces and fill values as mmcompute's DType, Shape and bytes (types.cpp).
// Private to engine/io.
#pragma once

#include <hdf5.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/hdf5/handles.hpp"
#include "mmc/array.hpp"

namespace mmc::detail {

// HDF5 limits a chunk to 4 GiB - 1 bytes (its size is a 32-bit field).
constexpr std::uint64_t kMaxHdf5ChunkBytes = (std::uint64_t{1} << 32) - 1;

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
// The file type of a dtype, in its byte order. Bool is h5py's enum (FALSE=0, TRUE=1 over an
// 8-bit integer) so h5py reads it back as numpy bool.
Hdf5Handle file_type_of(DType dtype, const std::string& what);

}  // namespace mmc::detail
