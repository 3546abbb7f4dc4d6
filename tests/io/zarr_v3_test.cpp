// Tests of zarr v3 stores: sharded and unsharded stores that an independent writer
// (tests/fixtures/make_sharded.py, numpy and the spec only) made, read back against its bytes;
// damaged shards refused; ZarrWriter's v3 output read back; hostile zarr.json. zarrita's
// cross-check (the npm package reading what we write, writing what we read) is
// tests/zarr_v3/check_zarrita.py.
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/zarr.hpp"
#include "support/test_support.hpp"
#include "zarr_test_helpers.hpp"

// Its own namespace: the binary is one translation unit with zarr_test.cpp (unity build).
namespace mmc::zarr_v3_test {
namespace {

using zarr_testing::read_all;
using zarr_testing::replace_once;

using test::expect_error;
using test::TempDir;

// The array's bytes in little endian (the fixtures' .bin files are little endian).
std::vector<std::byte> little_endian(const ChunkedArray& a) {
  std::vector<std::byte> bytes = read_all(a);
  const std::size_t k = a.meta().dtype.itemsize();
  if (a.meta().dtype.byte_order() == ByteOrder::Big) {
    for (std::size_t at = 0; at + k <= bytes.size(); at += k) {
      std::reverse(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                   bytes.begin() + static_cast<std::ptrdiff_t>(at + k));
    }
  }
  return bytes;
}

std::vector<std::byte> as_bytes(const std::string& s) {
  std::vector<std::byte> out(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return out;
}

// ---- stores an independent writer made ----

TEST(ZarrV3Fixtures, ShardedStoresReadAsTheirWriterMeantEveryBox) {
  const test::FixtureDir& dir = test::shared_fixture("make_sharded.py");
  std::vector<std::string> names;
  for (const std::string& entry : test::list_dir(dir.path())) {
    if (entry.size() > 5 && entry.substr(entry.size() - 5) == ".json") {
      names.push_back(entry.substr(0, entry.size() - 5));
    }
  }
  ASSERT_GE(names.size(), 12u);
  std::mt19937 rng(7);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    const auto c = nlohmann::json::parse(test::read_file(dir.file(name + ".json")));
    const auto a = open_zarr(dir.file(name + ".zarr"));
    EXPECT_EQ(a->meta().shape, c["shape"].get<Shape>());
    EXPECT_EQ(a->meta().dtype.native(), DType::from_numpy_descr(c["dtype"].get<std::string>()));
    const std::vector<std::byte> want = as_bytes(test::read_file(dir.file(name + ".bin")));
    EXPECT_TRUE(little_endian(*a) == want);
    // Random boxes: each chunk read alone, through the index, against the whole.
    const Shape& shape = a->meta().shape;
    const std::size_t k = a->meta().dtype.itemsize();
    for (int trial = 0; trial < 6; ++trial) {
      Box box{Shape(shape.size()), Shape(shape.size())};
      for (std::size_t i = 0; i < shape.size(); ++i) {
        box.start[i] = std::uniform_int_distribution<std::int64_t>(0, shape[i] - 1)(rng);
        box.count[i] = std::uniform_int_distribution<std::int64_t>(1, shape[i] - box.start[i])(rng);
      }
      std::vector<std::byte> got(static_cast<std::size_t>(box.size()) * k);
      a->read_box(box, got.data());
      // The same box cut out of the whole array.
      std::vector<std::byte> whole = read_all(*a);
      std::vector<std::byte> cut;
      Shape idx(shape.size(), 0);
      for (std::int64_t e = 0; e < box.size(); ++e) {
        std::int64_t rest = e;
        std::int64_t flat = 0;
        for (std::size_t i = shape.size(); i-- > 0;) {
          idx[i] = box.start[i] + rest % box.count[i];
          rest /= box.count[i];
        }
        for (std::size_t i = 0; i < shape.size(); ++i) flat = flat * shape[i] + idx[i];
        cut.insert(cut.end(), whole.begin() + flat * static_cast<std::int64_t>(k),
                   whole.begin() + (flat + 1) * static_cast<std::int64_t>(k));
      }
      EXPECT_TRUE(got == cut) << "box " << format_shape(box.start) << " + "
                              << format_shape(box.count);
    }
  }
}

TEST(ZarrV3Fixtures, DamagedShardsFailAsCorruptNamingTheFile) {
  const test::FixtureDir& dir = test::shared_fixture("make_sharded.py");
  int cases = 0;
  for (const std::string& entry : test::list_dir(dir.path() + "/bad")) {
    if (entry.size() < 5 || entry.substr(entry.size() - 4) != ".txt") continue;
    const std::string name = entry.substr(0, entry.size() - 4);
    SCOPED_TRACE(name);
    ++cases;
    // The words the message may use, '|' between them: one must appear.
    std::string words = test::read_file(dir.file("bad/" + entry));
    while (!words.empty() && (words.back() == '\n' || words.back() == ' ')) words.pop_back();
    try {
      const auto a = open_zarr(dir.file("bad/" + name + ".zarr"));
      read_all(*a);
      ADD_FAILURE() << "no error thrown";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::Corrupt) << e.what();
      const std::string message = e.what();
      EXPECT_NE(message.find(name + ".zarr"), std::string::npos) << message;
      bool named = false;
      std::size_t start = 0;
      for (;;) {
        const std::size_t bar = words.find('|', start);
        named = named || message.find(words.substr(start, bar - start)) != std::string::npos;
        if (bar == std::string::npos) break;
        start = bar + 1;
      }
      EXPECT_TRUE(named) << message << " (expected one of: " << words << ")";
    }
  }
  EXPECT_GE(cases, 6);
}

// ---- ZarrWriter's v3 stores, read back ----

struct WriteCase {
  const char* name;
  DType dtype;
  Shape shape;
  Shape chunks;
  Shape shards;
  Compressor compressor;
  Order order;
};

TEST(ZarrV3Writer, StoresReadBackBitForBit) {
  const WriteCase cases[] = {
      {"plain_u8", DType(TypeId::U8), {7, 9, 5}, {2, 4, 5}, {}, Compressor::None, Order::C},
      {"gzip_i16_big",
       DType(TypeId::I16, ByteOrder::Big),
       {6, 11},
       {4, 4},
       {},
       Compressor::Zlib,
       Order::C},
      {"sharded_f32",
       DType(TypeId::F32),
       {5, 13, 9},
       {1, 4, 4},
       {2, 8, 8},
       Compressor::Zstd,
       Order::C},
      {"sharded_f", DType(TypeId::U16), {9, 10}, {3, 2}, {6, 4}, Compressor::Blosc, Order::F},
      {"sharded_plain_f64_big",
       DType(TypeId::F64, ByteOrder::Big),
       {4, 5},
       {2, 2},
       {4, 4},
       Compressor::None,
       Order::C},
      {"zero_d", DType(TypeId::I32), {}, {}, {}, Compressor::None, Order::C},
      {"sharded_f16_big_blosc",
       DType(TypeId::F16, ByteOrder::Big),
       {9, 14},
       {2, 4},
       {4, 8},
       Compressor::Blosc,
       Order::C},
      {"f16_zstd_f", DType(TypeId::F16), {7, 6}, {3, 4}, {}, Compressor::Zstd, Order::F},
  };
  for (const WriteCase& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    ZarrSpec spec;
    spec.dtype = c.dtype;
    spec.shape = c.shape;
    spec.chunks = c.chunks;
    spec.shards = c.shards;
    spec.compressor = c.compressor;
    spec.order = c.order;
    spec.zarr_format = 3;
    // The array in C order (what read_box gives back), whatever order its chunks are in.
    const ArrayMeta meta = ArrayMeta::contiguous(c.dtype, c.shape, Order::C);
    // Random odd bytes: never the fill value (zero).
    std::vector<std::byte> data(meta.nbytes());
    std::mt19937 rng(11);
    for (std::byte& b : data) b = static_cast<std::byte>(rng() | 1);
    const std::string path = dir.path() + "/" + c.name + ".zarr";
    {
      ZarrWriter w(path, spec);
      const Shape grid = c.shards.empty() ? w.grid() : w.shard_grid();
      const Shape unit = c.shards.empty() ? c.chunks : c.shards;
      const std::size_t k = c.dtype.itemsize();
      std::int64_t cells = 1;
      for (std::int64_t g : grid) cells *= g;
      for (std::int64_t cell = 0; cell < cells; ++cell) {
        Shape coord(grid.size());
        std::int64_t rest = cell;
        for (std::size_t i = grid.size(); i-- > 0;) {
          coord[i] = rest % grid[i];
          rest /= grid[i];
        }
        // The unit's elements, in spec.order, from the array (zero past its edge).
        std::int64_t n = 1;
        for (std::int64_t u : unit) n *= u;
        std::vector<std::byte> buf(static_cast<std::size_t>(n) * k, std::byte{0});
        Shape at(unit.size());
        for (std::int64_t e = 0; e < n; ++e) {
          std::int64_t r = e;
          const std::size_t nd = unit.size();
          for (std::size_t j = 0; j < nd; ++j) {  // e in spec.order over the unit
            const std::size_t axis = c.order == Order::C ? nd - 1 - j : j;
            at[axis] = r % unit[axis];
            r /= unit[axis];
          }
          std::int64_t offset = 0;
          bool inside = true;
          for (std::size_t i = 0; i < nd; ++i) {
            const std::int64_t x = coord[i] * unit[i] + at[i];
            inside = inside && x < c.shape[i];
            offset += x * meta.strides[i];
          }
          if (inside) {
            std::memcpy(buf.data() + e * static_cast<std::int64_t>(k), data.data() + offset, k);
          }
        }
        if (c.shards.empty()) {
          w.write_chunk(coord, buf.data());
        } else {
          w.write_shard(coord, buf.data());
        }
      }
      w.commit();
    }
    ASSERT_TRUE(test::file_exists(path + "/zarr.json"));
    const auto a = open_zarr(path);
    EXPECT_EQ(a->meta().dtype, c.dtype);
    EXPECT_EQ(a->meta().shape, c.shape);
    EXPECT_EQ(a->meta().order, c.order);
    EXPECT_TRUE(read_all(*a) == data);
  }
}

TEST(ZarrV3Writer, RefusesShardsThatAreNotWholeChunksOrNotV3) {
  TempDir dir;
  ZarrSpec spec;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {8, 8};
  spec.chunks = {4, 4};
  spec.shards = {6, 8};
  spec.zarr_format = 3;
  expect_error([&] { ZarrWriter(dir.path() + "/a.zarr", spec); }, ErrorCode::InvalidArgument,
               {"shards 6,8", "multiple of the chunks"});
  spec.shards = {8, 8};
  spec.zarr_format = 2;
  expect_error([&] { ZarrWriter(dir.path() + "/a.zarr", spec); }, ErrorCode::InvalidArgument,
               {"zarr format 3"});
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
}

// ---- hostile zarr.json ----

constexpr const char* kGoodV3 = R"({
  "zarr_format": 3, "node_type": "array", "shape": [4, 6], "data_type": "float64",
  "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 3]}},
  "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
  "fill_value": "NaN",
  "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
  "attributes": {"units": "m"}, "dimension_names": ["y", null]
})";

