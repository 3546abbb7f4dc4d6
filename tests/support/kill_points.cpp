// SIGKILL at chosen moments of a CLI run.
#include "support/kill_points.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "cli/cli_helpers.hpp"
#include "support/test_support.hpp"

namespace mmc::test {
namespace {

// True once pid has exited: gone, or a zombie. Orphaned workers are reaped by pid 1, which in
// some containers does so only every second or two; their files are closed once they are zombies.
bool dead(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const std::size_t paren = stat.rfind(')');
    if (stat.empty() || paren == std::string::npos || stat.compare(paren, 3, ") Z") == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

}  // namespace

double timed_cli_run(const std::vector<std::string>& args, const std::string& dir,
                     const EnvVars& env) {
  const auto start = std::chrono::steady_clock::now();
  const CliProcess p = spawn_cli(args, dir, env);
  EXPECT_EQ(wait_exit(p.pid, 60), 0) << read_file(p.err_path);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<double> kill_moments(std::uint32_t seed, int n, double seconds) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> at(0.0, 1.5 * seconds);
  std::vector<double> moments;
  for (int i = 0; i < n; ++i) moments.push_back(at(rng));
  std::printf("kill moments from seed %u over a %.3f s run:", seed, seconds);
  for (double m : moments) std::printf(" %.3f", m);
  std::printf("\n");
  return moments;
}

int run_and_kill(const std::vector<std::string>& args, const std::string& dir,
                 const EnvVars& env, double after) {
  const CliProcess p = spawn_cli(args, dir, env);
  std::this_thread::sleep_for(std::chrono::duration<double>(after));
  const std::vector<pid_t> family = descendants(p.pid);
  ::kill(-p.pid, SIGKILL);  // the CLI is its group's leader (spawn_cli); workers share the group
  const int code = wait_exit(p.pid, 30);
  for (pid_t child : family) EXPECT_TRUE(dead(child)) << "process " << child << " survived";
  return code;
}

}  // namespace mmc::test
