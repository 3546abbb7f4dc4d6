// The CLI's `cache ls|clear|prune` commands (their options are parsed in cli.cpp).
#pragma once

#include <string>

#include "commands.hpp"

namespace mmc::cli {

// `cache ls|clear|prune` arguments.
struct CacheCommandArgs {
  std::string folder;    // --cache DIR; empty: $MMC_CACHE_DIR
  std::string max_size;  // prune --max-size (bytes, or K/M/G in powers of 1024)
  bool json = false;     // ls --json
};

enum class CacheCommand { Ls, Clear, Prune };

// Runs one cache subcommand. Throws mmc::Error.
int run_cache_command(CacheCommand command, const CacheCommandArgs& args);

}  // namespace mmc::cli