std::string make_v3(const TempDir& dir, const std::string& meta) {
  const std::string path = dir.path() + "/a.zarr";
  ::mkdir(path.c_str(), 0755);
  test::write_file(path + "/zarr.json", meta);
  return path;
}

void expect_v3_error(const std::string& meta, ErrorCode code,
                     std::initializer_list<std::string> parts) {
  TempDir dir;
  const std::string path = make_v3(dir, meta);
  SCOPED_TRACE(meta);
  expect_error([&] { read_all(*open_zarr(path)); }, code, parts);
}

TEST(ZarrV3Meta, ReadsTheMinimalArrayAsItsFillValue) {
  TempDir dir;
  const auto a = open_zarr(make_v3(dir, kGoodV3));
  EXPECT_EQ(a->meta().shape, (Shape{4, 6}));
  EXPECT_EQ(a->chunk_shape(), (Shape{2, 3}));
  std::vector<std::byte> all = read_all(*a);
  double first;
  std::memcpy(&first, all.data(), sizeof first);
  EXPECT_TRUE(std::isnan(first));
  EXPECT_EQ(a->storage().chunks_stored, 0);
}

TEST(ZarrV3Meta, HexFillValuesAndBigEndianBytes) {
  TempDir dir;
  std::string meta = replace_once(kGoodV3, "\"NaN\"", "\"0x3ff0000000000000\"");
  meta = replace_once(meta, "\"little\"", "\"big\"");
  const auto a = open_zarr(make_v3(dir, meta));
  EXPECT_EQ(a->meta().dtype, DType(TypeId::F64, ByteOrder::Big));
  const std::vector<std::byte> fill = a->fill_value();
  EXPECT_EQ(fill.front(), std::byte{0x3f});  // 1.0, stored big endian
}

