// The CLI's cache parts: reduce through the cache, and the cache folder's ls, clear and prune.
#include "cache_cli.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <nlohmann/json.hpp>

#include "mmc/mmc.hpp"
#include "progress_bar.hpp"

namespace mmc::cli {
namespace {

// Source handling as `reduce` does it (commands.cpp keeps its own copy private).
Source open_reduce_source(const SourceArgs& args) {
  if (!args.raw) {
    const std::string& p = args.path;
    if (p.size() < 4 || p.compare(p.size() - 4, 4, ".npy") != 0) {
      throw Error(ErrorCode::InvalidArgument,
                  p + ": not a .npy file; give --dtype and --shape to read it as raw data");
    }
    return open_npy(p);
  }
  if (args.dtype.empty() || args.shape.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "raw source " + args.path + " needs both --dtype and --shape");
  }
  RawSpec spec;
  spec.path = args.path;
  spec.dtype = DType::parse(args.dtype);
  spec.shape = parse_shape(args.shape);
  spec.offset = args.offset;
  if (args.order == "C" || args.order == "c") {
    spec.order = Order::C;
  } else if (args.order == "F" || args.order == "f") {
    spec.order = Order::F;
  } else {
    throw Error(ErrorCode::InvalidArgument, "bad --order '" + args.order + "' (expected C or F)");
  }
  return open_raw(spec);
}

void write_stdout(const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    throw Error(ErrorCode::Io, "cannot write to stdout");
  }
}

void print_warning(const std::string& message) {
  std::fprintf(stderr, "mmcompute: warning: cache: %s\n", message.c_str());
}

std::string cache_folder(const std::string& folder) {
  const std::string resolved = resolve_cache_folder(folder);
  if (resolved.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "no cache folder: pass --cache DIR or set MMC_CACHE_DIR");
  }
  return resolved;
}

std::uint64_t parse_max_size(const std::string& text) {
  try {
    return parse_max_nbytes(text);
  } catch (const Error&) {
    throw Error(ErrorCode::InvalidArgument,
                "--max-size '" + text +
                    "' is invalid: use a byte count or a number with K, M or G (powers of "
                    "1024), e.g. 1G");
  }
}

std::string local_time(std::int64_t ns) {
  const std::time_t t = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string entries_phrase(std::uint64_t n, std::uint64_t bytes) {
  return std::to_string(n) + (n == 1 ? " entry (" : " entries (") + format_bytes(bytes) + ")";
}

int run_ls(const Cache& cache, bool json) {
  const std::vector<CacheEntryInfo> entries = cache.list();
  std::uint64_t total = 0;
  for (const CacheEntryInfo& e : entries) total += e.size;
  if (json) {
    nlohmann::ordered_json out;
    out["folder"] = cache.folder();
    out["entries"] = nlohmann::ordered_json::array();
    for (const CacheEntryInfo& e : entries) {
      nlohmann::ordered_json j;
      j["key"] = e.key;
      j["size"] = e.size;
      j["last_use"] = local_time(e.last_use_ns);
      j["last_use_ns"] = e.last_use_ns;
      j["what"] = e.what;
      j["valid"] = e.valid;
      out["entries"].push_back(j);
    }
    out["total_bytes"] = total;
    write_stdout(out.dump(2) + "\n");
    return 0;
  }
  std::string text;
  char line[256];
  if (!entries.empty()) {
    std::snprintf(line, sizeof line, "%-32s  %10s  %-19s  %s\n", "KEY", "SIZE", "LAST USE", "WHAT");
    text += line;
  }
  for (const CacheEntryInfo& e : entries) {
    std::snprintf(line, sizeof line, "%-32s  %10s  %-19s  ", e.key.c_str(),
                  format_bytes(e.size).c_str(), local_time(e.last_use_ns).c_str());
    text += line + e.what + "\n";
  }
  text += entries_phrase(entries.size(), total) + " in " + cache.folder() + "\n";
  write_stdout(text);
  return 0;
}

}  // namespace

void add_reduce_cache_options(CLI::App* reduce_cmd, CacheArgs* args) {
  auto* cache = reduce_cmd->add_option("--cache", args->folder,
                                       "cache results in DIR (default: $MMC_CACHE_DIR when set)");
  reduce_cmd->add_flag("--cache-verify", args->verify,
                       "also key the cache by a hash of the source's bytes (reads it once)");
  reduce_cmd->add_flag("--no-cache", args->disabled, "do not use the cache, even MMC_CACHE_DIR")
      ->excludes(cache);
}

