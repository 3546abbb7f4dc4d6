// Tests of open_array and convert: sources made by numpy, zarr-python and h5py, converted to
// every format and read back by those same libraries, compared value for value.
#include "mmc/convert.hpp"

#include <dirent.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::TempDir;

struct Made {
  std::string path;
  std::string expected;
};

Made make(const TempDir& dir, const std::string& kind, const std::string& name,
          const std::string& dtype, const std::string& shape, const std::string& order = "C",
          const std::string& chunks = "", const std::string& compressor = "none") {
  Made m;
  m.path = kind == "hdf5" ? dir.file(name) + ":/group/data" : dir.file(name);
  m.expected = dir.file(name + ".expected.npy");
  std::vector<std::string> args = {"make", kind, m.path, m.expected, dtype, shape, order};
  if (!chunks.empty()) {
    args.push_back(chunks);
    args.push_back(compressor);
  }
  test::run_python("convert_check.py", args);
  return m;
}

// "ok <dtype> <layout>" from the checker, which fails the test on any difference.
std::string check(const std::string& kind, const std::string& path, const std::string& expected,
                  const std::vector<std::string>& raw = {}) {
  std::vector<std::string> args = {"check", kind, path, expected};
  args.insert(args.end(), raw.begin(), raw.end());
  return test::run_python("convert_check.py", args);
}

PoolOptions jobs(int n) {
  PoolOptions pool;
  pool.n_jobs = n;
  pool.backend = n == 1 ? Backend::Serial : Backend::Process;
  return pool;
}

std::vector<std::string> entries(const std::string& folder) {
  std::vector<std::string> names;
  DIR* d = opendir(folder.c_str());
  while (dirent* e = d ? readdir(d) : nullptr) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  if (d) closedir(d);
  return names;
}

TEST(OpenArray, TellsFormatsApartAndNamesWhatItCannotRead) {
  TempDir dir;
  const Made npy = make(dir, "npy", "a.npy", "<f4", "3,4,5");
  const Made zarr = make(dir, "zarr", "a.zarr", "<u2", "3,4,5", "C", "1,4,5", "zlib");
  const Made h5 = make(dir, "hdf5", "a.h5", "<i4", "3,4,5");
  EXPECT_EQ(open_array(npy.path).kind(), "npy");
  EXPECT_EQ(open_array(zarr.path).kind(), "zarr");
  EXPECT_EQ(open_array(h5.path).kind(), "hdf5");
  EXPECT_TRUE(open_array(h5.path).dense() != nullptr) << "contiguous HDF5 is mapped in place";
  EXPECT_EQ(open_array(h5.path).meta().shape, (Shape{3, 4, 5}));
  std::ofstream(dir.file("plain.bin")) << "hello";
  test::expect_error([&] { open_array(dir.file("plain.bin")); }, ErrorCode::InvalidArgument,
                     {"--dtype", "--shape"});
  test::expect_error([&] { open_array(dir.file("missing.npy")); }, ErrorCode::NotFound,
                     {"missing.npy"});
}

TEST(Convert, NpyToEveryFormatWithOneAndTwoWorkers) {
  TempDir dir;
  const Made src = make(dir, "npy", "cube.npy", "<f4", "6,50,40");
  const AnyArray in = open_array(src.path);
  for (int n : {1, 2}) {
    const std::string tag = std::to_string(n);
    ConvertOptions options;
    options.pool = jobs(n);
    convert(in, dir.file("out" + tag + ".raw"), options);
    EXPECT_EQ(check("raw", dir.file("out" + tag + ".raw"), src.expected, {"<f4", "6,50,40"}),
              "ok <f4 -\n");
    convert(in, dir.file("out" + tag + ".npy"), options);
    EXPECT_EQ(check("npy", dir.file("out" + tag + ".npy"), src.expected), "ok <f4 -\n");
    convert(in, dir.file("plain" + tag + ".zarr"), options);
    EXPECT_EQ(check("zarr", dir.file("plain" + tag + ".zarr"), src.expected),
              "ok <f4 chunks=6,50,40;none\n");
    convert(in, dir.file("contig" + tag + ".h5"), options);
    EXPECT_EQ(check("hdf5", dir.file("contig" + tag + ".h5") + ":/data", src.expected),
              "ok <f4 contiguous;none\n");
    for (const char* codec : {"zlib", "zstd", "blosc"}) {
      ConvertOptions chunked = options;
      chunked.chunks = {2, 16, 16};
      chunked.compressor = parse_compressor(codec);
      const std::string out = dir.file(std::string(codec) + tag + ".zarr");
      convert(in, out, chunked);
      EXPECT_EQ(check("zarr", out, src.expected),
                "ok <f4 chunks=2,16,16;" + std::string(codec) + "\n");
    }
    ConvertOptions gzip = options;
    gzip.chunks = {1, 25, 40};
    gzip.compressor = Compressor::Zlib;
    const std::string h5 = dir.file("gzip" + tag + ".h5") + ":/images/cube";
    convert(in, h5, gzip);
    EXPECT_EQ(check("hdf5", h5, src.expected), "ok <f4 chunks=1,25,40;gzip\n");
  }
}

