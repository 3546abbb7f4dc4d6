// zarr v3 metadata: zarr.json parsed strictly (every message names the file and the field, a
// codec's messages name the codec too) and written for a ZarrWriter's spec.
//
// What is read: node_type "array"; the data types bool, int8..int64, uint8..uint64, float16,
// float32 and float64; the regular chunk grid; the default and v2 chunk key encodings; fill values
// as numbers, booleans, "NaN"/"Infinity"/"-Infinity" and hex bits; the codecs transpose (any
// permutation), bytes (either endian), gzip, zstd, blosc, crc32c and sharding_indexed
// (its inner codecs the same set but sharding; its index codecs bytes with an optional crc32c;
// the index at either end). storage_transformers must be empty. dimension_names and attributes
// are checked for shape, not used.
#include <blosc.h>

#include <algorithm>
#include <cstdint>
#include <numeric>

#include "io/zarr/meta_parser.hpp"
#include "io/zarr/metadata.hpp"

namespace mmc::detail::zarr {
namespace {

constexpr const char* kNeeds =
    "a zarr v3 array's zarr.json needs zarr_format, node_type, shape, data_type, chunk_grid, "
    "chunk_key_encoding, fill_value and codecs";

// data_type names and the numpy kind and size they stand for.
struct TypeName {
  const char* name;
  char kind;
  int size;
};
constexpr TypeName kTypes[] = {{"bool", 'b', 1},    {"int8", 'i', 1},    {"uint8", 'u', 1},
                               {"int16", 'i', 2},   {"uint16", 'u', 2},  {"int32", 'i', 4},
                               {"uint32", 'u', 4},  {"int64", 'i', 8},   {"uint64", 'u', 8},
                               {"float16", 'f', 2}, {"float32", 'f', 4}, {"float64", 'f', 8}};

// One codec entry: its name and configuration (an empty object when absent). `where` names it
// in messages ("codec 2 'gzip'").
struct CodecEntry {
  std::string name;
  json config = json::object();
  std::string where;
};

// What a codec list decodes to.
struct Pipeline {
  std::vector<std::int64_t> perm;  // transposes composed: stored axis k is logical axis perm[k]
  bool big_endian = false;
  bool endian_given = false;
  std::vector<CodecSpec> codecs;  // bytes-to-bytes, in the order a writer applied them
  bool sharded = false;
  Shape inner_chunks;
  Sharding sharding;
  std::vector<CodecSpec> inner_codecs;
  std::vector<std::int64_t> inner_perm;
  bool inner_big_endian = false;
  bool inner_endian_given = false;
};

class V3Parser : public MetaParser {
 public:
  V3Parser(std::string file, const json& doc)
      : MetaParser(file, doc, kNeeds), file_(std::move(file)), doc_(doc) {}

  void check_format() const {
    const json& v = required("zarr_format");
    if (!v.is_number_integer() || v.get<std::int64_t>() != 3) {
      fail(ErrorCode::InvalidArgument, "zarr_format " + brief(v) + " is not 3");
    }
    const json& type = required("node_type");
    if (type == "group")
      raise_group(file_.substr(0, file_.size() - std::string("/zarr.json").size()));
    if (type != "array") bad_field("node_type", "\"array\" or \"group\"");
  }

  // The element type's kind and size (byte order comes from the bytes codec).
  TypeName data_type() const {
    const json& v = required("data_type");
    if (v.is_string()) {
      const std::string name = v.get<std::string>();
      for (const TypeName& t : kTypes) {
        if (name == t.name) return t;
      }
      fail(ErrorCode::InvalidArgument,
           "data_type '" + name +
               "' is not supported (bool, int8..int64, uint8..uint64, float16, float32 and float64 "
               "are)");
    }
    fail(ErrorCode::InvalidArgument,
         "data_type " + brief(v) + " is not supported (only the core numeric types are)");
  }

