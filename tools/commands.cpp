// The CLI's subcommands: validate arguments with the library's parsers, call it, print.
#include "commands.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <variant>

#include "mmc/mmc.hpp"
#include "progress_bar.hpp"

namespace mmc::cli {
namespace {

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
  if (std::find(options->ops.begin(), options->ops.end(), ReduceOp::Histogram) ==
      options->ops.end()) {
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

bool is_percentile_op(ReduceOp op) {
  return op == ReduceOp::Percentile || op == ReduceOp::NanPercentile;
}

// --q: percentile ops only, a list of numbers (the library checks the range).
void set_quantile_options(const ReduceArgs& args, ReduceOptions* options) {
  const bool percentile = std::any_of(options->ops.begin(), options->ops.end(), is_percentile_op);
  if (!percentile) {
    if (!args.q.empty()) {
      throw Error(ErrorCode::InvalidArgument,
                  "--q applies to --op percentile and nanpercentile only");
    }
    return;
  }
  if (args.q.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "--op " + args.op + " needs --q, the percentiles to compute (e.g. --q 5,50,95)");
  }
  std::size_t at = 0;
  while (true) {
    const std::size_t comma = std::min(args.q.find(',', at), args.q.size());
    double v = 0;
    const char* first = args.q.data() + at;
    const char* last = args.q.data() + comma;
    const auto [ptr, ec] = std::from_chars(first, last, v);
    if (first == last || ec != std::errc() || ptr != last) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad --q '" + args.q + "' (expected numbers in [0, 100], e.g. 5,50,95)");
    }
    // Each q once: a CSV names its column by it.
    if (std::find(options->q.begin(), options->q.end(), v) != options->q.end()) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad --q '" + args.q + "': " + std::string(first, last) + " is listed twice");
    }
    options->q.push_back(v);
    if (comma == args.q.size()) return;
    at = comma + 1;
  }
}

// "percentile_5", "nanpercentile_33.3": a CSV column's name for one percentile (q's shortest
// text that reads back as the same double).
std::string percentile_column(ReduceOp op, double q) {
  char text[64];
  const auto end = std::to_chars(text, text + sizeof text, q).ptr;
  return std::string(to_string(op)) + "_" + std::string(text, end);
}

Order parse_order(const std::string& text) {
  if (text == "C" || text == "c") return Order::C;
  if (text == "F" || text == "f") return Order::F;
  throw Error(ErrorCode::InvalidArgument, "bad --order '" + text + "' (expected C or F)");
}

// Checked before the source is opened, so a usage error is reported as one whatever the files
// (check_raw_source only sniffs the path; open_array repeats it for library callers).
RawSpec raw_spec(const SourceArgs& args) {
  check_raw_source(args.path);  // a .npy given --order alone is told so, not to add --dtype
  if (args.dtype.empty() || args.shape.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "raw source " + args.path + " needs both --dtype and --shape");
  }
  if (args.offset < 0) {
    throw Error(ErrorCode::InvalidArgument,
                "--offset must be >= 0 (bytes before the first element), got " +
                    std::to_string(args.offset));
  }
  RawSpec spec;
  spec.path = args.path;
  spec.dtype = DType::parse(args.dtype);
  spec.shape = parse_shape(args.shape);
  spec.offset = static_cast<std::uint64_t>(args.offset);
  spec.order = parse_order(args.order);
  return spec;
}

void check_source_args(const SourceArgs& args) {
  if (args.raw) raw_spec(args);
}

// .npy, HDF5 (FILE:/dataset), zarr, or raw with the raw options; open_array tells them apart
// and says what to pass for a file it cannot recognize.
AnyArray open_source(const SourceArgs& args) {
  if (!args.raw) return open_array(args.path);
  const RawSpec spec = raw_spec(args);
  return open_array(args.path, &spec);
}