TEST(ZarrV3Meta, ReadsFloat16WithEveryFormOfFillValueInBothByteOrders) {
  const std::string f16 = replace_once(kGoodV3, "\"float64\"", "\"float16\"");
  const auto fill_of = [&](const std::string& fill, const std::string& endian) {
    TempDir dir;
    std::string meta = replace_once(f16, "\"NaN\"", fill);
    meta = replace_once(meta, "\"little\"", "\"" + endian + "\"");
    const auto a = open_zarr(make_v3(dir, meta));
    EXPECT_EQ(a->meta().dtype,
              DType(TypeId::F16, endian == "big" ? ByteOrder::Big : ByteOrder::Little));
    const std::vector<std::byte> all = read_all(*a);  // no chunk stored: all fill
    EXPECT_EQ(std::vector<std::byte>(all.end() - 2, all.end()), a->fill_value());
    return a->fill_value();
  };
  using B = std::vector<std::byte>;
  EXPECT_EQ(fill_of("\"NaN\"", "little"), (B{std::byte{0x00}, std::byte{0x7e}}));
  EXPECT_EQ(fill_of("\"NaN\"", "big"), (B{std::byte{0x7e}, std::byte{0x00}}));
  EXPECT_EQ(fill_of("\"-Infinity\"", "big"), (B{std::byte{0xfc}, std::byte{0x00}}));
  EXPECT_EQ(fill_of("\"Infinity\"", "little"), (B{std::byte{0x00}, std::byte{0x7c}}));
  // Hex: the element's bits, most significant first, 4 digits (a signalling NaN kept as is).
  EXPECT_EQ(fill_of("\"0x7c01\"", "little"), (B{std::byte{0x01}, std::byte{0x7c}}));
  EXPECT_EQ(fill_of("\"0xABCD\"", "big"), (B{std::byte{0xab}, std::byte{0xcd}}));
  EXPECT_EQ(fill_of("-2.5", "little"), (B{std::byte{0x00}, std::byte{0xc1}}));
  EXPECT_EQ(fill_of("0.1", "big"), (B{std::byte{0x2e}, std::byte{0x66}}));
  expect_v3_error(replace_once(f16, "\"NaN\"", "\"0x7fc00000\""), ErrorCode::Corrupt,
                  {"fill_value", "0x7e00"});
  expect_v3_error(replace_once(f16, "\"NaN\"", "70000"), ErrorCode::Corrupt,
                  {"fill_value", "float16's range"});
}

