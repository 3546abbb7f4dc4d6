// The CLI's subcommands: validate arguments with the library's parsers, call it, print.
#include "commands.hpp"

#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "mmc/mmc.hpp"
#include "progress_bar.hpp"

namespace mmc::cli {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "LO,HI" as two numbers; the library checks that they are finite and ordered.
void parse_range(const std::string& text, double* lo, double* hi) {
  const std::size_t comma = text.find(',');
  auto number = [&](std::size_t begin, std::size_t end, double* v) {
    const char* first = text.data() + begin;
    const char* last = text.data() + end;
    const auto [ptr, ec] = std::from_chars(first, last, *v);
    return first != last && ec == std::errc() && ptr == last;
  };
  if (comma == std::string::npos || !number(0, comma, lo) || !number(comma + 1, text.size(), hi)) {
    throw Error(ErrorCode::InvalidArgument,
                "bad --range '" + text + "' (expected LO,HI, e.g. 0,255 or -1.5,2.5)");
  }
}

// --bins and --range: histogram only.
void set_histogram_options(const ReduceArgs& args, ReduceOptions* options) {
  if (options->op != ReduceOp::Histogram) {
    if (args.bins_given || !args.range.empty()) {
      throw Error(ErrorCode::InvalidArgument, "--bins and --range apply to --op histogram only");
    }
    return;
  }
  if (args.bins < 1) {
    throw Error(ErrorCode::InvalidArgument,
                "--bins must be 1 or more, got " + std::to_string(args.bins));
  }
  options->bins = args.bins;
  if (!args.range.empty()) {
    parse_range(args.range, &options->range_lo, &options->range_hi);
    options->range_given = true;
  }
}

Order parse_order(const std::string& text) {
  if (text == "C" || text == "c") return Order::C;
  if (text == "F" || text == "f") return Order::F;
  throw Error(ErrorCode::InvalidArgument, "bad --order '" + text + "' (expected C or F)");
}

// Checked before any file is opened, so a usage error is reported as one whatever the files.
RawSpec raw_spec(const SourceArgs& args) {
  if (args.dtype.empty() || args.shape.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "raw source " + args.path + " needs both --dtype and --shape");
  }
  RawSpec spec;
  spec.path = args.path;
  spec.dtype = DType::parse(args.dtype);
  spec.shape = parse_shape(args.shape);
  spec.offset = args.offset;
  spec.order = parse_order(args.order);
  return spec;
}

void check_source_args(const SourceArgs& args) {
  if (args.raw) {
    raw_spec(args);
  } else if (!ends_with(args.path, ".npy")) {
    throw Error(ErrorCode::InvalidArgument,
                args.path + ": not a .npy file; give --dtype and --shape to read it as raw data");
  }
}

Source open_source(const SourceArgs& args) {
  return args.raw ? open_raw(raw_spec(args)) : open_npy(args.path);
}

bool show_progress(const OutputArgs& output) {
  return !output.quiet && (output.progress || ::isatty(STDERR_FILENO));
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::uint64_t file_size_of(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  return ec ? 0 : size;
}

void print_cache_warning(const std::string& message) {
  std::fprintf(stderr, "mmcompute: warning: cache: %s\n", message.c_str());
}

// True when reduce goes through the cache: --cache given or MMC_CACHE_DIR set, and no
// --no-cache. --cache-verify without any folder is a usage error.
bool cache_requested(const CacheArgs& args) {
  if (args.disabled) return false;
  if (!resolve_cache_folder(args.folder).empty()) return true;
  if (args.verify) {
    throw Error(ErrorCode::InvalidArgument,
                "--cache-verify needs a cache folder: pass --cache DIR or set MMC_CACHE_DIR");
  }
  return false;
}

}  // namespace

void write_stdout(const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0) {
    throw Error(ErrorCode::Io, "cannot write the result to stdout");
  }
}

std::string cache_folder(const std::string& folder) {
  const std::string resolved = resolve_cache_folder(folder);
  if (resolved.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "no cache folder: pass --cache DIR or set MMC_CACHE_DIR");
  }
  return resolved;
}