// "contiguous at offset 128 in cube.npy" or "chunked (8, 1024, 1024), blosc(lz4,shuffle,5),
// 256 chunks (250 stored)".
std::string describe_layout(const AnyArray& array) {
  if (const Source* dense = array.dense()) {
    return "contiguous at offset " + std::to_string(dense->data_offset()) + " in " + dense->path();
  }
  const ChunkedArray& c = *array.chunked();
  const StorageInfo s = c.storage();
  std::string text = s.layout + " " + format_shape(c.chunk_shape(), true) + ", " + s.compressor;
  for (const std::string& f : s.filters) text += "+" + f;
  text += ", " + counted(s.chunks_total, "chunk");
  if (s.chunks_stored >= 0) text += " (" + std::to_string(s.chunks_stored) + " stored)";
  if (!s.shards.empty()) {
    text += " in shards of " + format_shape(s.shards, true);
    if (s.shard_files >= 0) text += " (" + counted(s.shard_files, "shard file") + ")";
  }
  return text;
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

// n_jobs of a command: --jobs when given (0 rejected before any work, without counting CPUs);
// otherwise unset when MMC_N_JOBS is, so the pool reads it; otherwise the CLI's default.
std::optional<int> jobs_option(int jobs, bool given) {
  if (given) {
    if (jobs >= 0) effective_n_jobs(jobs);
    return jobs;
  }
  if (std::getenv("MMC_N_JOBS") != nullptr) return std::nullopt;
  return jobs;
}

}  // namespace

