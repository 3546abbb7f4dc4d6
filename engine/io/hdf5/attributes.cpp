// HDF5 attributes to JSON and back. Attribute metadata is as hostile as the rest of the file:
// element counts are bounded before anything is read, and types we do not map are skipped.
#include "io/hdf5/attributes.hpp"

#include <hdf5_hl.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/hdf5/handles.hpp"
#include "io/hdf5/paths.hpp"

namespace mmc::detail {
namespace {

using nlohmann::json;

// An attribute of more elements than this is skipped (metadata, not data).
constexpr hssize_t kMaxAttributeElements = 1 << 20;

// Attributes that describe dimension scales or netCDF's bookkeeping, not the data.
bool bookkeeping(const std::string& name) {
  return name == "DIMENSION_LIST" || name == "REFERENCE_LIST" || name == "CLASS" ||
         name == "NAME" || name == "_Netcdf4Dimid" || name == "_Netcdf4Coordinates" ||
         name == "_nc3_strict" || name == "_NCProperties";
}

// A JSON value of `n` elements read as `mem`: a scalar for a scalar dataspace, else a list.
template <class T>
bool read_numbers(hid_t attr, hid_t mem, hssize_t n, bool scalar, json* out) {
  std::vector<T> values(static_cast<std::size_t>(n));
  if (H5Aread(attr, mem, values.data()) < 0) return false;
  if (scalar) {
    *out = values.front();
  } else {
    *out = values;
  }
  return true;
}

bool read_strings(hid_t attr, hid_t type, hssize_t n, bool scalar, json* out) {
  std::vector<std::string> strings;
  const htri_t variable = H5Tis_variable_str(type);
  if (variable < 0) return false;
  Hdf5Handle mem =
      Hdf5Handle::adopt(H5Tcopy(H5T_C_S1), Hdf5Kind::Datatype, ErrorCode::Corrupt, "string type");
  H5Tset_cset(mem.get(), H5Tget_cset(type));
  if (variable > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
    if (H5Aread(attr, mem.get(), ptrs.data()) < 0) return false;
    for (char* p : ptrs) strings.emplace_back(p != nullptr ? p : "");
    Hdf5Handle space = Hdf5Handle::adopt(H5Aget_space(attr), Hdf5Kind::Dataspace,
                                         ErrorCode::Corrupt, "attribute space");
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
  } else {
    const std::size_t size = H5Tget_size(type);
    // Bounded before anything is allocated: at most 16 MiB of text in one attribute.
    if (size == 0 || size > (1u << 20) ||
        size * static_cast<std::size_t>(n) > (std::size_t{16} << 20)) {
      return false;
    }
    H5Tset_size(mem.get(), size);
    H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);  // every byte kept; trailing padding cut below
    std::vector<char> buf(size * static_cast<std::size_t>(n));
    if (H5Aread(attr, mem.get(), buf.data()) < 0) return false;
    for (hssize_t i = 0; i < n; ++i) {
      std::string s(buf.data() + static_cast<std::size_t>(i) * size, size);
      while (!s.empty() && (s.back() == '\0' || s.back() == ' ')) s.pop_back();
      strings.push_back(std::move(s));
    }
  }
  if (scalar) {
    *out = strings.front();
  } else {
    *out = strings;
  }
  return true;
}

// One attribute as JSON, or false when its type is not one we map.
bool attribute_json(hid_t attr, json* out) {
  Hdf5Handle type = Hdf5Handle::adopt(H5Aget_type(attr), Hdf5Kind::Datatype, ErrorCode::Corrupt,
                                      "attribute type");
  Hdf5Handle space = Hdf5Handle::adopt(H5Aget_space(attr), Hdf5Kind::Dataspace, ErrorCode::Corrupt,
                                       "attribute space");
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n <= 0 || n > kMaxAttributeElements) return false;
  const bool scalar = H5Sget_simple_extent_type(space.get()) == H5S_SCALAR;
  switch (H5Tget_class(type.get())) {
    case H5T_INTEGER:
    case H5T_ENUM:  // h5py's bool: an enum over int8
      return H5Tget_sign(type.get()) == H5T_SGN_NONE
                 ? read_numbers<std::uint64_t>(attr, H5T_NATIVE_UINT64, n, scalar, out)
                 : read_numbers<std::int64_t>(attr, H5T_NATIVE_INT64, n, scalar, out);
    case H5T_FLOAT:
      return read_numbers<double>(attr, H5T_NATIVE_DOUBLE, n, scalar, out);
    case H5T_STRING:
      return read_strings(attr, type.get(), n, scalar, out);
    default:
      return false;
  }
}

