// `mmcompute reduce` end to end against numpy: .npy and raw sources written by numpy, every
// output format, answers computed by numpy.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"
#include "mmc/pool.hpp"

namespace mmc::test {
namespace {

struct ReduceCase {
  const char* name;
  const char* descr;  // numpy dtype of the source
  const char* shape;
  const char* order;
  const char* format;  // "npy" or "raw"
  int offset;          // raw only
  const char* op;
  const char* axis;  // "" for the default
  int ddof;
  const char* output;  // "npy", "csv", "json" or "text" (stdout)
  std::vector<std::string> extra;
};

std::ostream& operator<<(std::ostream& os, const ReduceCase& c) { return os << c.name; }

class CliReduce : public ::testing::TestWithParam<ReduceCase> {};

TEST_P(CliReduce, MatchesNumpy) {
  const ReduceCase& c = GetParam();
  TempDir dir;
  const bool raw = std::string(c.format) == "raw";
  const std::string source = dir.file(raw ? "cube.raw" : "cube.npy");
  cube_fixture({"make", source, "--descr", c.descr, "--shape", c.shape, "--order", c.order,
                "--format", c.format, "--offset", std::to_string(c.offset), "--seed", "3"});
  if (HasFailure()) return;

  std::vector<std::string> source_args{source};
  std::vector<std::string> expect_args{"expect", source};
  if (raw) {
    const std::vector<std::string> layout{"--shape", c.shape,    "--order",
                                          c.order,   "--offset", std::to_string(c.offset)};
    source_args.insert(source_args.end(), {"--dtype", c.descr});
    source_args.insert(source_args.end(), layout.begin(), layout.end());
    expect_args.insert(expect_args.end(), {"--descr", c.descr});
    expect_args.insert(expect_args.end(), layout.begin(), layout.end());
  }
  expect_args.insert(expect_args.end(), {"--op", c.op, "--ddof", std::to_string(c.ddof)});
  std::vector<std::string> args{"reduce"};
  args.insert(args.end(), source_args.begin(), source_args.end());
  args.insert(args.end(), {"--op", c.op, "--ddof", std::to_string(c.ddof)});
  if (*c.axis) {
    args.insert(args.end(), {"--axis", c.axis});
    expect_args.insert(expect_args.end(), {"--axis", c.axis});
  }
  args.insert(args.end(), c.extra.begin(), c.extra.end());
  const std::string output = c.output;
  const std::string out_file = dir.file("result." + output);
  if (output != "text") args.insert(args.end(), {"-o", out_file});

  const json expected = cube_fixture(expect_args);
  const CommandResult r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");

  json actual;
  if (output == "text") {
    actual = parse_text_values(r.out, expected.at("dtype"));
  } else {
    EXPECT_EQ(r.out, "");
    ASSERT_TRUE(file_exists(out_file));
    if (output == "npy") actual = load_npy_output(out_file);
    if (output == "json") actual = load_json_output(out_file);
    if (output == "csv") actual = parse_text_values(read_file(out_file), expected.at("dtype"));
  }
  expect_same_values(expected, actual, c.name);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CliReduce,
    ::testing::Values(
        ReduceCase{"U8NpyMeanOverDefaultAxesToNpy",
                   "|u1",
                   "6,7,8",
                   "C",
                   "npy",
                   0,
                   "mean",
                   "",
                   0,
                   "npy",
                   {}},
        ReduceCase{"BigEndianI16FortranSumToCsv",
                   ">i2",
                   "5,6,7",
                   "F",
                   "npy",
                   0,
                   "sum",
                   "1,2",
                   0,
                   "csv",
                   {"--jobs", "2"}},
        ReduceCase{"F32RawVarDdof1LastAxisToJson",
                   "<f4",
                   "3,4,5,6",
                   "C",
                   "raw",
                   0,
                   "var",
                   "-1",
                   1,
                   "json",
                   {"--jobs", "2", "--max-nbytes", "0"}},
        ReduceCase{"F64RawFortranStdAxis0ToText",
                   "<f8",
                   "9,10",
                   "F",
                   "raw",
                   0,
                   "std",
                   "0",
                   0,
                   "text",
                   {"--backend", "thread"}},
        ReduceCase{"U32NpyMinAxes0And2ToNpy",
                   "<u4",
                   "4,5,6",
                   "C",
                   "npy",
                   0,
                   "min",
                   "0,2",
                   0,
                   "npy",
                   {"--backend", "serial"}},
        ReduceCase{
            "I64NpyMaxAxes1And3ToCsv", "<i8", "4,3,2,5", "C", "npy", 0, "max", "1,3", 0, "csv", {}},
        ReduceCase{"U16RawWithOffsetCountToText",
                   "<u2",
                   "3,4,5",
                   "C",
                   "raw",
                   24,
                   "count",
                   "",
                   0,
                   "text",
                   {}},
        ReduceCase{
            "F64OneDimSumIsAScalarInJson", "<f8", "100", "C", "npy", 0, "sum", "", 0, "json", {}},
        ReduceCase{"BigEndianF64RawFortranMeanToNpy",
                   ">f8",
                   "4,6,5",
                   "F",
                   "raw",
                   8,
                   "mean",
                   "2,0",
                   0,
                   "npy",
                   {"--jobs", "2", "--max-nbytes", "1K"}},
        ReduceCase{"I8MeanOverAllAxesToText",
                   "|i1",
                   "5,4,3",
                   "C",
                   "npy",
                   0,
                   "mean",
                   "0,1,2",
                   0,
                   "text",
                   {}}),
    [](const ::testing::TestParamInfo<ReduceCase>& info) { return info.param.name; });

TEST(CliReduceText, PrintsRowsOfTheLastAxisForTwoDimensionalResults) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "<i4", "--shape", "2,3,4"});
  const CommandResult r = run_cli({"reduce", source, "--op", "sum", "--axis", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 3 rows of 4 space-separated values.
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ' '), 9) << r.out;
}

