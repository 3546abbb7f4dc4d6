// `mmcompute reduce --op a,b,c`: several ops in one pass, written as .npz, JSON keyed by op,
// CSV columns and stdout CSV, each checked against numpy's answer; histograms with their edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

constexpr int kUsageExit = 2;

// A cube made by numpy: f32 C order (6, 7, 8), seed 5.
std::string make_f32_cube(const TempDir& dir) {
  const std::string path = dir.file("cube.npy");
  cube_fixture({"make", path, "--descr", "<f4", "--shape", "6,7,8", "--seed", "5"});
  return path;
}

// One op's object of a JSON output ({"dtype", "shape", "data"}), its nested lists flattened.
json flat_values(const json& object) {
  json flat = json::array();
  auto walk = [&flat](auto&& self, const json& v) -> void {
    if (!v.is_array()) {
      flat.push_back(v);
      return;
    }
    for (const json& x : v) self(self, x);
  };
  walk(walk, object.at("data"));
  return {{"dtype", object.at("dtype")}, {"shape", object.at("shape")}, {"data", flat}};
}

json numpy_answer(const std::string& source, const std::string& op,
                  const std::vector<std::string>& more = {}) {
  std::vector<std::string> args{"expect", source, "--op", op};
  args.insert(args.end(), more.begin(), more.end());
  return cube_fixture(args);
}

