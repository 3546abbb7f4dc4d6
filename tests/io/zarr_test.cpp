// Tests of zarr v2 stores: stores zarr-python wrote read back against numpy's answers, stores
// ZarrWriter wrote read back by zarr-python, crash safety of the writer, hostile metadata.
#include "mmc/zarr.hpp"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "support/test_support.hpp"
#include "zarr_test_helpers.hpp"

namespace mmc {
namespace {

using zarr_testing::read_all;
using zarr_testing::replace_once;

using test::expect_error;
using test::TempDir;

std::string as_string(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

Shape parse_dims(const std::string& text) { return text == "-" ? Shape{} : parse_shape(text); }

// ---- stores written by zarr-python ----

struct PythonCase {
  std::string descr;
  std::string order;
  Shape shape;
  Shape chunks;
  std::int64_t files = 0;
  std::uint64_t bytes = 0;
  std::vector<Box> boxes;
};

// Has zarr-python write every case of zarr_write.py into dir; returns them by name.
std::map<std::string, PythonCase> write_python_stores(const TempDir& dir) {
  std::istringstream in(test::run_python("zarr_write.py", {dir.path()}));
  std::map<std::string, PythonCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "case") {
      PythonCase c;
      std::string shape, chunks;
      words >> c.descr >> c.order >> shape >> chunks >> c.files >> c.bytes;
      c.shape = parse_dims(shape);
      c.chunks = parse_dims(chunks);
      cases[name] = c;
    } else if (kind == "box") {
      int k = 0;
      std::string start, count;
      words >> k >> start >> count;
      EXPECT_EQ(static_cast<std::size_t>(k), cases.at(name).boxes.size());
      cases.at(name).boxes.push_back({parse_dims(start), parse_dims(count)});
    }
  }
  EXPECT_EQ(cases.size(), 15u) << "zarr_write.py wrote an unexpected set of cases";
  return cases;
}

// Opens the case's store and checks metadata, the whole array and every box against numpy.
void expect_store_matches(const TempDir& dir, const std::string& name, const PythonCase& c) {
  SCOPED_TRACE(name);
  const auto a = open_zarr(dir.file(name + ".zarr"));
  EXPECT_EQ(a->meta().dtype.numpy_descr(), c.descr);
  EXPECT_EQ(a->meta().shape, c.shape);
  EXPECT_EQ(a->meta().order, c.order == "F" ? Order::F : Order::C);
  EXPECT_EQ(a->chunk_shape(), c.chunks);
  EXPECT_EQ(a->name(), dir.file(name + ".zarr"));
  const std::string expected = test::read_file(dir.file(name + ".bin"));
  EXPECT_EQ(as_string(read_all(*a)), expected) << "whole array differs from numpy's";
  for (std::size_t k = 0; k < c.boxes.size(); ++k) {
    const Box& box = c.boxes[k];
    std::vector<std::byte> out(static_cast<std::size_t>(box.size()) * a->meta().dtype.itemsize());
    a->read_box(box, out.data());
    EXPECT_EQ(as_string(out), test::read_file(dir.file(name + ".box" + std::to_string(k) + ".bin")))
        << "box " << k << " start " << format_shape(box.start) << " count "
        << format_shape(box.count);
  }
  const StorageInfo info = a->storage();
  EXPECT_EQ(info.kind, "zarr");
  EXPECT_EQ(info.layout, "chunked");
  EXPECT_EQ(info.chunks_total, a->n_chunks());
  EXPECT_EQ(info.chunks_stored, c.files);
  EXPECT_EQ(info.stored_bytes, c.bytes);
}

TEST(ZarrRead, MatchesNumpyForUncompressedStoresInBothOrdersAndByteOrders) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  for (const char* name : {"u1_none", "u2_order_f_none", "f8be_none"}) {
    expect_store_matches(dir, name, cases.at(name));
  }
  EXPECT_EQ(open_zarr(dir.file("f8be_none.zarr"))->meta().dtype.byte_order(), ByteOrder::Big);
  EXPECT_EQ(open_zarr(dir.file("u1_none.zarr"))->storage().compressor, "none");
}

TEST(ZarrRead, MatchesNumpyForEveryCompressor) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  const std::map<std::string, std::string> compressors = {
      {"i2be_zlib_missing", "zlib(level=3)"},
      {"f4_gzip", "gzip(level=6)"},
      {"f8_nan_zstd_missing", "zstd(level=3)"},
      {"i4_4d_blosc_lz4", "blosc(lz4,shuffle=1,clevel=5)"},
      {"f8_order_f_blosc_zstd_bitshuffle", "blosc(zstd,shuffle=2,clevel=3)"},
  };
  for (const auto& [name, compressor] : compressors) {
    expect_store_matches(dir, name, cases.at(name));
    EXPECT_EQ(open_zarr(dir.file(name + ".zarr"))->storage().compressor, compressor);
  }
}

TEST(ZarrRead, ReadsMissingChunksAsTheFillValue) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  for (const char* name : {"i2be_zlib_missing", "f8_nan_zstd_missing", "b1_fill_true",
                           "f4_neginf_none_missing", "i8_nested_zlib_missing"}) {
    expect_store_matches(dir, name, cases.at(name));
    const auto a = open_zarr(dir.file(std::string(name) + ".zarr"));
    EXPECT_LT(a->storage().chunks_stored, a->n_chunks()) << name << " has no missing chunk";
  }
  // The last chunk of each lies outside the written region: every element is the fill value.
  const auto nan_store = open_zarr(dir.file("f8_nan_zstd_missing.zarr"));
  std::vector<double> chunk(nan_store->chunk_nbytes() / 8);
  nan_store->read_chunk({3, 2}, reinterpret_cast<std::byte*>(chunk.data()));
  for (double v : chunk) ASSERT_TRUE(std::isnan(v));
  EXPECT_EQ(nan_store->chunk_in_place({3, 2}), nullptr);

  const auto i2 = open_zarr(dir.file("i2be_zlib_missing.zarr"));
  std::vector<std::byte> raw(i2->chunk_nbytes());
  i2->read_chunk({2, 3}, raw.data());
  for (std::size_t k = 0; k < raw.size(); k += 2) {
    ASSERT_EQ(raw[k], std::byte{0xff});  // -5 big-endian: ff fb
    ASSERT_EQ(raw[k + 1], std::byte{0xfb});
  }
  const auto neginf = open_zarr(dir.file("f4_neginf_none_missing.zarr"));
  EXPECT_EQ(neginf->chunk_in_place({2}), nullptr);  // absent, so not mappable
  float f = 0;
  std::memcpy(&f, neginf->fill_value().data(), 4);
  EXPECT_EQ(f, -std::numeric_limits<float>::infinity());
}