  Shape chunk_grid() const {
    const json& v = required("chunk_grid");
    if (!v.is_object() || v.value("name", json()) != "regular") {
      fail(ErrorCode::InvalidArgument,
           "chunk_grid " + brief(v) + " is not supported (only the \"regular\" grid is)");
    }
    const json config = v.value("configuration", json::object());
    if (!config.is_object()) bad_field("chunk_grid", "a configuration object");
    return MetaParser(file_ + ": chunk_grid", config, "the regular grid needs chunk_shape")
        .extents("chunk_shape", 1);
  }

  KeyEncoding key_encoding() const {
    const json& v = required("chunk_key_encoding");
    if (!v.is_object() || !v.contains("name") || !v["name"].is_string()) {
      bad_field("chunk_key_encoding", "an object with a string \"name\"");
    }
    const std::string name = v["name"].get<std::string>();
    KeyEncoding k;
    if (name == "default") {
      k.prefix = "c";
      k.separator = '/';
    } else if (name == "v2") {
      k.separator = '.';
    } else {
      fail(ErrorCode::InvalidArgument,
           "chunk_key_encoding '" + name + "' is not supported (\"default\" and \"v2\" are)");
    }
    const json config = v.value("configuration", json::object());
    if (config.is_object() && config.contains("separator")) {
      const json& sep = config["separator"];
      if (sep == "/") {
        k.separator = '/';
      } else if (sep == ".") {
        k.separator = '.';
      } else {
        fail(ErrorCode::Corrupt,
             "chunk_key_encoding separator " + brief(sep) + " is not \"/\" or \".\"");
      }
    }
    return k;
  }

  void check_extensions(std::size_t ndim) const {
    // Fields the spec does not define: allowed only as objects saying must_understand: false.
    static constexpr const char* kKnown[] = {
        "zarr_format",         "node_type",  "shape",  "data_type",  "chunk_grid",
        "chunk_key_encoding",  "fill_value", "codecs", "attributes", "dimension_names",
        "storage_transformers"};
    for (const auto& [key, value] : doc_.items()) {
      if (std::find(std::begin(kKnown), std::end(kKnown), key) != std::end(kKnown)) continue;
      if (value.is_object() && value.value("must_understand", json(true)) == false) continue;
      fail(ErrorCode::InvalidArgument, "field '" + key +
                                           "' is an extension this reader does not understand "
                                           "(it does not say must_understand: false)");
    }
    if (const json* t = optional("storage_transformers")) {
      if (!(t->is_array() && t->empty())) {
        fail(ErrorCode::InvalidArgument,
             "storage_transformers " + t->dump() + " are not supported (none are)");
      }
    }
    if (const json* names = optional("dimension_names")) {
      if (!names->is_null()) {
        if (!names->is_array() || names->size() != ndim ||
            !std::all_of(names->begin(), names->end(),
                         [](const json& n) { return n.is_null() || n.is_string(); })) {
          bad_field("dimension_names",
                    "null or a list of " + std::to_string(ndim) + " strings or nulls");
        }
      }
    }
    if (const json* attrs = optional("attributes")) {
      if (!attrs->is_object()) bad_field("attributes", "an object");
    }
  }