std::string counted(long long n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

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

int run_reduce(const ReduceArgs& args, const CacheArgs& cache_args, const Cluster& cluster) {
  const bool root = cluster.rank == 0;
  const bool verbose = args.output.verbose && root;
  ReduceOptions options;
  std::optional<Cache> cache;
  std::optional<AnyArray> opened;
  std::optional<Selection> selection;
  // Checks the arguments and opens the source; under MPI every rank does, then they agree.
  auto setup = [&] {
    options.ops = parse_reduce_ops(args.op);
    options.op = options.ops.front();
    if (!args.axis.empty()) {
      options.axes = parse_axes(args.axis);
      options.axes_given = true;
    }
    if (args.ddof < 0) throw Error(ErrorCode::InvalidArgument, "--ddof must be >= 0");
    options.ddof = args.ddof;
    set_histogram_options(args, &options);
    set_quantile_options(args, &options);
    if (!args.select.empty()) selection = parse_selection(args.select);
    if (args.nodata_given) options.nodata = parse_nodata(args.nodata);
    if (args.mask_given) {
      if (args.mask.empty()) throw Error(ErrorCode::InvalidArgument, "--mask needs a .npy file");
      options.mask = std::make_shared<const Source>(open_npy(args.mask));
    }
    options.pool.n_jobs = jobs_option(args.jobs, args.jobs_given);
    options.pool.backend = parse_backend(args.backend);
    options.pool.max_nbytes = parse_max_nbytes(args.max_nbytes);
    if (!args.out.empty() && output_format_for(args.out) == OutputFormat::Npy &&
        options.ops.size() > 1) {
      throw Error(ErrorCode::InvalidArgument,
                  args.out + ": a .npy holds one array, and --op asks for " +
                      std::to_string(options.ops.size()) + ": write .npz, .json or .csv");
    }
    check_source_args(args.source);
    if (cache_requested(cache_args)) {
      if (cluster.reduce) {
        if (root) print_cache_warning("not used under MPI; computing");
      } else {
        CacheOptions cache_options;
        cache_options.folder = cache_folder(cache_args.folder);
        cache_options.verify = cache_args.verify;
        cache_options.on_warning = print_cache_warning;
        cache.emplace(cache_options);
      }
    }
    opened.emplace(open_source(args.source));
    if (selection) opened.emplace(select(*opened, *selection));
  };
  if (cluster.agree) {
    std::exception_ptr error;
    try {
      setup();
    } catch (...) {
      error = std::current_exception();
    }
    cluster.agree(error);
  } else {
    setup();
  }
  const AnyArray& source = *opened;
  const ArrayMeta& meta = source.meta();
  if (cache && !source.reversed_axes().empty()) {
    print_cache_warning("results of selections with a negative step are not cached yet; computing");
    cache.reset();
  }
  if (cache && source.dense() == nullptr) {
    print_cache_warning("results of chunked sources (" + source.kind() +
                        ") are not cached yet; computing");
    cache.reset();
  }
  std::string op_names;
  for (ReduceOp op : options.ops)
    op_names += (op_names.empty() ? "" : ",") + std::string(to_string(op));
  if (verbose) {
    std::fprintf(stderr, "mmcompute: source %s (%s), %s, %s; %s kernels\n", meta.describe().c_str(),
                 source.kind().c_str(), format_bytes(meta.nbytes()).c_str(),
                 describe_layout(source).c_str(), kernel_isa());
    if (!std::holds_alternative<std::monostate>(options.nodata) || options.mask) {
      std::string what;
      if (!std::holds_alternative<std::monostate>(options.nodata)) {
        what = "elements equal to " + format_nodata(options.nodata);
      }
      if (options.mask) {
        what += (what.empty() ? "" : " and ") + std::string("where ") + options.mask->path() + " " +
                format_shape(options.mask->meta().shape, true) + " is true";
      }
      std::fprintf(stderr, "mmcompute: leaving out %s\n", what.c_str());
    }
    if (cluster.size > 1) {
      std::fprintf(stderr, "mmcompute: %d MPI ranks share the tasks; %s per rank\n", cluster.size,
                   counted(resolve(options.pool).n_jobs, "worker").c_str());
    }
  }
  ProgressBar bar(root && show_progress(args.output), meta.nbytes());
  options.progress = [&bar](const Progress& p) { bar.update(p); };
  const auto start = std::chrono::steady_clock::now();
  std::vector<CacheOutcome> outcomes;
  std::vector<ReduceResult> results;
  if (cache) {
    results = cache->reduce_each(*source.dense(), options, &outcomes);
  } else {
    results = cluster.reduce ? cluster.reduce(source, options) : reduce_each(source, options);
  }
  const ReduceResult& result = results.front();
  const double elapsed = seconds_since(start);
  bar.finish();

  bool all_hit = !outcomes.empty();
  for (std::size_t k = 0; k < outcomes.size(); ++k) {
    const CacheOutcome& outcome = outcomes[k];
    all_hit = all_hit && outcome.hit;
    if (!verbose) continue;
    // One line per op's entry; the op is named when there are several.
    const std::string which =
        outcomes.size() > 1 ? std::string(" (") + to_string(options.ops[k]) + ")" : "";
    if (outcome.hit) {
      std::fprintf(stderr, "cache: hit %s%s\n", outcome.key.hex().c_str(), which.c_str());
    } else {
      std::fprintf(stderr, "cache: miss, %s %s%s\n", outcome.stored ? "stored" : "not stored",
                   outcome.key.hex().c_str(), which.c_str());
    }
  }
  if (verbose && all_hit) {
    std::fprintf(stderr, "mmcompute: %s of %s from the cache in %.3f ms\n", op_names.c_str(),
                 format_bytes(meta.nbytes()).c_str(), elapsed * 1e3);
  } else if (verbose) {
    const CallStats& s = result.stats;
    const ResolvedOptions pool = resolve(options.pool);
    std::fprintf(stderr,
                 "mmcompute: %s backend, %s, %s; source passed by reference "
                 "(%s); payloads above max_nbytes=%llu go through shared segments: "
                 "%s piped, %s shared in %s\n",
                 to_string(pool.backend), counted(s.workers, "worker").c_str(),
                 counted(static_cast<long long>(s.tasks), "task").c_str(),
                 source.dense() ? "mapped file" : "each worker decodes its chunks",
                 static_cast<unsigned long long>(pool.max_nbytes),
                 format_bytes(s.bytes_piped).c_str(), format_bytes(s.bytes_shared).c_str(),
                 counted(static_cast<long long>(s.segments), "segment").c_str());
    std::fprintf(stderr, "mmcompute: %s %s in %.3f s = %.2f GB/s\n", op_names.c_str(),
                 format_bytes(meta.nbytes()).c_str(), elapsed,
                 elapsed > 0 ? static_cast<double>(meta.nbytes()) / elapsed / 1e9 : 0.0);
  }
  if (!root) return 0;
  // Each op's array under its name, a histogram's bin_edges after it.
  std::vector<NamedArray> named;
  std::vector<NamedArray> edges;
  for (std::size_t k = 0; k < results.size(); ++k) {
    const ReduceResult& r = results[k];
    named.push_back({to_string(options.ops[k]), r.dtype, r.shape, r.data});
    if (!r.edges.empty()) {
      edges.push_back({"bin_edges", r.edges_dtype,
                       Shape{static_cast<std::int64_t>(r.edges.size() / r.edges_dtype.itemsize())},
                       r.edges});
      if (verbose) {
        auto edge = [&r](std::size_t i) {
          if (r.edges_dtype.itemsize() == sizeof(float)) {
            float v;
            std::memcpy(&v, r.edges.data() + i * sizeof v, sizeof v);
            return static_cast<double>(v);
          }
          double v;
          std::memcpy(&v, r.edges.data() + i * sizeof v, sizeof v);
          return v;
        };
        std::fprintf(stderr, "mmcompute: histogram of %lld bins over [%.17g, %.17g]\n",
                     static_cast<long long>(options.bins), edge(0),
                     edge(static_cast<std::size_t>(options.bins)));
      }
    }
  }
  const bool several = results.size() > 1;
  // A CSV (and stdout with several ops) has one column per value: a percentile's rows become
  // columns, one per q.
  std::vector<NamedArray> columns;
  for (std::size_t k = 0; k < results.size(); ++k) {
    const ReduceResult& r = results[k];
    if (!is_percentile_op(options.ops[k])) {
      columns.push_back(named[k]);
      continue;
    }
    const Shape rest(r.shape.begin() + 1, r.shape.end());
    const std::size_t each = r.data.size() / options.q.size();
    for (std::size_t i = 0; i < options.q.size(); ++i) {
      columns.push_back({percentile_column(options.ops[k], options.q[i]), r.dtype, rest,
                         std::span<const std::byte>(r.data).subspan(i * each, each)});
    }
  }
  if (args.out.empty()) {
    write_stdout(several ? format_results_csv(columns)
                         : format_result_text(result.dtype, result.shape, result.data));
  } else if (output_format_for(args.out) == OutputFormat::Npz || several) {
    named.insert(named.end(), edges.begin(), edges.end());
    // A CSV's columns are the ops' (bin_edges has its own size).
    write_results(output_format_for(args.out) == OutputFormat::Csv ? columns : named, args.out);
  } else {
    write_result(result.dtype, result.shape, result.data, args.out, edges);
  }
  return 0;
}

// `info FILE.h5`: the file's objects, like `h5ls -r`, one per line (or a JSON list).
// Prints a listing of a file's or group's members: JSON, or a line each under `header`.
int write_listing(const std::vector<Hdf5Entry>& entries, bool as_json, const std::string& header,
                  const std::string& array_kind) {
  if (as_json) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const Hdf5Entry& e : entries) {
      nlohmann::ordered_json j;
      j["path"] = e.path;
      j["kind"] = e.kind;
      if (e.kind == array_kind && !e.layout.empty()) {
        j["shape"] = e.shape;
        j["dtype"] = e.dtype;
        j["layout"] = e.layout;
      }
      if (!e.note.empty()) j["note"] = e.note;
      list.push_back(j);
    }
    write_stdout(list.dump(2) + "\n");
    return 0;
  }
  const std::string indent = header.empty() ? "" : "  ";
  std::size_t width = 0;
  for (const Hdf5Entry& e : entries) width = std::max(width, e.path.size());
  std::string text = header;
  for (const Hdf5Entry& e : entries) {
    text += indent + e.path + std::string(width + 2 - e.path.size(), ' ') + e.kind;
    if (e.kind == array_kind && !e.layout.empty()) {
      text += "  " + format_shape(e.shape, true) + "  " + e.dtype + "  " + e.layout;
    }
    if (!e.note.empty()) text += "  (" + e.note + ")";
    text += "\n";
  }
  write_stdout(text);
  return 0;
}

