// mmcompute's command line (cli.hpp): parses arguments, runs a subcommand, and turns errors into
// one line on stderr and an exit code: 0 success, 2 usage (bad arguments), 1 runtime failure,
// 128 + signal (130 for SIGINT, 143 for SIGTERM) when interrupted.
#include "cli.hpp"

#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cache_cli.hpp"
#include "commands.hpp"
#include "mmc/error.hpp"
#include "mmc/output.hpp"
#include "mmc/pool.hpp"

namespace mmc::cli {
namespace {
// This process's MPI rank (0 when not under mpirun): only rank 0 reports errors.
int g_rank = 0;
}  // namespace

void print_error(const std::string& message) {
  if (g_rank != 0) return;
  std::string line = message;
  for (char& c : line) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::fprintf(stderr, "mmcompute: error: %s\n", line.c_str());
}

}  // namespace mmc::cli

namespace {

using mmc::cli::kExitRuntime;
using mmc::cli::kExitUsage;
using mmc::cli::print_error;

void add_source_options(CLI::App* cmd, mmc::cli::SourceArgs* source) {
  cmd->add_option("source", source->path,
                  "FILE.npy, FILE.h5:/dataset, STORE.zarr, or a raw FILE with --dtype and --shape")
      ->required();
  cmd->add_option("--dtype", source->dtype, "raw: element type (u8 i16 f32 ..., <u2 >f8 ...)");
  cmd->add_option("--shape", source->shape, "raw: shape, e.g. 2048,1024,1024");
  cmd->add_option("--offset", source->offset, "raw: bytes before the first element");
  cmd->add_option("--order", source->order, "raw: C (row-major) or F (column-major)");
}

// Levenshtein distance, for suggesting the subcommand a typo meant.
std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      diagonal = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
    }
  }
  return row[b.size()];
}

// CLI11 reads an unknown first word as a stray argument and answers "A subcommand is required";
// this names the word and the nearest subcommand instead. Empty when the word is a subcommand
// (or an option).
std::string unknown_subcommand_message(const CLI::App& app, int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') return {};
  const std::string word = argv[1];
  std::string names, nearest;
  std::size_t best = std::string::npos;
  for (const CLI::App* sub : app.get_subcommands({})) {
    const std::string& name = sub->get_name();
    if (name == word) return {};
    names += (names.empty() ? "" : ", ") + name;
    const std::size_t d = edit_distance(word, name);
    if (d < best) best = d, nearest = name;
  }
  std::string message = "unknown subcommand '" + word + "'";
  // A third of the letters wrong (at least 2) still reads as a typo of that name.
  if (best <= std::max<std::size_t>(2, nearest.size() / 3)) {
    message += "; did you mean '" + nearest + "'?";
  }
  return message + " (subcommands: " + names + ")";
}

// True when any raw-source option appeared on the command line.
bool raw_requested(const CLI::App* cmd) {
  for (const char* name : {"--dtype", "--shape", "--offset", "--order"}) {
    if (cmd->count(name) > 0) return true;
  }
  return false;
}

constexpr const char* kJobsHelp =
    "workers, joblib's n_jobs (-1: all CPUs; without --jobs, MMC_N_JOBS when set)";

// -j/--jobs and --backend of gen and convert.
void add_pool_options(CLI::App* cmd, int* jobs, std::string* backend) {
  cmd->add_option("-j,--jobs", *jobs, kJobsHelp)->capture_default_str();
  cmd->add_option("--backend", *backend, "process, thread or serial")->capture_default_str();
}

void add_output_options(CLI::App* cmd, mmc::cli::OutputArgs* output) {
  auto* progress = cmd->add_flag("--progress", output->progress, "progress bar on stderr");
  auto* quiet = cmd->add_flag("--quiet", output->quiet, "no progress bar");
  progress->excludes(quiet);
  cmd->add_flag("-v,--verbose", output->verbose, "transport statistics and throughput on stderr");
}

// The `cache` command and its subcommands, as added to the app.
struct CacheCommands {
  CLI::App* cache = nullptr;
  CLI::App* ls = nullptr;
  CLI::App* clear = nullptr;
  CLI::App* prune = nullptr;
};

// Adds --cache, --cache-verify and --no-cache to a reduce command.
void add_reduce_cache_options(CLI::App* reduce_cmd, mmc::cli::CacheArgs* args) {
  auto* cache = reduce_cmd->add_option("--cache", args->folder,
                                       "cache results in DIR (default: $MMC_CACHE_DIR when set)");
  reduce_cmd->add_flag("--cache-verify", args->verify,
                       "also key the cache by a hash of the source's bytes (reads it once)");
  reduce_cmd->add_flag("--no-cache", args->disabled, "do not use the cache, even MMC_CACHE_DIR")
      ->excludes(cache);
}

