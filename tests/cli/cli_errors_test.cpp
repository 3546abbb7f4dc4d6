// Bad input: each mistake gives its exit code (2 usage, 1 runtime), exactly one line on stderr,
// and no output or temporary file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

constexpr int kUsage = 2;
constexpr int kRuntime = 1;

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    // Valid inputs written here rather than by numpy: these tests only need them to exist.
    npy_ = dir_.file("cube.npy");
    raw_ = dir_.file("cube.raw");
    write_file(npy_, npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5, 6), }",
                               4 * 5 * 6 * 4));
    write_file(raw_, std::string(4 * 5 * 6, '\x07'));
  }

  // A version 1.0 .npy file: magic, header padded to 64 bytes, then `data_bytes` zero bytes.
  static std::string npy_bytes(std::string header, std::size_t data_bytes) {
    while ((10 + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
    std::string bytes = "\x93NUMPY";
    bytes += '\x01';
    bytes += '\x00';
    bytes += static_cast<char>(header.size() & 0xff);
    bytes += static_cast<char>(header.size() >> 8);
    return bytes + header + std::string(data_bytes, '\0');
  }

  // Runs the CLI and checks the exit code, the single error line, and that the folder holds
  // exactly what it held before. Returns stderr.
  std::string expect_failure(const std::vector<std::string>& args, int code) {
    const auto before = list_dir(dir_.path());
    const CommandResult r = run_cli(args);
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << "stderr: [" << r.err << "]";
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(list_dir(dir_.path()), before) << "output or temporary file left behind";
    return r.err;
  }

  std::string out() const { return dir_.file("out.npy"); }

  TempDir dir_;
  std::string npy_, raw_;
};

TEST_F(CliErrors, MissingFileIsARuntimeErrorNamingThePath) {
  const std::string err =
      expect_failure({"reduce", dir_.file("missing.npy"), "--op", "mean", "-o", out()}, kRuntime);
  EXPECT_NE(err.find("missing.npy"), std::string::npos) << err;
}

TEST_F(CliErrors, RawFileShorterThanItsShapeIsARuntimeError) {
  expect_failure({"reduce", raw_, "--dtype", "u8", "--shape", "4,5,7", "--op", "mean", "-o", out()},
                 kRuntime);
}

TEST_F(CliErrors, HostileNpyHeaderWithHugeDimsIsARuntimeError) {
  const std::string hostile = dir_.file("hostile.npy");
  write_file(hostile, npy_bytes("{'descr': '<u1', 'fortran_order': False, 'shape': "
                                "(99999999999, 99999999999, 99999999999), }",
                                64));
  expect_failure({"reduce", hostile, "--op", "sum", "-o", out()}, kRuntime);
  expect_failure({"info", hostile}, kRuntime);
}

TEST_F(CliErrors, AFifoIsAUsageErrorNotAHang) {
  const std::string fifo = dir_.file("pipe.npy");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string err = expect_failure({"reduce", fifo, "--op", "mean", "-o", out()}, kUsage);
  EXPECT_NE(err.find("not a regular file"), std::string::npos) << err;
}

TEST_F(CliErrors, UnknownDtypeIsAUsageError) {
  expect_failure({"reduce", raw_, "--dtype", "u9", "--shape", "4,5,6", "--op", "mean", "-o", out()},
                 kUsage);
}

TEST_F(CliErrors, AxisOutOfRangeIsAUsageError) {
  expect_failure({"reduce", npy_, "--op", "mean", "--axis", "3", "-o", out()}, kUsage);
}

TEST_F(CliErrors, DuplicateAxisIsAUsageError) {
  expect_failure({"reduce", npy_, "--op", "mean", "--axis", "1,1", "-o", out()}, kUsage);
}

TEST_F(CliErrors, BadMaxNbytesIsAUsageError) {
  for (const char* bad : {"1.5M", "-1", "abc"}) {
    SCOPED_TRACE(bad);
    expect_failure({"reduce", npy_, "--op", "mean", "--max-nbytes", bad, "-o", out()}, kUsage);
  }
}

TEST_F(CliErrors, ZeroJobsIsAUsageError) {
  expect_failure({"reduce", npy_, "--op", "mean", "--jobs", "0", "-o", out()}, kUsage);
  expect_failure({"gen", dir_.file("gen.u8"), "--shape", "2,3,4", "--jobs", "0"}, kUsage);
}

TEST_F(CliErrors, RawSourceWithoutShapeIsAUsageError) {
  expect_failure({"reduce", raw_, "--dtype", "u8", "--op", "mean", "-o", out()}, kUsage);
}

TEST_F(CliErrors, UnknownOpIsAUsageError) {
  expect_failure({"reduce", npy_, "--op", "mode", "-o", out()}, kUsage);
}

TEST_F(CliErrors, UnknownOutputExtensionIsAUsageError) {
  expect_failure({"reduce", npy_, "--op", "mean", "-o", dir_.file("out.txt")}, kUsage);
}

TEST_F(CliErrors, BadHistogramOptionsAreUsageErrors) {
  EXPECT_NE(
      expect_failure({"reduce", npy_, "--op", "histogram", "--bins", "0", "-o", out()}, kUsage)
          .find("--bins"),
      std::string::npos);
  for (const char* bad : {"1", "1,", "a,b", "1,2,3"}) {
    SCOPED_TRACE(bad);
    expect_failure({"reduce", npy_, "--op", "histogram", "--range", bad, "-o", out()}, kUsage);
  }
  expect_failure({"reduce", npy_, "--op", "histogram", "--range", "5,1", "-o", out()}, kUsage);
  expect_failure({"reduce", npy_, "--op", "histogram", "--range", "0,inf", "-o", out()}, kUsage);
  const std::string err =
      expect_failure({"reduce", npy_, "--op", "mean", "--bins", "5", "-o", out()}, kUsage);
  EXPECT_NE(err.find("histogram only"), std::string::npos) << err;
}

TEST_F(CliErrors, HistogramOfNanDataWithoutARangeSaysToGiveOne) {
  const std::string nan_npy = dir_.file("nan.npy");
  std::string data;
  for (int i = 0; i < 4 * 5 * 6; ++i)
    data += i % 7 ? std::string("\x00\x00\x80\x3f", 4) : std::string("\x00\x00\xc0\x7f", 4);
  std::string bytes =
      npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5, 6), }", 0);
  write_file(nan_npy, bytes + data);
  const std::string err =
      expect_failure({"reduce", nan_npy, "--op", "histogram", "-o", out()}, kUsage);
  EXPECT_NE(err.find("--range"), std::string::npos) << err;
}

