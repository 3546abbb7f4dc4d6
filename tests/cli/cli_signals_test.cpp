// A worker killed mid-run, and the CLI interrupted: the run fails promptly with one line, and
// leaves no output file, temporary file, worker process or /dev/shm entry behind.
// The reduce engine makes each task sleep MMC_DEBUG_TASK_DELAY_MS, so the run is still going
// when the test strikes.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cli/cli_helpers.hpp"

namespace mmc::test {
namespace {

constexpr double kGuardSeconds = 20;

class CliSignals : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = dir_.file("work");
    out_dir_ = dir_.file("out");
    ASSERT_EQ(run_command({"mkdir", "-p", work_, out_dir_}).exit_code, 0);
    // 96 MiB: a dozen tasks of the planner's ~8 MiB, so two workers are busy for over a second.
    source_ = dir_.file("cube.npy");
    const CommandResult gen = run_cli({"gen", source_, "--shape", "96,1024,1024", "--quiet"});
    ASSERT_EQ(gen.exit_code, 0) << gen.err;
    shm_before_ = list_dir("/dev/shm");
  }

  // Starts a slow two-worker reduce and returns once its workers exist.
  CliProcess start_and_wait_for_workers() {
    CliProcess p = spawn_cli({"reduce", source_, "--op", "mean", "--jobs", "2", "--backend",
                              "process", "-o", out_dir_ + "/means.npy"},
                             work_, {{"MMC_DEBUG_TASK_DELAY_MS", "200"}});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      workers_ = leaf_descendants(p.pid);
      if (workers_.size() >= 2) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    EXPECT_GE(workers_.size(), 2u) << "the CLI's workers never appeared";
    return p;
  }

  void expect_nothing_left(const CliProcess& p) {
    EXPECT_TRUE(list_dir(out_dir_).empty()) << "output or temporary file left behind";
    for (pid_t w : workers_) EXPECT_TRUE(process_gone(w, 5)) << "worker " << w << " survived";
    EXPECT_TRUE(descendants(p.pid).empty());
    std::vector<std::string> added;
    for (const auto& name : list_dir("/dev/shm")) {
      if (!std::binary_search(shm_before_.begin(), shm_before_.end(), name)) {
        added.push_back(name);
      }
    }
    EXPECT_TRUE(added.empty()) << "new /dev/shm entries: " << testing::PrintToString(added);
  }

  TempDir dir_;
  std::string work_, out_dir_, source_;
  std::vector<std::string> shm_before_;
  std::vector<pid_t> workers_;
};

TEST_F(CliSignals, KilledWorkerFailsTheRunWithOneLineNamingSigkill) {
  const CliProcess p = start_and_wait_for_workers();
  ASSERT_FALSE(workers_.empty());
  ASSERT_EQ(kill(workers_.front(), SIGKILL), 0);
  const int code = wait_exit(p.pid, kGuardSeconds);
  const std::string err = read_file(p.err_path);
  EXPECT_EQ(code, 1) << err;
  EXPECT_TRUE(is_one_error_line(err)) << "stderr: [" << err << "]";
  EXPECT_NE(err.find("SIGKILL"), std::string::npos) << err;
  EXPECT_EQ(read_file(p.out_path), "");
  expect_nothing_left(p);
}

TEST_F(CliSignals, SigintExitsWith130AndOneInterruptedLine) {
  const CliProcess p = start_and_wait_for_workers();
  ASSERT_EQ(kill(p.pid, SIGINT), 0);
  const int code = wait_exit(p.pid, kGuardSeconds);
  const std::string err = read_file(p.err_path);
  EXPECT_EQ(code, 130) << err;
  EXPECT_TRUE(is_one_error_line(err)) << "stderr: [" << err << "]";
  EXPECT_NE(err.find("interrupted"), std::string::npos) << err;
  EXPECT_EQ(read_file(p.out_path), "");
  expect_nothing_left(p);
}

TEST_F(CliSignals, SigtermExitsWith143) {
  const CliProcess p = start_and_wait_for_workers();
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  const int code = wait_exit(p.pid, kGuardSeconds);
  const std::string err = read_file(p.err_path);
  EXPECT_EQ(code, 143) << err;
  EXPECT_TRUE(is_one_error_line(err)) << "stderr: [" << err << "]";
  expect_nothing_left(p);
}

}  // namespace
}  // namespace mmc::test