bool cache_requested(const CacheArgs& args) {
  if (args.disabled) return false;
  if (!resolve_cache_folder(args.folder).empty()) return true;
  if (args.verify) {
    throw Error(ErrorCode::InvalidArgument,
                "--cache-verify needs a cache folder: pass --cache DIR or set MMC_CACHE_DIR");
  }
  return false;
}

int run_cached_reduce(const ReduceArgs& args, const CacheArgs& cache_args) {
  ReduceOptions options;
  options.op = parse_reduce_op(args.op);
  if (!args.axis.empty()) {
    options.axes = parse_axes(args.axis);
    options.axes_given = true;
  }
  if (args.ddof < 0) throw Error(ErrorCode::InvalidArgument, "--ddof must be >= 0");
  options.ddof = args.ddof;
  effective_n_jobs(args.jobs);
  options.pool.n_jobs = args.jobs;
  options.pool.backend = parse_backend(args.backend);
  options.pool.max_nbytes = parse_max_nbytes(args.max_nbytes);
  if (!args.out.empty()) output_format_for(args.out);

  CacheOptions cache_options;
  cache_options.folder = cache_folder(cache_args.folder);
  cache_options.verify = cache_args.verify;
  cache_options.on_warning = print_warning;
  const Cache cache(cache_options);

  const Source source = open_reduce_source(args.source);
  const ArrayMeta& meta = source.meta();
  if (args.output.verbose) {
    std::fprintf(stderr, "mmcompute: source %s (%s), %s at offset %llu of %s\n",
                 meta.describe().c_str(), source.kind().c_str(),
                 format_bytes(meta.nbytes()).c_str(),
                 static_cast<unsigned long long>(source.data_offset()), source.path().c_str());
  }
  const bool progress =
      !args.output.quiet && (args.output.progress || ::isatty(STDERR_FILENO) != 0);
  ProgressBar bar(progress, meta.nbytes());
  options.progress = [&bar](std::size_t done, std::size_t total) { bar.update(done, total); };
  const auto start = std::chrono::steady_clock::now();
  CacheOutcome outcome;
  const ReduceResult result = cache.reduce(source, options, &outcome);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  bar.finish();

  if (args.output.verbose) {
    if (outcome.hit) {
      std::fprintf(stderr, "cache: hit %s\n", outcome.key.hex().c_str());
      std::fprintf(stderr, "mmcompute: %s of %s from the cache in %.3f s\n", to_string(options.op),
                   format_bytes(meta.nbytes()).c_str(), elapsed);
    } else {
      std::fprintf(stderr, "cache: miss, %s %s\n", outcome.stored ? "stored" : "not stored",
                   outcome.key.hex().c_str());
      const CallStats& s = result.stats;
      std::fprintf(stderr, "mmcompute: %s backend, %d workers, %zu tasks\n",
                   to_string(options.pool.backend), s.workers, s.tasks);
      std::fprintf(stderr, "mmcompute: %s %s in %.3f s = %.2f GB/s\n", to_string(options.op),
                   format_bytes(meta.nbytes()).c_str(), elapsed,
                   elapsed > 0 ? static_cast<double>(meta.nbytes()) / elapsed / 1e9 : 0.0);
    }
  }
  if (args.out.empty()) {
    write_stdout(format_result_text(result));
  } else {
    write_result(result, args.out);
  }
  return 0;
}

CacheCommands add_cache_commands(CLI::App* app, CacheCommandArgs* args) {
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

int run_cache_command(const CacheCommands& commands, const CacheCommandArgs& args) {
  const std::uint64_t max_size = commands.prune->parsed() ? parse_max_size(args.max_size) : 0;
  CacheOptions options;
  options.folder = cache_folder(args.folder);
  const Cache cache(options);
  if (commands.ls->parsed()) return run_ls(cache, args.json);
  if (commands.clear->parsed()) {
    const CacheRemoval r = cache.clear();
    write_stdout("removed " + entries_phrase(r.removed_entries, r.removed_bytes) + " from " +
                 cache.folder() + "\n");
    return 0;
  }
  const CacheRemoval r = cache.prune(max_size);
  write_stdout("removed " + entries_phrase(r.removed_entries, r.removed_bytes) + ", kept " +
               entries_phrase(r.kept_entries, r.kept_bytes) + " within " + format_bytes(max_size) +
               " in " + cache.folder() + "\n");
  return 0;
}

}  // namespace mmc::cli