struct Collected {
  json attributes = json::object();
};

herr_t collect(hid_t object, const char* name, const H5A_info_t*, void* data) {
  // No exception may leave this callback: libhdf5's C frames lie between it and the caller.
  try {
    auto* c = static_cast<Collected*>(data);
    if (bookkeeping(name)) return 0;
    const hid_t id = H5Aopen(object, name, H5P_DEFAULT);
    if (id < 0) return 0;
    const Hdf5Handle attr = Hdf5Handle::adopt(id, Hdf5Kind::Attribute, ErrorCode::Corrupt, name);
    json value;
    if (attribute_json(attr.get(), &value)) c->attributes[name] = std::move(value);
  } catch (...) {
    // An attribute libhdf5 cannot describe, or too large to hold, is left out, like one of a
    // type we do not map.
  }
  return 0;
}

// The names of the dimension scales attached to each axis (DIMENSION_LIST: a variable-length
// list of object references per axis): the last component of each scale's path.
std::vector<std::string> scale_names(hid_t dset, int ndim) {
  if (ndim <= 0 || H5Aexists(dset, "DIMENSION_LIST") <= 0) return {};
  const Hdf5Handle attr =
      Hdf5Handle::adopt(H5Aopen(dset, "DIMENSION_LIST", H5P_DEFAULT), Hdf5Kind::Attribute,
                        ErrorCode::Corrupt, "DIMENSION_LIST");
  const Hdf5Handle space = Hdf5Handle::adopt(H5Aget_space(attr.get()), Hdf5Kind::Dataspace,
                                             ErrorCode::Corrupt, "DIMENSION_LIST");
  if (H5Sget_simple_extent_npoints(space.get()) != ndim) return {};
  const Hdf5Handle mem = Hdf5Handle::adopt(H5Tvlen_create(H5T_STD_REF_OBJ), Hdf5Kind::Datatype,
                                           ErrorCode::Corrupt, "DIMENSION_LIST");
  std::vector<hvl_t> lists(static_cast<std::size_t>(ndim));
  if (H5Aread(attr.get(), mem.get(), lists.data()) < 0) return {};
  std::vector<std::string> names;
  bool any = false;
  for (const hvl_t& l : lists) {
    std::string name;
    if (l.len > 0 && l.p != nullptr) {
      hobj_ref_t ref;
      std::memcpy(&ref, l.p, sizeof ref);
      hid_t scale = H5Rdereference2(dset, H5P_DEFAULT, H5R_OBJECT, &ref);
      if (scale >= 0 && H5Iget_type(scale) != H5I_DATASET) {  // a reference to something else
        H5Oclose(scale);
        scale = H5I_INVALID_HID;
      }
      if (scale >= 0) {
        const Hdf5Handle owned =
            Hdf5Handle::adopt(scale, Hdf5Kind::Dataset, ErrorCode::Corrupt, "dimension scale");
        char path[1024];
        const ssize_t len = H5Iget_name(owned.get(), path, sizeof path);
        if (len > 0 && static_cast<std::size_t>(len) < sizeof path) {
          name = path;
          name = name.substr(name.rfind('/') + 1);
          any = any || !name.empty();
        }
      }
    }
    names.push_back(name);
  }
  H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, lists.data());
  return any ? names : std::vector<std::string>{};
}

}  // namespace