TEST(ZarrRead, ReadsZarrPythonsFloat16StoresAndTheirFillValues) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  for (const char* name : {"f2_blosc_nan_missing", "f2be_zlib_fill_missing"}) {
    expect_store_matches(dir, name, cases.at(name));
  }
  // "NaN" is numpy's float16 NaN, 0x7e00, little endian.
  const auto nan = open_zarr(dir.file("f2_blosc_nan_missing.zarr"));
  EXPECT_EQ(nan->meta().dtype, DType(TypeId::F16, ByteOrder::Little));
  EXPECT_EQ(nan->fill_value(), (std::vector<std::byte>{std::byte{0x00}, std::byte{0x7e}}));
  EXPECT_EQ(nan->storage().compressor, "blosc(lz4,shuffle=1,clevel=5)");
  // zarr-python wrote np.float16(0.1) as 0.0999755859375: bits 0x2e66, big endian.
  const auto be = open_zarr(dir.file("f2be_zlib_fill_missing.zarr"));
  EXPECT_EQ(be->meta().dtype, DType(TypeId::F16, ByteOrder::Big));
  EXPECT_EQ(be->fill_value(), (std::vector<std::byte>{std::byte{0x2e}, std::byte{0x66}}));
  std::vector<std::byte> chunk(be->chunk_nbytes());
  be->read_chunk({2, 1}, chunk.data());  // rows 10..11: never written
  for (std::size_t i = 0; i < chunk.size(); i += 2) {
    ASSERT_EQ(chunk[i], std::byte{0x2e}) << i;
    ASSERT_EQ(chunk[i + 1], std::byte{0x66}) << i;
  }
}

TEST(ZarrRead, ReadsNestedDimensionSeparator) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  ASSERT_TRUE(test::file_exists(dir.file("i8_nested_zlib_missing.zarr/0/1/2")));
  expect_store_matches(dir, "i8_nested_zlib_missing", cases.at("i8_nested_zlib_missing"));
}

TEST(ZarrRead, ReadsZeroDimensionalAndEmptyArrays) {
  TempDir dir;
  const auto cases = write_python_stores(dir);
  expect_store_matches(dir, "f8_0d", cases.at("f8_0d"));
  expect_store_matches(dir, "u1_empty", cases.at("u1_empty"));
  const auto zero_d = open_zarr(dir.file("f8_0d.zarr"));
  EXPECT_EQ(zero_d->n_chunks(), 1);
  const std::byte* mapped = zero_d->chunk_in_place({});
  ASSERT_NE(mapped, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(mapped), 8),
            test::read_file(dir.file("f8_0d.bin")));
  EXPECT_EQ(open_zarr(dir.file("u1_empty.zarr"))->n_chunks(), 0);
}

TEST(ZarrRead, MapsUncompressedChunksInPlaceAndOnlyThose) {
  TempDir dir;
  write_python_stores(dir);
  const auto raw = open_zarr(dir.file("u1_none.zarr"));
  const std::byte* p = raw->chunk_in_place({1, 2});
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), raw->chunk_nbytes()),
            test::read_file(dir.file("u1_none.zarr/1.2")));
  EXPECT_EQ(raw->chunk_in_place({1, 2}), p) << "the mapping is not kept";
  std::vector<std::byte> out(raw->chunk_nbytes());
  raw->read_chunk({1, 2}, out.data());
  EXPECT_EQ(std::memcmp(out.data(), p, out.size()), 0);
  const auto packed = open_zarr(dir.file("f4_gzip.zarr"));
  EXPECT_EQ(packed->chunk_in_place({0, 0, 0}), nullptr);
}

TEST(ZarrRead, RejectsChunkCoordinatesOffTheGrid) {
  TempDir dir;
  write_python_stores(dir);
  const auto a = open_zarr(dir.file("u1_none.zarr"));
  std::vector<std::byte> out(a->chunk_nbytes());
  expect_error(
      [&] {
        a->read_chunk({4, 0}, out.data());
      },
      ErrorCode::InvalidArgument, {"outside the chunk grid"});
  expect_error([&] { a->chunk_in_place({0}); }, ErrorCode::InvalidArgument, {"axes"});
}

// Reads the whole array in a forked child (mappings and state inherited) and in threads.
TEST(ZarrRead, ReadsFromForkedChildrenAndThreads) {
  TempDir dir;
  write_python_stores(dir);
  for (const char* name : {"u2_order_f_none", "i4_4d_blosc_lz4"}) {
    SCOPED_TRACE(name);
    const auto a = open_zarr(dir.file(std::string(name) + ".zarr"));
    const std::vector<std::byte> parent = read_all(*a);  // maps chunks in the parent first
    ASSERT_EQ(as_string(parent), test::read_file(dir.file(std::string(name) + ".bin")));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      a->reopen_after_fork();
      _exit(read_all(*a) == parent ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child read other bytes";

    const auto fresh = open_zarr(dir.file(std::string(name) + ".zarr"));
    std::vector<int> same(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] { same[t] = read_all(*fresh) == parent ? 1 : 0; });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(same, std::vector<int>(4, 1));
  }
}

// ---- hostile and unsupported metadata ----

constexpr const char* kGoodMeta =
    R"({"zarr_format": 2, "shape": [4, 6], "chunks": [2, 3], "dtype": "<f8", "order": "C",
        "compressor": null, "fill_value": 0, "filters": null})";

// A store holding only .zarray with `meta`.
std::string make_store(const TempDir& dir, const std::string& meta,
                       const std::string& name = "a.zarr") {
  const std::string path = dir.file(name);
  ::mkdir(path.c_str(), 0777);
  test::write_file(path + "/.zarray", meta);
  return path;
}

void expect_open_error(const std::string& meta, ErrorCode code,
                       std::initializer_list<std::string> parts) {
  TempDir dir;
  const std::string path = make_store(dir, meta);
  SCOPED_TRACE(meta);
  expect_error([&] { open_zarr(path); }, code, parts);
}

