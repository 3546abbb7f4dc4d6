// zarr attributes: v2's .zattrs (xarray keeps axis names there under _ARRAY_DIMENSIONS) and
// v3's zarr.json attributes and dimension_names, read and written.
#include "io/zarr/meta_parser.hpp"
#include "io/zarr/metadata.hpp"

namespace mmc::detail::zarr {
namespace {

constexpr const char* kDimensionsKey = "_ARRAY_DIMENSIONS";

// Axis names from a JSON list of strings or nulls with one entry per axis; empty otherwise.
std::vector<std::string> names_of(const json& list, std::size_t ndim) {
  if (!list.is_array() || list.size() != ndim || ndim == 0) return {};
  std::vector<std::string> names;
  bool any = false;
  for (const json& n : list) {
    if (n.is_string()) {
      names.push_back(n.get<std::string>());
      any = true;
    } else if (n.is_null()) {
      names.emplace_back();
    } else {
      return {};
    }
  }
  return any ? names : std::vector<std::string>{};
}

}  // namespace

ArrayAttributes read_attributes(const std::string& dir, std::size_t ndim) {
  ArrayAttributes out;
  if (exists(dir + "/.zarray")) {
    const std::string file = dir + "/.zattrs";
    if (!exists(file)) return out;
    json doc = parse_document(file);
    if (const auto it = doc.find(kDimensionsKey); it != doc.end()) {
      out.dims = names_of(*it, ndim);
      if (!out.dims.empty() || ndim == 0) doc.erase(it);
    }
    out.json = doc.dump();
    return out;
  }
  const json doc = parse_document(dir + "/zarr.json");
  if (const auto it = doc.find("attributes"); it != doc.end() && it->is_object()) {
    out.json = it->dump();
  }
  if (const auto it = doc.find("dimension_names"); it != doc.end()) out.dims = names_of(*it, ndim);
  return out;
}

std::string zattrs_text(const ZarrSpec& spec) {
  json doc;
  try {
    doc = json::parse(spec.attributes);
  } catch (const json::exception& e) {
    throw_error(ErrorCode::InvalidArgument,
                std::string("the attributes are not valid JSON (") + e.what() + ")");
  }
  if (!doc.is_object()) throw_error(ErrorCode::InvalidArgument, "the attributes are not an object");
  if (!spec.dimension_names.empty()) doc[kDimensionsKey] = spec.dimension_names;
  if (doc.empty()) return {};
  return doc.dump(4) + "\n";
}

}  // namespace mmc::detail::zarr