  // The codec list `list` (the array's, or a sharding codec's inner list: `inner`), checked for
  // what can be read: array-to-array codecs (transpose), exactly one array-to-bytes codec
  // (bytes, or sharding_indexed at the top level alone), then bytes-to-bytes codecs.
  void codecs(const json& list, std::size_t ndim, std::size_t itemsize, bool inner,
              Pipeline* out) const {
    const std::string where_list = inner ? "sharding_indexed's codecs" : "codecs";
    if (!list.is_array() || list.empty()) {
      fail(ErrorCode::Corrupt, where_list + " is " + brief(list) + ", expected a non-empty list");
    }
    std::vector<CodecEntry> entries;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const json& c = list[i];
      CodecEntry e;
      if (c.is_string()) {
        e.name = c.get<std::string>();
      } else if (c.is_object() && c.contains("name") && c["name"].is_string()) {
        e.name = c["name"].get<std::string>();
        if (c.contains("configuration")) e.config = c["configuration"];
        if (!e.config.is_object()) {
          fail(ErrorCode::Corrupt, where_list + " entry " + std::to_string(i) + " '" + e.name +
                                       "' has a configuration that is not an object");
        }
      } else {
        fail(ErrorCode::Corrupt, where_list + " entry " + std::to_string(i) + " is " + brief(c) +
                                     ", expected an object with a string \"name\"");
      }
      e.where = where_list + " entry " + std::to_string(i) + " '" + e.name + "'";
      entries.push_back(std::move(e));
    }
    std::size_t i = 0;
    std::vector<std::int64_t>& perm = inner ? out->inner_perm : out->perm;
    for (; i < entries.size() && entries[i].name == "transpose"; ++i) {
      perm = transpose(entries[i], ndim, perm);
    }
    if (i == entries.size()) {
      fail(ErrorCode::Corrupt, where_list +
                                   " has no array-to-bytes codec (bytes or "
                                   "sharding_indexed)");
    }
    const CodecEntry& a2b = entries[i++];
    if (a2b.name == "bytes") {
      bool& big = inner ? out->inner_big_endian : out->big_endian;
      bool& given = inner ? out->inner_endian_given : out->endian_given;
      endian(a2b, itemsize, &big, &given);
    } else if (a2b.name == "sharding_indexed") {
      if (inner) {
        fail(ErrorCode::InvalidArgument, a2b.where + ": sharding inside sharding is not supported");
      }
      if (!perm.empty()) {
        fail(ErrorCode::InvalidArgument,
             a2b.where + ": a transpose before sharding_indexed is not supported");
      }
      out->sharded = true;
      sharding(a2b, ndim, itemsize, out);
      if (i != entries.size()) {
        fail(ErrorCode::InvalidArgument,
             entries[i].where +
                 ": a codec after sharding_indexed would encode whole shards, "
                 "which is not supported");
      }
      return;
    } else {
      unknown(a2b);
    }
    std::vector<CodecSpec>& bytes_codecs = inner ? out->inner_codecs : out->codecs;
    int compressors = 0;
    for (; i < entries.size(); ++i) {
      const CodecSpec c = bytes_codec(entries[i]);
      if (c.codec != Codec::Crc32c && ++compressors > 1) {
        fail(ErrorCode::InvalidArgument,
             entries[i].where + ": a second compressor in one chunk is not supported");
      }
      bytes_codecs.push_back(c);
    }
  }

 private:
  [[noreturn]] void unknown(const CodecEntry& e) const {
    if (e.name == "transpose") {
      fail(ErrorCode::Corrupt, e.where + ": transpose must come before the bytes codec");
    }
    if (e.name == "bytes" || e.name == "sharding_indexed") {
      fail(ErrorCode::Corrupt, e.where + ": a second array-to-bytes codec");
    }
    fail(ErrorCode::InvalidArgument,
         e.where +
             " is not supported (transpose, bytes, gzip, zstd, blosc, crc32c and "
             "sharding_indexed are)");
  }

  // The permutation `before` followed by this transpose (empty: the identity).
  std::vector<std::int64_t> transpose(const CodecEntry& e, std::size_t ndim,
                                      const std::vector<std::int64_t>& before) const {
    const json order = e.config.value("order", json());
    std::vector<std::int64_t> perm;
    if (order == "C" || order == "F") {  // early drafts of the spec, still written by some
      if (order == "F")
        for (std::size_t a = ndim; a-- > 0;) perm.push_back(static_cast<std::int64_t>(a));
    } else if (order.is_array() && order.size() == ndim &&
               std::all_of(order.begin(), order.end(),
                           [](const json& x) { return x.is_number_integer(); })) {
      for (const json& x : order) perm.push_back(x.get<std::int64_t>());
      std::vector<std::int64_t> sorted = perm;
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t a = 0; a < ndim; ++a) {
        if (sorted[a] != static_cast<std::int64_t>(a)) {
          fail(ErrorCode::Corrupt, e.where + ": order " + brief(order) +
                                       " is not a permutation of the " + std::to_string(ndim) +
                                       " axes");
        }
      }
    } else {
      fail(ErrorCode::Corrupt, e.where + ": order is " + brief(order) + ", expected a list of " +
                                   std::to_string(ndim) + " axes");
    }
    if (perm.empty()) return before;
    // This codec's output axis k is its input's axis perm[k], which is logical axis before[..].
    std::vector<std::int64_t> composed(ndim);
    for (std::size_t k = 0; k < ndim; ++k) {
      const auto from = static_cast<std::size_t>(perm[k]);
      composed[k] = before.empty() ? perm[k] : before[from];
    }
    bool identity = true;
    for (std::size_t k = 0; k < ndim; ++k) {
      identity = identity && composed[k] == static_cast<std::int64_t>(k);
    }
    return identity ? std::vector<std::int64_t>{} : composed;
  }