TEST(CliReduceEach, FourStatsInOnePassToNpzMatchNumpy) {
  TempDir dir;
  const std::string cube = make_f32_cube(dir);
  const std::string out = dir.file("stats.npz");
  const CommandResult r =
      run_cli({"reduce", cube, "--op", "mean,std,min,max", "--jobs", "2", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  const json members = cube_fixture({"npz", out});
  ASSERT_EQ(members.size(), 4u) << members.dump();
  for (const std::string op : {"mean", "std", "min", "max"}) {
    ASSERT_TRUE(members.contains(op)) << members.dump();
    expect_same_values(numpy_answer(cube, op), members.at(op), op);
  }
}

TEST(CliReduceEach, JsonIsKeyedByOpAndCsvHasAColumnPerOp) {
  TempDir dir;
  const std::string cube = make_f32_cube(dir);
  const std::vector<std::string> ops{"sum", "var", "count"};
  const std::string json_out = dir.file("r.json");
  CommandResult r = run_cli({"reduce", cube, "--op", "sum,var,count", "--axis", "0,2", "--ddof",
                             "1", "--backend", "thread", "-o", json_out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json object = json::parse(read_file(json_out));
  ASSERT_EQ(object.size(), 3u) << object.dump();
  for (const std::string& op : ops) {
    expect_same_values(numpy_answer(cube, op, {"--axis", "0,2", "--ddof", "1"}),
                       flat_values(object.at(op)), op + " in JSON");
  }

  // A CSV file and stdout: a header row, then one row per output, one column per op.
  const std::string csv_out = dir.file("r.csv");
  r = run_cli(
      {"reduce", cube, "--op", "sum,var,count", "--axis", "0,2", "--ddof", "1", "-o", csv_out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const CommandResult printed =
      run_cli({"reduce", cube, "--op", "sum,var,count", "--axis", "0,2", "--ddof", "1"});
  ASSERT_EQ(printed.exit_code, 0) << printed.err;
  EXPECT_EQ(printed.out, read_file(csv_out));
  const std::string text = read_file(csv_out);
  ASSERT_EQ(text.substr(0, text.find('\n')), "sum,var,count");
  std::vector<std::string> columns(3);
  std::size_t at = text.find('\n') + 1;
  int rows = 0;
  while (at < text.size()) {
    const std::size_t end = text.find('\n', at);
    const std::string row = text.substr(at, end - at);
    std::size_t c0 = 0;
    for (int k = 0; k < 3; ++k) {
      const std::size_t comma = row.find(',', c0);
      columns[static_cast<std::size_t>(k)] += row.substr(c0, comma - c0) + "\n";
      c0 = comma == std::string::npos ? row.size() : comma + 1;
    }
    at = end + 1;
    ++rows;
  }
  EXPECT_EQ(rows, 7);
  for (std::size_t k = 0; k < ops.size(); ++k) {
    const json want = numpy_answer(cube, ops[k], {"--axis", "0,2", "--ddof", "1"});
    expect_same_values(want, parse_text_values(columns[k], want.at("dtype")), ops[k] + " in CSV");
  }
}

TEST(CliReduceEach, HistogramsCarryNumpysBinEdges) {
  TempDir dir;
  const std::string cube = make_f32_cube(dir);
  const std::string u8 = dir.file("u8.npy");
  cube_fixture({"make", u8, "--descr", "|u1", "--shape", "5,9,4", "--seed", "2"});
  struct Case {
    std::string source;
    std::vector<std::string> range;
  };
  for (const Case& c : {Case{cube, {}}, Case{cube, {"--range=-0.5,0.75"}}, Case{u8, {}},
                        Case{u8, {"--range=10,200"}}}) {
    std::vector<std::string> numpy_args{"--bins", "7"};
    numpy_args.insert(numpy_args.end(), c.range.begin(), c.range.end());
    const json counts = numpy_answer(c.source, "histogram", numpy_args);
    const json edges = numpy_answer(c.source, "bin_edges", numpy_args);
    const std::string what = c.source + (c.range.empty() ? "" : " " + c.range[0]);

    // .npz: histogram and bin_edges, one op or several.
    for (const std::string ops : {"histogram", "mean,histogram"}) {
      const std::string out = dir.file("h.npz");
      std::vector<std::string> args{"reduce", c.source, "--op", ops, "-o", out, "--bins", "7"};
      args.insert(args.end(), c.range.begin(), c.range.end());
      const CommandResult r = run_cli(args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const json members = cube_fixture({"npz", out});
      expect_same_values(counts, members.at("histogram"), what + " counts, --op " + ops);
      ASSERT_TRUE(members.contains("bin_edges")) << members.dump();
      EXPECT_EQ(members.at("bin_edges").at("dtype"), edges.at("dtype")) << what;
      EXPECT_EQ(members.at("bin_edges").at("data"), edges.at("data")) << what << ", --op " << ops;
      if (ops != "histogram")
        expect_same_values(numpy_answer(c.source, "mean"), members.at("mean"), what);
    }
    // JSON of one histogram: its edges beside the counts; -v says the range used.
    const std::string out = dir.file("h.json");
    std::vector<std::string> args{"reduce", c.source, "--op", "histogram", "-o",
                                  out,      "--bins", "7",    "-v"};
    args.insert(args.end(), c.range.begin(), c.range.end());
    const CommandResult r = run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json object = json::parse(read_file(out));
    expect_same_values(counts, load_json_output(out), what + " JSON counts");
    ASSERT_TRUE(object.contains("bin_edges")) << object.dump();
    ASSERT_EQ(object.at("bin_edges").size(), 8u);
    // JSON spells a float32 edge with 9 digits, which round-trip in float32 only.
    const bool f32 = edges.at("dtype") == "f32";
    for (std::size_t i = 0; i < 8; ++i) {
      const double got = object.at("bin_edges")[i].get<double>();
      const double want = edges.at("data")[i].get<double>();
      if (f32) {
        EXPECT_EQ(static_cast<float>(got), static_cast<float>(want)) << what << " edge " << i;
      } else {
        EXPECT_EQ(got, want) << what << " edge " << i;
      }
    }
    EXPECT_NE(r.err.find("histogram of 7 bins over ["), std::string::npos) << r.err;
  }
}

TEST(CliReduceEach, OutputsThatCannotHoldTheOpsAreUsageErrorsAndWriteNothing) {
  TempDir dir;
  const std::string cube = make_f32_cube(dir);
  // A .npy holds one array.
  CommandResult r = run_cli({"reduce", cube, "--op", "mean,max", "-o", dir.file("x.npy")});
  EXPECT_EQ(r.exit_code, kUsageExit);
  EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
  EXPECT_NE(r.err.find(".npz"), std::string::npos) << r.err;
  EXPECT_FALSE(file_exists(dir.file("x.npy")));
  // A CSV column per op needs as many values in each: a histogram has bins more.
  r = run_cli({"reduce", cube, "--op", "mean,histogram", "-o", dir.file("x.csv")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("histogram"), std::string::npos) << r.err;
  EXPECT_FALSE(file_exists(dir.file("x.csv")));
  // An op twice, an empty name.
  r = run_cli({"reduce", cube, "--op", "mean,max,mean"});
  EXPECT_EQ(r.exit_code, kUsageExit);
  EXPECT_NE(r.err.find("listed twice"), std::string::npos) << r.err;
  r = run_cli({"reduce", cube, "--op", "mean,"});
  EXPECT_EQ(r.exit_code, kUsageExit);
  EXPECT_TRUE(is_one_error_line(r.err)) << r.err;
  // --bins without a histogram among the ops.
  r = run_cli({"reduce", cube, "--op", "mean,max", "--bins", "4"});
  EXPECT_EQ(r.exit_code, kUsageExit);
  EXPECT_NE(r.err.find("--bins"), std::string::npos) << r.err;
}

TEST(CliReduceEach, ASingleOpToNpzIsNamedByTheOp) {
  TempDir dir;
  const std::string cube = make_f32_cube(dir);
  const std::string out = dir.file("one.npz");
  const CommandResult r = run_cli({"reduce", cube, "--op", "nanmax", "--axis", "1", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json members = cube_fixture({"npz", out});
  ASSERT_EQ(members.size(), 1u) << members.dump();
  expect_same_values(numpy_answer(cube, "max", {"--axis", "1"}), members.at("nanmax"), "nanmax");
}

}  // namespace
}  // namespace mmc::test

namespace mmc::test {
namespace {

TEST(CliQuantiles, MedianAndPercentilesMatchNumpyInNpzCsvAndStdout) {
  TempDir dir;
  const std::string f32 = dir.file("f32.npy");
  cube_fixture({"make", f32, "--descr", "<f4", "--shape", "6,7,8", "--seed", "5"});
  const std::string u16 = dir.file("u16.npy");
  cube_fixture({"make", u16, "--descr", "<u2", "--shape", "5,9,4", "--seed", "2"});
  for (const std::string& cube : {f32, u16}) {
    // .npz: percentile's array is (len(q), *kept), as np.percentile's.
    const std::string out = dir.file("q.npz");
    CommandResult r = run_cli({"reduce", cube, "--op", "median,percentile,nanmedian", "--q",
                               "5,50,95", "--axis", "0", "-j", "2", "-o", out});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json members = cube_fixture({"npz", out});
    for (const std::string op : {"median", "nanmedian", "percentile"}) {
      expect_same_values(numpy_answer(cube, op, {"--axis", "0", "--q", "5,50,95"}), members.at(op),
                         cube + " " + op);
    }
    EXPECT_EQ(members.at("percentile").at("shape"),
              json::parse(cube == f32 ? "[3,7,8]" : "[3,9,4]"));

    // CSV and stdout: a column per percentile, named by its q.
    const std::string csv = dir.file("q.csv");
    r = run_cli({"reduce", cube, "--op", "median,nanpercentile", "--q", "33.3,99", "-o", csv});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string text = read_file(csv);
    EXPECT_EQ(text.substr(0, text.find('\n')), "median,nanpercentile_33.3,nanpercentile_99");
    const CommandResult printed =
        run_cli({"reduce", cube, "--op", "median,nanpercentile", "--q", "33.3,99"});
    ASSERT_EQ(printed.exit_code, 0) << printed.err;
    EXPECT_EQ(printed.out, text);
    // The 99th percentile's column against numpy's.
    std::string column;
    for (std::size_t at = text.find('\n') + 1; at < text.size();) {
      const std::size_t end = text.find('\n', at);
      const std::string row = text.substr(at, end - at);
      column += row.substr(row.rfind(',') + 1) + "\n";
      at = end + 1;
    }
    const json want = numpy_answer(cube, "nanpercentile", {"--q", "99"});
    json flat = want;  // (1, n): one q
    flat["shape"] = json::array({want.at("shape").back()});
    expect_same_values(flat, parse_text_values(column, want.at("dtype")), cube + " CSV column");
  }
}

TEST(CliQuantiles, QWithoutAPercentileAndAPercentileWithoutQAreUsageErrors) {
  TempDir dir;
  const std::string cube = dir.file("c.npy");
  cube_fixture({"make", cube, "--descr", "<f4", "--shape", "3,4,5", "--seed", "1"});
  const std::string out = dir.file("never.npz");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--op", "median", "--q", "50"}, "--q applies to --op percentile"},
      {{"--op", "percentile"}, "needs --q"},
      {{"--op", "percentile", "--q", "5,x"}, "bad --q"},
      {{"--op", "nanpercentile", "--q", "101"}, "outside [0, 100]"},
      {{"--op", "percentile", "--q", "5,50,5"}, "5 is listed twice"},
  };
  for (const auto& [extra, message] : cases) {
    std::vector<std::string> args{"reduce", cube, "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    const CommandResult r = run_cli(args);
    EXPECT_NE(r.exit_code, 0) << message;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(file_exists(out)) << message;
  }
}

}  // namespace
}  // namespace mmc::test

namespace mmc::test {
namespace {

TEST(CliSelect, ReducesTheSelectedPartAsNumpyDoes) {
  TempDir dir;
  const std::string cube = dir.file("c.npy");
  cube_fixture({"make", cube, "--descr", ">f8", "--shape", "9,10,12", "--seed", "4"});
  const std::string zarr = dir.file("c.zarr");
  cube_fixture(
      {"make", zarr, "--descr", "<u2", "--shape", "9,10,12", "--seed", "4", "--format", "zarr"});
  for (const std::string& source : {cube, zarr}) {
    for (const std::string sel : {"1:8:2,::-3,4:", "-1,2:9", "::-1,:,::-5"}) {
      const std::string out = dir.file("s.npz");
      const CommandResult r = run_cli({"reduce", source, "--select", sel, "--op", "mean,max,median",
                                       "--axis", "-1", "-j", "2", "-o", out});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      const json members = cube_fixture({"npz", out});
      for (const std::string op : {"mean", "max", "median"}) {
        expect_same_values(numpy_answer(source, op, {"--axis", "-1", "--select=" + sel}),
                           members.at(op), source + " [" + sel + "] " + op);
      }
    }
  }
}

TEST(CliSelect, BadSelectionsAreOneLineErrorsAndWriteNothing) {
  TempDir dir;
  const std::string cube = dir.file("c.npy");
  cube_fixture({"make", cube, "--descr", "<f4", "--shape", "3,4,5", "--seed", "1"});
  const std::string out = dir.file("never.npy");
  for (const auto& [sel, message] : std::vector<std::pair<std::string, std::string>>{
           {"1:2:0", "step cannot be zero"},
           {":,:,:,:", "4 items for an array of 3 axes"},
           {"5", "index 5 is out of bounds for axis 0 with size 3"},
           {"x", "not an integer"}}) {
    const CommandResult r = run_cli({"reduce", cube, "--select", sel, "--op", "sum", "-o", out});
    EXPECT_NE(r.exit_code, 0) << sel;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(file_exists(out)) << sel;
  }
}

TEST(CliNodata, NodataAndAMaskLeaveElementsOutAsNumpyMaDoes) {
  TempDir dir;
  // u16 values 0..9 (so that the nodata value 4 is frequent), as .npy and as a zarr store, and
  // one image's mask (row 2 and column 4 hidden) broadcast over the images.
  const std::string cube = dir.file("c.npy");
  const std::string zarr = dir.file("c.zarr");
  const std::string mask = dir.file("mask.npy");
  run_python_code(
      "import numpy as np, sys, zarr\n"
      "a = np.random.default_rng(3).integers(0, 10, (5, 6, 7)).astype('<u2')\n"
      "np.save(sys.argv[1], a)\n"
      "z = zarr.open(sys.argv[2], mode='w', shape=a.shape, dtype=a.dtype, chunks=(2, 4, 3))\n"
      "z[...] = a\n"
      "m = np.zeros((6, 7), bool); m[2] = True; m[:, 4] = True\n"
      "np.save(sys.argv[3], m)\n",
      {cube, zarr, mask});
  const std::string nodata = "4";
  for (const std::string& source : {cube, zarr}) {
    for (const std::vector<std::string>& leave : std::vector<std::vector<std::string>>{
             {"--nodata", nodata}, {"--mask", mask}, {"--nodata", nodata, "--mask", mask}}) {
      for (const std::string axis : {"1,2", "0"}) {
        const std::string out = dir.file("n.npz");
        std::vector<std::string> args{"reduce", source, "--op", "mean,max,count,median",
                                      "--axis", axis,   "-j",   "2",
                                      "-o",     out};
        args.insert(args.end(), leave.begin(), leave.end());
        const CommandResult r = run_cli(args);
        ASSERT_EQ(r.exit_code, 0) << r.err;
        const json members = cube_fixture({"npz", out});
        for (const std::string op : {"mean", "max", "count", "median"}) {
          std::vector<std::string> more{"--axis", axis};
          more.insert(more.end(), leave.begin(), leave.end());
          expect_same_values(numpy_answer(cube, op, more), members.at(op),
                             source + " " + leave.front() + " axis " + axis + " " + op);
        }
      }
    }
  }
}

TEST(CliNodata, BadNodataAndMasksAreOneLineErrorsAndWriteNothing) {
  TempDir dir;
  const std::string cube = dir.file("c.npy");
  cube_fixture({"make", cube, "--descr", "|u1", "--shape", "3,4,5", "--seed", "1"});
  const std::string wide = dir.file("wide.npy");
  run_python_code("import numpy as np, sys; np.save(sys.argv[1], np.zeros((4, 6), bool))", {wide});
  const std::string out = dir.file("never.npy");
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--nodata", "300"}, "nodata 300 is out of the range of u8"},
           {{"--nodata", "nan"}, "NaN equals nothing"},
           {{"--nodata", "x1"}, "bad nodata value 'x1'"},
           {{"--mask", wide}, "does not broadcast"},
           {{"--mask", dir.file("missing.npy")}, "missing.npy"}}) {
    std::vector<std::string> cmd{"reduce", cube, "--op", "mean", "-o", out};
    cmd.insert(cmd.end(), args.begin(), args.end());
    const CommandResult r = run_cli(cmd);
    EXPECT_NE(r.exit_code, 0) << message;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(file_exists(out)) << message;
  }
}

}  // namespace
}  // namespace mmc::test
