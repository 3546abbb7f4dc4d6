// Tests of HDF5 datasets: files h5py wrote read back against numpy's answers (contiguous
// mapped in place, chunked with and without filters, sparse, compact, external), reading in
// forked workers and threads, files Hdf5Writer wrote read back by h5py, hostile files.
#include "mmc/hdf5.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/hdf5/probe.hpp"
#include "mmc/attributes.hpp"
#include "mmc/chunked.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::expect_error;
using test::TempDir;

Shape parse_dims(const std::string& text) { return text == "-" ? Shape{} : parse_shape(text); }

// One line of hdf5_write.py's manifest.
struct H5Case {
  std::string name;
  std::string file;
  std::string dataset;
  std::string descr;
  Shape shape;
  Shape chunks;
  std::string layout;
};

struct Written {
  std::map<std::string, H5Case> cases;
  // OFFSET lines: case name -> (absolute byte offset of one chunk, its stored size).
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> offsets;
};

// Has h5py write the cases of `group` (see hdf5_write.py) into dir.
Written write_h5py_cases(const TempDir& dir, const std::string& group) {
  std::istringstream in(test::run_python("hdf5_write.py", {dir.path(), group}));
  Written w;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first == "OFFSET") {
      std::string name, coord;
      std::uint64_t offset = 0, size = 0;
      words >> name >> coord >> offset >> size;
      w.offsets[name] = {offset, size};
      continue;
    }
    H5Case c;
    std::string shape, chunks, fill;
    c.name = first;
    words >> c.file >> c.dataset >> c.descr >> shape >> chunks >> c.layout >> fill;
    c.file = dir.file(c.file);
    if (c.descr != "-") {
      c.shape = parse_dims(shape);
      c.chunks = parse_dims(chunks);
    }
    w.cases[c.name] = c;
  }
  EXPECT_FALSE(w.cases.empty()) << "the fixture wrote no " << group << " case";
  return w;
}

std::string as_string(const std::byte* data, std::size_t n) {
  return std::string(reinterpret_cast<const char*>(data), n);
}

std::string read_whole(const ChunkedArray& a) {
  std::vector<std::byte> out(a.meta().nbytes());
  a.read_box({Shape(a.meta().shape.size(), 0), a.meta().shape}, out.data());
  return as_string(out.data(), out.size());
}

std::string read_whole(const Hdf5Dataset& d) {
  if (d.dense) return as_string(d.dense->data(), d.dense->meta().nbytes());
  return read_whole(*d.chunked);
}

// The elements of `box` out of a dense C-order array, as a dense C-order array.
std::string slice(const std::string& whole, const Shape& shape, std::size_t itemsize,
                  const Box& box) {
  std::string out;
  const std::size_t nd = shape.size();
  if (box.size() == 0) return out;
  Shape idx = box.start;
  for (;;) {
    std::int64_t linear = 0;
    for (std::size_t i = 0; i < nd; ++i) linear = linear * shape[i] + idx[i];
    out.append(whole, static_cast<std::size_t>(linear) * itemsize, itemsize);
    std::size_t ax = nd;
    for (;;) {
      if (ax == 0) return out;
      --ax;
      if (++idx[ax] < box.start[ax] + box.count[ax]) break;
      idx[ax] = box.start[ax];
    }
  }
}

// Opens the case, checks dtype, shape and every element, then 25 random boxes.
Hdf5Dataset expect_reads_as_numpy(const TempDir& dir, const H5Case& c) {
  SCOPED_TRACE(c.name);
  Hdf5Dataset d = open_hdf5(c.file, c.dataset);
  EXPECT_TRUE((d.dense != nullptr) != (d.chunked != nullptr));
  const ArrayMeta& meta = d.dense ? d.dense->meta() : d.chunked->meta();
  EXPECT_EQ(meta.dtype, DType::from_numpy_descr(c.descr));
  EXPECT_EQ(meta.shape, c.shape);
  EXPECT_EQ(meta.order, Order::C);
  const std::string expected = test::read_file(dir.file(c.name + ".bin"));
  EXPECT_EQ(read_whole(d) == expected, true) << "whole array differs";
  if (d.chunked) {
    EXPECT_EQ(d.chunked->storage().kind, "hdf5");
    std::mt19937 rng(42);
    for (int k = 0; k < 25 && meta.ndim() > 0; ++k) {
      Box box;
      for (std::int64_t n : meta.shape) {
        const std::int64_t start = std::uniform_int_distribution<std::int64_t>(0, n - 1)(rng);
        box.start.push_back(start);
        box.count.push_back(std::uniform_int_distribution<std::int64_t>(1, n - start)(rng));
      }
      std::vector<std::byte> got(static_cast<std::size_t>(box.size()) * meta.dtype.itemsize());
      d.chunked->read_box(box, got.data());
      EXPECT_TRUE(as_string(got.data(), got.size()) ==
                  slice(expected, meta.shape, meta.dtype.itemsize(), box))
          << "box start " << format_shape(box.start) << " count " << format_shape(box.count);
    }
  }
  return d;
}

std::vector<std::byte> float_bytes(float v) {
  std::vector<std::byte> b(4);
  std::memcpy(b.data(), &v, 4);
  return b;
}

// Overwrites one byte of a file in place (XOR 0x5a).
void damage_byte(const std::string& path, std::uint64_t offset) {
  std::string bytes = test::read_file(path);
  ASSERT_LT(offset, bytes.size());
  bytes[offset] = static_cast<char>(bytes[offset] ^ 0x5a);
  test::write_file(path, bytes);
}

// Damages every `step`th byte of dataset `name`'s chunk (1, 1) from byte `first` on (the fixture
// reports that chunk's offset), then expects reading it to fail as Corrupt, naming it.
void expect_damaged_chunk_refused(const Written& w, const std::string& name, std::uint64_t first,
                                  std::uint64_t step) {
  const auto [offset, size] = w.offsets.at(name);
  for (std::uint64_t k = first; k < size; k += step) damage_byte(w.cases.at(name).file, offset + k);
  const Hdf5Dataset d = open_hdf5(w.cases.at(name).file, "/" + name);
  std::vector<std::byte> buf(d.chunked->chunk_nbytes());
  expect_error(
      [&] {
        d.chunked->read_chunk({1, 1}, buf.data());
      },
      ErrorCode::Corrupt, {name, "chunk (1,1)"});
}

// ---- contiguous datasets ----

TEST(Hdf5Source, MapsContiguousDatasetsInPlaceInTheirByteOrder) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "contiguous");
  for (const char* name :
       {"contig_u1", "contig_i2be", "contig_f4", "contig_f8", "contig_u8be", "contig_bool"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.dense, nullptr) << name;
    EXPECT_EQ(d.dense->kind(), "hdf5");
    EXPECT_EQ(d.dense->path(), w.cases.at(name).file);
    EXPECT_GT(d.dense->data_offset(), 0u);
  }
  EXPECT_EQ(open_hdf5(w.cases.at("contig_i2be").file, "/data").dense->meta().dtype,
            DType(TypeId::I16, ByteOrder::Big));
  EXPECT_EQ(open_hdf5(w.cases.at("contig_bool").file, "/data").dense->meta().dtype.id(),
            TypeId::Bool);
}

TEST(Hdf5Source, ReadsAScalarDataset) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "contiguous");
  const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at("scalar"));
  ASSERT_NE(d.dense, nullptr);
  EXPECT_TRUE(d.dense->meta().shape.empty());
  double v = 0;
  std::memcpy(&v, d.dense->data(), 8);
  EXPECT_EQ(v, 3.25);
}

