// The CLI's cache parts: `reduce --cache DIR [--cache-verify]` and `cache ls|clear|prune`.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "commands.hpp"

namespace mmc::cli {

// The cache options of `reduce`.
struct CacheArgs {
  std::string folder;     // --cache DIR; empty: $MMC_CACHE_DIR
  bool verify = false;    // --cache-verify
  bool disabled = false;  // --no-cache (ignores MMC_CACHE_DIR)
};

// Adds --cache, --cache-verify and --no-cache to a reduce command.
void add_reduce_cache_options(CLI::App* reduce_cmd, CacheArgs* args);

// True when a reduce goes through the cache: --cache given or MMC_CACHE_DIR set, and no
// --no-cache. Throws Error(InvalidArgument) for --cache-verify without any cache folder.
bool cache_requested(const CacheArgs& args);

// run_reduce through the cache: a hit prints the stored answer without starting a worker.
// With -v, says "cache: hit <key>" or "cache: miss, stored <key>" on stderr. Cache problems are
// warnings ("mmcompute: warning: cache: ..."), never failures.
int run_cached_reduce(const ReduceArgs& args, const CacheArgs& cache);

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