TEST(CliReduceText, IsTheSameForEveryBackendJobsAndMaxNbytes) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "<f4", "--shape", "16,32,32"});
  const CommandResult reference = run_cli({"reduce", source, "--op", "var", "--backend", "serial"});
  ASSERT_EQ(reference.exit_code, 0) << reference.err;
  for (const std::vector<std::string>& options : {std::vector<std::string>{"--jobs", "1"},
                                                  {"--jobs", "2"},
                                                  {"--jobs", "2", "--max-nbytes", "0"},
                                                  {"--backend", "thread", "--jobs", "2"}}) {
    std::vector<std::string> args{"reduce", source, "--op", "var"};
    args.insert(args.end(), options.begin(), options.end());
    const CommandResult r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, reference.out) << testing::PrintToString(options);
  }
}

TEST(CliReduceVerbose, ReportsTransportStatisticsOnStderr) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "|u1", "--shape", "8,16,16"});
  const CommandResult r = run_cli({"reduce", source, "--op", "mean", "--jobs", "2", "-v"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find(" worker"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("piped"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("GB/s"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 8);
}

TEST(CliReduceProgress, DrawsABarEndingInANewlineOnlyWhenAsked) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "|u1", "--shape", "8,16,16"});
  const CommandResult shown = run_cli({"reduce", source, "--op", "sum", "--progress"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(shown.err.rfind("\r[", 0), 0u) << shown.err;
  EXPECT_NE(shown.err.find(" tasks"), std::string::npos) << shown.err;
  EXPECT_EQ(shown.err.back(), '\n');
  const CommandResult quiet = run_cli({"reduce", source, "--op", "sum", "--quiet"});
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err, "");
  EXPECT_EQ(quiet.out, shown.out);
}

}  // namespace
}  // namespace mmc::test