TEST(Hdf5Source, FindsDataBehindAUserblock) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "contiguous");
  const Hdf5Dataset contig = expect_reads_as_numpy(dir, w.cases.at("userblock_contig"));
  ASSERT_NE(contig.dense, nullptr);
  EXPECT_GE(contig.dense->data_offset(), 512u);
  const Hdf5Dataset chunked = expect_reads_as_numpy(dir, w.cases.at("userblock_chunked"));
  ASSERT_NE(chunked.chunked, nullptr);
  // Unfiltered and few: mapped in place, at addresses that include the userblock.
  const std::string expected = test::read_file(dir.file("userblock_chunked.bin"));
  const std::byte* first = chunked.chunked->chunk_in_place({0, 0});
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(as_string(first, 6), expected.substr(0, 6));  // row 0, columns 0..2 of <u2
}

// ---- chunked datasets ----

TEST(Hdf5Source, MapsFewUnfilteredChunksInPlaceIncludingEdgeChunks) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "chunked");
  const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at("plain"));
  ASSERT_NE(d.chunked, nullptr);
  const ChunkedArray& a = *d.chunked;
  EXPECT_EQ(a.chunk_shape(), (Shape{6, 7}));
  EXPECT_EQ(a.grid(), (Shape{4, 5}));
  const StorageInfo s = a.storage();
  EXPECT_EQ(s.layout, "chunked");
  EXPECT_EQ(s.compressor, "none");
  EXPECT_TRUE(s.filters.empty());
  EXPECT_EQ(s.chunks_total, 20);
  EXPECT_EQ(s.chunks_stored, 20);
  EXPECT_EQ(s.stored_bytes, 20u * 6 * 7 * 8);
  // The edge chunk (3,4) holds rows 18..19 and columns 28..29 of the array.
  const std::string expected = test::read_file(dir.file("plain.bin"));
  const std::byte* edge = a.chunk_in_place({3, 4});
  ASSERT_NE(edge, nullptr);
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(as_string(edge + r * 7 * 8, 2 * 8), expected.substr(((18 + r) * 30 + 28) * 8, 16));
  }
  std::vector<std::byte> buf(a.chunk_nbytes());
  a.read_chunk({3, 4}, buf.data());
  EXPECT_EQ(std::memcmp(buf.data(), edge, buf.size()), 0);
  EXPECT_EQ(a.name(), w.cases.at("plain").file + ":/data");
}

TEST(Hdf5Source, ReadsManyUnfilteredChunksWithH5DreadChunk) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "chunked");
  const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at("plain_many"));
  ASSERT_NE(d.chunked, nullptr);
  EXPECT_EQ(d.chunked->n_chunks(), 300);
  EXPECT_EQ(d.chunked->chunk_in_place({5, 0}), nullptr);  // too many chunks to list
  EXPECT_EQ(d.chunked->storage().chunks_stored, 300);
}

TEST(Hdf5Source, ReadsOneAndFourDimensionalChunkedDatasets) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "chunked");
  for (const char* name : {"plain_1d", "plain_4d"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
    EXPECT_EQ(d.chunked->chunk_shape(), w.cases.at(name).chunks);
  }
  const Written f = write_h5py_cases(dir, "filters");
  for (const char* name : {"gzip_1d", "gzip_4d"}) expect_reads_as_numpy(dir, f.cases.at(name));
}

TEST(Hdf5Source, DecodesGzipAndShuffleChunks) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  for (const char* name : {"gzip_shuffle", "gzip_be", "gzip_many", "gzip_bool"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
    EXPECT_EQ(d.chunked->chunk_in_place(Shape(d.chunked->meta().ndim(), 0)), nullptr);
  }
  const StorageInfo s =
      open_hdf5(w.cases.at("gzip_shuffle").file, "/gzip_shuffle").chunked->storage();
  EXPECT_EQ(s.compressor, "gzip(4)");
  EXPECT_EQ(s.filters, (std::vector<std::string>{"shuffle"}));
  EXPECT_EQ(s.chunks_total, 4 * 3);
  EXPECT_GT(s.stored_bytes, 0u);
  EXPECT_LT(s.stored_bytes, 50u * 40 * 4);
  EXPECT_EQ(open_hdf5(w.cases.at("gzip_be").file, "/gzip_be").chunked->storage().compressor,
            "gzip(9)");
}

TEST(Hdf5Source, VerifiesFletcher32Checksums) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  for (const char* name : {"fletcher_gzip", "fletcher_odd", "fletcher_f8"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
    const auto filters = d.chunked->storage().filters;
    EXPECT_NE(std::find(filters.begin(), filters.end(), "fletcher32"), filters.end()) << name;
  }
}

TEST(Hdf5Source, DecodesH5pysLzfChunksWithShuffleChecksumsAndSkippedChunks) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  for (const char* name : {"lzf", "lzf_shuffle", "lzf_fletcher", "lzf_random"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
    EXPECT_EQ(d.chunked->storage().compressor, "lzf") << name;
  }
  // Damaged lzf bytes are refused naming the chunk, never read past.
  expect_damaged_chunk_refused(w, "lzf_shuffle", 1, 5);
}

TEST(Hdf5Source, DecodesFiltersThatOnlyPluginsProvide) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  for (const char* name : {"plugin_lz4", "plugin_bzip2"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
  }
  // HDF5_PLUGIN_PATH is where libhdf5 looks: a folder holding only the LZ4 plugin serves the
  // LZ4 dataset in the CLI and its workers; an empty one gets the filter named in one line.
  const std::string file = w.cases.at("plugin_lz4").file;
  const std::string plugins = dir.path() + "/plugins";
  const std::string empty = dir.path() + "/empty";
  ASSERT_EQ(test::run_command({"mkdir", "-p", plugins, empty}).exit_code, 0);
  ASSERT_EQ(test::run_command(
                {"cp", "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins/libh5lz4.so", plugins})
                .exit_code,
            0);
  const test::CommandResult ok =
      test::run_command({"env", "HDF5_PLUGIN_PATH=" + plugins, test::cli_path(), "reduce",
                         file + ":/plugin_lz4", "--op", "sum", "--axis", "0,1", "-j", "2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  const std::string want = test::run_python_code(
      "import h5py,sys; print(int(h5py.File(sys.argv[1])['plugin_lz4'][...]"
      ".astype('u8').sum()))",
      {file});
  EXPECT_EQ(ok.out, want);
  const test::CommandResult refused =
      test::run_command({"env", "HDF5_PLUGIN_PATH=" + empty, test::cli_path(), "reduce",
                         file + ":/plugin_lz4", "--op", "sum"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.err.find("filter 32004"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("HDF5_PLUGIN_PATH"), std::string::npos) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
}

TEST(Hdf5Attributes, ReadsWhatH5pyWroteAndWritesWhatH5pyReads) {
  TempDir dir;
  const std::string file = dir.path() + "/a.h5";
  test::run_python_code(R"(
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    d = f.create_dataset("x", data=np.zeros((3, 2), "u1"))
    d.attrs["s"] = "text"
    d.attrs["fixed"] = np.array([b"ab", b"c"], dtype="S2")
    d.attrs["i"] = np.int16(-4)
    d.attrs["u"] = np.uint64(2**63)
    d.attrs["f"] = np.array([0.5, 1.5])
    d.attrs["b"] = True
    d.attrs["skipped"] = np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])
    f["rows"] = np.arange(3); f["rows"].make_scale("rows"); d.dims[0].attach_scale(f["rows"])
)",
                        {file});
  const ArrayAttributes got = read_attributes(open_array(file + ":/x"));
  EXPECT_EQ(
      got.json,
      R"({"b":1,"f":[0.5,1.5],"fixed":["ab","c"],"i":-4,"s":"text","u":9223372036854775808})");
  EXPECT_EQ(got.dims, (std::vector<std::string>{"rows", ""}));
  // Written back: h5py reads each kind as it should.
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {3, 2};
  spec.attributes = R"({"s":"t","n":[1,2],"neg":-1,"f":2.5,"ok":true,"nested":{"a":1}})";
  spec.dimension_names = {"rows", "cols"};
  {
    Hdf5Writer w(dir.path() + "/b.h5", "/y", spec);
    w.commit();
  }
  const std::string out = test::run_python_code(R"(
import sys, json, h5py
d = h5py.File(sys.argv[1])["y"]
print(json.dumps({k: v.tolist() if hasattr(v, "tolist") else v for k, v in d.attrs.items()
                  if k != "DIMENSION_LIST"}, sort_keys=True))
print([[s.name for s in dim.values()] for dim in d.dims])
)",
                                                {dir.path() + "/b.h5"});
  EXPECT_EQ(out,
            "{\"f\": 2.5, \"n\": [1, 2], \"neg\": -1, \"nested\": \"{\\\"a\\\":1}\", \"ok\": 1, "
            "\"s\": \"t\"}\n[['/rows'], ['/cols']]\n");
}