int list_hdf5_file(const std::string& file, bool as_json) {
  return write_listing(list_hdf5(file), as_json, "", "dataset");
}

// `info STORE.zarr` on a group: its members, a line each (arrays with shape, dtype, layout),
// found by walking the folders below it.
void list_zarr_members(const std::string& dir, const std::string& prefix,
                       std::vector<Hdf5Entry>* out, int depth) {
  if (depth > 32) return;
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    // Folders only, not links to them (a link loop would make the walk explode).
    if (!name.empty() && name[0] != '.' && !e.is_symlink(ec) && e.is_directory(ec)) {
      names.push_back(name);
    }
  }
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = dir + "/" + name;
    Hdf5Entry entry;
    entry.path = prefix + name;
    if (zarr_group_format(path) != 0) {
      entry.kind = "group";
      out->push_back(entry);
      list_zarr_members(path, entry.path + "/", out, depth + 1);
      continue;
    }
    try {
      const std::unique_ptr<ChunkedArray> array = open_zarr(path);
      entry.kind = "array";
      entry.shape = array->meta().shape;
      entry.dtype = array->meta().dtype.numpy_descr();
      entry.layout = "chunks " + format_shape(array->chunk_shape(), true);
    } catch (const Error& e) {
      if (e.code() == ErrorCode::NotFound) continue;  // a folder that is no zarr node
      entry.kind = "array";
      entry.note = e.what();
    }
    out->push_back(entry);
  }
}