TEST(Convert, FortranAndBigEndianSourcesComeOutInCOrder) {
  TempDir dir;
  const Made f = make(dir, "npy", "f.npy", "<i2", "5,7,9", "F");
  convert(open_array(f.path), dir.file("f_out.npy"), {});
  EXPECT_EQ(check("npy", dir.file("f_out.npy"), f.expected), "ok <i2 -\n");

  const Made big = make(dir, "raw", "big.raw", ">i4", "4,30,11");
  RawSpec raw;
  raw.dtype = DType::parse(">i4");
  raw.shape = {4, 30, 11};
  const AnyArray in = open_array(big.path, &raw);
  ConvertOptions options;
  options.pool = jobs(2);
  convert(in, dir.file("big.h5"), options);  // HDF5 stores this machine's byte order
  EXPECT_EQ(check("hdf5", dir.file("big.h5") + ":/data", big.expected), "ok <i4 contiguous;none\n");
  convert(in, dir.file("big.zarr"), options);  // zarr keeps the stored byte order
  EXPECT_EQ(check("zarr", dir.file("big.zarr"), big.expected), "ok >i4 chunks=4,30,11;none\n");
}

TEST(Convert, ChunkedSourcesWithEdgeChunks) {
  TempDir dir;
  const Made z = make(dir, "zarr", "src.zarr", "<u2", "9,25,23", "C", "4,10,10", "blosc");
  const Made h = make(dir, "hdf5", "src.h5", "<f8", "7,33,5", "C", "3,8,5", "gzip");
  ConvertOptions options;
  options.pool = jobs(2);
  convert(open_array(z.path), dir.file("z.npy"), options);
  EXPECT_EQ(check("npy", dir.file("z.npy"), z.expected), "ok <u2 -\n");
  ConvertOptions rechunk = options;
  rechunk.chunks = {2, 7, 23};
  rechunk.compressor = Compressor::Zlib;
  convert(open_array(z.path), dir.file("z.h5"), rechunk);
  EXPECT_EQ(check("hdf5", dir.file("z.h5") + ":/data", z.expected), "ok <u2 chunks=2,7,23;gzip\n");
  convert(open_array(h.path), dir.file("h.zarr"), rechunk);
  EXPECT_EQ(check("zarr", dir.file("h.zarr"), h.expected), "ok <f8 chunks=2,7,23;zlib\n");
}

TEST(Convert, Float16FromEveryFormatToEveryFormat) {
  TempDir dir;
  const Made npy = make(dir, "npy", "h.npy", "<f2", "6,20,9", "F");
  const Made raw = make(dir, "raw", "h.raw", ">f2", "6,20,9");
  const Made zarr = make(dir, "zarr", "h.zarr", "<f2", "6,20,9", "C", "4,8,8", "blosc");
  const Made h5 = make(dir, "hdf5", "h.h5", ">f2", "6,20,9", "C", "2,16,4", "gzip");
  RawSpec spec;
  spec.dtype = DType::parse(">f2");
  spec.shape = {6, 20, 9};
  ConvertOptions options;
  options.pool = jobs(2);
  for (const auto& [name, made] : std::vector<std::pair<std::string, Made>>{
           {"npy", npy}, {"raw", raw}, {"zarr", zarr}, {"h5", h5}}) {
    SCOPED_TRACE(name);
    const AnyArray in = open_array(made.path, name == "raw" ? &spec : nullptr);
    EXPECT_EQ(in.meta().dtype.id(), TypeId::F16);
    const std::string descr = in.meta().dtype.numpy_descr();  // zarr and raw keep it
    const std::string out = dir.file("from_" + name);
    convert(in, out + ".npy", options);
    EXPECT_EQ(check("npy", out + ".npy", made.expected), "ok " + descr + " -\n");
    convert(in, out + ".raw", options);
    EXPECT_EQ(check("raw", out + ".raw", made.expected, {descr, "6,20,9"}), "ok " + descr + " -\n");
    convert(in, out + ".h5", options);  // this machine's byte order
    EXPECT_EQ(check("hdf5", out + ".h5:/data", made.expected), "ok <f2 contiguous;none\n");
    ConvertOptions gzip = options;
    gzip.chunks = {4, 7, 9};
    gzip.compressor = Compressor::Zlib;
    convert(in, out + "_gzip.h5", gzip);
    EXPECT_EQ(check("hdf5", out + "_gzip.h5:/data", made.expected), "ok <f2 chunks=4,7,9;gzip\n");
    ConvertOptions blosc = options;
    blosc.chunks = {3, 8, 8};
    blosc.compressor = Compressor::Blosc;
    convert(in, out + ".zarr", blosc);
    EXPECT_EQ(check("zarr", out + ".zarr", made.expected), "ok " + descr + " chunks=3,8,8;blosc\n");
  }
}