  void endian(const CodecEntry& e, std::size_t itemsize, bool* big, bool* given) const {
    const auto it = e.config.find("endian");
    if (it == e.config.end() || it->is_null()) {
      if (itemsize > 1) {
        fail(ErrorCode::Corrupt,
             e.where + ": no endian given for a " + std::to_string(itemsize) + "-byte data type");
      }
      return;
    }
    if (*it == "little") {
      *big = false;
    } else if (*it == "big") {
      *big = true;
    } else {
      fail(ErrorCode::Corrupt,
           e.where + ": endian " + it->dump() + " is not \"little\" or \"big\"");
    }
    *given = true;
  }

  int int_config(const CodecEntry& e, const char* key, int fallback, int lo, int hi) const {
    const auto it = e.config.find(key);
    if (it == e.config.end() || it->is_null()) return fallback;
    if (!it->is_number_integer() || it->get<std::int64_t>() < lo || it->get<std::int64_t>() > hi) {
      fail(ErrorCode::Corrupt, e.where + ": " + key + " is " + it->dump() +
                                   ", expected an integer in " + std::to_string(lo) + ".." +
                                   std::to_string(hi));
    }
    return static_cast<int>(it->get<std::int64_t>());
  }

  CodecSpec bytes_codec(const CodecEntry& e) const {
    CodecSpec c;
    if (e.name == "gzip") {
      c.codec = Codec::Gzip;
      c.level = int_config(e, "level", -1, 0, 9);
    } else if (e.name == "zstd") {
      c.codec = Codec::Zstd;
      c.level = int_config(e, "level", 0, -131072, 22);
    } else if (e.name == "blosc") {
      c.codec = Codec::Blosc;
      const json cname = e.config.value("cname", json("lz4"));
      if (!cname.is_string()) {
        fail(ErrorCode::Corrupt, e.where + ": cname is " + brief(cname) + ", expected a string");
      }
      c.cname = cname.get<std::string>();
      if (blosc_compname_to_compcode(c.cname.c_str()) < 0) {
        fail(ErrorCode::InvalidArgument, e.where + ": blosc codec '" + c.cname +
                                             "' is not available in this libblosc (it has " +
                                             blosc_list_compressors() + ")");
      }
      c.level = int_config(e, "clevel", 5, 0, 9);
      const json shuffle = e.config.value("shuffle", json("noshuffle"));
      c.shuffle = shuffle == "shuffle" ? 1 : shuffle == "bitshuffle" ? 2 : 0;
    } else if (e.name == "crc32c") {
      c.codec = Codec::Crc32c;
    } else {
      unknown(e);
    }
    return c;
  }