TEST(Hdf5Source, RejectsAChunkWhoseFletcher32SumDoesNotMatch) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  const auto [offset, size] = w.offsets.at("fletcher_odd");
  ASSERT_EQ(size, 9u + 4u);  // 3x3 u1 and the checksum
  damage_byte(w.cases.at("fletcher_odd").file, offset + 4);
  const Hdf5Dataset d = open_hdf5(w.cases.at("fletcher_odd").file, "/fletcher_odd");
  std::vector<std::byte> buf(d.chunked->chunk_nbytes());
  expect_error(
      [&] {
        d.chunked->read_chunk({1, 2}, buf.data());
      },
      ErrorCode::Corrupt, {"Fletcher-32", "fletcher_odd", "chunk (1,2)"});
  d.chunked->read_chunk({1, 1}, buf.data());  // the others still read
  const std::string expected = test::read_file(dir.file("fletcher_odd.bin"));
  EXPECT_EQ(as_string(buf.data(), 3), expected.substr(3 * 10 + 3, 3));
}

TEST(Hdf5Source, ReportsADamagedGzipChunkAsCorrupt) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  expect_damaged_chunk_refused(w, "gzip_shuffle", 2, 7);
}

TEST(Hdf5Source, HonoursEachChunksFilterMask) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at("masked"));
  EXPECT_EQ(d.chunked->storage().compressor, "gzip(4)");  // h5py's default level
}

TEST(Hdf5Source, ReadsFiltersItDoesNotDecodeThroughLibhdf5) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at("scaleoffset"));
  ASSERT_NE(d.chunked, nullptr);
  EXPECT_EQ(d.chunked->storage().filters, (std::vector<std::string>{"scaleoffset"}));
  EXPECT_EQ(d.chunked->chunk_shape(), (Shape{6, 6}));
}

TEST(Hdf5Source, ReadsMissingChunksAsTheFillValueWithEveryChunkIndex) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "sparse");
  for (const char* name : {"sparse_plain", "sparse_many", "sparse_gzip", "sparse_fixed",
                           "sparse_earray", "sparse_btree2", "sparse_earray_plain"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr);
    EXPECT_EQ(d.chunked->fill_value(), float_bytes(-7.5f)) << name;
    const StorageInfo s = d.chunked->storage();
    EXPECT_GT(s.chunks_stored, 0) << name;
    EXPECT_LT(s.chunks_stored, s.chunks_total) << name;
  }
  // Few unfiltered chunks: present ones are mapped, absent ones are not.
  const Hdf5Dataset d = open_hdf5(w.cases.at("sparse_plain").file, "/data");
  EXPECT_NE(d.chunked->chunk_in_place({0, 0}), nullptr);
  EXPECT_EQ(d.chunked->chunk_in_place({2, 2}), nullptr);
  std::vector<std::byte> buf(d.chunked->chunk_nbytes());
  d.chunked->read_chunk({2, 2}, buf.data());
  for (std::size_t i = 0; i < buf.size(); i += 4) {
    ASSERT_EQ(std::memcmp(buf.data() + i, float_bytes(-7.5f).data(), 4), 0) << i;
  }
  const Hdf5Dataset empty = expect_reads_as_numpy(dir, w.cases.at("empty_chunked"));
  EXPECT_EQ(empty.chunked->storage().chunks_stored, 0);
}

// ---- float16 ----

TEST(Hdf5Source, ReadsH5pysFloat16BitForBitInBothByteOrdersThroughEveryChunkPath) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "float16");
  for (const char* name : {"f16_contig", "f16_contig_be"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.dense, nullptr) << name;
  }
  EXPECT_EQ(open_hdf5(w.cases.at("f16_contig_be").file, "/f16_contig_be").dense->meta().dtype,
            DType(TypeId::F16, ByteOrder::Big));
  const std::map<std::string, std::string> chunked = {{"f16_chunks_in_place", "none"},
                                                      {"f16_many_chunks", "none"},
                                                      {"f16_gzip_shuffle", "gzip(4)"},
                                                      {"f16_gzip_shuffle_fletcher_be", "gzip(4)"},
                                                      {"f16_lzf", "lzf"},
                                                      {"f16_lzf_shuffle_be", "lzf"}};
  for (const auto& [name, compressor] : chunked) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(d.chunked, nullptr) << name;
    EXPECT_EQ(d.chunked->meta().dtype.id(), TypeId::F16) << name;
    EXPECT_EQ(d.chunked->storage().compressor, compressor) << name;
  }
  const Hdf5Dataset in_place =
      open_hdf5(w.cases.at("f16_chunks_in_place").file, "/f16_chunks_in_place");
  EXPECT_NE(in_place.chunked->chunk_in_place({1, 2}), nullptr);
  const Hdf5Dataset fletcher =
      open_hdf5(w.cases.at("f16_gzip_shuffle_fletcher_be").file, "/f16_gzip_shuffle_fletcher_be");
  const std::vector<std::string> filters = fletcher.chunked->storage().filters;
  EXPECT_NE(std::find(filters.begin(), filters.end(), "shuffle"), filters.end());
  EXPECT_NE(std::find(filters.begin(), filters.end(), "fletcher32"), filters.end());
}