// Adds `cache` with its subcommands ls, clear and prune to the app.
CacheCommands add_cache_commands(CLI::App* app, mmc::cli::CacheCommandArgs* args) {
  CacheCommands c;
  c.cache = app->add_subcommand("cache", "the result cache: ls, clear, prune");
  c.cache->require_subcommand(1);
  const auto folder_option = [args](CLI::App* cmd) {
    cmd->add_option("--cache", args->folder, "the cache folder (default: $MMC_CACHE_DIR)");
  };
  c.ls = c.cache->add_subcommand("ls", "list entries, most recently used first");
  folder_option(c.ls);
  c.ls->add_flag("--json", args->json, "print JSON");
  c.clear = c.cache->add_subcommand("clear", "remove every entry");
  folder_option(c.clear);
  c.prune = c.cache->add_subcommand("prune", "remove least recently used entries over a size");
  folder_option(c.prune);
  c.prune->add_option("--max-size", args->max_size, "size to keep: bytes, or K, M, G (1024s)")
      ->required();
  return c;
}

int exit_code_for(const mmc::Error& e) {
  switch (e.code()) {
    case mmc::ErrorCode::InvalidArgument:
      return kExitUsage;
    case mmc::ErrorCode::Cancelled: {
      const int sig = mmc::interrupt_signal();
      return 128 + (sig > 0 ? sig : SIGINT);
    }
    default:
      return kExitRuntime;
  }
}

}  // namespace