  void sharding(const CodecEntry& e, std::size_t ndim, std::size_t itemsize, Pipeline* out) const {
    const MetaParser p(file_ + ": " + e.where, e.config,
                       "sharding_indexed needs chunk_shape, codecs and index_codecs");
    out->inner_chunks = p.extents("chunk_shape", 1);
    if (out->inner_chunks.size() != ndim) {
      p.fail(ErrorCode::Corrupt, "chunk_shape " + format_shape(out->inner_chunks) + " has " +
                                     std::to_string(out->inner_chunks.size()) +
                                     " axes, the array " + std::to_string(ndim));
    }
    codecs(p.required("codecs"), ndim, itemsize, true, out);
    // The index: a (chunks per shard..., 2) array of u64 through bytes and an optional crc32c.
    const json& index = p.required("index_codecs");
    Pipeline ix;
    codecs(index, ndim + 1, 8, true, &ix);
    if (!ix.inner_perm.empty() || ix.inner_codecs.size() > 1 ||
        (ix.inner_codecs.size() == 1 && ix.inner_codecs[0].codec != Codec::Crc32c)) {
      p.fail(ErrorCode::InvalidArgument, "index_codecs " + brief(index) +
                                             " are not supported (bytes, then optionally "
                                             "crc32c, are)");
    }
    out->sharding.index_big_endian = ix.inner_big_endian;
    out->sharding.index_crc32c = ix.inner_codecs.size() == 1;
    const json location = e.config.value("index_location", json("end"));
    if (location == "start") {
      out->sharding.index_at_start = true;
    } else if (location != "end") {
      p.fail(ErrorCode::Corrupt,
             "index_location " + brief(location) + " is not \"start\" or \"end\"");
    }
  }

  std::string file_;
  const json& doc_;
};

std::string type_name(DType dtype) {
  for (const TypeName& t : kTypes) {
    if (t.kind == dtype.numpy_descr()[1] && static_cast<std::size_t>(t.size) == dtype.itemsize()) {
      return t.name;
    }
  }
  throw_error(ErrorCode::InvalidArgument, "dtype " + dtype.numpy_descr() + " has no zarr v3 name");
}

json bytes_codec_json(DType dtype) {
  json c = {{"name", "bytes"}};
  if (dtype.itemsize() > 1) {
    c["configuration"] = {{"endian", dtype.byte_order() == ByteOrder::Big ? "big" : "little"}};
  }
  return c;
}

}  // namespace

Metadata read_metadata_v3(const std::string& file) {
  const json doc = parse_document(file);
  const V3Parser p(file, doc);
  try {
    p.check_format();
    Metadata m;
    m.zarr_format = 3;
    const TypeName type = p.data_type();
    Shape shape = p.extents("shape", 0);
    const Shape grid_chunks = p.chunk_grid();
    m.keys = p.key_encoding();
    p.check_extensions(shape.size());
    Pipeline pipe;
    p.codecs(p.required("codecs"), shape.size(), static_cast<std::size_t>(type.size), false, &pipe);
    bool big = pipe.big_endian;
    std::vector<std::int64_t> perm = pipe.perm;
    if (pipe.sharded) {
      if (grid_chunks.size() != shape.size()) {
        p.fail(ErrorCode::Corrupt, "the shard shape " + format_shape(grid_chunks) + " has " +
                                       std::to_string(grid_chunks.size()) + " axes, the shape " +
                                       format_shape(shape) + " " + std::to_string(shape.size()));
      }
      for (std::size_t a = 0; a < shape.size(); ++a) {
        if (grid_chunks[a] % pipe.inner_chunks[a] != 0) {
          p.fail(ErrorCode::Corrupt, "the inner chunk shape " + format_shape(pipe.inner_chunks) +
                                         " does not divide the shard shape " +
                                         format_shape(grid_chunks));
        }
      }
      m.sharding = pipe.sharding;
      m.sharding.enabled = true;
      m.sharding.shape = grid_chunks;
      m.chunks = pipe.inner_chunks;
      m.codecs = pipe.inner_codecs;
      big = pipe.inner_big_endian;
      perm = pipe.inner_perm;
    } else {
      m.chunks = grid_chunks;
      m.codecs = pipe.codecs;
    }
    std::string descr = type.size == 1 ? "|" : (big ? ">" : "<");
    descr += type.kind;
    descr += std::to_string(type.size);
    const DType dtype = DType::from_numpy_descr(descr);
    m.fill = p.fill_value(dtype);
    // The axes reversed are F order, which the chunk grid reads as it is; any other order is
    // undone chunk by chunk (Metadata::permutation).
    bool reversed = !perm.empty();
    for (std::size_t k = 0; k < perm.size(); ++k) {
      reversed = reversed && perm[k] == static_cast<std::int64_t>(perm.size() - 1 - k);
    }
    const Order order = reversed ? Order::F : Order::C;
    if (!perm.empty() && !reversed) m.permutation = perm;
    m.meta = checked_meta(p, dtype, std::move(shape), m.chunks, order, "chunk_shape");
    if (pipe.sharded) {
      // The shard's index is read whole: its size must be sane.
      std::uint64_t per_shard = 1;
      for (std::size_t a = 0; a < m.chunks.size(); ++a) {
        const auto k = static_cast<std::uint64_t>(m.sharding.shape[a] / m.chunks[a]);
        per_shard = checked_mul(per_shard, k, "chunks per shard");
      }
      if (per_shard > kMaxChunksPerShard) {
        p.fail(ErrorCode::Corrupt, "a shard of " + format_shape(m.sharding.shape) + " holds " +
                                       std::to_string(per_shard) +
                                       " chunks; over 2^20 is not a real store");
      }
    }
    return m;
  } catch (const json::exception& e) {
    throw_error(ErrorCode::Corrupt, file + ": malformed metadata (" + e.what() + ")");
  }
}