TEST(Hdf5Source, ReadsMissingFloat16ChunksAsTheFillValuesBits) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "float16");
  const Hdf5Dataset nan = expect_reads_as_numpy(dir, w.cases.at("f16_sparse_nan"));
  ASSERT_NE(nan.chunked, nullptr);
  // numpy's NaN as float16 is 0x7e00, stored little endian; 1.5 is 0x3e00, stored big endian.
  EXPECT_EQ(nan.chunked->fill_value(), (std::vector<std::byte>{std::byte{0x00}, std::byte{0x7e}}));
  const Hdf5Dataset be = expect_reads_as_numpy(dir, w.cases.at("f16_sparse_be"));
  ASSERT_NE(be.chunked, nullptr);
  EXPECT_EQ(be.chunked->fill_value(), (std::vector<std::byte>{std::byte{0x3e}, std::byte{0x00}}));
  EXPECT_LT(be.chunked->storage().chunks_stored, be.chunked->storage().chunks_total);
  std::vector<std::byte> chunk(be.chunked->chunk_nbytes());
  be.chunked->read_chunk({2, 1}, chunk.data());  // rows 6..8: never written
  for (std::size_t i = 0; i < chunk.size(); i += 2) {
    ASSERT_EQ(chunk[i], std::byte{0x3e}) << i;
    ASSERT_EQ(chunk[i + 1], std::byte{0x00}) << i;
  }
}

TEST(Hdf5Source, ReadsADatasetInANestedGroupWithOrWithoutTheLeadingSlash) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "chunked");
  expect_reads_as_numpy(dir, w.cases.at("nested"));
  const Hdf5Dataset d = open_hdf5(w.cases.at("nested").file, "a/b/c/data");
  EXPECT_EQ(d.chunked->name(), w.cases.at("nested").file + ":/a/b/c/data");
  EXPECT_EQ(read_whole(d), test::read_file(dir.file("nested.bin")));
}

TEST(Hdf5Source, ReadsUnwrittenCompactAndExternalDatasetsThroughLibhdf5) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "layouts");
  const Hdf5Dataset unwritten = expect_reads_as_numpy(dir, w.cases.at("unwritten"));
  ASSERT_NE(unwritten.chunked, nullptr);
  EXPECT_EQ(unwritten.chunked->storage().layout, "contiguous");
  EXPECT_EQ(unwritten.chunked->storage().chunks_stored, 0);
  const Hdf5Dataset compact = expect_reads_as_numpy(dir, w.cases.at("compact"));
  ASSERT_NE(compact.chunked, nullptr);
  EXPECT_EQ(compact.chunked->storage().layout, "compact");
  EXPECT_EQ(compact.chunked->n_chunks(), 1);
  EXPECT_EQ(compact.chunked->chunk_in_place({0, 0}), nullptr);
  for (const char* name : {"compact_scalar", "unwritten_scalar"}) {
    const Hdf5Dataset scalar = expect_reads_as_numpy(dir, w.cases.at(name));
    ASSERT_NE(scalar.chunked, nullptr) << name;
    EXPECT_TRUE(scalar.chunked->meta().shape.empty());
    EXPECT_EQ(scalar.chunked->n_chunks(), 1);
    EXPECT_EQ(scalar.chunked->storage().layout,
              std::string(name) == "compact_scalar" ? "compact" : "contiguous");
  }
  const Hdf5Dataset external = expect_reads_as_numpy(dir, w.cases.at("external"));
  ASSERT_NE(external.chunked, nullptr);
  EXPECT_EQ(external.chunked->storage().layout, "external");
  EXPECT_EQ(external.chunked->meta().dtype, DType(TypeId::F32, ByteOrder::Big));
}

// ---- processes and threads ----

// Forks; the child reads the whole array after reopen_after_fork() and exits 0 when it matches.
void expect_child_reads(const ChunkedArray& a, ChunkedArray* mutable_a,
                        const std::string& expected) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int code = 0;
    try {
      mutable_a->reopen_after_fork();
      code = read_whole(a) == expected ? 0 : 1;
    } catch (const std::exception&) {
      code = 2;
    }
    ::_exit(code);  // never run the library's atexit handlers in a worker
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong bytes, 2: an error in the child";
}

TEST(Hdf5Source, ReadsChunksInForkedWorkers) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  for (const char* name : {"gzip_shuffle", "scaleoffset"}) {
    SCOPED_TRACE(name);
    const std::string expected = test::read_file(dir.file(std::string(name) + ".bin"));
    Hdf5Dataset d = open_hdf5(w.cases.at(name).file, std::string("/") + name);
    // Forked before the parent touched the file, then after it opened its own ids.
    expect_child_reads(*d.chunked, d.chunked.get(), expected);
    EXPECT_EQ(read_whole(*d.chunked), expected);
    expect_child_reads(*d.chunked, d.chunked.get(), expected);
    expect_child_reads(*d.chunked, d.chunked.get(), expected);
    EXPECT_EQ(read_whole(*d.chunked), expected);  // the children left the parent's ids alone
  }
}

TEST(Hdf5Source, ReadsChunksFromSeveralThreads) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  const Hdf5Dataset d = open_hdf5(w.cases.at("gzip_many").file, "/gzip_many");
  const std::string expected = test::read_file(dir.file("gzip_many.bin"));
  const ChunkedArray& a = *d.chunked;
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int round = 0; round < 3; ++round) good += read_whole(a) == expected ? 1 : 0;
      ok[t] = good;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, (std::vector<int>{3, 3, 3, 3}));
}

// ---- links ----

TEST(Hdf5Source, ReadsExternalLinkTargetsFromTheFileThatHoldsThem) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "links");
  for (const char* name : {"ext_contig", "ext_chunked", "ext_gzip", "soft"}) {
    const Hdf5Dataset d = expect_reads_as_numpy(dir, w.cases.at(name));
    if (std::string(name) == "ext_contig") {
      ASSERT_NE(d.dense, nullptr);
      EXPECT_EQ(d.dense->path(), dir.file("data.h5"));  // mapped from the target, not master
    }
    if (std::string(name) == "ext_chunked") {
      ASSERT_NE(d.chunked, nullptr);
      EXPECT_NE(d.chunked->chunk_in_place({0, 0}), nullptr);  // mapped from data.h5
    }
  }
}

TEST(Hdf5Source, ReadsAnExternalLinkTargetInForkedWorkers) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "links");
  const H5Case& c = w.cases.at("ext_gzip");
  const Hdf5Dataset d = open_hdf5(c.file, c.dataset);
  ASSERT_NE(d.chunked, nullptr);
  const std::string expected = test::read_file(dir.file("ext_gzip.bin"));
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    d.chunked->reopen_after_fork();
    bool same = false;
    try {
      same = read_whole(*d.chunked) == expected;
    } catch (...) {
    }
    ::_exit(same ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// ---- hostile input ----

TEST(Hdf5Source, ReportsAMissingFileAsNotFound) {
  TempDir dir;
  expect_error([&] { open_hdf5(dir.file("nope.h5"), "/data"); }, ErrorCode::NotFound,
               {"nope.h5", "no such file"});
  expect_error([&] { open_hdf5(dir.path(), "/data"); }, ErrorCode::InvalidArgument, {"folder"});
}

TEST(Hdf5Source, ReportsAMissingDatasetAsNotFoundNamingThePath) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  const std::string file = w.cases.at("hostile").file;
  expect_error([&] { open_hdf5(file, "/nope"); }, ErrorCode::NotFound,
               {"'/nope'", "no member 'nope'", "big"});
  expect_error([&] { open_hdf5(file, "/group/nope/deeper"); }, ErrorCode::NotFound,
               {"'/group/nope/deeper'", "'/group' has no member 'nope'", "inner"});
  expect_error([&] { open_hdf5(file, "/group/leaf/x"); }, ErrorCode::NotFound,
               {"'/group/leaf' is not a group"});
  expect_error([&] { open_hdf5(file, "/dangling"); }, ErrorCode::NotFound, {"dangling"});
  expect_error([&] { open_hdf5(file, ""); }, ErrorCode::InvalidArgument, {"empty dataset"});
}