TEST(ZarrV3Meta, RefusesWhatItCannotReadNamingIt) {
  expect_v3_error(replace_once(kGoodV3, "\"float64\"", "\"bfloat16\""), ErrorCode::InvalidArgument,
                  {"zarr.json", "data_type 'bfloat16'"});
  expect_v3_error(replace_once(kGoodV3, "\"float64\"", "\"complex64\""), ErrorCode::InvalidArgument,
                  {"data_type 'complex64'"});
  expect_v3_error(replace_once(kGoodV3, "{\"name\": \"bytes\"",
                               "{\"name\": \"transpose\", \"configuration\": {\"order\": [1, 0, "
                               "2]}}, {\"name\": \"bytes\""),
                  ErrorCode::Corrupt, {"transpose", "[1,0,2]"});
  expect_v3_error(replace_once(kGoodV3, "{\"name\": \"bytes\"",
                               "{\"name\": \"transpose\", \"configuration\": {\"order\": [1, "
                               "1]}}, {\"name\": \"bytes\""),
                  ErrorCode::Corrupt, {"not a permutation"});
  expect_v3_error(replace_once(kGoodV3, "\"endian\": \"little\"}}",
                               "\"endian\": \"little\"}}, {\"name\": \"lz4hc\"}"),
                  ErrorCode::InvalidArgument, {"'lz4hc'", "not supported"});
  expect_v3_error(replace_once(kGoodV3, ", \"configuration\": {\"endian\": \"little\"}", ""),
                  ErrorCode::Corrupt, {"no endian"});
  expect_v3_error(replace_once(kGoodV3, "\"default\"", "\"tiles\""), ErrorCode::InvalidArgument,
                  {"chunk_key_encoding 'tiles'"});
  expect_v3_error(replace_once(kGoodV3, "\"regular\"", "\"rectilinear\""),
                  ErrorCode::InvalidArgument, {"chunk_grid"});
  expect_v3_error(
      replace_once(kGoodV3, "\"attributes\"", "\"storage_transformers\": [{}], \"attributes\""),
      ErrorCode::InvalidArgument, {"storage_transformers"});
  expect_v3_error(replace_once(kGoodV3, "\"attributes\"", "\"cool_ext\": 1, \"attributes\""),
                  ErrorCode::InvalidArgument, {"'cool_ext'", "must_understand"});
  expect_v3_error(
      replace_once(replace_once(kGoodV3, "\"float64\"", "\"float32\""), "\"NaN\"", "1e300"),
      ErrorCode::Corrupt, {"fill_value", "range"});
  // Nesting is refused before any value is copied or printed (a stack overflow otherwise).
  expect_v3_error(
      replace_once(kGoodV3, "\"zarr_format\": 3",
                   "\"zarr_format\": " + std::string(100000, '[') + std::string(100000, ']')),
      ErrorCode::Corrupt, {"nested more than 64"});
  expect_v3_error(replace_once(kGoodV3, "[\"y\", null]", "[\"y\"]"), ErrorCode::Corrupt,
                  {"dimension_names"});
  expect_v3_error(replace_once(kGoodV3, "\"zarr_format\": 3", "\"zarr_format\": 4"),
                  ErrorCode::InvalidArgument, {"zarr_format 4"});
  expect_v3_error(replace_once(kGoodV3, "\"fill_value\": \"NaN\",", ""), ErrorCode::Corrupt,
                  {"missing field 'fill_value'"});
  expect_v3_error(replace_once(kGoodV3, "[2, 3]", "[2, 4611686018427387904]"),
                  ErrorCode::InvalidArgument, {"zarr.json"});
}