TEST_F(CliErrors, ArgumentParserErrorsAreOneLineUsageErrors) {
  expect_failure({"reduce", npy_, "--op", "mean", "--jobs", "two"}, kUsage);
  expect_failure({"reduce", npy_}, kUsage);
  expect_failure({"frobnicate"}, kUsage);
  expect_failure({}, kUsage);
  expect_failure({"reduce", npy_, "--op", "mean", "--progress", "--quiet"}, kUsage);
}

TEST_F(CliErrors, BadGenShapeIsAUsageError) {
  expect_failure({"gen", dir_.file("gen.u8"), "--shape", "2,-3,4"}, kUsage);
  expect_failure({"gen", dir_.file("gen.u8"), "--shape", "2,3", "--dtype", "complex"}, kUsage);
}

// --- Raw options on self-describing sources -------------------------------------------------

TEST_F(CliErrors, RawOptionsOnANpyZarrOrHdf5SourceAreAUsageErrorNamingTheConflict) {
  const std::string zarr = dir_.file("store.zarr");
  ASSERT_EQ(::mkdir(zarr.c_str(), 0755), 0);
  const std::string h5 = dir_.file("data.h5");
  write_file(h5, std::string("\x89HDF\r\n\x1a\n", 8) + std::string(512, '\0'));
  for (const std::string& source : {npy_, zarr, h5, h5 + ":/images"}) {
    for (const std::vector<std::string>& raw :
         {std::vector<std::string>{"--dtype", "u8", "--shape", "4,5,6"},
          std::vector<std::string>{"--offset", "0"}, std::vector<std::string>{"--order", "F"}}) {
      SCOPED_TRACE(source + " " + raw[0]);
      auto with = [&](std::vector<std::string> args) {
        args.insert(args.end(), raw.begin(), raw.end());
        return args;
      };
      for (const std::string& err :
           {expect_failure(with({"reduce", source, "--op", "sum", "-o", out()}), kUsage),
            expect_failure(with({"info", source}), kUsage),
            expect_failure(with({"convert", source, dir_.file("copy.npy")}), kUsage)}) {
        EXPECT_NE(err.find("raw options"), std::string::npos) << err;
        EXPECT_NE(err.find("its own dtype and shape"), std::string::npos) << err;
      }
    }
  }
}