TEST(Hdf5Source, RejectsAGroupPathAsInvalidArgument) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  const std::string file = w.cases.at("hostile").file;
  expect_error([&] { open_hdf5(file, "/group"); }, ErrorCode::InvalidArgument,
               {"/group is a group", "leaf"});
  expect_error([&] { open_hdf5(file, "/"); }, ErrorCode::InvalidArgument, {"root group"});
}

TEST(Hdf5Source, RejectsATextFileAsCorrupt) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  expect_error([&] { open_hdf5(dir.file("text.h5"), "/data"); }, ErrorCode::Corrupt,
               {"text.h5", "not an HDF5 file"});
}

TEST(Hdf5Source, RejectsUnsupportedDatatypesNamingThem) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  const std::string file = w.cases.at("hostile").file;
  const std::map<std::string, std::string> cases = {{"/strings", "fixed-length string"},
                                                    {"/vlen_strings", "variable-length string"},
                                                    {"/compound", "compound"},
                                                    {"/bfloat16", "2-byte float"},
                                                    {"/enum", "enum"},
                                                    {"/null", "null dataspace"}};
  for (const auto& [name, what] : cases) {
    SCOPED_TRACE(name);
    // A named copy: clang 14 cannot capture a structured binding in a lambda.
    const std::string path = name;
    expect_error([&] { open_hdf5(file, path); }, ErrorCode::InvalidArgument, {path, what});
  }
  // A 2-byte float that is not IEEE binary16 says which layout it has.
  expect_error([&] { open_hdf5(file, "/bfloat16"); }, ErrorCode::InvalidArgument,
               {"not an IEEE 754 layout", "exponent of 8 bits at 7 biased by 127"});
}

TEST(Hdf5Source, RejectsAFilterLibhdf5CannotDecode) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  expect_error([&] { open_hdf5(w.cases.at("hostile").file, "/zstd_plugin"); },
               ErrorCode::InvalidArgument, {"32015", "HDF5_PLUGIN_PATH"});
}

TEST(Hdf5Source, ReportsTruncatedFilesAsCorruptWithoutCrashing) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  for (const char* name : {"half.h5", "cut_end.h5", "signature_only.h5"}) {
    for (const char* dataset : {"/big", "/group/leaf", "/strings"}) {
      SCOPED_TRACE(std::string(name) + dataset);
      try {
        const Hdf5Dataset d = open_hdf5(dir.file(name), dataset);
        read_whole(d);
        ADD_FAILURE() << "a truncated file read without error";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Corrupt) << e.what();
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
      }
    }
  }
}

TEST(Hdf5Source, ReportsDataCutOffAtTheEndAsCorrupt) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "hostile");
  // libhdf5 opens these (their superblock agrees with their length); every dataset lies at
  // least partly past the cut, in each file, so opening or reading must fail.
  for (const char* name : {"patched_30.h5", "patched_half.h5", "patched_90.h5"}) {
    for (const char* dataset : {"/contig_big", "/big", "/small"}) {
      SCOPED_TRACE(std::string(name) + dataset);
      try {
        const Hdf5Dataset d = open_hdf5(dir.file(name), dataset);
        if (std::string(name) == "patched_90.h5" && std::string(dataset) == "/contig_big") {
          EXPECT_NE(d.dense, nullptr);  // wholly before the cut: still readable
          continue;
        }
        read_whole(d);
        ADD_FAILURE() << "data past the end of the file read without error";
      } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::Corrupt) << e.what();
        EXPECT_NE(std::string(e.what()).find(std::string(name) + ":" + dataset), std::string::npos)
            << e.what();
      }
    }
  }
}

TEST(Hdf5Source, RefusesAChunkShapeFarLargerThanItsDataset) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "bigchunk");
  expect_error([&] { open_hdf5(w.cases.at("bigchunk_fixed").file, "/d"); }, ErrorCode::Corrupt,
               {"bigchunk_fixed.h5:/d", "chunk shape", "fixed extent 10", "damaged file?"});
  expect_error([&] { open_hdf5(w.cases.at("bigchunk_growable").file, "/d"); }, ErrorCode::Corrupt,
               {"bigchunk_growable.h5:/d", "1600000000 bytes", "dataset of 800 bytes"});
}

TEST(Hdf5Source, ReportsAFileThatMakesLibhdf5RunAwayAsDamaged) {
  TempDir dir;
  // A runaway ends at the memory cap or the time limit; a few seconds of it are enough here
  // (under the sanitizers the cap is reached slowly, and 20 s per run add up).
  ::setenv("MMC_HDF5_PROBE_SECONDS", "4", 1);
  const std::string file = dir.file("loop.h5");
  const std::string dataset = test::run_python("hdf5_damage.py", {"heap_loop", file});
  ASSERT_EQ(dataset, "/g/d\n");
  // Without the probe libhdf5 allocates until the kernel kills the process.
  expect_error([&] { open_hdf5(file, "/g/d"); }, ErrorCode::Corrupt, {"loop.h5", "damaged file?"});
  expect_error([&] { list_hdf5(file); }, ErrorCode::Corrupt, {"loop.h5", "damaged file?"});
}

TEST(Hdf5Probe, TurnsACrashInTheProbedWorkIntoOneCorruptError) {
  // What a libhdf5 SIGSEGV on a damaged file looks like to the probe.
  expect_error([] { detail::probe_hdf5("x.h5", [] { std::raise(SIGSEGV); }); }, ErrorCode::Corrupt,
               {"x.h5: libhdf5 crashed reading it", "damaged file?"});
  // An error in the child comes back as it was thrown; success returns.
  expect_error(
      [] {
        detail::probe_hdf5("y.h5", [] { throw_error(ErrorCode::NotFound, "y.h5: no dataset"); });
      },
      ErrorCode::NotFound, {"y.h5: no dataset"});
  detail::probe_hdf5("z.h5", [] {});
  // A runaway allocation meets the child's memory cap, not the machine's.
  expect_error(
      [] {
        detail::probe_hdf5("w.h5", [] {
          std::vector<std::vector<char>> hog;
          for (;;) hog.emplace_back(std::size_t{64} << 20, 'x');
        });
      },
      ErrorCode::Corrupt, {"w.h5", "damaged file?"});
}

TEST(Hdf5Probe, EndsItsChildByTheAlarmEvenWhenTheCallerIgnoresOrBlocksIt) {
  // A library user that ignores SIGALRM, then one that blocks it: the child must still die of
  // its alarm (raised here at once, instead of waiting out the time limit).
  struct sigaction ignore {};
  struct sigaction old {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGALRM, &ignore, &old), 0);
  const auto alarmed = [] { detail::probe_hdf5("a.h5", [] { std::raise(SIGALRM); }); };
  expect_error(alarmed, ErrorCode::Corrupt, {"a.h5", "did not finish"});
  ASSERT_EQ(::sigaction(SIGALRM, &old, nullptr), 0);
  sigset_t alarm_only, before;
  sigemptyset(&alarm_only);
  sigaddset(&alarm_only, SIGALRM);
  ASSERT_EQ(::sigprocmask(SIG_BLOCK, &alarm_only, &before), 0);
  expect_error(alarmed, ErrorCode::Corrupt, {"a.h5", "did not finish"});
  ASSERT_EQ(::sigprocmask(SIG_SETMASK, &before, nullptr), 0);
}

