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

// Python's json writes float('nan') and the infinities as bare NaN, Infinity and -Infinity,
// which JSON has not: xarray's .zattrs hold them (missing_value, valid_max). They are read as
// this marker (outside strings), then left out.
constexpr const char* kNonFinite = "\\u0001mmc-non-finite\\u0001";

std::string mark_non_finite(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (in_string) {
      out += ch;
      if (ch == '\\' && i + 1 < text.size()) {
        out += text[++i];
      } else if (ch == '"') {
        in_string = false;
      }
      continue;
    }
    if (ch == '"') in_string = true;
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const std::size_t n = std::char_traits<char>::length(token);
      if (text.compare(i, n, token) == 0) {
        out += '"';
        out += kNonFinite;
        out += '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += ch;
  }
  return out;
}

// Drops the marked values: members of the top object go, nested ones become null.
void drop_non_finite(json& doc) {
  const json marker = json::parse(std::string("\"") + kNonFinite + "\"");
  for (auto it = doc.begin(); it != doc.end();) {
    if (*it == marker) {
      it = doc.erase(it);
      continue;
    }
    if (it->is_structured()) {
      // Depth is bounded by the parser (64 levels).
      std::vector<json*> stack{&*it};
      while (!stack.empty()) {
        json* v = stack.back();
        stack.pop_back();
        for (json& child : *v) {
          if (child == marker) child = nullptr;
          if (child.is_structured()) stack.push_back(&child);
        }
      }
    }
    ++it;
  }
}

}  // namespace

ArrayAttributes read_attributes(const std::string& dir, std::size_t ndim) {
  ArrayAttributes out;
  if (exists(dir + "/.zarray")) {
    const std::string file = dir + "/.zattrs";
    if (!exists(file)) return out;
    json doc = parse_document(file, mark_non_finite);
    drop_non_finite(doc);
    if (const auto it = doc.find(kDimensionsKey); it != doc.end()) {
      out.dims = names_of(*it, ndim);
      if (!out.dims.empty() || ndim == 0) doc.erase(it);
    }
    out.json = doc.dump(-1, ' ', false, json::error_handler_t::replace);
    return out;
  }
  json doc = parse_document(dir + "/zarr.json", mark_non_finite);
  if (const auto it = doc.find("attributes"); it != doc.end() && it->is_object()) {
    drop_non_finite(*it);
    out.json = it->dump(-1, ' ', false, json::error_handler_t::replace);
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
