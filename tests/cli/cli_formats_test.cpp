// `mmcompute info`, `reduce` and `convert` over HDF5 and zarr: files from h5py and zarr-python,
// layouts reported as h5py and zarr describe them, conversions read back by those libraries,
// and reductions equal to the .npy file's, byte for byte.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

void make(const TempDir& dir, const std::string& kind, const std::string& path,
          const std::string& dtype, const std::string& shape, const std::string& chunks = "",
          const std::string& compressor = "none") {
  std::vector<std::string> args = {"make", kind,  path, dir.file("expected-" + kind + ".npy"),
                                   dtype,  shape, "C"};
  if (!chunks.empty()) args.insert(args.end(), {chunks, compressor});
  run_python("convert_check.py", args);
}

TEST(CliFormats, InfoShowsTheLayoutOfChunkedHdf5AndZarr) {
  TempDir dir;
  const std::string h5 = dir.file("g.h5") + ":/group/images";
  make(dir, "hdf5", h5, "<f4", "24,30,20", "5,30,20", "gzip");
  CommandResult r = run_cli({"info", h5, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json info = json::parse(r.out);
  EXPECT_EQ(info.at("format"), "hdf5");
  EXPECT_EQ(info.at("layout"), "chunked");
  EXPECT_EQ(info.at("chunks"), json::parse("[5, 30, 20]"));
  EXPECT_EQ(info.at("filters"), json::parse("[\"shuffle\"]"));
  EXPECT_EQ(info.at("chunks_total"), 5);
  const std::string stored = run_python_code(
      "import sys, h5py\nf = h5py.File(sys.argv[1], "
      "'r')\nprint(f['group/images'].id.get_storage_size())\n",
      {dir.file("g.h5")});
  EXPECT_EQ(info.at("stored_bytes").get<std::int64_t>(), std::stoll(stored));

  const std::string zarr = dir.file("z.zarr");
  make(dir, "zarr", zarr, "<u2", "10,12", "4,5", "zstd");
  r = run_cli({"info", zarr});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("chunked (4, 5), zstd"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("9 chunks (9 stored)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on disk:"), std::string::npos) << r.out;

  const std::string contiguous = dir.file("c.h5") + ":/x";
  make(dir, "hdf5", contiguous, "<i2", "3,4");
  r = run_cli({"info", contiguous});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("contiguous at offset"), std::string::npos) << r.out;
}

// Convert a numpy cube to zarr (every compressor) and HDF5, reduce each: the outputs are the
// .npy file's byte for byte, and h5py / zarr-python read what convert wrote.
TEST(CliFormats, ConvertThenReduceGivesTheNpyAnswerBitForBit) {
  TempDir dir;
  const std::string npy = dir.file("cube.npy");
  make(dir, "npy", npy, "<f4", "16,20,24");
  const std::string want_path = dir.file("want.npy");
  CommandResult r = run_cli({"reduce", npy, "--op", "var", "--axis", "1,2", "-j", "2", "--quiet",
                             "--no-cache", "-o", want_path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string want = read_file(want_path);
  struct Target {
    std::string path;
    std::vector<std::string> options;
    std::string kind;
  };
  const std::vector<Target> targets = {
      {dir.file("a.zarr"), {"--chunks", "3,7,24", "--compressor", "blosc"}, "zarr"},
      {dir.file("b.zarr"), {"--chunks", "16,5,5", "--compressor", "zlib"}, "zarr"},
      {dir.file("c.zarr"), {"--compressor", "zstd", "--level", "3"}, "zarr"},
      {dir.file("d.h5"), {"--chunks", "4,20,24", "--compressor", "zlib"}, "hdf5"},
      {dir.file("e.h5") + ":/cube", {}, "hdf5"},
  };
  for (const Target& t : targets) {
    std::vector<std::string> args = {"convert", npy, t.path, "-j", "2", "--quiet"};
    args.insert(args.end(), t.options.begin(), t.options.end());
    r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << t.path << ": " << r.err;
    const std::string src =
        t.kind == "hdf5" && t.path.find(":/") == std::string::npos ? t.path + ":/data" : t.path;
    EXPECT_EQ(run_python("convert_check.py", {"check", t.kind, src, dir.file("expected-npy.npy")})
                  .substr(0, 2),
              "ok")
        << t.path;
    const std::string got_path = dir.file("got.npy");
    r = run_cli({"reduce", src, "--op", "var", "--axis", "1,2", "-j", "2", "--quiet", "--no-cache",
                 "-o", got_path});
    ASSERT_EQ(r.exit_code, 0) << src << ": " << r.err;
    EXPECT_EQ(read_file(got_path), want) << src;
  }
}

TEST(CliFormats, BadSourcesAndDestinationsFailWithOneLineAndLeaveNothing) {
  TempDir dir;
  const std::string npy = dir.file("cube.npy");
  make(dir, "npy", npy, "|u1", "4,5,6");
  const std::string h5 = dir.file("d.h5");
  ASSERT_EQ(run_cli({"convert", npy, h5, "--quiet"}).exit_code, 0);

  struct Bad {
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  const std::vector<Bad> bad = {
      {{"reduce", h5, "--op", "mean"}, 2, ":/path/to/dataset"},
      {{"reduce", h5 + ":/nope", "--op", "mean"}, 1, "nope"},
      {{"reduce", dir.file("missing.zarr"), "--op", "mean"}, 1, "missing.zarr"},
      {{"convert", npy, h5, "--quiet"}, 1, "--overwrite"},
      {{"convert", npy, dir.file("x.zarr"), "--compressor", "lzma"}, 2, "lzma"},
      {{"convert", npy, dir.file("y.zarr"), "--chunks", "0,5,6"}, 2, "chunk"},
      {{"convert", npy, dir.file("z.h5"), "--compressor", "zstd"}, 2, "none or zlib"},
  };
  for (const Bad& b : bad) {
    const CommandResult r = run_cli(b.args);
    std::string what;
    for (const std::string& a : b.args) what += a + " ";
    EXPECT_EQ(r.exit_code, b.code) << what << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << what << r.err;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << what << r.err;
  }
  // Nothing but the two files made above: no partial store, no temporary left.
  const std::string listing = run_python_code(
      "import os, sys\nprint(' '.join(sorted(n for n in os.listdir(sys.argv[1]) if not "
      "n.startswith('expected'))))\n",
      {dir.path()});
  EXPECT_EQ(listing.substr(0, listing.find('\n')), "cube.npy d.h5");
}

}  // namespace
}  // namespace mmc::test