TEST(Hdf5Source, RejectsChunkCoordinatesOutsideTheGrid) {
  TempDir dir;
  const Written w = write_h5py_cases(dir, "filters");
  const Hdf5Dataset d = open_hdf5(w.cases.at("gzip_shuffle").file, "/gzip_shuffle");
  std::vector<std::byte> buf(d.chunked->chunk_nbytes());
  expect_error(
      [&] {
        d.chunked->read_chunk({4, 0}, buf.data());
      },
      ErrorCode::InvalidArgument, {"outside the grid"});
  expect_error([&] { d.chunked->read_chunk({0}, buf.data()); }, ErrorCode::InvalidArgument,
               {"wrong number of axes"});
}

TEST(Hdf5Spec, SplitsFileAndDatasetAtTheFirstColonSlash) {
  std::string file, dataset;
  ASSERT_TRUE(split_hdf5_spec("cube.h5:/group/images", &file, &dataset));
  EXPECT_EQ(file, "cube.h5");
  EXPECT_EQ(dataset, "/group/images");
  ASSERT_TRUE(split_hdf5_spec("/data/run:1/cube.h5:/x", &file, &dataset));
  EXPECT_EQ(file, "/data/run:1/cube.h5");
  EXPECT_EQ(dataset, "/x");
  EXPECT_FALSE(split_hdf5_spec("cube.h5", &file, &dataset));
  EXPECT_FALSE(split_hdf5_spec(":/x", &file, &dataset));
}

TEST(Hdf5Spec, ReadsFileColonNameWithoutASlashAsADatasetAtTheRoot) {
  std::string file, dataset;
  ASSERT_TRUE(split_hdf5_spec("cube.h5:images", &file, &dataset));
  EXPECT_EQ(file, "cube.h5");
  EXPECT_EQ(dataset, "/images");
  ASSERT_TRUE(split_hdf5_spec("run:2/cube.hdf5:group/x", &file, &dataset));
  EXPECT_EQ(file, "run:2/cube.hdf5");
  EXPECT_EQ(dataset, "/group/x");
  EXPECT_FALSE(split_hdf5_spec("notes.txt:x", &file, &dataset));  // not an HDF5 name
  EXPECT_FALSE(split_hdf5_spec("cube.h5:", &file, &dataset));
  // A file whose whole name holds the colon is that file, not a dataset in another.
  TempDir dir;
  test::write_file(dir.file("odd.h5:x"), "raw bytes");
  EXPECT_FALSE(split_hdf5_spec(dir.file("odd.h5:x"), &file, &dataset));
}

// ---- Hdf5Writer ----

struct H5pyView {
  std::string line;   // hdf5_check.py's summary
  std::string bytes;  // the values h5py read
};

H5pyView h5py_reads(const TempDir& dir, const std::string& file, const std::string& dataset) {
  const std::string out = dir.file("h5py_view.bin");
  H5pyView v;
  v.line = test::run_python("hdf5_check.py", {file, dataset, out});
  if (!v.line.empty() && v.line.back() == '\n') v.line.pop_back();
  v.bytes = test::read_file(out);
  return v;
}

// n deterministic bytes (never all zero, so a missed write shows).
std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return s;
}

TEST(Hdf5Writer, WritesContiguousDataPwrittenAtDataOffsetByAForkedWorker) {
  TempDir dir;
  const std::string file = dir.file("out.h5");
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::F32);
  spec.shape = {300, 200};
  Hdf5Writer writer(file, "/images", spec);
  EXPECT_EQ(writer.data_offset() % 4096, 0u);  // large data starts on a page
  const std::string data = pattern(300 * 200 * 4, 1);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(writer.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
    const bool ok = fd >= 0 && ::pwrite(fd, data.data(), data.size(),
                                        static_cast<off_t>(writer.data_offset())) ==
                                   static_cast<ssize_t>(data.size());
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_FALSE(test::file_exists(file));  // nothing at the destination before commit
  writer.commit();
  EXPECT_EQ(test::list_dir(dir.path()), (std::vector<std::string>{"out.h5"}));
  const H5pyView v = h5py_reads(dir, file, "/images");
  EXPECT_EQ(v.line, "<f4 300,200 - none - 0 contiguous");
  EXPECT_TRUE(v.bytes == data);
  const Hdf5Dataset back = open_hdf5(file, "/images");
  ASSERT_NE(back.dense, nullptr);
  EXPECT_EQ(back.dense->data_offset(), writer.data_offset());
  EXPECT_TRUE(read_whole(back) == data);
}

TEST(Hdf5Writer, WritesGzipShuffleChunksThatH5pyReadsIncludingEdgeChunks) {
  TempDir dir;
  const std::string file = dir.file("chunks.h5");
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::I32);
  spec.shape = {37, 23};
  spec.chunks = {8, 8};
  spec.gzip_level = 4;
  Hdf5Writer writer(file, "/a/b/data", spec);  // intermediate groups made on the way
  // The array's values, then each full chunk cut from them (padding beyond the edges).
  const std::string values = pattern(37 * 23 * 4, 2);
  std::string expected = values;
  for (std::int64_t gr = 0; gr < 5; ++gr) {
    for (std::int64_t gc = 0; gc < 3; ++gc) {
      if (gr == 2 && gc == 1) {  // left unwritten: h5py reads the fill value 0
        for (std::int64_t r = 16; r < 24; ++r) {
          std::memset(expected.data() + (r * 23 + 8) * 4, 0, 8 * 4);
        }
        continue;
      }
      std::vector<std::byte> chunk(8 * 8 * 4, std::byte{0x77});
      for (std::int64_t r = 0; r < 8 && gr * 8 + r < 37; ++r) {
        for (std::int64_t c = 0; c < 8 && gc * 8 + c < 23; ++c) {
          std::memcpy(chunk.data() + (r * 8 + c) * 4,
                      values.data() + ((gr * 8 + r) * 23 + gc * 8 + c) * 4, 4);
        }
      }
      if ((gr + gc) % 2 == 0) {
        writer.write_chunk({gr, gc}, chunk.data());
      } else {
        writer.write_encoded_chunk({gr, gc}, writer.encode_chunk(chunk.data()));
      }
    }
  }
  writer.commit();
  const H5pyView v = h5py_reads(dir, file, "/a/b/data");
  EXPECT_EQ(v.line, "<i4 37,23 8,8 gzip 4 1 chunked");
  EXPECT_TRUE(v.bytes == expected);
  const Hdf5Dataset back = open_hdf5(file, "/a/b/data");
  ASSERT_NE(back.chunked, nullptr);
  EXPECT_EQ(back.chunked->storage().chunks_stored, 14);
  EXPECT_TRUE(read_whole(back) == expected);
}