// --- Hostile sizes ---------------------------------------------------------------------------

TEST_F(CliErrors, EmptyNpyShapeWithOverflowingExtentsIsARuntimeError) {
  // numpy refuses both shapes ("array is too big"); before, Fortran order crashed the planner.
  const std::string fortran = dir_.file("f.npy"), c_order = dir_.file("c.npy");
  write_file(fortran, npy_bytes("{'descr': '<u2', 'fortran_order': True, 'shape': "
                                "(0, 4611686018427387904, 4611686018427387904), }",
                                0));
  write_file(c_order, npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': "
                                "(4611686018427387904, 0, 4611686018427387904), }",
                                0));
  for (const std::string& path : {fortran, c_order}) {
    for (const std::string& err :
         {expect_failure({"reduce", path, "--op", "sum", "--axis", "0", "-j", "1"}, kRuntime),
          expect_failure({"reduce", path, "--op", "sum", "--axis", "0", "-o", out()}, kRuntime),
          expect_failure({"info", path}, kRuntime)}) {
      EXPECT_NE(err.find("overflows"), std::string::npos) << err;
    }
  }
}

TEST_F(CliErrors, EmptyResultWithAHugeRowCountPrintsOneLineWithItsShape) {
  const std::string path = dir_.file("empty.npy");
  write_file(path, npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': "
                             "(6, 3, 4246116860110, 0), }",
                             0));
  const json expected = json::parse(run_python_code(
      "import json, numpy as np\n"
      "r = np.empty((6, 3, 4246116860110, 0), np.uint8).sum(axis=0)\n"
      "print(json.dumps({'shape': list(r.shape), 'text': str(tuple(r.shape))}))\n"));
  const CommandResult text = run_cli({"reduce", path, "--op", "sum", "--axis", "0", "-j", "1"}, 30);
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out,
            "[] (empty result of shape " + expected["text"].get<std::string>() + ", u64)\n");
  const std::string json_out = dir_.file("empty.json"), csv_out = dir_.file("empty.csv");
  const std::string npy_out = dir_.file("empty_out.npy");
  for (const std::string& o : {json_out, csv_out, npy_out}) {
    const CommandResult r = run_cli({"reduce", path, "--op", "sum", "--axis", "0", "-o", o}, 30);
    EXPECT_EQ(r.exit_code, 0) << o << ": " << r.err;
  }
  EXPECT_EQ(load_json_output(json_out)["shape"], expected["shape"]);
  EXPECT_EQ(load_npy_output(npy_out)["shape"], expected["shape"]);
  EXPECT_EQ(read_file(csv_out), "");
}

TEST_F(CliErrors, ResultLargerThanMemoryIsRefusedNamingItsSize) {
  // 2**40 sums over an empty axis: 8 TiB of zeros, which used to end in "std::bad_alloc".
  const std::string path = dir_.file("wide.npy");
  write_file(path, npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': "
                             "(1099511627776, 0), }",
                             0));
  const std::string err = expect_failure({"reduce", path, "--op", "sum", "-o", out()}, kRuntime);
  EXPECT_NE(err.find("(1099511627776,)"), std::string::npos) << err;
  EXPECT_NE(err.find("8.0 TiB"), std::string::npos) << err;
  EXPECT_NE(err.find("memory"), std::string::npos) << err;
}

