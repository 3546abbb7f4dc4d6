// The objects of an HDF5 file, like `h5ls -r`: groups, datasets (shape, dtype, layout), links.
#include <cstring>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/hdf5/filters.hpp"
#include "io/hdf5/paths.hpp"
#include "io/hdf5/probe.hpp"
#include "io/hdf5/types.hpp"
#include "mmc/chunked.hpp"
#include "mmc/hdf5.hpp"

namespace mmc {
namespace {

using detail::Hdf5Handle;
using detail::Hdf5Kind;

std::string join(const std::string& group, const std::string& name) {
  return group == "/" ? "/" + name : group + "/" + name;
}

// Shape, dtype and layout of an open dataset; what cannot be read is said in `note`.
void describe_dataset(hid_t dataset, Hdf5Entry& e) {
  e.kind = "dataset";
  const std::string where = e.path;
  try {
    Hdf5Handle space = Hdf5Handle::adopt(H5Dget_space(dataset), Hdf5Kind::Dataspace,
                                         ErrorCode::Corrupt, where + ": dataspace");
    e.shape = detail::shape_of(space.get(), where);
  } catch (const Error&) {
    e.note = "null or unreadable dataspace";
  }
  Hdf5Handle type = Hdf5Handle::adopt(H5Dget_type(dataset), Hdf5Kind::Datatype, ErrorCode::Corrupt,
                                      where + ": datatype");
  try {
    e.dtype = detail::dtype_of(type.get(), where).numpy_descr();
  } catch (const Error&) {
    e.dtype = detail::describe_type(type.get());
    e.note += std::string(e.note.empty() ? "" : "; ") + "type not read by mmcompute";
  }
  Hdf5Handle dcpl = Hdf5Handle::adopt(H5Dget_create_plist(dataset), Hdf5Kind::PropertyList,
                                      ErrorCode::Corrupt, where + ": creation properties");
  switch (H5Pget_layout(dcpl.get())) {
    case H5D_CONTIGUOUS:
      e.layout = H5Pget_external_count(dcpl.get()) > 0 ? "external" : "contiguous";
      break;
    case H5D_CHUNKED: {
      hsize_t dims[H5S_MAX_RANK];
      const int rank = H5Pget_chunk(dcpl.get(), H5S_MAX_RANK, dims);
      Shape chunks;
      for (int i = 0; i < rank; ++i) chunks.push_back(static_cast<std::int64_t>(dims[i]));
      e.layout = "chunked " + format_shape(chunks, true);
      const int nf = H5Pget_nfilters(dcpl.get());
      for (int i = 0; i < nf; ++i) {
        unsigned flags = 0, config = 0;
        std::size_t n_cd = 0;
        char name[64] = {};
        const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n_cd,
                                               nullptr, sizeof name, name, &config);
        if (id >= 0) e.layout += (i == 0 ? " " : "+") + detail::filter_name(id, name);
      }
      break;
    }
    case H5D_COMPACT:
      e.layout = "compact";
      break;
    case H5D_VIRTUAL:
      e.layout = "virtual";
      break;
    default:
      e.layout = "unknown";
  }
}

class Lister {
 public:
  explicit Lister(std::string file) : file_(std::move(file)) {}

  std::vector<Hdf5Entry> entries;

  // Lists the members of group `path` (opened as `group_id`), recursing into hard-linked
  // groups once each.
  void members(hid_t group_id, const std::string& path, int depth) {
    if (depth > 64) return;  // deeper nesting than any real file: a damaged one
    std::vector<std::string> names;
    if (H5Literate(
            group_id, H5_INDEX_NAME, H5_ITER_INC, nullptr,
            [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
              static_cast<std::vector<std::string>*>(data)->push_back(name);
              return 0;
            },
            &names) < 0) {
      throw_error(ErrorCode::Corrupt,
                  file_ + ":" + path + ": cannot list the group: " + detail::hdf5_error_detail());
    }
    for (const std::string& name : names) member(group_id, name, join(path, name), depth);
  }