TEST(Hdf5Writer, WritesUnfilteredChunksOfBoolsThatH5pyReadsAsBool) {
  TempDir dir;
  const std::string file = dir.file("bools.h5");
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::Bool);
  spec.shape = {5, 3};
  spec.chunks = {2, 3};
  Hdf5Writer writer(file, "flags", spec);
  std::string expected;
  for (std::int64_t g = 0; g < 3; ++g) {
    std::vector<std::byte> chunk(6);
    for (int k = 0; k < 6; ++k) chunk[k] = std::byte((g + k) % 2);
    writer.write_chunk({g, 0}, chunk.data());
    expected += as_string(chunk.data(), g < 2 ? 6 : 3);
  }
  expect_error(
      [&] {
        writer.write_encoded_chunk({0, 0}, std::vector<std::byte>(5));
      },
      ErrorCode::InvalidArgument, {"5 bytes, expected 6"});
  writer.commit();
  const H5pyView v = h5py_reads(dir, file, "/flags");
  EXPECT_EQ(v.line, "|b1 5,3 2,3 none - 0 chunked");
  EXPECT_EQ(v.bytes, expected);
  const Hdf5Dataset back = open_hdf5(file, "/flags");
  EXPECT_EQ(back.chunked->meta().dtype.id(), TypeId::Bool);
  EXPECT_NE(back.chunked->chunk_in_place({1, 0}), nullptr);
}

TEST(Hdf5Writer, WritesAScalarAndABigEndianArray) {
  TempDir dir;
  Hdf5WriteSpec scalar;
  scalar.dtype = DType(TypeId::F64);
  Hdf5Writer w1(dir.file("s.h5"), "/x", scalar);
  const double v = -2.5;
  const int fd = ::open(w1.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, &v, 8, static_cast<off_t>(w1.data_offset())), 8);
  ::close(fd);
  w1.commit();
  EXPECT_EQ(h5py_reads(dir, dir.file("s.h5"), "/x").line, "<f8 - - none - 0 contiguous");
  EXPECT_EQ(h5py_reads(dir, dir.file("s.h5"), "/x").bytes,
            std::string(reinterpret_cast<const char*>(&v), 8));

  Hdf5WriteSpec be;
  be.dtype = DType(TypeId::U16, ByteOrder::Big);
  be.shape = {4};
  be.chunks = {3};
  be.gzip_level = 1;
  Hdf5Writer w2(dir.file("be.h5"), "/x", be);
  const std::string a = "\x01\x02\x03\x04\x05\x06", b = "\x07\x08\x00\x00\x00\x00";
  w2.write_chunk({0}, reinterpret_cast<const std::byte*>(a.data()));
  w2.write_chunk({1}, reinterpret_cast<const std::byte*>(b.data()));
  w2.commit();
  const H5pyView view = h5py_reads(dir, dir.file("be.h5"), "/x");
  EXPECT_EQ(view.line, ">u2 4 3 gzip 1 1 chunked");
  EXPECT_EQ(view.bytes, std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));

  Hdf5WriteSpec empty;  // no elements, so no storage and nothing to write
  empty.dtype = DType(TypeId::I64);
  empty.shape = {0, 5};
  Hdf5Writer w3(dir.file("empty.h5"), "/x", empty);
  EXPECT_EQ(w3.data_offset(), 0u);
  w3.commit();
  EXPECT_EQ(h5py_reads(dir, dir.file("empty.h5"), "/x").line, "<i8 0,5 - none - 0 contiguous");
  EXPECT_EQ(read_whole(open_hdf5(dir.file("empty.h5"), "/x")), "");
}

TEST(Hdf5Writer, WritesFloat16ThatH5pyReadsAsFloat16InBothByteOrdersWithItsFillValue) {
  TempDir dir;
  // Contiguous, little endian: any 2-byte patterns (NaN payloads too) come back as written.
  Hdf5WriteSpec le;
  le.dtype = DType(TypeId::F16, ByteOrder::Little);
  le.shape = {4, 5};
  Hdf5Writer w1(dir.file("le.h5"), "/half", le);
  const std::string data = pattern(4 * 5 * 2, 3);
  const int fd = ::open(w1.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(w1.data_offset())),
            static_cast<ssize_t>(data.size()));
  ::close(fd);
  w1.commit();
  const H5pyView v1 = h5py_reads(dir, dir.file("le.h5"), "/half");
  EXPECT_EQ(v1.line, "<f2 4,5 - none - 0 contiguous");
  EXPECT_TRUE(v1.bytes == data);
  EXPECT_EQ(open_hdf5(dir.file("le.h5"), "/half").dense->meta().dtype,
            DType(TypeId::F16, ByteOrder::Little));

  // Chunked, big endian, gzip + shuffle over 2-byte elements, a NaN fill value (0x7e00) and
  // one chunk never written: h5py reads the NaN's bits there.
  Hdf5WriteSpec be;
  be.dtype = DType(TypeId::F16, ByteOrder::Big);
  be.shape = {7, 5};
  be.chunks = {3, 3};
  be.gzip_level = 4;
  be.fill = {std::byte{0x7e}, std::byte{0x00}};
  Hdf5Writer w2(dir.file("be.h5"), "/half", be);
  const std::string values = pattern(7 * 5 * 2, 4);
  std::string expected = values;
  for (std::int64_t gr = 0; gr < 3; ++gr) {
    for (std::int64_t gc = 0; gc < 2; ++gc) {
      if (gr == 1 && gc == 1) {
        for (std::int64_t r = 3; r < 6; ++r) {
          for (std::int64_t c = 3; c < 5; ++c) expected.replace((r * 5 + c) * 2, 2, "\x7e\x00", 2);
        }
        continue;
      }
      std::vector<std::byte> chunk(3 * 3 * 2, std::byte{0x11});
      for (std::int64_t r = 0; r < 3 && gr * 3 + r < 7; ++r) {
        for (std::int64_t c = 0; c < 3 && gc * 3 + c < 5; ++c) {
          std::memcpy(chunk.data() + (r * 3 + c) * 2,
                      values.data() + ((gr * 3 + r) * 5 + gc * 3 + c) * 2, 2);
        }
      }
      w2.write_chunk({gr, gc}, chunk.data());
    }
  }
  w2.commit();
  const H5pyView v2 = h5py_reads(dir, dir.file("be.h5"), "/half");
  EXPECT_EQ(v2.line, ">f2 7,5 3,3 gzip 4 1 chunked");
  EXPECT_TRUE(v2.bytes == expected);
  const Hdf5Dataset back = open_hdf5(dir.file("be.h5"), "/half");
  ASSERT_NE(back.chunked, nullptr);
  EXPECT_EQ(back.chunked->meta().dtype, DType(TypeId::F16, ByteOrder::Big));
  EXPECT_EQ(back.chunked->fill_value(), be.fill);
  EXPECT_TRUE(read_whole(back) == expected);
}

TEST(Hdf5Writer, LeavesNothingBehindWithoutCommit) {
  TempDir dir;
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {100, 100};
  spec.chunks = {10, 10};
  spec.gzip_level = 3;
  {
    Hdf5Writer writer(dir.file("x.h5"), "/data", spec);
    const std::string chunk = pattern(100, 3);
    writer.write_chunk({0, 0}, reinterpret_cast<const std::byte*>(chunk.data()));
    EXPECT_EQ(test::list_dir(dir.path()).size(), 1u);  // the temporary, hidden
    EXPECT_EQ(test::list_dir(dir.path())[0][0], '.');
  }
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
  {
    spec.chunks.clear();
    spec.gzip_level = 0;
    Hdf5Writer writer(dir.file("y.h5"), "/data", spec);
    EXPECT_TRUE(test::file_exists(writer.temp_path()));
  }
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
}