std::string metadata_text_v3(const ZarrSpec& spec) {
  json chunk_codecs = json::array();
  const std::size_t ndim = spec.shape.size();
  if (spec.order == Order::F && ndim > 1) {
    std::vector<std::int64_t> perm;
    for (std::size_t a = ndim; a-- > 0;) perm.push_back(static_cast<std::int64_t>(a));
    chunk_codecs.push_back({{"name", "transpose"}, {"configuration", {{"order", perm}}}});
  }
  chunk_codecs.push_back(bytes_codec_json(spec.dtype));
  for (const CodecSpec& c : writer_codecs(spec)) {
    switch (c.codec) {
      case Codec::Gzip:
        chunk_codecs.push_back({{"name", "gzip"}, {"configuration", {{"level", c.level}}}});
        break;
      case Codec::Zstd:
        chunk_codecs.push_back(
            {{"name", "zstd"}, {"configuration", {{"level", c.level}, {"checksum", false}}}});
        break;
      case Codec::Blosc: {
        const char* shuffle = c.shuffle == 1   ? "shuffle"
                              : c.shuffle == 2 ? "bitshuffle"
                                               : "noshuffle";
        chunk_codecs.push_back({{"name", "blosc"},
                                {"configuration",
                                 {{"cname", c.cname},
                                  {"clevel", c.level},
                                  {"shuffle", shuffle},
                                  {"typesize", spec.dtype.itemsize()},
                                  {"blocksize", 0}}}});
        break;
      }
      default:
        break;
    }
  }
  json codecs = chunk_codecs;
  if (!spec.shards.empty()) {
    codecs = json::array();
    codecs.push_back({{"name", "sharding_indexed"},
                      {"configuration",
                       {{"chunk_shape", spec.chunks},
                        {"codecs", chunk_codecs},
                        {"index_codecs", json::array({{{"name", "bytes"},
                                                       {"configuration", {{"endian", "little"}}}},
                                                      {{"name", "crc32c"}}})},
                        {"index_location", "end"}}}});
  }
  json doc;
  doc["zarr_format"] = 3;
  doc["node_type"] = "array";
  doc["shape"] = spec.shape;
  doc["data_type"] = type_name(spec.dtype);
  doc["chunk_grid"] = {
      {"name", "regular"},
      {"configuration", {{"chunk_shape", spec.shards.empty() ? spec.chunks : spec.shards}}}};
  doc["chunk_key_encoding"] = {{"name", "default"}, {"configuration", {{"separator", "/"}}}};
  doc["fill_value"] = fill_json(spec.dtype, spec.fill);
  doc["codecs"] = codecs;
  doc["attributes"] = json::parse(spec.attributes);
  if (!spec.dimension_names.empty()) {
    json names = json::array();
    for (const std::string& n : spec.dimension_names) {
      names.push_back(n.empty() ? json(nullptr) : json(n));
    }
    doc["dimension_names"] = names;
  }
  return doc.dump(4) + "\n";
}

}  // namespace mmc::detail::zarr
