// The command line's parser and runner, compiled once for both executables (mmcompute and
// mmcompute-mpi; tools/mmcompute.cpp is their main).
#pragma once

#include <string>

#include "commands.hpp"

namespace mmc::cli {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// Prints "mmcompute: error: <message>" as exactly one line (on rank 0 only under MPI).
void print_error(const std::string& message);

// Parses argv, runs the subcommand and returns the process's exit code: 0 success, 2 usage
// (bad arguments), 1 runtime failure, 128 + signal when interrupted. Errors are printed.
int run_cli(int argc, char** argv, const Cluster& cluster);

}  // namespace mmc::cli