TEST(ZarrMeta, AcceptsTheMinimalMetadata) {
  TempDir dir;
  const auto a = open_zarr(make_store(dir, kGoodMeta));
  EXPECT_EQ(a->meta().shape, (Shape{4, 6}));
  EXPECT_EQ(a->grid(), (Shape{2, 2}));
  EXPECT_EQ(a->storage().chunks_stored, 0);
  std::vector<double> all(24, 1.0);
  a->read_box({{0, 0}, {4, 6}}, reinterpret_cast<std::byte*>(all.data()));
  EXPECT_EQ(all, std::vector<double>(24, 0.0));
}

TEST(ZarrMeta, RejectsBrokenJsonAsCorrupt) {
  expect_open_error(R"({"zarr_format": 2, "shape": [4, )", ErrorCode::Corrupt,
                    {".zarray", "not valid JSON"});
  expect_open_error("[1, 2]", ErrorCode::Corrupt, {".zarray", "not a JSON object"});
  expect_open_error("", ErrorCode::Corrupt, {".zarray"});
}

TEST(ZarrMeta, RejectsOtherZarrFormats) {
  expect_open_error(replace_once(kGoodMeta, "\"zarr_format\": 2", "\"zarr_format\": 3"),
                    ErrorCode::InvalidArgument, {".zarray", "zarr_format 3", "v2"});
}

TEST(ZarrMeta, NamesMissingAndMalformedFields) {
  expect_open_error(replace_once(kGoodMeta, "\"dtype\": \"<f8\",", ""), ErrorCode::Corrupt,
                    {".zarray", "missing field 'dtype'"});
  expect_open_error(replace_once(kGoodMeta, "\"fill_value\": 0,", ""), ErrorCode::Corrupt,
                    {"missing field 'fill_value'"});
  expect_open_error(replace_once(kGoodMeta, "\"order\": \"C\"", "\"order\": \"K\""),
                    ErrorCode::Corrupt, {"field 'order'"});
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[2]"), ErrorCode::Corrupt,
                    {"'chunks'", "axes"});
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[2, 0]"), ErrorCode::Corrupt,
                    {"field 'chunks'"});
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "\"4,6\""), ErrorCode::Corrupt,
                    {"field 'shape'"});
  expect_open_error(replace_once(kGoodMeta, "\"fill_value\": 0", "\"fill_value\": \"zero\""),
                    ErrorCode::Corrupt, {"field 'fill_value'"});
  expect_open_error(replace_once(kGoodMeta, "\"filters\": null",
                                 "\"filters\": null, \"dimension_separator\": \"-\""),
                    ErrorCode::Corrupt, {"dimension_separator"});
}

TEST(ZarrMeta, RejectsNegativeExtents) {
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "[4, -6]"), ErrorCode::Corrupt,
                    {".zarray", "field 'shape'", "-6"});
}

TEST(ZarrMeta, RejectsShapesWhoseByteCountOverflows) {
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "[4611686018427387904, 6]"),
                    ErrorCode::InvalidArgument, {".zarray", "overflows"});
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "[18446744073709551615, 6]"),
                    ErrorCode::InvalidArgument, {".zarray", "overflows"});
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[4611686018427387904, 3]"),
                    ErrorCode::InvalidArgument, {".zarray"});
}

TEST(ZarrMeta, CountsTheChunkGridOfTheLargestShapeWithoutOverflow) {
  TempDir dir;
  const auto a = open_zarr(make_store(
      dir, R"({"zarr_format": 2, "shape": [9223372036854775807], "chunks": [2], "dtype": "|u1",
              "order": "C", "compressor": null, "fill_value": 0, "filters": null})"));
  EXPECT_EQ(a->grid(), (Shape{std::int64_t{1} << 62}));
  EXPECT_EQ(a->n_chunks(), std::int64_t{1} << 62);
  EXPECT_EQ(a->storage().chunks_total, std::int64_t{1} << 62);
}

TEST(ZarrMeta, RefusesChunksThatDecodeToOver2GiB) {
  // 2 GiB + 8 bytes, and 1 TiB (accepted before): refused before any chunk is allocated.
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[268435457, 1]"), ErrorCode::Corrupt,
                    {".zarray", "2147483656", "2 GiB"});
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[131072, 1048576]"), ErrorCode::Corrupt,
                    {".zarray", "2 GiB"});
  TempDir dir;  // exactly 2 GiB is allowed for an array that large (and nothing is read)
  EXPECT_EQ(
      open_zarr(make_store(dir, replace_once(replace_once(kGoodMeta, "[4, 6]", "[268435456, 6]"),
                                             "[2, 3]", "[268435456, 1]")))
          ->chunk_nbytes(),
      std::uint64_t{2} << 30);
}

TEST(ZarrMeta, RefusesChunksOver64MiBThatAreLargerThanTheWholeArray) {
  // A 192-byte array in 1 GiB chunks: every worker would allocate 1 GiB to read one element.
  expect_open_error(replace_once(kGoodMeta, "[2, 3]", "[134217728, 1]"), ErrorCode::Corrupt,
                    {".zarray", "1073741824", "larger than the whole array"});
  TempDir dir;  // an array that grows into its chunks is fine while they stay under 64 MiB
  EXPECT_EQ(
      open_zarr(make_store(dir, replace_once(kGoodMeta, "[2, 3]", "[1048576, 1]")))->chunk_nbytes(),
      std::uint64_t{8} << 20);
}

TEST(ZarrMeta, RefusesHugeExtentsNextToAZero) {
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "[0, 4611686018427387904]"),
                    ErrorCode::InvalidArgument, {".zarray", "overflows"});
  expect_open_error(replace_once(kGoodMeta, "[4, 6]", "[4611686018427387904, 0]"),
                    ErrorCode::InvalidArgument, {".zarray", "overflows"});
}

TEST(ZarrMeta, UnreadableStoreSaysPermissionDenied) {
  // Run in a child with the privileges of nobody, so that the check holds when tests run as root.
  TempDir dir;
  const std::string path = make_store(dir, kGoodMeta);
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    try {
      open_zarr(path);
      ::_exit(4);
    } catch (const Error& e) {
      const std::string what = e.what();
      const bool ok = e.code() == ErrorCode::Io &&
                      what.find("Permission denied") != std::string::npos &&
                      what.find("no .zarray") == std::string::npos;
      ::_exit(ok ? 0 : 5);
    }
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::chmod(path.c_str(), 0755);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: cannot drop privileges, 4: opened, 5: wrong error";
}