ArrayAttributes hdf5_attributes(const std::string& file, const std::string& path) {
  hdf5_quiet();
  const std::string where = file + ":" + path;
  const Hdf5Handle file_id = open_file(file, ErrorCode::Corrupt);
  const Hdf5Handle dset =
      Hdf5Handle::adopt(H5Dopen2(file_id.get(), path.c_str(), H5P_DEFAULT), Hdf5Kind::Dataset,
                        ErrorCode::Corrupt, where + ": cannot open the dataset");
  Collected c;
  hsize_t at = 0;
  H5Aiterate2(dset.get(), H5_INDEX_NAME, H5_ITER_INC, &at, collect, &c);
  H5Eclear2(H5E_DEFAULT);
  ArrayAttributes out;
  // Strings that are not UTF-8 (HDF5 allows any bytes) get U+FFFD where they break.
  out.json = c.attributes.dump(-1, ' ', false, json::error_handler_t::replace);
  const Hdf5Handle space =
      Hdf5Handle::adopt(H5Dget_space(dset.get()), Hdf5Kind::Dataspace, ErrorCode::Corrupt, where);
  out.dims = scale_names(dset.get(), H5Sget_simple_extent_ndims(space.get()));
  H5Eclear2(H5E_DEFAULT);
  return out;
}

namespace {

// Writes one attribute of `n` elements (a scalar when `scalar`) of `file_type` from `data`.
void put(hid_t target, const std::string& name, hid_t file_type, hid_t mem_type, bool scalar,
         std::size_t n, const void* data, const std::string& where) {
  const hsize_t dims[1] = {n};
  const Hdf5Handle space =
      Hdf5Handle::adopt(scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, nullptr),
                        Hdf5Kind::Dataspace, ErrorCode::Io, where + ": attribute " + name);
  if (H5Aexists(target, name.c_str()) > 0) H5Adelete(target, name.c_str());
  const Hdf5Handle attr = Hdf5Handle::adopt(
      H5Acreate2(target, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      Hdf5Kind::Attribute, ErrorCode::Io, where + ": cannot create attribute " + name);
  if (H5Awrite(attr.get(), mem_type, data) < 0) {
    throw_error(ErrorCode::Io,
                where + ": cannot write attribute " + name + ": " + hdf5_error_detail());
  }
}

void put_strings(hid_t target, const std::string& name, const std::vector<std::string>& strings,
                 bool scalar, const std::string& where) {
  const Hdf5Handle type = Hdf5Handle::adopt(H5Tcopy(H5T_C_S1), Hdf5Kind::Datatype, ErrorCode::Io,
                                            where + ": string type");
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  std::vector<const char*> ptrs;
  for (const std::string& s : strings) ptrs.push_back(s.c_str());
  put(target, name, type.get(), type.get(), scalar, ptrs.size(), ptrs.data(), where);
}

// Writes one attribute: `value` mapped to an HDF5 type as write_hdf5_attributes says.
void put_value(hid_t target, const std::string& name, const json& value, const std::string& where) {
  const bool scalar = !value.is_array();
  std::vector<json> items = scalar ? std::vector<json>{value} : value.get<std::vector<json>>();
  auto all = [&](auto pred) {
    return !items.empty() && std::all_of(items.begin(), items.end(), pred);
  };
  if (all([](const json& v) { return v.is_boolean(); })) {
    std::vector<std::int8_t> v;
    for (const json& x : items) v.push_back(x.get<bool>() ? 1 : 0);
    put(target, name, H5T_STD_I8LE, H5T_NATIVE_INT8, scalar, v.size(), v.data(), where);
  } else if (all([](const json& v) { return v.is_number_unsigned(); }) &&
             !all([](const json& v) { return v.get<std::uint64_t>() <= INT64_MAX; })) {
    // Past int64's range and none below zero: unsigned. Integers of both kinds beyond int64's
    // range on either side fall to float64 below.
    std::vector<std::uint64_t> v;
    for (const json& x : items) v.push_back(x.get<std::uint64_t>());
    put(target, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, scalar, v.size(), v.data(), where);
  } else if (all([](const json& v) {
               return v.is_number_integer() &&
                      (!v.is_number_unsigned() || v.get<std::uint64_t>() <= INT64_MAX);
             })) {
    std::vector<std::int64_t> v;
    for (const json& x : items) v.push_back(x.get<std::int64_t>());
    put(target, name, H5T_STD_I64LE, H5T_NATIVE_INT64, scalar, v.size(), v.data(), where);
  } else if (all([](const json& v) { return v.is_number(); })) {
    std::vector<double> v;
    for (const json& x : items) v.push_back(x.get<double>());
    put(target, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, scalar, v.size(), v.data(), where);
  } else if (all([](const json& v) { return v.is_string(); })) {
    std::vector<std::string> v;
    for (const json& x : items) v.push_back(x.get<std::string>());
    put_strings(target, name, v, scalar, where);
  } else {
    put_strings(target, name, {value.dump(-1, ' ', false, json::error_handler_t::replace)}, true,
                where);
  }
}

}  // namespace