TEST(Hdf5Writer, RefusesToReplaceAFileUnlessAskedTo) {
  TempDir dir;
  const std::string file = dir.file("x.h5");
  test::write_file(file, "precious");
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {4};
  expect_error([&] { Hdf5Writer(file, "/d", spec); }, ErrorCode::Io,
               {"x.h5", "already exists", "overwrite"});
  // The destination appearing between construction and commit is refused too.
  test::write_file(file + "2", "");
  ::unlink((file + "2").c_str());
  {
    Hdf5Writer late(file + "2", "/d", spec);
    test::write_file(file + "2", "precious too");
    expect_error([&] { late.commit(); }, ErrorCode::Io, {"already exists"});
  }
  EXPECT_EQ(test::read_file(file + "2"), "precious too");
  Hdf5Writer writer(file, "/d", spec, /*overwrite=*/true);
  writer.commit();
  EXPECT_EQ(h5py_reads(dir, file, "/d").line, "|u1 4 - none - 0 contiguous");
  EXPECT_EQ(test::list_dir(dir.path()),
            (std::vector<std::string>{"h5py_view.bin", "x.h5", "x.h52"}));
}

// ---- writing into an existing file ----

std::string tree_of(const std::string& file) {
  return test::run_python("hdf5_tree.py", {"dump", file});
}

// The lines of `after` that are not in `before`, and the other way round.
std::string line_difference(const std::string& a, const std::string& b) {
  std::istringstream in(a);
  std::string line, out;
  while (std::getline(in, line)) {
    if (("\n" + b).find("\n" + line + "\n") == std::string::npos) out += line + "\n";
  }
  return out;
}

TEST(Hdf5Writer, AddsADatasetToAnExistingFileKeepingItsObjects) {
  TempDir dir;
  const std::string file = dir.file("tree.h5");
  test::run_python("hdf5_tree.py", {"make", file});
  const std::string before = tree_of(file);
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::F32);
  spec.shape = {100, 200};
  const std::string data = pattern(100 * 200 * 4, 5);
  {
    Hdf5Writer writer(file, "/new/deep/images", spec);
    EXPECT_EQ(writer.temp_path(), file);  // the data goes into the file itself
    const int fd = ::open(writer.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), static_cast<off_t>(writer.data_offset())),
              static_cast<ssize_t>(data.size()));
    ::close(fd);
    // Nothing visible before commit (the writer holds HDF5's lock: look without it).
    ::setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    EXPECT_EQ(tree_of(file), before);
    ::unsetenv("HDF5_USE_FILE_LOCKING");
    writer.commit();
  }
  EXPECT_EQ(h5py_reads(dir, file, "/new/deep/images").bytes, data);
  const std::string after = tree_of(file);
  EXPECT_EQ(line_difference(before, after), "");  // every old object, attribute and value
  EXPECT_EQ(line_difference(after, before).substr(0, 5), "/new ");
  // Chunked and gzip, beside the first.
  spec.chunks = {30, 64};
  spec.gzip_level = 4;
  {
    Hdf5Writer writer(file, "/grp/zipped", spec);
    for (std::int64_t i = 0; i < 4; ++i) {
      for (std::int64_t j = 0; j < 4; ++j) {
        writer.write_chunk({i, j},
                           reinterpret_cast<const std::byte*>(
                               pattern(30 * 64 * 4, static_cast<unsigned>(i * 4 + j)).data()));
      }
    }
    writer.commit();
  }
  EXPECT_EQ(h5py_reads(dir, file, "/grp/zipped").line, "<f4 100,200 30,64 gzip 4 1 chunked");
  EXPECT_EQ(line_difference(after, tree_of(file)), "");
  EXPECT_EQ(test::list_dir(dir.path()), (std::vector<std::string>{"h5py_view.bin", "tree.h5"}));
}

TEST(Hdf5Writer, ReplacesOnlyTheNamedDatasetWhenAskedTo) {
  TempDir dir;
  const std::string file = dir.file("tree.h5");
  test::run_python("hdf5_tree.py", {"make", file});
  const std::string before = tree_of(file);
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::U8);
  spec.shape = {3};
  expect_error([&] { Hdf5Writer(file, "/raw", spec); }, ErrorCode::Io,
               {"tree.h5:/raw", "already exists", "overwrite", "other objects are kept"});
  expect_error([&] { Hdf5Writer(file, "/grp", spec, true); }, ErrorCode::InvalidArgument,
               {"is a group"});
  expect_error([&] { Hdf5Writer(file, "/small/x", spec, true); }, ErrorCode::InvalidArgument,
               {"'/small' is not a group"});
  EXPECT_EQ(tree_of(file), before);
  {
    Hdf5Writer writer(file, "raw", spec, /*overwrite=*/true);
    const int fd = ::open(writer.temp_path().c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_EQ(::pwrite(fd, "abc", 3, static_cast<off_t>(writer.data_offset())), 3);
    ::close(fd);
    writer.commit();
  }
  EXPECT_EQ(h5py_reads(dir, file, "/raw").bytes, "abc");
  const std::string after = tree_of(file);
  EXPECT_EQ(line_difference(before, after).substr(0, 5), "/raw ");  // only /raw changed
  EXPECT_EQ(line_difference(after, before).substr(0, 5), "/raw ");
}

TEST(Hdf5Writer, AnUncommittedWriteLeavesAnExistingFileAsItWas) {
  TempDir dir;
  const std::string file = dir.file("tree.h5");
  test::run_python("hdf5_tree.py", {"make", file});
  const std::string before = tree_of(file);
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::I32);
  spec.shape = {64, 64};
  spec.chunks = {16, 16};
  for (bool overwrite : {false, true}) {
    Hdf5Writer writer(file, overwrite ? "/raw" : "/fresh", spec, overwrite);
    writer.write_chunk({0, 0}, reinterpret_cast<const std::byte*>(pattern(16 * 16 * 4, 1).data()));
  }  // destroyed without commit, as when a worker fails
  EXPECT_EQ(tree_of(file), before);
}

TEST(Hdf5Writer, RejectsBadSpecs) {
  TempDir dir;
  Hdf5WriteSpec spec;
  spec.dtype = DType(TypeId::F32);
  spec.shape = {10, 10};
  spec.chunks = {5};
  expect_error([&] { Hdf5Writer(dir.file("a.h5"), "/d", spec); }, ErrorCode::InvalidArgument,
               {"different numbers of axes"});
  spec.chunks = {5, 0};
  expect_error([&] { Hdf5Writer(dir.file("a.h5"), "/d", spec); }, ErrorCode::InvalidArgument,
               {"at least 1"});
  spec.chunks = {5, 5};
  spec.gzip_level = 10;
  expect_error([&] { Hdf5Writer(dir.file("a.h5"), "/d", spec); }, ErrorCode::InvalidArgument,
               {"gzip_level 10"});
  spec.chunks.clear();
  spec.gzip_level = 1;
  expect_error([&] { Hdf5Writer(dir.file("a.h5"), "/d", spec); }, ErrorCode::InvalidArgument,
               {"chunked"});
  spec.gzip_level = 0;
  expect_error([&] { Hdf5Writer(dir.file("a.h5"), "/", spec); }, ErrorCode::InvalidArgument,
               {"must name a dataset"});
  Hdf5Writer contiguous(dir.file("a.h5"), "/d", spec);
  expect_error(
      [&] {
        contiguous.write_chunk({0, 0}, nullptr);
      },
      ErrorCode::InvalidArgument, {"data_offset"});
  EXPECT_TRUE(test::list_dir(dir.path()).size() == 1u);  // only the live writer's temporary
}

}  // namespace
}  // namespace mmc