TEST(ZarrMeta, RejectsUnsupportedDtypes) {
  for (const char* dtype : {"\"|O\"", "\"<U8\"", "\"<M8[ns]\"", "\"<c16\"", "\"|S4\""}) {
    expect_open_error(replace_once(kGoodMeta, "\"<f8\"", dtype), ErrorCode::InvalidArgument,
                      {".zarray", "dtype"});
  }
  expect_open_error(replace_once(kGoodMeta, "\"<f8\"", R"([["a", "<f4"], ["b", "<i2"]])"),
                    ErrorCode::InvalidArgument, {".zarray", "structured dtype"});
}

TEST(ZarrMeta, RejectsFiltersNamingThem) {
  expect_open_error(replace_once(kGoodMeta, "\"filters\": null",
                                 R"("filters": [{"id": "delta", "dtype": "<f8"}])"),
                    ErrorCode::InvalidArgument, {".zarray", "delta", "not supported"});
  TempDir dir;  // an empty list is no filter at all
  EXPECT_NO_THROW(
      open_zarr(make_store(dir, replace_once(kGoodMeta, "\"filters\": null", "\"filters\": []"))));
}

TEST(ZarrMeta, RejectsUnknownCompressors) {
  expect_open_error(replace_once(kGoodMeta, "\"compressor\": null",
                                 R"("compressor": {"id": "lzma", "preset": 1})"),
                    ErrorCode::InvalidArgument, {".zarray", "lzma", "not supported"});
  expect_open_error(
      replace_once(kGoodMeta, "\"compressor\": null",
                   R"("compressor": {"id": "blosc", "cname": "brotli", "clevel": 5})"),
      ErrorCode::InvalidArgument, {".zarray", "brotli", "not available"});
  expect_open_error(replace_once(kGoodMeta, "\"compressor\": null", "\"compressor\": 5"),
                    ErrorCode::Corrupt, {"field 'compressor'"});
}

TEST(ZarrMeta, ExplainsPathsThatAreNoArray) {
  TempDir dir;
  expect_error([&] { open_zarr(dir.file("nothing.zarr")); }, ErrorCode::NotFound,
               {"nothing.zarr", "does not exist"});
  ::mkdir(dir.file("empty.zarr").c_str(), 0777);
  expect_error([&] { open_zarr(dir.file("empty.zarr")); }, ErrorCode::NotFound,
               {"empty.zarr", ".zarray"});
  ::mkdir(dir.file("group.zarr").c_str(), 0777);
  test::write_file(dir.file("group.zarr/.zgroup"), R"({"zarr_format": 2})");
  expect_error([&] { open_zarr(dir.file("group.zarr")); }, ErrorCode::NotFound, {"group"});
  ::mkdir(dir.file("v3.zarr").c_str(), 0777);
  test::write_file(dir.file("v3.zarr/zarr.json"), "{}");  // read as v3 (zarr_v3_test.cpp)
  expect_error([&] { open_zarr(dir.file("v3.zarr")); }, ErrorCode::Corrupt,
               {"v3.zarr/zarr.json", "missing field 'zarr_format'"});
}

// One element of a store whose only chunk is missing: its fill value as bytes.
std::vector<std::byte> fill_bytes(const std::string& dtype, const std::string& fill) {
  TempDir dir;
  std::string meta = replace_once(kGoodMeta, "\"<f8\"", dtype);
  meta = replace_once(meta, "\"fill_value\": 0", "\"fill_value\": " + fill);
  const auto a = open_zarr(make_store(dir, meta));
  std::vector<std::byte> out(a->meta().dtype.itemsize());
  a->read_box({{3, 5}, {1, 1}}, out.data());
  EXPECT_EQ(out, a->fill_value());
  return out;
}

template <class T>
T fill_as(const std::string& dtype, const std::string& fill) {
  const std::vector<std::byte> b = fill_bytes(dtype, fill);
  T v{};
  EXPECT_EQ(b.size(), sizeof v);
  if (b.size() == sizeof v) std::memcpy(&v, b.data(), sizeof v);
  return v;
}

TEST(ZarrMeta, DecodesEveryFormOfFillValue) {
  EXPECT_TRUE(std::isnan(fill_as<double>("\"<f8\"", "\"NaN\"")));
  EXPECT_EQ(fill_as<double>("\"<f8\"", "\"Infinity\""), std::numeric_limits<double>::infinity());
  EXPECT_EQ(fill_as<float>("\"<f4\"", "\"-Infinity\""), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(fill_as<double>("\"<f8\"", "-2.5"), -2.5);
  EXPECT_EQ(fill_as<double>("\"<f8\"", "null"), 0.0);
  EXPECT_EQ(fill_as<float>("\"<f4\"", "7"), 7.0f);
  EXPECT_EQ(fill_as<std::uint8_t>("\"|b1\"", "true"), 1);
  EXPECT_EQ(fill_as<std::uint8_t>("\"|b1\"", "false"), 0);
  EXPECT_EQ(fill_as<std::int16_t>("\"<i2\"", "-32768"), -32768);
  EXPECT_EQ(fill_as<std::uint64_t>("\"<u8\"", "18446744073709551615"),
            std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(fill_as<std::int32_t>("\"<i4\"", "3.0"), 3);
  // float16: numbers rounded to nearest even as numpy rounds them; hex bits as given.
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "\"NaN\""), 0x7e00);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "\"Infinity\""), 0x7c00);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "\"-Infinity\""), 0xfc00);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "0.1"), 0x2e66);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "0.0999755859375"), 0x2e66);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "-0.0"), 0x8000);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "65504"), 0x7bff);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "65519.99"), 0x7bff);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "2049"), 0x6800);  // a tie: 2048 is even
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "6e-8"), 0x0001);  // the smallest subnormal
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "1e-8"), 0x0000);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "7"), 0x4700);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "\"0x7c01\""), 0x7c01);
  EXPECT_EQ(fill_as<std::uint16_t>("\"<f2\"", "null"), 0x0000);
  EXPECT_EQ(fill_bytes("\">f2\"", "1.5"), (std::vector<std::byte>{std::byte{0x3e}, std::byte{0}}));
  // Stored byte order: 258 as big-endian i4 is 00 00 01 02.
  EXPECT_EQ(fill_bytes("\">i4\"", "258"),
            (std::vector<std::byte>{std::byte{0}, std::byte{0}, std::byte{1}, std::byte{2}}));
}