TEST(ZarrV3Meta, RefusesShardingItCannotReadNamingIt) {
  const std::string sharded =
      replace_once(kGoodV3, "[{\"name\": \"bytes\", \"configuration\": {\"endian\": \"little\"}}]",
                   R"([{"name": "sharding_indexed", "configuration": {"chunk_shape": [1, 3],
          "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
          "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                           {"name": "crc32c"}]}}])");
  {
    TempDir dir;
    const auto a = open_zarr(make_v3(dir, sharded));  // sound: every chunk reads as the fill
    EXPECT_EQ(a->chunk_shape(), (Shape{1, 3}));
    EXPECT_EQ(a->storage().shards, (Shape{2, 3}));
  }
  expect_v3_error(replace_once(sharded, "\"chunk_shape\": [1, 3]", "\"chunk_shape\": [2, 2]"),
                  ErrorCode::Corrupt, {"does not divide the shard shape"});
  expect_v3_error(replace_once(sharded, "{\"name\": \"crc32c\"}]}}]",
                               "{\"name\": \"crc32c\"}]}}, {\"name\": \"gzip\"}]"),
                  ErrorCode::InvalidArgument, {"after sharding_indexed"});
  expect_v3_error(replace_once(sharded, "\"codecs\": [{\"name\": \"bytes\"",
                               "\"codecs\": [{\"name\": \"sharding_indexed\", \"configuration\": "
                               "{}}, {\"name\": \"bytes\""),
                  ErrorCode::InvalidArgument, {"sharding inside sharding"});
  expect_v3_error(replace_once(sharded, "{\"name\": \"crc32c\"}]", "{\"name\": \"gzip\"}]"),
                  ErrorCode::InvalidArgument, {"index_codecs"});
  expect_v3_error(replace_once(sharded, "\"chunk_shape\": [1, 3],",
                               "\"chunk_shape\": [1, 3], \"index_location\": \"middle\","),
                  ErrorCode::Corrupt, {"index_location"});
  // 2^27 chunks in one shard: an index of 2 GiB is not read.
  std::string huge = replace_once(sharded, "\"shape\": [4, 6]", "\"shape\": [134217728, 6]");
  huge = replace_once(huge, "\"chunk_shape\": [2, 3]}", "\"chunk_shape\": [134217728, 3]}");
  expect_v3_error(huge, ErrorCode::Corrupt, {"2^20"});
}

