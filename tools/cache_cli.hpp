// The CLI's cache parts: the options of `reduce --cache DIR [--cache-verify]` and the
// `cache ls|clear|prune` commands.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "commands.hpp"

namespace mmc::cli {

// Adds --cache, --cache-verify and --no-cache to a reduce command.
void add_reduce_cache_options(CLI::App* reduce_cmd, CacheArgs* args);

// `cache ls|clear|prune` arguments.
struct CacheCommandArgs {
  std::string folder;    // --cache DIR; empty: $MMC_CACHE_DIR
  std::string max_size;  // prune --max-size (bytes, or K/M/G in powers of 1024)
  bool json = false;     // ls --json
};

struct CacheCommands {
  CLI::App* cache = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* clear = nullptr;
  CLI::App* prune = nullptr;
};

// Adds `cache` with its subcommands ls, clear and prune to the app.
CacheCommands add_cache_commands(CLI::App* app, CacheCommandArgs* args);

// Runs whichever cache subcommand was parsed. Throws mmc::Error.
int run_cache_command(const CacheCommands& commands, const CacheCommandArgs& args);

}  // namespace mmc::cli