 private:
  void member(hid_t group_id, const std::string& name, const std::string& path, int depth) {
    Hdf5Entry e;
    e.path = path;
    H5L_info_t link;
    if (H5Lget_info(group_id, name.c_str(), &link, H5P_DEFAULT) < 0) {
      throw_error(ErrorCode::Corrupt,
                  file_ + ":" + path + ": cannot read the link: " + detail::hdf5_error_detail());
    }
    std::string target;
    if (link.type == H5L_TYPE_SOFT || link.type == H5L_TYPE_EXTERNAL) {
      std::vector<char> value(link.u.val_size + 1, '\0');
      if (H5Lget_val(group_id, name.c_str(), value.data(), link.u.val_size, H5P_DEFAULT) >= 0) {
        if (link.type == H5L_TYPE_SOFT) {
          target = value.data();
          e.note = "soft link to " + target;
        } else {
          const char* file = nullptr;
          const char* object = nullptr;
          unsigned flags = 0;
          if (H5Lunpack_elink_val(value.data(), link.u.val_size, &flags, &file, &object) >= 0) {
            e.note = std::string("external link to ") + file + ":" + object;
          }
        }
      }
      detail::hdf5_error_detail();
    }
    // Following the link (external links open their file, with libhdf5's rules).
    const hid_t object = H5Oopen(group_id, name.c_str(), H5P_DEFAULT);
    if (object < 0) {
      detail::hdf5_error_detail();
      e.kind = "dangling";
      entries.push_back(std::move(e));
      return;
    }
    Hdf5Handle guard;
    H5O_info_t info;
    if (H5Oget_info2(object, &info, H5O_INFO_BASIC) < 0) {
      H5Oclose(object);
      throw_error(ErrorCode::Corrupt,
                  file_ + ":" + path + ": cannot read the object: " + detail::hdf5_error_detail());
    }
    switch (info.type) {
      case H5O_TYPE_GROUP: {
        e.kind = "group";
        guard = Hdf5Handle::adopt(object, Hdf5Kind::Group, ErrorCode::Corrupt, path);
        entries.push_back(e);
        // Only hard links are walked: soft and external ones would list objects twice or
        // wander into other files.
        const bool walk =
            link.type == H5L_TYPE_HARD && seen_.insert({info.fileno, info.addr}).second;
        if (walk) members(guard.get(), path, depth + 1);
        return;
      }
      case H5O_TYPE_DATASET:
        guard = Hdf5Handle::adopt(object, Hdf5Kind::Dataset, ErrorCode::Corrupt, path);
        describe_dataset(guard.get(), e);
        break;
      case H5O_TYPE_NAMED_DATATYPE:
        guard = Hdf5Handle::adopt(object, Hdf5Kind::Datatype, ErrorCode::Corrupt, path);
        e.kind = "datatype";
        break;
      default:
        H5Oclose(object);
        e.kind = "unknown";
    }
    entries.push_back(std::move(e));
  }

  std::string file_;
  std::set<std::pair<unsigned long, haddr_t>> seen_;  // groups walked: (file, address)
};

}  // namespace

namespace {

std::vector<Hdf5Entry> list_unprobed(const std::string& file) {
  detail::hdf5_quiet();
  detail::check_file(file);
  Hdf5Handle file_id = detail::open_file(file, ErrorCode::Corrupt);
  Lister lister(file);
  Hdf5Entry root;
  root.path = "/";
  root.kind = "group";
  lister.entries.push_back(root);
  lister.members(file_id.get(), "/", 0);
  return std::move(lister.entries);
}

}  // namespace

std::vector<Hdf5Entry> list_hdf5(const std::string& file) {
  detail::probe_hdf5(file, [&] { list_unprobed(file); });
  return list_unprobed(file);
}

}  // namespace mmc