namespace mmc::test {
namespace {

struct HistogramCase {
  const char* descr;
  const char* shape;
  const char* order;
  const char* axis;  // "" for the default
  const char* bins;
  const char* range;   // "" for the data's range
  const char* output;  // "npy", "csv" or "json"
};

void expect_histogram_matches_numpy(const HistogramCase& c) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture(
      {"make", source, "--descr", c.descr, "--shape", c.shape, "--order", c.order, "--seed", "5"});
  std::vector<std::string> args{"reduce", source, "--op", "histogram", "--bins", c.bins};
  std::vector<std::string> expect_args{"expect", source, "--op", "histogram", "--bins", c.bins};
  for (auto* list : {&args, &expect_args}) {
    if (*c.axis) list->insert(list->end(), {"--axis", c.axis});
  }
  if (*c.range) {
    args.insert(args.end(), {"--range", c.range});  // "-1,5" is a value, not an option
    expect_args.push_back(std::string("--range=") + c.range);
  }
  const std::string out = dir.file(std::string("counts.") + c.output);
  args.insert(args.end(), {"-o", out, "--jobs", "2"});
  const json expected = cube_fixture(expect_args);
  const CommandResult r = run_cli(args);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string output = c.output;
  json actual;
  if (output == "npy") actual = load_npy_output(out);
  if (output == "json") actual = load_json_output(out);
  if (output == "csv") actual = parse_text_values(read_file(out), "i64");
  expect_same_values(expected, actual, std::string(c.descr) + " " + c.shape + " " + c.range);
}

TEST(CliReduceHistogram, U8WithARangeWhoseBinsDoNotDivideItMatchesNumpy) {
  expect_histogram_matches_numpy({"|u1", "6,7,8", "C", "", "7", "10.5,200.25", "csv"});
}

TEST(CliReduceHistogram, F32PerSliceWithTheWholeArraysRangeMatchesNumpy) {
  expect_histogram_matches_numpy({"<f4", "5,6,7", "F", "", "9", "", "npy"});
}

TEST(CliReduceHistogram, BigEndianI16OverAllAxesWithNegativeRangeMatchesNumpy) {
  expect_histogram_matches_numpy({">i2", "4,5,6", "C", "0,1,2", "256", "-20000,30000.5", "json"});
}

TEST(CliReduceIsa, EveryKernelVariantGivesTheSameBytesAndVerboseNamesIt) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "<f4", "--shape", "8,64,64"});
  std::string reference;
  for (const char* isa : {"portable", "avx2", "avx512"}) {
    for (const char* op : {"var", "nansum", "min", "norm"}) {
      const std::string out = dir.file(std::string(op) + "_" + isa + ".npy");
      const CommandResult r = run_command({"env", std::string("MMC_ISA=") + isa, MMC_CLI_PATH,
                                           "reduce", source, "--op", op, "-v", "-o", out});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      if (std::string(isa) == "portable") {
        EXPECT_NE(r.err.find("portable kernels"), std::string::npos) << r.err;
      }
      const std::string bytes = read_file(out);
      const std::string first = dir.file(std::string(op) + "_portable.npy");
      EXPECT_EQ(bytes, read_file(first)) << op << " with MMC_ISA=" << isa;
    }
  }
}

// The CLI sets n_jobs only for --jobs; otherwise MMC_N_JOBS reaches the pool, and without it the
// CLI's default is all CPUs. A 16 MiB cube makes two tasks, so two workers can be seen.
TEST(CliReduceJobs, MmcNJobsChoosesTheWorkersUnlessJobsIsGiven) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "|u1", "--shape", "16,1024,1024"});
  const auto workers = [&](std::vector<std::string> env, std::vector<std::string> extra) {
    std::vector<std::string> args{"env", "-u", "MMC_N_JOBS"};
    args.insert(args.end(), env.begin(), env.end());
    for (const char* a :
         {MMC_CLI_PATH, "reduce", source.c_str(), "--op", "mean", "-v", "--quiet"}) {
      args.push_back(a);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    const CommandResult r = run_command(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::size_t at = r.err.find(" worker");
    const std::size_t start = r.err.rfind(' ', at - 1) + 1;
    return at == std::string::npos ? std::string("none") : r.err.substr(start, at - start);
  };
  EXPECT_EQ(workers({"MMC_N_JOBS=1"}, {}), "1");
  EXPECT_EQ(workers({"MMC_N_JOBS=2"}, {}), "2");
  EXPECT_EQ(workers({"MMC_N_JOBS=1"}, {"--jobs", "2"}), "2");
  EXPECT_EQ(workers({"MMC_N_JOBS=2"}, {"-j", "1"}), "1");
  EXPECT_EQ(workers({}, {}), std::to_string(std::min(cpu_count(), 2)));
}

}  // namespace
}  // namespace mmc::test
