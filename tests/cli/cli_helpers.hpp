// Helpers of the CLI tests: numpy fixtures, parsing the CLI's outputs, and starting the CLI as a
// child whose pid and worker processes the test can see.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace mmc::test {

using nlohmann::json;

// Runs tests/fixtures/cli_cube.py with args and parses the JSON it prints.
json cube_fixture(const std::vector<std::string>& args);

// {"dtype", "shape", "data" (flat)} from the CLI's outputs: a .npy (read back by numpy), a
// .json file (nested data flattened), or CSV/stdout text (`dtype` says how to read numbers;
// the shape of text is not known, so it is left out).
json load_npy_output(const std::string& path);
json load_json_output(const std::string& path);
json parse_text_values(const std::string& text, const std::string& dtype);

// Fails the test unless `actual` holds `expected`'s values: exactly for integer and bool dtypes,
// within rtol 1e-12 for floats (null for NaN on both sides). Compares dtype and shape when
// `actual` has them.
void expect_same_values(const json& expected, const json& actual, const std::string& what);

// True when text is exactly one line starting with "mmcompute: error: ".
bool is_one_error_line(const std::string& text);

// The CLI started with fork/exec, stdout and stderr going to files in `dir`.
struct CliProcess {
  pid_t pid = -1;
  std::string out_path;
  std::string err_path;
};
CliProcess spawn_cli(const std::vector<std::string>& args, const std::string& dir,
                     const std::vector<std::pair<std::string, std::string>>& env);
// Waits for the process to exit; after `seconds` kills its group and fails the test.
// Returns its exit code (128 + signal when killed).
int wait_exit(pid_t pid, double seconds);

// Every live descendant of `root` (children, grandchildren, ...), found through /proc.
std::vector<pid_t> descendants(pid_t root);
// Descendants that have no children of their own: the workers, even behind a fork server.
std::vector<pid_t> leaf_descendants(pid_t root);
// True when no process has this pid any more (waits up to `seconds` for reaping).
bool process_gone(pid_t pid, double seconds);

}  // namespace mmc::test