TEST(ZarrMeta, RejectsFillValuesOutsideTheDtype) {
  for (const auto& [dtype, fill] :
       std::vector<std::pair<std::string, std::string>>{{"\"|u1\"", "256"},
                                                        {"\"|u1\"", "-1"},
                                                        {"\"<i2\"", "40000"},
                                                        {"\"<i4\"", "1.5"},
                                                        {"\"<i4\"", "\"NaN\""},
                                                        {"\"<f8\"", "\"nan\""},
                                                        {"\"|b1\"", "2"},
                                                        {"\"<f2\"", "65520"},
                                                        {"\"<f2\"", "-1e10"},
                                                        {"\"<f2\"", "\"0x7e0\""},
                                                        {"\"<f2\"", "\"0x7e000\""},
                                                        {"\"<f2\"", "\"0x7fc00000\""},
                                                        {"\"<f2\"", "\"0x7g00\""},
                                                        {"\"<f2\"", "true"}}) {
    std::string meta = replace_once(kGoodMeta, "\"<f8\"", dtype);
    expect_open_error(replace_once(meta, "\"fill_value\": 0", "\"fill_value\": " + fill),
                      ErrorCode::Corrupt, {".zarray", "fill_value"});
  }
}

TEST(ZarrChunks, RejectsUncompressedChunksOfTheWrongSize) {
  TempDir dir;
  const std::string path = make_store(dir, kGoodMeta);
  test::write_file(path + "/1.0", std::string(47, 'x'));  // 2x3 f8 chunks are 48 bytes
  const auto a = open_zarr(path);
  expect_error(
      [&] {
        a->chunk_in_place({1, 0});
      },
      ErrorCode::Corrupt, {"a.zarr/1.0", "47 bytes", "expected 48"});
  std::vector<std::byte> out(48);
  expect_error(
      [&] {
        a->read_chunk({1, 0}, out.data());
      },
      ErrorCode::Corrupt, {"a.zarr/1.0", "47", "48"});
  std::vector<std::byte> all(a->meta().nbytes());
  expect_error(
      [&] {
        a->read_box({{0, 0}, {4, 6}}, all.data());
      },
      ErrorCode::Corrupt, {"a.zarr/1.0"});
  test::write_file(path + "/1.0", std::string(49, 'x'));
  expect_error([&] { a->chunk_in_place({1, 0}); }, ErrorCode::Corrupt, {"49 bytes"});
}

TEST(ZarrChunks, RejectsUndecodableCompressedChunks) {
  const std::vector<std::string> compressors = {
      R"({"id": "zlib", "level": 1})", R"({"id": "gzip", "level": 1})",
      R"({"id": "zstd", "level": 1})",
      R"({"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0})"};
  for (const std::string& compressor : compressors) {
    SCOPED_TRACE(compressor);
    TempDir dir;
    const std::string path = make_store(
        dir, replace_once(kGoodMeta, "\"compressor\": null", "\"compressor\": " + compressor));
    test::write_file(path + "/0.1", "this is not compressed data at all");
    test::write_file(path + "/1.1", "");
    const auto a = open_zarr(path);
    std::vector<std::byte> out(a->chunk_nbytes());
    expect_error([&] { a->read_chunk({0, 1}, out.data()); }, ErrorCode::Corrupt, {"a.zarr/0.1"});
    expect_error([&] { a->read_chunk({1, 1}, out.data()); }, ErrorCode::Corrupt, {"a.zarr/1.1"});
    test::write_file(path + "/1.1", std::string(100000, 'z'));  // larger than any encoding
    expect_error([&] { a->read_chunk({1, 1}, out.data()); }, ErrorCode::Corrupt, {"a.zarr/1.1"});
  }
}

TEST(ZarrChunks, TruncatedChunksOfARealStoreAreCorrupt) {
  TempDir dir;
  write_python_stores(dir);
  for (const char* name :
       {"i2be_zlib_missing", "f4_gzip", "f8_nan_zstd_missing", "i4_4d_blosc_lz4"}) {
    SCOPED_TRACE(name);
    const std::string path = dir.file(std::string(name) + ".zarr");
    const std::string key = std::string(name) == "i4_4d_blosc_lz4" ? "/0.0.0.0"
                            : std::string(name) == "f4_gzip"       ? "/0.0.0"
                                                                   : "/0.0";
    const std::string bytes = test::read_file(path + key);
    ASSERT_GT(bytes.size(), 8u);
    test::write_file(path + key, bytes.substr(0, bytes.size() - 5));
    const auto a = open_zarr(path);
    std::vector<std::byte> out(a->chunk_nbytes());
    expect_error([&] { a->read_chunk(Shape(a->meta().shape.size(), 0), out.data()); },
                 ErrorCode::Corrupt, {path + key});
  }
}

// More chunks than the mapping bound: the first are mapped, the rest read with pread.
TEST(ZarrChunks, StoresWithMoreChunksThanTheMappingBoundStillReadWhole) {
  TempDir dir;
  const int n = 5000;
  const std::string path = make_store(
      dir, R"({"zarr_format": 2, "shape": [5000], "chunks": [1], "dtype": "|u1", "order": "C",
               "compressor": null, "fill_value": 0, "filters": null})");
  std::string expected(n, '\0');
  for (int i = 0; i < n; ++i) {
    expected[i] = static_cast<char>(i * 7 + 1);
    test::write_file(path + "/" + std::to_string(i), std::string(1, expected[i]));
  }
  const auto a = open_zarr(path);
  int mapped = 0;
  for (int i = 0; i < n; ++i) mapped += a->chunk_in_place({i}) != nullptr ? 1 : 0;
  EXPECT_GT(mapped, 1000);
  EXPECT_LT(mapped, n) << "every chunk got its own mapping: the bound does not hold";
  EXPECT_EQ(as_string(read_all(*a)), expected);
  EXPECT_EQ(a->storage().chunks_stored, n);
  EXPECT_EQ(a->storage().stored_bytes, static_cast<std::uint64_t>(n));
}

// ---- ZarrWriter ----

// Deterministic values of any dtype (finite for floats, 0/1 for bool) in native order.
std::vector<std::byte> random_values(DType dtype, std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::byte> out(static_cast<std::size_t>(n) * dtype.itemsize());
  if (dtype.id() == TypeId::F16) {  // any bit pattern: NaN payloads, subnormals, infinities
    for (std::int64_t i = 0; i < n; ++i) {
      const auto bits = static_cast<std::uint16_t>(rng());
      std::memcpy(out.data() + i * 2, &bits, 2);
    }
    return out;
  }
  visit_type(dtype.id(), [&](auto tag) {
    using T = decltype(tag);
    for (std::int64_t i = 0; i < n; ++i) {
      T v;
      if constexpr (std::is_same_v<T, bool>) {
        v = (rng() & 1) != 0;
      } else if constexpr (std::is_floating_point_v<T>) {
        v = static_cast<T>(static_cast<double>(rng() % 2000001) / 1000.0 - 1000.0);
      } else {
        v = static_cast<T>(rng());
      }
      std::memcpy(out.data() + i * sizeof(T), &v, sizeof v);
    }
  });
  return out;
}

