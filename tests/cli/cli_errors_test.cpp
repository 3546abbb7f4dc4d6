// Bad input: each mistake gives its exit code (2 usage, 1 runtime), exactly one line on stderr,
// and no output or temporary file.
#include <gtest/gtest.h>

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
  expect_failure({"reduce", npy_, "--op", "median", "-o", out()}, kUsage);
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

}  // namespace
}  // namespace mmc::test