TEST(ZarrV3Meta, AnyTransposeIsUndoneChunkByChunk) {
  // a = arange(24).reshape(2, 3, 4) as u1, stored through transpose [1, 2, 0]: the chunk file
  // holds np.transpose(a, [1, 2, 0]) (shape 3, 4, 2) in C order.
  TempDir dir;
  const std::string path = make_v3(dir, R"({
    "zarr_format": 3, "node_type": "array", "shape": [2, 3, 4], "data_type": "uint8",
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 3, 4]}},
    "chunk_key_encoding": {"name": "v2", "configuration": {"separator": "."}},
    "fill_value": 0,
    "codecs": [{"name": "transpose", "configuration": {"order": [1, 2, 0]}}, {"name": "bytes"}]
  })");
  std::string stored;
  for (int j0 = 0; j0 < 3; ++j0) {
    for (int j1 = 0; j1 < 4; ++j1) {
      for (int j2 = 0; j2 < 2; ++j2) stored += static_cast<char>(j2 * 12 + j0 * 4 + j1);
    }
  }
  test::write_file(path + "/0.0.0", stored);
  const auto a = open_zarr(path);
  EXPECT_EQ(a->meta().order, Order::C);
  EXPECT_EQ(a->chunk_in_place({0, 0, 0}), nullptr);
  const std::vector<std::byte> got = read_all(*a);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(static_cast<int>(got[i]), static_cast<int>(i)) << "element " << i;
  }
}

TEST(ZarrV3Meta, ExtensionsThatNeedNotBeUnderstoodAreRead) {
  TempDir dir;
  const auto a = open_zarr(make_v3(dir, replace_once(kGoodV3, "\"attributes\"",
                                                     "\"ext\": {\"must_understand\": false}, "
                                                     "\"attributes\"")));
  EXPECT_EQ(a->meta().shape, (Shape{4, 6}));
}

TEST(ZarrV3Meta, ABrokenLayoutOrAFifoIsAnErrorNotFillValues) {
  TempDir dir;
  const std::string path = make_v3(dir, kGoodV3);
  test::write_file(path + "/c", "a file where the folder c/ should be");
  expect_error([&] { read_all(*open_zarr(path)); }, ErrorCode::Corrupt, {"folder", "damaged"});
  ::unlink((path + "/c").c_str());
  // A FIFO as a chunk: refused at once, never waited on.
  ::mkdir((path + "/c").c_str(), 0755);
  ::mkdir((path + "/c/0").c_str(), 0755);
  ASSERT_EQ(::mkfifo((path + "/c/0/0").c_str(), 0644), 0);
  expect_error([&] { read_all(*open_zarr(path)); }, ErrorCode::Corrupt, {"c/0/0"});
  // And as the metadata file.
  const std::string fifo_store = dir.path() + "/fifo.zarr";
  ::mkdir(fifo_store.c_str(), 0755);
  ASSERT_EQ(::mkfifo((fifo_store + "/zarr.json").c_str(), 0644), 0);
  expect_error([&] { open_zarr(fifo_store); }, ErrorCode::Corrupt, {"zarr.json", "regular file"});
}

TEST(ZarrV3Meta, AGroupListsItsMembers) {
  TempDir dir;
  const std::string group = dir.path() + "/g.zarr";
  ::mkdir(group.c_str(), 0755);
  test::write_file(group + "/zarr.json", R"({"zarr_format": 3, "node_type": "group"})");
  ::mkdir((group + "/images").c_str(), 0755);
  test::write_file(group + "/images/zarr.json", kGoodV3);
  ::mkdir((group + "/labels").c_str(), 0755);
  test::write_file(group + "/labels/zarr.json", kGoodV3);
  expect_error([&] { open_zarr(group); }, ErrorCode::NotFound,
               {"g.zarr", "zarr group", "images, labels"});
  EXPECT_EQ(open_array(group + "/labels").meta().shape, (Shape{4, 6}));
}

}  // namespace
}  // namespace mmc::zarr_v3_test
