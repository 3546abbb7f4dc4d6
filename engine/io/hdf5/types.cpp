// HDF5 datatypes, dataspaces and fill values turned into mmcompute's DType, Shape and bytes.
#include "io/hdf5/types.hpp"

#include <limits>
#include <string>
#include <vector>

#include "io/hdf5/handles.hpp"

namespace mmc::detail {

// A short description of an HDF5 datatype for error messages ("variable-length string").
std::string describe_type(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  const std::string bytes = std::to_string(size) + "-byte";
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return bytes + " integer";
    case H5T_FLOAT:
      return bytes + " float";
    case H5T_TIME:
      return "time";
    case H5T_STRING:
      return H5Tis_variable_str(type) > 0 ? "variable-length string"
                                          : bytes + " fixed-length string";
    case H5T_BITFIELD:
      return bytes + " bitfield";
    case H5T_OPAQUE:
      return bytes + " opaque";
    case H5T_COMPOUND:
      return "compound (" + std::to_string(H5Tget_nmembers(type)) + " fields)";
    case H5T_REFERENCE:
      return "reference";
    case H5T_ENUM:
      return "enum over " + bytes + " integers";
    case H5T_VLEN:
      return "variable-length sequence";
    case H5T_ARRAY:
      return "array";
    default:
      return "unknown";
  }
}

namespace {

// True for an integer type with every bit of its bytes significant (no nbit padding).
bool plain_integer(hid_t type) {
  return H5Tget_precision(type) == 8 * H5Tget_size(type) && H5Tget_offset(type) == 0;
}

ByteOrder byte_order_of(hid_t type, const std::string& where) {
  switch (H5Tget_order(type)) {
    case H5T_ORDER_LE:
    case H5T_ORDER_NONE:
      return ByteOrder::Little;
    case H5T_ORDER_BE:
      return ByteOrder::Big;
    default:
      throw_error(
          ErrorCode::InvalidArgument,
          where + ": datatype " + describe_type(type) +
              " has a mixed (VAX) byte order; convert the dataset to little- or big-endian");
  }
}

// h5py stores numpy bools as an enum over a 1-byte integer with members FALSE=0 and TRUE=1.
bool is_h5py_bool(hid_t type) {
  Hdf5Handle base = Hdf5Handle::adopt(H5Tget_super(type), Hdf5Kind::Datatype, ErrorCode::Corrupt,
                                      "enum base type");
  if (H5Tget_class(base.get()) != H5T_INTEGER || H5Tget_size(base.get()) != 1 ||
      H5Tget_nmembers(type) != 2) {
    return false;
  }
  for (unsigned i = 0; i < 2; ++i) {
    std::int8_t value = -1;
    if (H5Tget_member_value(type, i, &value) < 0) return false;
    char* name = H5Tget_member_name(type, i);
    if (name == nullptr) return false;
    const std::string member(name);
    H5free_memory(name);
    if (member != (value == 0 ? "FALSE" : "TRUE") || (value != 0 && value != 1)) return false;
  }
  return true;
}

// IEEE binary16 as h5py makes it (libhdf5 has no predefined one): float32's type with float16's
// fields, size and bias, so h5py reads it back as numpy float16.
Hdf5Handle float16_file_type(bool little, const std::string& what) {
  Hdf5Handle type = Hdf5Handle::adopt(H5Tcopy(little ? H5T_IEEE_F32LE : H5T_IEEE_F32BE),
                                      Hdf5Kind::Datatype, ErrorCode::Internal, what);
  if (H5Tset_fields(type.get(), 15, 10, 5, 0, 10) < 0 || H5Tset_size(type.get(), 2) < 0 ||
      H5Tset_ebias(type.get(), 15) < 0) {
    throw_error(ErrorCode::Internal,
                what + ": cannot make the float16 type: " + hdf5_error_detail());
  }
  return type;
}

}  // namespace

// The DType of a dataset's file type, in the file's byte order. Throws
// Error(InvalidArgument) naming the type for anything mmcompute does not compute on.
DType dtype_of(hid_t type, const std::string& where) {
  const std::size_t size = H5Tget_size(type);
  const auto unsupported = [&](const std::string& why) -> DType {
    throw_error(
        ErrorCode::InvalidArgument,
        where + ": datatype " + describe_type(type) + " is not supported" + why +
            "; mmcompute reads integers of 1, 2, 4, 8 bytes, IEEE floats of 2, 4 and 8 bytes "
            "and h5py's bool");
  };
  switch (H5Tget_class(type)) {
    case H5T_INTEGER: {
      if (!plain_integer(type)) unsupported(" (bits of padding inside the integer)");
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      const ByteOrder order = byte_order_of(type, where);
      switch (size) {
        case 1:
          return DType(is_signed ? TypeId::I8 : TypeId::U8, order);
        case 2:
          return DType(is_signed ? TypeId::I16 : TypeId::U16, order);
        case 4:
          return DType(is_signed ? TypeId::I32 : TypeId::U32, order);
        case 8:
          return DType(is_signed ? TypeId::I64 : TypeId::U64, order);
        default:
          return unsupported("");
      }
    }
    case H5T_FLOAT: {
      if (size != 2 && size != 4 && size != 8) return unsupported("");
      // IEEE 754 binary16/32/64: sign bit on top, then the exponent, then the mantissa, with
      // the standard bias (h5py writes float16 so; bfloat16 and other 2-byte layouts are not).
      struct IeeeLayout {
        std::size_t spos, epos, esize, msize, ebias;
      };
      const IeeeLayout want = size == 2   ? IeeeLayout{15, 10, 5, 10, 15}
                              : size == 4 ? IeeeLayout{31, 23, 8, 23, 127}
                                          : IeeeLayout{63, 52, 11, 52, 1023};
      std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      const bool fields = H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) >= 0;
      const std::size_t ebias = H5Tget_ebias(type);
      if (!fields || spos != want.spos || epos != want.epos || esize != want.esize ||
          msize != want.msize || mpos != 0 || H5Tget_offset(type) != 0 ||
          H5Tget_norm(type) != H5T_NORM_IMPLIED || ebias != want.ebias) {
        return unsupported(" (not an IEEE 754 layout: sign bit " + std::to_string(spos) +
                           ", exponent of " + std::to_string(esize) + " bits at " +
                           std::to_string(epos) + " biased by " + std::to_string(ebias) +
                           ", mantissa of " + std::to_string(msize) + " bits at " +
                           std::to_string(mpos) + ")");
      }
      const TypeId id = size == 2 ? TypeId::F16 : (size == 4 ? TypeId::F32 : TypeId::F64);
      return DType(id, byte_order_of(type, where));
    }
    case H5T_ENUM:
      if (is_h5py_bool(type)) return DType(TypeId::Bool);
      return unsupported(" (only h5py's bool enum FALSE=0/TRUE=1 is read)");
    default:
      return unsupported("");
  }
}