TEST_F(CliErrors, HugeZarrGridCountsItsChunksWithoutOverflow) {
  const std::string zarr = dir_.file("long.zarr");
  ASSERT_EQ(::mkdir(zarr.c_str(), 0755), 0);
  write_file(zarr + "/.zarray",
             R"({"zarr_format": 2, "shape": [9223372036854775807], "chunks": [2], "dtype": "|u1",
                 "order": "C", "compressor": null, "fill_value": 0, "filters": null})");
  const CommandResult r = run_cli({"info", zarr, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["chunks_total"].get<std::int64_t>(), std::int64_t{1} << 62);
  write_file(zarr + "/.zarray",
             R"({"zarr_format": 2, "shape": [4], "chunks": [1099511627776], "dtype": "|u1",
                 "order": "C", "compressor": null, "fill_value": 0, "filters": null})");
  const std::string err = expect_failure({"reduce", zarr, "--op", "sum", "--axis", "0"}, kRuntime);
  EXPECT_NE(err.find("2 GiB"), std::string::npos) << err;
}

// --- Messages that used to mislead ---------------------------------------------------------

// Runs the CLI as nobody when the tests run as root, so that a mode 0000 really refuses.
CommandResult run_cli_unprivileged(const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (::geteuid() == 0) {
    argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  }
  argv.push_back(cli_path());
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv);
}

TEST_F(CliErrors, UnreadableNpyAndZarrSayPermissionDenied) {
  const std::string zarr = dir_.file("locked.zarr");
  ASSERT_EQ(::mkdir(zarr.c_str(), 0755), 0);
  write_file(zarr + "/.zarray", "{}");
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(npy_.c_str(), 0), 0);
  ASSERT_EQ(::chmod(zarr.c_str(), 0), 0);
  for (const std::string& source : {npy_, zarr}) {
    const CommandResult r = run_cli_unprivileged({"reduce", source, "--op", "sum"});
    EXPECT_EQ(r.exit_code, kRuntime) << r.err;
    EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("not a .npy"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("no .zarray"), std::string::npos) << r.err;
  }
  ::chmod(zarr.c_str(), 0755);
}

TEST_F(CliErrors, RemoteUrlsAreRefusedAskingForALocalPath) {
  for (const std::string url : {"s3://bucket/cube.npy", "gs://bucket/cube.zarr",
                                "http://host/cube.npy", "https://host/cube.h5:/images"}) {
    for (const std::string& err : {expect_failure({"reduce", url, "--op", "sum"}, kUsage),
                                   expect_failure({"info", url}, kUsage)}) {
      EXPECT_NE(err.find("remote URLs are not read"), std::string::npos) << err;
      EXPECT_NE(err.find("local path"), std::string::npos) << err;
    }
  }
}

TEST_F(CliErrors, NegativeOffsetSaysItMustBeNonNegative) {
  const std::string err = expect_failure(
      {"reduce", raw_, "--dtype", "u8", "--shape", "4,5,6", "--offset", "-5", "--op", "sum"},
      kUsage);
  EXPECT_NE(err.find("--offset must be >= 0"), std::string::npos) << err;
}

TEST_F(CliErrors, MistypedSubcommandIsNamedWithTheNearestOne) {
  const std::string err = expect_failure({"reduc", npy_, "--op", "sum"}, kUsage);
  EXPECT_NE(err.find("unknown subcommand 'reduc'"), std::string::npos) << err;
  EXPECT_NE(err.find("did you mean 'reduce'"), std::string::npos) << err;
  const std::string far = expect_failure({"frobnicate"}, kUsage);
  EXPECT_NE(far.find("unknown subcommand 'frobnicate'"), std::string::npos) << far;
  EXPECT_EQ(far.find("did you mean"), std::string::npos) << far;
}

TEST_F(CliErrors, VerboseCountsOfOneAreSingular) {
  const CommandResult r =
      run_cli({"reduce", npy_, "--op", "sum", "--axis", "0,1,2", "-j", "1", "-v", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(" 1 worker,"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(" 1 workers"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(" 1 tasks"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace mmc::test
