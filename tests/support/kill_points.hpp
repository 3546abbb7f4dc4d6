// Crash-consistency tests: run the CLI and SIGKILL it, workers included, at chosen moments.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mmc::test {

using EnvVars = std::vector<std::pair<std::string, std::string>>;

// Runs the CLI to the end in `dir` (its stdout and stderr go to files there); fails the test
// unless it exits 0. Returns the seconds it took.
double timed_cli_run(const std::vector<std::string>& args, const std::string& dir,
                     const EnvVars& env);

// `n` moments in [0, 1.5 * seconds), drawn from `seed` and printed with it, so a failing run
// can be replayed; the last third lets some kills land after the run has finished.
std::vector<double> kill_moments(std::uint32_t seed, int n, double seconds);

// Starts the CLI in `dir`, sends SIGKILL to its whole process group (the CLI and its workers)
// `after` seconds later, and returns once all of them are gone. Returns the CLI's exit code:
// 128 + 9 when the kill landed, its own code when it had already finished.
int run_and_kill(const std::vector<std::string>& args, const std::string& dir,
                 const EnvVars& env, double after);

}  // namespace mmc::test