// Swaps every element of a native-order buffer into dtype's byte order.
void to_stored_order(DType dtype, std::vector<std::byte>& bytes) {
  if (dtype.is_native()) return;
  const std::size_t k = dtype.itemsize();
  for (std::size_t at = 0; at < bytes.size(); at += k) {
    std::reverse(bytes.begin() + at, bytes.begin() + at + k);
  }
}

// The chunk at `coord` of a dense C-order array, in `order`, padded with `fill` past the edge.
std::vector<std::byte> chunk_of(const std::vector<std::byte>& full, const Shape& shape,
                                const Shape& chunks, const Shape& coord, std::size_t itemsize,
                                Order order, const std::vector<std::byte>& fill) {
  const std::size_t nd = shape.size();
  std::int64_t n = 1;
  for (std::int64_t c : chunks) n *= c;
  std::vector<std::byte> out(static_cast<std::size_t>(n) * itemsize);
  Shape local(nd, 0);
  for (std::int64_t p = 0; p < n; ++p) {
    std::int64_t rest = p;
    for (std::size_t k = 0; k < nd; ++k) {
      const std::size_t axis = order == Order::C ? nd - 1 - k : k;
      local[axis] = rest % chunks[axis];
      rest /= chunks[axis];
    }
    bool inside = true;
    std::int64_t flat = 0;
    for (std::size_t axis = 0; axis < nd; ++axis) {
      const std::int64_t g = coord[axis] * chunks[axis] + local[axis];
      inside = inside && g < shape[axis];
      flat = flat * shape[axis] + g;
    }
    std::memcpy(out.data() + p * itemsize, inside ? full.data() + flat * itemsize : fill.data(),
                itemsize);
  }
  return out;
}

// Every chunk coordinate of a grid, C order.
std::vector<Shape> all_coords(const Shape& grid) {
  std::vector<Shape> coords;
  std::int64_t n = 1;
  for (std::int64_t g : grid) n *= g;
  for (std::int64_t i = 0; i < n; ++i) {
    Shape c(grid.size());
    std::int64_t rest = i;
    for (std::size_t k = grid.size(); k-- > 0;) {
      c[k] = rest % grid[k];
      rest /= grid[k];
    }
    coords.push_back(c);
  }
  return coords;
}

std::vector<std::byte> fill_of(DType dtype, double value) {
  std::vector<std::byte> out(dtype.itemsize());
  if (dtype.id() == TypeId::F16) {
    const std::uint16_t bits = Float16::from(value).bits;
    std::memcpy(out.data(), &bits, 2);
    to_stored_order(dtype, out);
    return out;
  }
  visit_type(dtype.id(), [&](auto tag) {
    using T = decltype(tag);
    const T v = static_cast<T>(value);
    std::memcpy(out.data(), &v, sizeof v);
  });
  to_stored_order(dtype, out);
  return out;
}

// Writes a store of random data (the first chunk's region all fill, so it is skipped) with
// every chunk written through ZarrWriter; returns the whole array, C order, stored byte order.
std::vector<std::byte> write_store(const std::string& path, const ZarrSpec& spec,
                                   std::uint64_t seed) {
  const std::size_t itemsize = spec.dtype.itemsize();
  const ArrayMeta meta = ArrayMeta::contiguous(spec.dtype, spec.shape);
  std::vector<std::byte> full = random_values(spec.dtype, meta.size(), seed);
  to_stored_order(spec.dtype, full);
  const std::vector<std::byte> fill =
      spec.fill.empty() ? std::vector<std::byte>(itemsize) : spec.fill;
  // Elements of chunk 0 take the fill value.
  for (std::int64_t i = 0; i < meta.size(); ++i) {
    std::int64_t rest = i;
    bool in_first = true;
    for (std::size_t k = spec.shape.size(); k-- > 0;) {
      in_first = in_first && rest % spec.shape[k] < spec.chunks[k];
      rest /= spec.shape[k];
    }
    if (in_first) std::memcpy(full.data() + i * itemsize, fill.data(), itemsize);
  }
  ZarrWriter writer(path, spec);
  for (const Shape& coord : all_coords(writer.grid())) {
    const auto chunk = chunk_of(full, spec.shape, spec.chunks, coord, itemsize, spec.order, fill);
    writer.write_chunk(coord, chunk.data());
  }
  writer.commit();
  return full;
}

// zarr_check.py's KEY=VALUE tokens for each store.
std::vector<std::map<std::string, std::string>> check_with_zarr_python(
    const std::vector<std::string>& args) {
  std::istringstream in(test::run_python("zarr_check.py", args));
  std::vector<std::map<std::string, std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::map<std::string, std::string> tokens;
    std::string word;
    while (words >> word) {
      const std::size_t eq = word.find('=');
      tokens[word.substr(0, eq)] = word.substr(eq + 1);
    }
    out.push_back(tokens);
  }
  return out;
}

ZarrSpec make_spec(DType dtype, Shape shape, Shape chunks, Compressor compressor) {
  ZarrSpec spec;
  spec.dtype = dtype;
  spec.shape = std::move(shape);
  spec.chunks = std::move(chunks);
  spec.compressor = compressor;
  return spec;
}

