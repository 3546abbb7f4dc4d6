// Output of programs that use the pool, with stdout a file (every batch job) or a pipe: each
// line the parent or a task prints appears exactly once (print_child.cpp prints them).
#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>

#include "support/test_support.hpp"

namespace mmc {
namespace {

std::map<std::string, int> count_lines(const std::string& text) {
  std::map<std::string, int> counts;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) ++counts[line];
  return counts;
}

void expect_each_line_once(const std::string& output) {
  const std::map<std::string, int> counts = count_lines(output);
  std::map<std::string, int> expected;
  for (const char* line :
       {"parent before the pool", "parent between", "parent after", "pool submit"}) {
    expected[line] = 1;
  }
  for (int i = 0; i < 10; ++i) expected["pool task " + std::to_string(i)] = 1;
  for (int i = 0; i < 8; ++i) expected["run_tasks task " + std::to_string(i)] = 1;
  EXPECT_EQ(counts, expected) << output;
}

TEST(PoolStdio, EveryLineAppearsOnceWhenStdoutIsAFile) {
  test::TempDir dir;
  const std::string out = dir.file("out.txt");
  const auto result =
      test::run_command({"/bin/sh", "-c", std::string("exec '") + MMC_PRINT_CHILD + "' > " + out});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  expect_each_line_once(test::read_file(out));
}

TEST(PoolStdio, EveryLineAppearsOnceWhenStdoutIsAPipe) {
  const auto result =
      test::run_command({"/bin/sh", "-c", std::string("'") + MMC_PRINT_CHILD + "' | cat"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  expect_each_line_once(result.out);
}

// std::cout unsynced from stdio keeps a buffer of its own, which workers flush after each task.
TEST(PoolStdio, EveryLineAppearsOnceWhenStdCoutIsUnsyncedAndStdoutIsAPipe) {
  const auto result = test::run_command(
      {"/bin/sh", "-c", std::string("'") + MMC_PRINT_CHILD + "' cout-unsynced | cat"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  expect_each_line_once(result.out);
}

}  // namespace
}  // namespace mmc