Shape shape_of(hid_t space, const std::string& where) {
  switch (H5Sget_simple_extent_type(space)) {
    case H5S_SCALAR:
      return {};
    case H5S_SIMPLE:
      break;
    case H5S_NULL:
      throw_error(ErrorCode::InvalidArgument,
                  where + ": the dataset has a null dataspace (no elements, not even a scalar)");
    default:
      throw_error(ErrorCode::Corrupt,
                  where + ": cannot read the dataspace: " + detail::hdf5_error_detail());
  }
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0 || rank > H5S_MAX_RANK) {
    throw_error(ErrorCode::Corrupt, where + ": cannot read the dataspace's rank");
  }
  hsize_t dims[H5S_MAX_RANK];
  H5Sget_simple_extent_dims(space, dims, nullptr);
  Shape shape(static_cast<std::size_t>(rank));
  for (int i = 0; i < rank; ++i) {
    if (dims[i] > static_cast<hsize_t>(std::numeric_limits<std::int64_t>::max())) {
      throw_error(ErrorCode::InvalidArgument, where + ": extent " + std::to_string(dims[i]) +
                                                  " on axis " + std::to_string(i) +
                                                  " is too large");
    }
    shape[static_cast<std::size_t>(i)] = static_cast<std::int64_t>(dims[i]);
  }
  return shape;
}

// One element of the dataset's fill value in the file's byte order (zeros when undefined).
std::vector<std::byte> fill_value_of(hid_t dcpl, hid_t type, std::size_t itemsize,
                                     const std::string& where) {
  std::vector<std::byte> fill(itemsize, std::byte{0});
  H5D_fill_value_t status = H5D_FILL_VALUE_UNDEFINED;
  if (H5Pfill_value_defined(dcpl, &status) < 0) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot read the fill value: " + detail::hdf5_error_detail());
  }
  // Passing the file type as the memory type returns the bytes as stored (no conversion).
  if (status == H5D_FILL_VALUE_USER_DEFINED && H5Pget_fill_value(dcpl, type, fill.data()) < 0) {
    throw_error(ErrorCode::Corrupt,
                where + ": cannot read the fill value: " + detail::hdf5_error_detail());
  }
  return fill;
}

Hdf5Handle file_type_of(DType dtype, const std::string& what) {
  if (dtype.id() == TypeId::Bool) {
    Hdf5Handle type = Hdf5Handle::adopt(H5Tenum_create(H5T_NATIVE_INT8), Hdf5Kind::Datatype,
                                        ErrorCode::Internal, what);
    const std::int8_t no = 0, yes = 1;
    if (H5Tenum_insert(type.get(), "FALSE", &no) < 0 ||
        H5Tenum_insert(type.get(), "TRUE", &yes) < 0) {
      throw_error(ErrorCode::Internal,
                  what + ": cannot make the bool type: " + hdf5_error_detail());
    }
    return type;
  }
  const bool le = dtype.byte_order() == ByteOrder::Little;
  hid_t base = H5T_STD_U8LE;
  switch (dtype.id()) {
    case TypeId::Bool:
    case TypeId::U8:
      base = H5T_STD_U8LE;
      break;
    case TypeId::I8:
      base = H5T_STD_I8LE;
      break;
    case TypeId::I16:
      base = le ? H5T_STD_I16LE : H5T_STD_I16BE;
      break;
    case TypeId::U16:
      base = le ? H5T_STD_U16LE : H5T_STD_U16BE;
      break;
    case TypeId::I32:
      base = le ? H5T_STD_I32LE : H5T_STD_I32BE;
      break;
    case TypeId::U32:
      base = le ? H5T_STD_U32LE : H5T_STD_U32BE;
      break;
    case TypeId::I64:
      base = le ? H5T_STD_I64LE : H5T_STD_I64BE;
      break;
    case TypeId::U64:
      base = le ? H5T_STD_U64LE : H5T_STD_U64BE;
      break;
    case TypeId::F32:
      base = le ? H5T_IEEE_F32LE : H5T_IEEE_F32BE;
      break;
    case TypeId::F64:
      base = le ? H5T_IEEE_F64LE : H5T_IEEE_F64BE;
      break;
    case TypeId::F16:
      return float16_file_type(le, what);
  }
  return Hdf5Handle::adopt(H5Tcopy(base), Hdf5Kind::Datatype, ErrorCode::Internal, what);
}

}  // namespace mmc::detail