int run_reduce(const ReduceArgs& args, const CacheArgs& cache_args) {
  ReduceOptions options;
  options.op = parse_reduce_op(args.op);
  if (!args.axis.empty()) {
    options.axes = parse_axes(args.axis);
    options.axes_given = true;
  }
  if (args.ddof < 0) throw Error(ErrorCode::InvalidArgument, "--ddof must be >= 0");
  options.ddof = args.ddof;
  set_histogram_options(args, &options);
  effective_n_jobs(args.jobs);  // rejects 0 before any work
  options.pool.n_jobs = args.jobs;
  options.pool.backend = parse_backend(args.backend);
  options.pool.max_nbytes = parse_max_nbytes(args.max_nbytes);
  if (!args.out.empty()) output_format_for(args.out);
  check_source_args(args.source);

  std::optional<Cache> cache;
  if (cache_requested(cache_args)) {
    CacheOptions cache_options;
    cache_options.folder = cache_folder(cache_args.folder);
    cache_options.verify = cache_args.verify;
    cache_options.on_warning = print_cache_warning;
    cache.emplace(cache_options);
  }

  const Source source = open_source(args.source);
  const ArrayMeta& meta = source.meta();
  if (args.output.verbose) {
    std::fprintf(
        stderr, "mmcompute: source %s (%s), %s at offset %llu of %s; %s kernels\n",
        meta.describe().c_str(), source.kind().c_str(), format_bytes(meta.nbytes()).c_str(),
        static_cast<unsigned long long>(source.data_offset()), source.path().c_str(), kernel_isa());
  }
  ProgressBar bar(show_progress(args.output), meta.nbytes());
  options.progress = [&bar](std::size_t done, std::size_t total) { bar.update(done, total); };
  const auto start = std::chrono::steady_clock::now();
  CacheOutcome outcome;
  const ReduceResult result =
      cache ? cache->reduce(source, options, &outcome) : reduce(source, options);
  const double elapsed = seconds_since(start);
  bar.finish();

  if (args.output.verbose && cache) {
    if (outcome.hit) {
      std::fprintf(stderr, "cache: hit %s\n", outcome.key.hex().c_str());
    } else {
      std::fprintf(stderr, "cache: miss, %s %s\n", outcome.stored ? "stored" : "not stored",
                   outcome.key.hex().c_str());
    }
  }
  if (args.output.verbose && outcome.hit) {
    std::fprintf(stderr, "mmcompute: %s of %s from the cache in %.3f ms\n", to_string(options.op),
                 format_bytes(meta.nbytes()).c_str(), elapsed * 1e3);
  } else if (args.output.verbose) {
    const CallStats& s = result.stats;
    std::fprintf(stderr,
                 "mmcompute: %s backend, %d workers, %zu tasks; source passed by reference "
                 "(mapped file); payloads above max_nbytes=%llu go through shared segments: "
                 "%s piped, %s shared in %llu segments\n",
                 to_string(options.pool.backend), s.workers, s.tasks,
                 static_cast<unsigned long long>(options.pool.max_nbytes),
                 format_bytes(s.bytes_piped).c_str(), format_bytes(s.bytes_shared).c_str(),
                 static_cast<unsigned long long>(s.segments));
    std::fprintf(stderr, "mmcompute: %s %s in %.3f s = %.2f GB/s\n", to_string(options.op),
                 format_bytes(meta.nbytes()).c_str(), elapsed,
                 elapsed > 0 ? static_cast<double>(meta.nbytes()) / elapsed / 1e9 : 0.0);
  }
  if (args.out.empty()) {
    write_stdout(format_result_text(result));
  } else {
    write_result(result, args.out);
  }
  return 0;
}

int run_info(const InfoArgs& args) {
  check_source_args(args.source);
  const Source source = open_source(args.source);
  const ArrayMeta& meta = source.meta();
  std::string version;
  if (source.kind() == "npy") {
    const NpyHeader header = read_npy_header(source.path());
    version = std::to_string(header.major) + "." + std::to_string(header.minor);
  }
  const std::uint64_t file_size = file_size_of(source.path());
  const char* order = meta.order == Order::C ? "C" : "F";
  if (args.json) {
    nlohmann::ordered_json j;
    j["path"] = source.path();
    j["format"] = source.kind();
    if (!version.empty()) j["npy_version"] = version;
    j["shape"] = meta.shape;
    j["dtype"] = meta.dtype.name();
    j["descr"] = meta.dtype.numpy_descr();
    j["order"] = order;
    j["itemsize"] = meta.dtype.itemsize();
    j["size"] = meta.size();
    j["nbytes"] = meta.nbytes();
    j["layout"] = "contiguous";
    j["offset"] = source.data_offset();
    j["file_size"] = file_size;
    write_stdout(j.dump(2) + "\n");
    return 0;
  }
  std::string text;
  char buf[512];
  auto line = [&](const char* key, const std::string& value) {
    std::snprintf(buf, sizeof buf, "%-10s %s\n", key, value.c_str());
    text += buf;
  };
  line("path:", source.path());
  line("format:", source.kind() + (version.empty() ? "" : " (version " + version + ")"));
  line("shape:", format_shape(meta.shape, true));
  line("dtype:", meta.dtype.name() + " (" + meta.dtype.numpy_descr() + ")");
  line("order:", order);
  line("elements:", std::to_string(meta.size()));
  line("bytes:", std::to_string(meta.nbytes()) + " (" + format_bytes(meta.nbytes()) + ")");
  line("layout:",
       "contiguous at offset " + std::to_string(source.data_offset()) + " in " + source.path());
  line("file size:", std::to_string(file_size) + " (" + format_bytes(file_size) + ")");
  write_stdout(text);
  return 0;
}

int run_gen(const GenArgs& args) {
  const DType dtype = DType::parse(args.dtype);
  const Shape shape = parse_shape(args.shape);
  effective_n_jobs(args.jobs);
  PoolOptions pool;
  pool.n_jobs = args.jobs;
  pool.backend = parse_backend(args.backend);
  const ArrayMeta meta = ArrayMeta::contiguous(dtype, shape);

  ProgressBar bar(show_progress(args.output), meta.nbytes());
  const auto start = std::chrono::steady_clock::now();
  generate_cube(args.out, dtype, shape, args.seed, pool,
                [&bar](std::size_t done, std::size_t total) { bar.update(done, total); });
  const double elapsed = seconds_since(start);
  bar.finish();
  if (!args.output.quiet) {
    char line[512];
    std::snprintf(line, sizeof line, "wrote %s: %s (%s) in %.2f s\n", args.out.c_str(),
                  meta.describe().c_str(), format_bytes(meta.nbytes()).c_str(), elapsed);
    write_stdout(line);
  }
  return 0;
}

}  // namespace mmc::cli