namespace mmc::cli {

int run_cli(int argc, char** argv, const Cluster& cluster) {
  g_rank = cluster.rank;
  mmc::install_interrupt_handlers();

  CLI::App app{"mmcompute: per-image statistics over memory-mapped image cubes"};
  app.set_version_flag("--version", MMC_VERSION);
  app.require_subcommand(1);

  mmc::cli::ReduceArgs reduce;
  auto* reduce_cmd = app.add_subcommand(
      "reduce", "reduce a cube over axes (sum, mean, min, max, var, std, histogram, ...)");
  add_source_options(reduce_cmd, &reduce.source);
  reduce_cmd
      ->add_option("--op", reduce.op,
                   "sum mean min max var std count nansum nanmean nanmin nanmax nanvar nanstd "
                   "any all norm argmin argmax histogram median nanmedian percentile "
                   "nanpercentile, or several in one pass over the data: mean,std,min,max")
      ->required();
  reduce_cmd->add_option("--axis", reduce.axis,
                         "axes to reduce, e.g. 1,2 or -1 (default: all but 0; a 1-d source "
                         "reduces to a scalar)");
  reduce_cmd->add_option("--ddof", reduce.ddof, "var/std divide by n - ddof")
      ->capture_default_str();
  reduce_cmd->add_option("--bins", reduce.bins, "histogram: equal-width bins")
      ->capture_default_str();
  reduce_cmd->add_option("--range", reduce.range,
                         "histogram: LO,HI (default: the whole array's min and max, one more "
                         "pass; a histogram of data with NaN or inf needs a range)");
  reduce_cmd->add_option("--select", reduce.select,
                         "reduce a part: numpy's slicing per axis, e.g. 2:20:3,5:30,: or 7,::-1 "
                         "(an index drops its axis; only the selected bytes or chunks are read)");
  reduce_cmd->add_option("--nodata", reduce.nodata,
                         "leave out elements equal to this value in every op (as the nan ops "
                         "leave NaN out); a slice with nothing left gives NaN for mean, std, "
                         "median, 0 for count and sum");
  reduce_cmd->add_option("--mask", reduce.mask,
                         "MASK.npy: a bool array broadcastable against the source (one image's "
                         "shape, or the whole shape); true leaves the element out, as numpy.ma");
  reduce_cmd->add_option("--q", reduce.q,
                         "percentile, nanpercentile: the percentiles in [0, 100], e.g. 5,50,95 "
                         "(numpy's linear method; the result's first axis)");
  reduce_cmd->add_option("-j,--jobs", reduce.jobs, kJobsHelp)->capture_default_str();
  reduce_cmd->add_option("--backend", reduce.backend, "process, thread or serial")
      ->capture_default_str();
  reduce_cmd
      ->add_option("--max-nbytes", reduce.max_nbytes,
                   "payloads above this go through shared memory (0, 4096, 1M, 2G)")
      ->capture_default_str();
  reduce_cmd->add_option("-o,--output", reduce.out,
                         "write OUT.npy, OUT.npz (np.load; one array per op, a histogram's "
                         "bin_edges), OUT.csv (a column per op) or OUT.json (keyed by op)");
  add_output_options(reduce_cmd, &reduce.output);
  mmc::cli::CacheArgs reduce_cache;
  add_reduce_cache_options(reduce_cmd, &reduce_cache);

  mmc::cli::InfoArgs info;
  auto* info_cmd = app.add_subcommand("info", "describe a source: shape, dtype, layout");
  add_source_options(info_cmd, &info.source);
  info_cmd->add_flag("--json", info.json, "print JSON");

  mmc::cli::GenArgs gen;
  auto* gen_cmd = app.add_subcommand("gen", "write the synthetic satellite cube (raw, or .npy)");
  gen_cmd->add_option("out", gen.out, "output file; .npy makes a .npy file, anything else raw")
      ->required();
  gen_cmd->add_option("--shape", gen.shape, "shape, e.g. 2048,1024,1024")->required();
  gen_cmd->add_option("--dtype", gen.dtype, "element type")->capture_default_str();
  gen_cmd->add_option("--seed", gen.seed, "seed of the cube")->capture_default_str();
  add_pool_options(gen_cmd, &gen.jobs, &gen.backend);
  add_output_options(gen_cmd, &gen.output);

  mmc::cli::ConvertArgs conv;
  auto* convert_cmd = app.add_subcommand(
      "convert", "copy an array between raw, .npy, HDF5 and zarr (v2 or v3), in parallel");
  add_source_options(convert_cmd, &conv.source);
  convert_cmd
      ->add_option("destination", conv.dst,
                   "OUT.npy, OUT.h5[:/dataset] (default dataset /data), OUT.zarr, or raw")
      ->required();
  convert_cmd->add_option("--chunks", conv.chunks,
                          "chunk shape of a zarr or HDF5 output, e.g. 1,256,1024 (default: "
                          "slabs of about 8 MiB for zarr; HDF5 contiguous)");
  convert_cmd
      ->add_option("--compressor", conv.compressor,
                   "none, zlib, zstd or blosc (zarr); none or zlib (HDF5 gzip+shuffle)")
      ->capture_default_str();
  convert_cmd->add_option("--level", conv.level, "compression level")->capture_default_str();
  convert_cmd
      ->add_option("--zarr-format", conv.zarr_format,
                   "2 (.zarray) or 3 (zarr.json) for a zarr output")
      ->check(CLI::IsMember({2, 3}))
      ->capture_default_str();
  convert_cmd->add_option("--shards", conv.shards,
                          "zarr v3: shard shape, a multiple of the chunks, e.g. 64,1024,1024 "
                          "(each shard one file of chunks; default chunks then divide it)");
  add_pool_options(convert_cmd, &conv.jobs, &conv.backend);
  convert_cmd->add_flag("--overwrite", conv.overwrite, "replace an existing destination");
  add_output_options(convert_cmd, &conv.output);

  mmc::cli::CacheCommandArgs cache_args;
  const CacheCommands cache_cmds = add_cache_commands(&app, &cache_args);

  if (const std::string unknown = unknown_subcommand_message(app, argc, argv); !unknown.empty()) {
    print_error(unknown);
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    print_error(e.what());
    return kExitUsage;
  }

  try {
    if (reduce_cmd->parsed()) {
      reduce.source.raw = raw_requested(reduce_cmd);
      reduce.jobs_given = reduce_cmd->count("--jobs") > 0;
      reduce.nodata_given = reduce_cmd->count("--nodata") > 0;
      reduce.mask_given = reduce_cmd->count("--mask") > 0;
      reduce.bins_given = reduce_cmd->count("--bins") > 0;
      return mmc::cli::run_reduce(reduce, reduce_cache, cluster);
    }
    // Under MPI only reduce is shared among ranks; the other commands run on rank 0.
    if (cluster.rank != 0) return 0;
    if (info_cmd->parsed()) {
      info.source.raw = raw_requested(info_cmd);
      return mmc::cli::run_info(info);
    }
    if (convert_cmd->parsed()) {
      conv.source.raw = raw_requested(convert_cmd);
      conv.jobs_given = convert_cmd->count("--jobs") > 0;
      return mmc::cli::run_convert(conv);
    }
    if (cache_cmds.cache->parsed()) {
      const auto command = cache_cmds.ls->parsed()      ? mmc::cli::CacheCommand::Ls
                           : cache_cmds.clear->parsed() ? mmc::cli::CacheCommand::Clear
                                                        : mmc::cli::CacheCommand::Prune;
      return mmc::cli::run_cache_command(command, cache_args);
    }
    gen.jobs_given = gen_cmd->count("--jobs") > 0;
    return mmc::cli::run_gen(gen);
  } catch (const mmc::Error& e) {
    if (e.code() == mmc::ErrorCode::Cancelled) {
      mmc::remove_pending_atomic_files();
      const int sig = mmc::interrupt_signal();
      const char* abbrev = sig > 0 ? sigabbrev_np(sig) : nullptr;
      print_error(std::string("interrupted") + (abbrev ? std::string(" by SIG") + abbrev : ""));
      return exit_code_for(e);
    }
    print_error(e.what());
    return exit_code_for(e);
  } catch (const std::exception& e) {
    print_error(e.what());
    return kExitRuntime;
  }
}

}  // namespace mmc::cli