void write_hdf5_attributes(hid_t target, const std::string& attributes, const std::string& where) {
  json doc;
  try {
    doc = json::parse(attributes);
  } catch (const json::exception& e) {
    throw_error(ErrorCode::InvalidArgument,
                where + ": the attributes are not valid JSON (" + e.what() + ")");
  }
  if (!doc.is_object()) {
    throw_error(ErrorCode::InvalidArgument, where + ": the attributes are not a JSON object");
  }
  for (const auto& [name, value] : doc.items()) {
    if (name.empty() || bookkeeping(name) || value.is_null() ||
        (value.is_array() && value.empty())) {
      continue;  // nothing HDF5 can hold, or a name the dimension scales own
    }
    try {
      put_value(target, name, value, where);
    } catch (const Error&) {
      H5Eclear2(H5E_DEFAULT);  // one attribute libhdf5 refuses (too large, say) is left out
    }
  }
}

void attach_dimension_scales(hid_t file, hid_t dataset, const std::string& path, const Shape& shape,
                             const std::vector<std::string>& names) {
  for (std::size_t axis = 0; axis < names.size() && axis < shape.size(); ++axis) {
    const std::string& name = names[axis];
    if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos)
      continue;
    const std::string scale_path = "/" + name;
    if (shape.size() == 1 && (path == scale_path || path == name)) {
      H5DSset_scale(dataset, name.c_str());  // a coordinate variable: its own axis's scale
      continue;
    }
    hid_t scale = H5I_INVALID_HID;
    if (H5Lexists(file, scale_path.c_str(), H5P_DEFAULT) > 0) {
      H5O_info_t info;
      if (H5Oget_info_by_name(file, scale_path.c_str(), &info, H5P_DEFAULT) < 0 ||
          info.type != H5O_TYPE_DATASET) {
        continue;
      }
      scale = H5Dopen2(file, scale_path.c_str(), H5P_DEFAULT);
      if (scale < 0) continue;
      const hid_t space = H5Dget_space(scale);
      hsize_t extent = 0;
      const bool fits = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 &&
                        H5Sget_simple_extent_dims(space, &extent, nullptr) == 1 &&
                        extent == static_cast<hsize_t>(shape[axis]) && H5DSis_scale(scale) > 0;
      if (space >= 0) H5Sclose(space);
      if (!fits) {  // another object of that name: the axis stays unnamed
        H5Dclose(scale);
        continue;
      }
    } else {
      const hsize_t extent = static_cast<hsize_t>(shape[axis]);
      const hid_t space = H5Screate_simple(1, &extent, nullptr);
      if (space < 0) continue;
      scale = H5Dcreate2(file, scale_path.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
      H5Sclose(space);
      if (scale < 0) continue;
      char marker[96];
      std::snprintf(marker, sizeof marker,
                    "This is a netCDF dimension but not a netCDF variable.%10lld",
                    static_cast<long long>(shape[axis]));
      H5DSset_scale(scale, marker);
    }
    H5DSattach_scale(dataset, scale, static_cast<unsigned>(axis));
    H5Dclose(scale);
  }
  H5Eclear2(H5E_DEFAULT);
}

}  // namespace mmc::detail
