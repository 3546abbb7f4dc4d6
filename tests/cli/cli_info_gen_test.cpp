// `mmcompute info` and `mmcompute gen` end to end.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

TEST(CliInfo, JsonDescribesANumpyWrittenFortranFile) {
  TempDir dir;
  const std::string source = dir.file("cube.npy");
  cube_fixture({"make", source, "--descr", "<u2", "--shape", "3,4,5", "--order", "F"});
  const json npy = cube_fixture({"npyinfo", source});
  const CommandResult r = run_cli({"info", source, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json info = json::parse(r.out);
  EXPECT_EQ(info.at("format"), "npy");
  EXPECT_EQ(info.at("shape"), npy.at("shape"));
  EXPECT_EQ(info.at("dtype"), "u16");
  EXPECT_EQ(info.at("descr"), npy.at("descr"));
  EXPECT_EQ(info.at("order"), "F");
  EXPECT_EQ(info.at("npy_version"), npy.at("version"));
  EXPECT_EQ(info.at("nbytes"), 3 * 4 * 5 * 2);
  EXPECT_EQ(info.at("offset"), npy.at("offset"));
  EXPECT_EQ(info.at("file_size"), read_file(source).size());
  EXPECT_EQ(info.at("layout"), "contiguous");
}

TEST(CliInfo, TextDescribesARawFileWithOffset) {
  TempDir dir;
  const std::string source = dir.file("cube.raw");
  cube_fixture(
      {"make", source, "--descr", ">f4", "--shape", "2,3", "--format", "raw", "--offset", "16"});
  const CommandResult r =
      run_cli({"info", source, "--dtype", ">f4", "--shape", "2,3", "--offset", "16"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("(2, 3)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("f32 (>f4)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("contiguous at offset 16 in " + source), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("file size: 40"), std::string::npos) << r.out;
  const json info = json::parse(
      run_cli({"info", source, "--dtype", ">f4", "--shape", "2,3", "--offset", "16", "--json"})
          .out);
  EXPECT_EQ(info.at("format"), "raw");
  EXPECT_EQ(info.at("offset"), 16);
  EXPECT_EQ(info.at("nbytes"), 24);
}

TEST(CliInfo, TextAndGenKeepAPathLongerThanALineBuffer) {
  // Three 200-character directories: a path of over 600 bytes, which a fixed 512-byte line
  // buffer used to cut.
  TempDir dir;
  std::string folder = dir.file("");
  for (int i = 0; i < 3; ++i) folder += std::string(200, static_cast<char>('a' + i)) + "/";
  std::filesystem::create_directories(folder);
  const std::string source = folder + "cube.u8";
  ASSERT_GT(source.size(), 600u);
  CommandResult r = run_cli({"gen", source, "--shape", "2,3,4", "--dtype", "u8"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("wrote " + source + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(" s\n"), std::string::npos) << r.out;
  r = run_cli({"info", source, "--dtype", "u8", "--shape", "2,3,4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("path:      " + source + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("contiguous at offset 0 in " + source + "\n"), std::string::npos) << r.out;
}

TEST(CliGen, WritesTheSameBytesForOneAndTwoWorkers) {
  TempDir dir;
  const std::string one = dir.file("one.u8"), two = dir.file("two.u8");
  const std::string other = dir.file("other.u8");
  for (const auto& [path, jobs, seed] :
       {std::tuple{one, "1", "7"}, std::tuple{two, "2", "7"}, std::tuple{other, "2", "8"}}) {
    const CommandResult r = run_cli(
        {"gen", path, "--shape", "12,64,48", "--dtype", "u8", "--seed", seed, "--jobs", jobs});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string bytes = read_file(one);
  ASSERT_EQ(bytes.size(), 12u * 64 * 48);
  EXPECT_TRUE(bytes == read_file(two)) << "gen output depends on --jobs";
  EXPECT_FALSE(bytes == read_file(other)) << "gen output ignores --seed";
  EXPECT_EQ(list_dir(dir.path()), (std::vector<std::string>{"one.u8", "other.u8", "two.u8"}));
}

TEST(CliGen, ReducesToNumpysMeanWhateverTheJobs) {
  TempDir dir;
  const std::string cube = dir.file("cube.u8");
  ASSERT_EQ(run_cli({"gen", cube, "--shape", "10,40,30", "--dtype", "u8"}).exit_code, 0);
  const std::vector<std::string> source{cube, "--dtype", "u8", "--shape", "10,40,30"};
  std::vector<std::string> one{"reduce"}, two{"reduce"};
  one.insert(one.end(), source.begin(), source.end());
  two.insert(two.end(), source.begin(), source.end());
  one.insert(one.end(), {"--op", "mean", "--jobs", "1"});
  two.insert(two.end(), {"--op", "mean", "--jobs", "2"});
  const CommandResult r1 = run_cli(one), r2 = run_cli(two);
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_EQ(r1.out, r2.out);
  const json expected =
      cube_fixture({"expect", cube, "--descr", "|u1", "--shape", "10,40,30", "--op", "mean"});
  expect_same_values(expected, parse_text_values(r1.out, "f64"), "mean of gen cube");
  // Images differ from one another and are not flat.
  const json& means = expected.at("data");
  EXPECT_NE(means.front(), means.back());
  const json stds =
      cube_fixture({"expect", cube, "--descr", "|u1", "--shape", "10,40,30", "--op", "std"});
  for (const auto& s : stds.at("data")) EXPECT_GT(s.get<double>(), 1.0);
}

TEST(CliGen, WritesANpyFileNumpyReads) {
  TempDir dir;
  const std::string cube = dir.file("cube.npy");
  const CommandResult r =
      run_cli({"gen", cube, "--shape", "4,8,6", "--dtype", ">i2", "--jobs", "2", "--quiet"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json npy = cube_fixture({"npyinfo", cube});
  EXPECT_EQ(npy.at("descr"), ">i2");
  EXPECT_EQ(npy.at("shape"), json::array({4, 8, 6}));
  const json expected = cube_fixture({"expect", cube, "--op", "max"});
  const CommandResult max = run_cli({"reduce", cube, "--op", "max"});
  ASSERT_EQ(max.exit_code, 0) << max.err;
  expect_same_values(expected, parse_text_values(max.out, "i16"), "max of gen .npy");
}

}  // namespace
// libmpi and its dependencies cost about 1.5 ms of start-up: only mmcompute-mpi, which the CLI
// runs under an MPI launcher, links them.
TEST(CliStartup, APlainRunDoesNotLoadLibmpi) {
  const CommandResult r = run_command({"env", "LD_DEBUG=libs", MMC_CLI_PATH, "--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NE(r.err.find("calling init"), std::string::npos) << "no loader trace:\n" << r.err;
  EXPECT_EQ(r.err.find("libmpi"), std::string::npos) << r.err;
}

}  // namespace mmc::test