TEST(Convert, OneDimensionalAndEmptyArrays) {
  TempDir dir;
  const Made v = make(dir, "npy", "v.npy", "<f8", "1000");
  ConvertOptions options;
  options.chunks = {64};
  convert(open_array(v.path), dir.file("v.zarr"), options);
  EXPECT_EQ(check("zarr", dir.file("v.zarr"), v.expected), "ok <f8 chunks=64;none\n");
  const Made e = make(dir, "npy", "e.npy", "<u1", "0,5");
  convert(open_array(e.path), dir.file("e_out.npy"), {});
  EXPECT_EQ(check("npy", dir.file("e_out.npy"), e.expected), "ok |u1 -\n");
}

TEST(Convert, RefusesToReplaceUnlessAskedAndRejectsBadOptions) {
  TempDir dir;
  const Made src = make(dir, "npy", "a.npy", "<u1", "4,8,8");
  const AnyArray in = open_array(src.path);
  std::ofstream(dir.file("taken.npy")) << "keep me";
  test::expect_error([&] { convert(in, dir.file("taken.npy"), {}); }, ErrorCode::Io,
                     {"taken.npy", "--overwrite"});
  std::ifstream kept(dir.file("taken.npy"));
  std::string text;
  std::getline(kept, text);
  EXPECT_EQ(text, "keep me");
  ConvertOptions overwrite;
  overwrite.overwrite = true;
  convert(in, dir.file("taken.npy"), overwrite);
  EXPECT_EQ(check("npy", dir.file("taken.npy"), src.expected), "ok |u1 -\n");

  ConvertOptions bad;
  bad.chunks = {4, 8};
  test::expect_error([&] { convert(in, dir.file("b.zarr"), bad); }, ErrorCode::InvalidArgument,
                     {"2 axes", "3"});
  bad.chunks = {1, 0, 8};
  test::expect_error([&] { convert(in, dir.file("b.zarr"), bad); }, ErrorCode::InvalidArgument,
                     {"at least 1"});
  ConvertOptions squeeze;
  squeeze.compressor = Compressor::Zstd;
  test::expect_error([&] { convert(in, dir.file("b.npy"), squeeze); }, ErrorCode::InvalidArgument,
                     {"cannot be compressed"});
  test::expect_error([&] { convert(in, dir.file("b.h5"), squeeze); }, ErrorCode::InvalidArgument,
                     {"zlib"});
}

// A chunk that does not decode fails the call and leaves nothing behind: no output, no
// temporary file or folder.
TEST(Convert, AFailureLeavesNothingAtTheDestination) {
  TempDir dir;
  const Made z = make(dir, "zarr", "src.zarr", "<f4", "6,20,20", "C", "2,20,20", "zstd");
  std::ofstream(z.path + "/1.0.0", std::ios::trunc) << "not zstd at all";
  TempDir out;
  for (const char* name : {"x.npy", "x.zarr", "x.h5", "x.raw"}) {
    ConvertOptions options;
    options.pool = jobs(2);
    bool thrown = false;
    try {
      convert(open_array(z.path), out.file(name), options);
    } catch (const Error& e) {
      thrown = true;
      EXPECT_EQ(e.code(), ErrorCode::Corrupt) << name << ": " << e.what();
    }
    EXPECT_TRUE(thrown) << name;
    EXPECT_TRUE(entries(out.path()).empty()) << name << " left " << entries(out.path()).size();
  }
}

}  // namespace
}  // namespace mmc