int list_zarr_group(const std::string& dir, bool as_json) {
  std::vector<Hdf5Entry> entries;
  list_zarr_members(dir, "", &entries, 0);
  const std::string header = dir + ": zarr v" + std::to_string(zarr_group_format(dir)) +
                             " group, " +
                             counted(static_cast<std::int64_t>(entries.size()), "member") + "\n";
  return write_listing(entries, as_json, header, "array");
}

int run_info(const InfoArgs& args) {
  check_source_args(args.source);
  std::string file, dataset;
  if (!args.source.raw && !split_hdf5_spec(args.source.path, &file, &dataset) &&
      is_hdf5_file(args.source.path)) {
    return list_hdf5_file(args.source.path, args.json);
  }
  if (!args.source.raw && zarr_group_format(args.source.path) != 0) {
    return list_zarr_group(args.source.path, args.json);
  }
  const AnyArray array = open_source(args.source);
  const ArrayMeta& meta = array.meta();
  const Source* dense = array.dense();
  const ChunkedArray* chunked = array.chunked();
  std::string version;
  if (dense != nullptr && dense->kind() == "npy") {
    const NpyHeader header = read_npy_header(dense->path());
    version = std::to_string(header.major) + "." + std::to_string(header.minor);
  }
  const StorageInfo storage = chunked ? chunked->storage() : StorageInfo{};
  const std::uint64_t stored =
      dense ? file_size_of(dense->path()) : static_cast<std::uint64_t>(storage.stored_bytes);
  const char* order = meta.order == Order::C ? "C" : "F";
  const ArrayAttributes attributes = read_attributes(array);
  if (args.json) {
    nlohmann::ordered_json j;
    j["path"] = array.name();
    j["format"] = array.kind();
    if (!version.empty()) j["npy_version"] = version;
    j["shape"] = meta.shape;
    j["dtype"] = meta.dtype.name();
    j["descr"] = meta.dtype.numpy_descr();
    j["order"] = order;
    j["itemsize"] = meta.dtype.itemsize();
    j["size"] = meta.size();
    j["nbytes"] = meta.nbytes();
    if (dense != nullptr) {
      j["layout"] = "contiguous";
      j["offset"] = dense->data_offset();
      j["file"] = dense->path();
      j["file_size"] = stored;
    } else {
      j["layout"] = storage.layout;
      j["chunks"] = chunked->chunk_shape();
      j["compressor"] = storage.compressor;
      j["filters"] = storage.filters;
      j["chunks_total"] = storage.chunks_total;
      if (storage.chunks_stored >= 0) j["chunks_stored"] = storage.chunks_stored;
      if (!storage.shards.empty()) {
        j["shards"] = storage.shards;
        if (storage.shard_files >= 0) j["shard_files"] = storage.shard_files;
      }
      j["stored_bytes"] = stored;
    }
    if (!attributes.dims.empty()) j["dims"] = attributes.dims;
    j["attributes"] = nlohmann::ordered_json::parse(attributes.json);
    if (!attributes.problem.empty()) j["attributes_problem"] = attributes.problem;
    write_stdout(j.dump(2) + "\n");
    return 0;
  }
  std::string text;
  auto line = [&](const std::string& key, const std::string& value) {
    // "%-10s %s\n", with no bound on the value's length (a path can be long).
    text += key;
    text.append(key.size() < 10 ? 10 - key.size() : 0, ' ');
    text += ' ' + value + '\n';
  };
  line("path:", array.name());
  line("format:", array.kind() + (version.empty() ? "" : " (version " + version + ")"));
  line("shape:", format_shape(meta.shape, true));
  line("dtype:", meta.dtype.name() + " (" + meta.dtype.numpy_descr() + ")");
  line("order:", order);
  line("elements:", std::to_string(meta.size()));
  line("bytes:", std::to_string(meta.nbytes()) + " (" + format_bytes(meta.nbytes()) + ")");
  line("layout:", describe_layout(array));
  if (dense != nullptr) {
    line("file size:", std::to_string(stored) + " (" + format_bytes(stored) + ")");
  } else if (stored > 0) {
    char ratio[64];
    std::snprintf(ratio, sizeof ratio, ", %.2fx smaller than the array",
                  static_cast<double>(meta.nbytes()) / static_cast<double>(stored));
    line("on disk:", std::to_string(stored) + " (" + format_bytes(stored) + ")" +
                         (meta.nbytes() > 0 ? std::string(ratio) : std::string()));
  }
  if (!attributes.dims.empty()) {
    std::string dims;
    for (const std::string& d : attributes.dims) dims += (dims.empty() ? "" : ", ") + d;
    line("dims:", dims);
  }
  if (attributes.json != "{}") line("attributes:", attributes.json);
  if (!attributes.problem.empty()) line("attributes:", "unreadable (" + attributes.problem + ")");
  write_stdout(text);
  return 0;
}

