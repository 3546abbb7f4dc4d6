// Test helpers: a temporary folder per test, running commands (the CLI, python3 fixture
// scripts) with their output captured.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "mmc/error.hpp"

namespace mmc::test {

// Runs f() expecting mmc::Error with `code` and a message containing each of `parts`.
template <class F>
void expect_error(F&& f, ErrorCode code, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << to_string(e.code()) << ": " << e.what();
    for (const auto& p : parts) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message lacks '" << p << "': " << e.what();
    }
  }
}

// A fresh folder under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;  // exit status, or 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv (argv[0] looked up in PATH) with stdin from /dev/null, capturing stdout and stderr.
// Fails the current test (and returns exit_code -1) if it cannot be started.
CommandResult run_command(const std::vector<std::string>& argv, double timeout_seconds = 120);

// Runs the mmcompute binary built with the tests.
CommandResult run_cli(const std::vector<std::string>& args, double timeout_seconds = 120);

// Runs /usr/bin/python3 on tests/fixtures/<script> with args; asserts exit 0 (reporting
// stderr) and returns stdout.
std::string run_python(const std::string& script, const std::vector<std::string>& args);

// A folder of fixture files that several tests read and none changes or removes.
class FixtureDir {
 public:
  explicit FixtureDir(std::string path) : path_(std::move(path)) {}
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The files tests/fixtures/<script> writes into the folder it gets as its only argument, for a
// suite to read. Under CTest a setup test wrote them once for all test processes
// (tests/CMakeLists.txt: mmc_python_fixture; MMC_SHARED_FIXTURES says where); otherwise the
// script runs here, once per process, into a temporary folder removed at exit.
const FixtureDir& shared_fixture(const std::string& script);

// Runs /usr/bin/python3 -c code with args; asserts exit 0 and returns stdout.
std::string run_python_code(const std::string& code, const std::vector<std::string>& args = {});

std::string cli_path();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);
// Names of the entries of a folder (no . and ..), sorted.
std::vector<std::string> list_dir(const std::string& path);

}  // namespace mmc::test