TEST(ZarrWriter, StoresAreReadBackByZarrPythonWithEveryCompressor) {
  TempDir dir;
  struct Case {
    std::string name;
    ZarrSpec spec;
    std::string compressor;  // zarr-python's config
    std::string fill;
  };
  std::vector<Case> cases;
  {
    ZarrSpec s = make_spec(DType(TypeId::U8), {37, 23}, {10, 8}, Compressor::None);
    cases.push_back({"u1_none", s, "none", "0"});
    s = make_spec(DType(TypeId::I16, ByteOrder::Big), {20, 30, 3}, {7, 9, 2}, Compressor::Zlib);
    s.level = 3;
    s.fill = fill_of(s.dtype, -5);
    cases.push_back({"i2be_zlib", s, "id=zlib,level=3", "-5"});
    s = make_spec(DType(TypeId::F64), {50, 41}, {16, 16}, Compressor::Zstd);
    s.level = 7;
    s.order = Order::F;
    s.fill = fill_of(s.dtype, std::nan(""));
    cases.push_back({"f8_nan_zstd_f", s, "id=zstd,level=7", "\"NaN\""});
    s = make_spec(DType(TypeId::I32), {6, 7, 8, 9}, {2, 3, 4, 5}, Compressor::Blosc);
    cases.push_back({"i4_blosc_lz4", s, "blocksize=0,clevel=5,cname=lz4,id=blosc,shuffle=1", "0"});
    s = make_spec(DType(TypeId::F32), {33, 21}, {8, 8}, Compressor::Blosc);
    s.blosc_cname = "zstd";
    s.blosc_shuffle = 2;
    s.level = 3;
    s.order = Order::F;
    s.fill = fill_of(s.dtype, -std::numeric_limits<double>::infinity());
    cases.push_back({"f4_blosc_zstd_bit_f", s, "blocksize=0,clevel=3,cname=zstd,id=blosc,shuffle=2",
                     "\"-Infinity\""});
    s = make_spec(DType(TypeId::Bool), {17, 9}, {5, 5}, Compressor::Blosc);
    s.blosc_cname = "blosclz";
    s.blosc_shuffle = 0;
    s.fill = fill_of(s.dtype, 1);
    cases.push_back(
        {"b1_blosclz", s, "blocksize=0,clevel=5,cname=blosclz,id=blosc,shuffle=0", "true"});
    s = make_spec(DType(TypeId::F16), {30, 25}, {8, 8}, Compressor::Blosc);
    s.fill = fill_of(s.dtype, std::nan(""));
    cases.push_back(
        {"f2_nan_blosc", s, "blocksize=0,clevel=5,cname=lz4,id=blosc,shuffle=1", "\"NaN\""});
    s = make_spec(DType(TypeId::F16, ByteOrder::Big), {12, 10}, {5, 4}, Compressor::Zlib);
    s.level = 3;
    s.fill = fill_of(s.dtype, 0.1);
    cases.push_back({"f2be_zlib_fill", s, "id=zlib,level=3", "0.0999755859375"});
    s = make_spec(DType(TypeId::U64, ByteOrder::Big), {}, {}, Compressor::Zlib);
    cases.push_back({"u8be_0d", s, "id=zlib,level=5", "0"});
  }
  std::vector<std::string> args;
  std::uint64_t seed = 1;
  for (const Case& c : cases) {
    const std::string path = dir.file(c.name + ".zarr");
    const std::vector<std::byte> full = write_store(path, c.spec, seed++);
    test::write_file(dir.file(c.name + ".bin"), as_string(full));
    args.push_back(path);
    args.push_back(dir.file(c.name + ".bin"));
    // Our own reader agrees too.
    EXPECT_EQ(read_all(*open_zarr(path)), full) << c.name;
  }
  const auto results = check_with_zarr_python(args);
  ASSERT_EQ(results.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    auto r = results[i];
    SCOPED_TRACE(c.name);
    EXPECT_EQ(r["equal"], "1") << "zarr-python reads other values";
    EXPECT_EQ(r["dtype"], c.spec.dtype.numpy_descr());
    EXPECT_EQ(r["shape"], c.spec.shape.empty() ? "-" : format_shape(c.spec.shape));
    EXPECT_EQ(r["order"], c.spec.order == Order::C ? "C" : "F");
    EXPECT_EQ(r["compressor"], c.compressor);
    EXPECT_EQ(r["fill"], c.fill);
  }
}

TEST(ZarrWriter, SkipsChunksThatAreAllFill) {
  TempDir dir;
  ZarrSpec spec = make_spec(DType(TypeId::F64), {10, 10}, {5, 5}, Compressor::Zstd);
  spec.fill = fill_of(spec.dtype, std::nan(""));
  const std::vector<std::byte> full = write_store(dir.file("s.zarr"), spec, 3);
  EXPECT_EQ(test::list_dir(dir.file("s.zarr")),
            (std::vector<std::string>{".zarray", "0.1", "1.0", "1.1"}));
  const auto a = open_zarr(dir.file("s.zarr"));
  EXPECT_EQ(read_all(*a), full);
  EXPECT_EQ(a->storage().chunks_stored, 3);
  // Rewriting a chunk with fill only removes the file written for it before.
  ZarrWriter w(dir.file("t.zarr"), spec);
  std::vector<double> chunk(25, 1.0);
  w.write_chunk({1, 1}, reinterpret_cast<const std::byte*>(chunk.data()));
  std::fill(chunk.begin(), chunk.end(), std::nan(""));
  w.write_chunk({1, 1}, reinterpret_cast<const std::byte*>(chunk.data()));
  w.commit();
  EXPECT_EQ(test::list_dir(dir.file("t.zarr")), (std::vector<std::string>{".zarray"}));
}

TEST(ZarrWriter, DestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  {
    ZarrWriter w(dir.file("gone.zarr"), make_spec(DType(TypeId::U8), {8}, {4}, Compressor::Zlib));
    std::vector<std::byte> chunk(4, std::byte{9});
    w.write_chunk({0}, chunk.data());
    EXPECT_EQ(test::list_dir(dir.path()).size(), 1u);  // the temporary directory
  }
  EXPECT_EQ(test::list_dir(dir.path()), std::vector<std::string>{});
}

// Uncompressed chunks are mapped in place and kept mapped, but hold no open file each: a
// store of 300 chunks reads under a limit of 40 open files.
TEST(ZarrRead, ChunksMappedInPlaceHoldNoOpenFiles) {
  TempDir dir;
  const std::string path = dir.file("many.zarr");
  const ZarrSpec spec = make_spec(DType(TypeId::U8), {300, 8}, {1, 8}, Compressor::None);
  const std::vector<std::byte> full = write_store(path, spec, 11);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = 40;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(4);
    try {
      const auto a = open_zarr(path);
      int mapped = 0;
      for (const Shape& c : all_coords(a->grid())) mapped += a->chunk_in_place(c) != nullptr;
      if (mapped < 299) _exit(2);  // every written chunk (chunk 0 is fill, not written)
      _exit(read_all(*a) == full ? 0 : 1);
    } catch (...) {
      _exit(3);
    }
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: other bytes, 2: chunks not mapped, 3: threw";
}