int run_gen(const GenArgs& args) {
  const DType dtype = DType::parse(args.dtype);
  const Shape shape = parse_shape(args.shape);
  PoolOptions pool;
  pool.n_jobs = jobs_option(args.jobs, args.jobs_given);
  pool.backend = parse_backend(args.backend);
  const ArrayMeta meta = ArrayMeta::contiguous(dtype, shape);

  ProgressBar bar(show_progress(args.output), meta.nbytes());
  const auto start = std::chrono::steady_clock::now();
  generate_cube(args.out, dtype, shape, args.seed, pool,
                [&bar](const Progress& p) { bar.update(p); });
  const double elapsed = seconds_since(start);
  bar.finish();
  if (!args.output.quiet) {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%.2f", elapsed);
    write_stdout("wrote " + args.out + ": " + meta.describe() + " (" + format_bytes(meta.nbytes()) +
                 ") in " + seconds + " s\n");
  }
  return 0;
}

int run_convert(const ConvertArgs& args) {
  ConvertOptions options;
  if (!args.chunks.empty()) options.chunks = parse_shape(args.chunks);
  options.compressor = parse_compressor(args.compressor);
  options.level = args.level;
  options.zarr_format = args.zarr_format;
  if (!args.shards.empty()) options.shards = parse_shape(args.shards);
  options.overwrite = args.overwrite;
  options.pool.n_jobs = jobs_option(args.jobs, args.jobs_given);
  options.pool.backend = parse_backend(args.backend);
  check_source_args(args.source);
  const AnyArray src = open_source(args.source);
  const ArrayMeta& meta = src.meta();

  ProgressBar bar(show_progress(args.output), meta.nbytes());
  options.progress = [&bar](const Progress& p) { bar.update(p); };
  const auto start = std::chrono::steady_clock::now();
  const ConvertStats stats = convert(src, args.dst, options);
  const double elapsed = seconds_since(start);
  bar.finish();
  if (!stats.attributes_problem.empty()) {
    std::fprintf(stderr, "mmcompute: warning: the source's attributes were left out: %s\n",
                 stats.attributes_problem.c_str());
  }
  if (!args.output.quiet) {
    static const char* const kFormats[] = {"raw", "npy", "hdf5", "zarr"};
    std::string layout = stats.chunks.empty()
                             ? std::string("contiguous")
                             : "chunks " + format_shape(stats.chunks, true) + ", " +
                                   (args.compressor == "zlib" && options.zarr_format == 3 &&
                                            stats.format == ArrayFormat::Zarr
                                        ? std::string("gzip")
                                        : args.compressor);
    if (!stats.shards.empty()) layout += ", shards " + format_shape(stats.shards, true);
    if (stats.format == ArrayFormat::Zarr) layout += ", v" + std::to_string(options.zarr_format);
    char line[768];
    std::snprintf(line, sizeof line, "wrote %s (%s, %s): %s (%s) in %.2f s = %.2f GB/s\n",
                  args.dst.c_str(), kFormats[static_cast<int>(stats.format)], layout.c_str(),
                  meta.describe().c_str(), format_bytes(stats.logical_bytes).c_str(), elapsed,
                  elapsed > 0 ? static_cast<double>(stats.logical_bytes) / elapsed / 1e9 : 0.0);
    write_stdout(line);
  }
  return 0;
}

}  // namespace mmc::cli