TEST(ZarrWriter, KilledWriterLeavesNoStoreThatZarrPythonOpens) {
  TempDir dir;
  const std::string path = dir.file("killed.zarr");
  const ZarrSpec spec = make_spec(DType(TypeId::I32), {16, 16}, {4, 4}, Compressor::Blosc);
  for (const bool sigkill : {false, true}) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ZarrWriter w(path, spec);
      std::vector<std::byte> chunk(w.chunk_nbytes(), std::byte{3});
      for (const Shape& c : all_coords(w.grid())) w.write_chunk(c, chunk.data());
      if (sigkill) ::raise(SIGKILL);
      _exit(0);  // dies before commit(), without running destructors
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_EQ(sigkill, WIFSIGNALED(status));
    EXPECT_FALSE(test::file_exists(path));
  }
  for (const std::string& entry : test::list_dir(dir.path())) {
    EXPECT_EQ(entry.rfind(".killed.zarr.tmp-", 0), 0u) << entry << " is not a hidden leftover";
  }
  EXPECT_EQ(test::run_python_code("import sys, zarr\n"
                                  "try:\n"
                                  "    zarr.open_array(sys.argv[1], mode='r')\n"
                                  "    print('opened')\n"
                                  "except Exception:\n"
                                  "    print('refused')\n",
                                  {path}),
            "refused\n");
  // A later writer to the same path succeeds.
  const std::vector<std::byte> full = write_store(path, spec, 9);
  EXPECT_EQ(read_all(*open_zarr(path)), full);
}

TEST(ZarrWriter, ForkedWorkersAndThreadsWriteChunksConcurrently) {
  TempDir dir;
  const ZarrSpec spec = make_spec(DType(TypeId::U16), {40, 40}, {7, 6}, Compressor::Zstd);
  const ArrayMeta meta = ArrayMeta::contiguous(spec.dtype, spec.shape);
  const std::vector<std::byte> full = random_values(spec.dtype, meta.size(), 11);
  const std::vector<std::byte> zero(2);
  ZarrWriter w(dir.file("par.zarr"), spec);
  const std::vector<Shape> coords = all_coords(w.grid());
  auto write_share = [&](std::size_t k, std::size_t of) {
    for (std::size_t i = k; i < coords.size(); i += of) {
      const auto chunk = chunk_of(full, spec.shape, spec.chunks, coords[i], 2, Order::C, zero);
      w.write_chunk(coords[i], chunk.data());
    }
  };
  std::vector<pid_t> pids;
  for (std::size_t k = 0; k < 2; ++k) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      try {
        write_share(k, 4);
      } catch (...) {
        _exit(1);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  std::vector<std::thread> threads;
  for (std::size_t k = 2; k < 4; ++k) threads.emplace_back(write_share, k, 4);
  for (auto& t : threads) t.join();
  for (const pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  w.commit();
  const auto a = open_zarr(dir.file("par.zarr"));
  EXPECT_EQ(read_all(*a), full);
  EXPECT_EQ(a->storage().chunks_stored, static_cast<std::int64_t>(coords.size()));
}

TEST(ZarrWriter, OverwriteReplacesAStoreAndOnlyAStore) {
  TempDir dir;
  const std::string path = dir.file("o.zarr");
  const ZarrSpec first = make_spec(DType(TypeId::U8), {8, 8}, {3, 3}, Compressor::None);
  write_store(path, first, 1);
  expect_error([&] { ZarrWriter w(path, first); }, ErrorCode::Io, {"o.zarr", "exists"});

  const ZarrSpec second = make_spec(DType(TypeId::F32), {5}, {2}, Compressor::Zlib);
  std::vector<std::byte> full(20);
  {
    ZarrWriter w(path, second, true);
    full = random_values(second.dtype, 5, 2);
    for (const Shape& c : all_coords(w.grid())) {
      const std::vector<std::byte> zero(4);
      const auto chunk = chunk_of(full, second.shape, second.chunks, c, 4, Order::C, zero);
      w.write_chunk(c, chunk.data());
    }
    // Until commit the old store is still there, whole.
    EXPECT_EQ(open_zarr(path)->meta().dtype.id(), TypeId::U8);
    w.commit();
    w.commit();  // idempotent
  }
  const auto a = open_zarr(path);
  EXPECT_EQ(a->meta().dtype.id(), TypeId::F32);
  EXPECT_EQ(read_all(*a), full);
  EXPECT_EQ(test::list_dir(dir.path()), std::vector<std::string>{"o.zarr"});

  ::mkdir(dir.file("precious").c_str(), 0777);
  test::write_file(dir.file("precious/notes.txt"), "keep me");
  expect_error([&] { ZarrWriter w(dir.file("precious"), second, true); }, ErrorCode::Io,
               {"precious", "not a zarr array"});
  EXPECT_EQ(test::read_file(dir.file("precious/notes.txt")), "keep me");
}

TEST(ZarrWriter, RejectsBadSpecs) {
  TempDir dir;
  const std::string path = dir.file("bad.zarr");
  auto spec = [] { return make_spec(DType(TypeId::F32), {10, 10}, {5, 5}, Compressor::Zlib); };
  ZarrSpec s = spec();
  s.chunks = {5};
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"bad.zarr", "axes"});
  s = spec();
  s.chunks = {5, 0};
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"below 1"});
  s = spec();
  s.shape = {-1, 10};
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"negative"});
  s = spec();
  s.shape = {std::int64_t{1} << 62, 10};
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"overflows"});
  s = spec();
  s.level = 12;
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"zlib level 12"});
  s = spec();
  s.compressor = Compressor::Blosc;
  s.blosc_cname = "nosuch";
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"nosuch"});
  s = spec();
  s.fill.assign(8, std::byte{0});
  expect_error([&] { ZarrWriter w(path, s); }, ErrorCode::InvalidArgument, {"fill value"});
  EXPECT_EQ(test::list_dir(dir.path()), std::vector<std::string>{}) << "a rejected spec left files";

  ZarrWriter w(path, spec());
  std::vector<std::byte> chunk(w.chunk_nbytes());
  expect_error(
      [&] {
        w.write_chunk({2, 0}, chunk.data());
      },
      ErrorCode::InvalidArgument, {"outside the chunk grid"});
}

TEST(ZarrWriter, ParsesCompressorNames) {
  EXPECT_EQ(parse_compressor("none"), Compressor::None);
  EXPECT_EQ(parse_compressor("zlib"), Compressor::Zlib);
  EXPECT_EQ(parse_compressor("zstd"), Compressor::Zstd);
  EXPECT_EQ(parse_compressor("blosc"), Compressor::Blosc);
  expect_error([] { parse_compressor("lz4"); }, ErrorCode::InvalidArgument, {"lz4", "blosc"});
}

}  // namespace
}  // namespace mmc
