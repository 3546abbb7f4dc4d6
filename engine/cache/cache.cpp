// Cache: the lookup / lock / compute / store protocol, for reductions and memoized functions.
//
// A call reads the entry (hit: done). On a miss it takes the key's lock, reads again (another
// process may have stored it while we waited), computes, stores by atomic rename and unlocks.
// Every failure of the cache itself becomes a warning and the answer is computed anyway.
#include "mmc/cache.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <utility>
#include <variant>

#include "cache/entry.hpp"
#include "cache/key_lock.hpp"

namespace mmc {
namespace {

using detail::EntryKind;
using detail::ReadStatus;

// Creates `folder` and its missing parents with mode 0700. False with `*error` set when it
// does not exist and cannot be made, or exists as something other than a folder.
bool ensure_folder(const std::string& folder, std::string* error) {
  struct stat st;
  if (::stat(folder.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    *error = "it exists and is not a folder";
    return false;
  }
  for (std::size_t pos = 1; pos <= folder.size(); ++pos) {
    if (pos != folder.size() && folder[pos] != '/') continue;
    const std::string part = folder.substr(0, pos);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      *error = "cannot create " + part + ": " + std::strerror(errno);
      return false;
    }
  }
  if (::stat(folder.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *error = "it could not be created as a folder";
    return false;
  }
  return true;
}

// The pieces of one cached call.
struct CachedCall {
  CacheKey key;
  EntryKind kind;
  std::string what;
  // Checks a payload beyond its checksum; returns an empty string or what is wrong.
  std::function<std::string(const Bytes&)> check;
  std::function<Bytes()> compute;
};

class Protocol {
 public:
  Protocol(const CacheOptions& options, std::string folder, CacheOutcome* outcome)
      : options_(options), folder_(std::move(folder)), outcome_(outcome) {}

  // Returns the payload, from the entry or from call.compute().
  Bytes run(const CachedCall& call) {
    outcome_->key = call.key;
    outcome_->entry_path = folder_ + "/" + call.key.hex() + ".mmc";
    if (auto hit = lookup(call)) return std::move(*hit);

    std::string error;
    if (!ensure_folder(folder_, &error)) {
      warn("cache folder " + folder_ + " is unusable (" + error + "); computing without the cache");
      return call.compute();
    }
    detail::KeyLock lock;
    if (options_.lock) {
      lock = detail::KeyLock::acquire(folder_ + "/" + call.key.hex() + ".lock", &error);
      if (!lock.held()) {
        warn("cannot write in the cache folder " + folder_ + " (" + error +
             "); computing without the cache");
        return call.compute();
      }
      if (auto hit = lookup(call)) return std::move(*hit);
    }
    Bytes payload = call.compute();
    try {
      detail::write_entry(outcome_->entry_path, call.key, call.kind, call.what, payload);
      outcome_->stored = true;
    } catch (const Error& e) {
      warn(std::string("cannot store entry ") + call.key.hex() + ": " + e.what() +
           "; the result was computed but is not cached");
    }
    return payload;
  }

 private:
  std::optional<Bytes> lookup(const CachedCall& call) {
    detail::ReadResult r = detail::read_entry(outcome_->entry_path, call.key, call.kind);
    if (r.status == ReadStatus::Ok) {
      const std::string problem = call.check ? call.check(r.payload) : std::string();
      if (problem.empty()) {
        outcome_->hit = true;
        return std::move(r.payload);
      }
      r.status = ReadStatus::Corrupt;
      r.problem = problem;
    }
    if (r.status == ReadStatus::Corrupt) {
      detail::remove_entry_if_same(outcome_->entry_path, r.dev, r.ino);
      warn("entry " + outcome_->entry_path + " is corrupt (" + r.problem +
           "); removed, recomputing");
    } else if (r.status == ReadStatus::Unreadable) {
      warn("cannot read entry " + outcome_->entry_path + " (" + r.problem + "); recomputing");
    }
    return std::nullopt;
  }

  void warn(const std::string& message) {
    outcome_->warnings.push_back(message);
    if (options_.on_warning) {
      options_.on_warning(message);
    } else {
      std::fprintf(stderr, "mmc: cache: warning: %s\n", message.c_str());
    }
  }

  const CacheOptions& options_;
  std::string folder_;
  CacheOutcome* outcome_;
};

// The kept axes of a reduction, in order: the result's shape.
std::string join_axes(const std::vector<int>& axes) {
  std::string out;
  for (std::size_t i = 0; i < axes.size(); ++i) out += (i ? "," : "") + std::to_string(axes[i]);
  return out;
}

std::string display_path(const std::string& path) {
  std::error_code ec;
  const std::filesystem::path canonical = std::filesystem::canonical(path, ec);
  return ec ? path : canonical.string();
}

bool uses_ddof(ReduceOp op) { return op == ReduceOp::Var || op == ReduceOp::Std; }

// options with its one op in `op` (a list of one is that op). Several: Error(InvalidArgument).
ReduceOptions single_op_options(const ReduceOptions& options) {
  if (options.ops.size() > 1) {
    throw Error(ErrorCode::InvalidArgument, std::to_string(options.ops.size()) +
                                                " ops asked of Cache::reduce: call reduce_each");
  }
  ReduceOptions one = options;
  if (!one.ops.empty()) one.op = one.ops.front();
  one.ops.clear();
  return one;
}

// The histogram's options as the entry's description shows them.
std::string histogram_what(const ReduceOptions& options) {
  if (options.op != ReduceOp::Histogram) return "";
  std::string what = " bins=" + std::to_string(options.bins);
  if (options.range_given) {
    char range[96];
    std::snprintf(range, sizeof range, " range=%.17g,%.17g", options.range_lo, options.range_hi);
    what += range;
  }
  return what;
}

}  // namespace

std::string resolve_cache_folder(const std::string& folder) {
  if (!folder.empty()) return folder;
  const char* env = std::getenv("MMC_CACHE_DIR");
  return env ? env : "";
}

Cache::Cache(CacheOptions options)
    : options_(std::move(options)), folder_(resolve_cache_folder(options_.folder)) {
  if (folder_.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "no cache folder: pass one (--cache DIR) or set MMC_CACHE_DIR");
  }
  while (folder_.size() > 1 && folder_.back() == '/') folder_.pop_back();
}

CacheKey Cache::reduce_key(const Source& source, const ReduceOptions& given) const {
  const ReduceOptions options = single_op_options(given);
  const std::vector<int> axes =
      normalize_axes(options.axes, options.axes_given, source.meta().ndim());
  Hasher h;
  h.add("mmc.reduce").add(kResultFormatVersion).add(to_string(options.op)).add(axes);
  h.add(uses_ddof(options.op) ? options.ddof : 0);
  if (options.op == ReduceOp::Histogram) {
    // "bin_edges": the entry holds the edges after the counts (entries from before they did
    // are other keys, never misread).
    h.add(options.bins).add(options.range_given).add("bin_edges");
    if (options.range_given) h.add(options.range_lo).add(options.range_hi);
  }
  if (options.op == ReduceOp::Percentile || options.op == ReduceOp::NanPercentile) {
    h.add("q").add(static_cast<std::int64_t>(options.q.size()));
    for (double q : options.q) h.add(q);
  }
  h.add(options.task_bytes > 0 ? options.task_bytes : kDefaultTaskBytes);
  const SourceHash how = options_.verify ? SourceHash::Content : SourceHash::Identity;
  // Elements left out (only when asked: keys of calls without them are unchanged).
  if (const auto* i = std::get_if<std::int64_t>(&options.nodata)) h.add("nodata").add(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&options.nodata)) h.add("nodata").add(*u);
  if (const auto* f = std::get_if<double>(&options.nodata)) h.add("nodata").add(*f);
  if (options.mask) h.add("mask").add(*options.mask, how);
  h.add(source, how);
  return h.digest();
}

ReduceResult Cache::reduce(const Source& source, const ReduceOptions& options,
                           CacheOutcome* outcome) const {
  const ReduceOptions one = single_op_options(options);
  return reduce_one(source, one, outcome, [&] { return mmc::reduce(source, one); });
}

std::vector<ReduceResult> Cache::reduce_each(const Source& source, const ReduceOptions& options,
                                             std::vector<CacheOutcome>* outcomes) const {
  const std::vector<ReduceOp> ops =
      options.ops.empty() ? std::vector<ReduceOp>{options.op} : options.ops;
  std::vector<ReduceOptions> single(ops.size(), options);
  for (std::size_t k = 0; k < ops.size(); ++k) {
    single[k].ops.clear();
    single[k].op = ops[k];
  }
  std::vector<CacheOutcome> local(ops.size());
  std::vector<ReduceResult> results(ops.size());
  // Results of ops computed ahead, in the pass of an earlier op's miss.
  std::vector<std::optional<ReduceResult>> ahead(ops.size());
  for (std::size_t k = 0; k < ops.size(); ++k) {
    results[k] = reduce_one(source, single[k], &local[k], [&] {
      if (ahead[k]) return std::move(*ahead[k]);
      // A miss: this op and every later one without an entry yet, in one pass.
      std::vector<std::size_t> batch{k};
      for (std::size_t j = k + 1; j < ops.size(); ++j) {
        struct stat st;
        if (::stat((folder_ + "/" + reduce_key(source, single[j]).hex() + ".mmc").c_str(), &st) !=
            0) {
          batch.push_back(j);
        }
      }
      ReduceOptions pass = options;
      pass.ops.clear();
      for (std::size_t j : batch) pass.ops.push_back(ops[j]);
      std::vector<ReduceResult> computed = mmc::reduce_each(source, pass);
      for (std::size_t i = 1; i < batch.size(); ++i) ahead[batch[i]] = std::move(computed[i]);
      return std::move(computed.front());
    });
  }
  if (outcomes != nullptr) *outcomes = std::move(local);
  return results;
}

ReduceResult Cache::reduce_one(const Source& source, const ReduceOptions& options,
                               CacheOutcome* outcome,
                               const std::function<ReduceResult()>& compute) const {
  CacheOutcome local;
  if (outcome == nullptr) outcome = &local;
  *outcome = CacheOutcome();
  const ArrayMeta& meta = source.meta();
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());

  // A float16 histogram's edges are float16, float32 or float64 by the values of its range
  // (numpy's value-based casting), which the data's min and max may decide: not known before
  // the run, so such a histogram is computed, not cached.
  if (options.op == ReduceOp::Histogram && meta.dtype.id() == TypeId::F16) return compute();

  // What a stored answer must look like: its .npy header is known before reading it.
  ReduceResult expected;
  expected.dtype = result_dtype(options.op, meta.dtype);
  expected.shape = result_shape(meta, options);
  const std::string npy_header = make_npy_header(expected.dtype, expected.shape, false);
  std::uint64_t nbytes = expected.dtype.itemsize();
  for (const std::int64_t extent : expected.shape) nbytes *= static_cast<std::uint64_t>(extent);
  // A histogram's entry holds its bins + 1 edges after the counts.
  const bool histogram = options.op == ReduceOp::Histogram;
  if (histogram) {
    expected.edges_dtype = meta.dtype.id() == TypeId::F32 ? DType(TypeId::F32) : DType(TypeId::F64);
  }
  const std::uint64_t edges_bytes =
      histogram ? static_cast<std::uint64_t>(options.bins + 1) * expected.edges_dtype.itemsize()
                : 0;

  CachedCall call;
  call.key = reduce_key(source, options);
  call.kind = EntryKind::ReduceNpy;
  call.what = std::string(to_string(options.op)) + " axes=" + join_axes(axes) +
              (uses_ddof(options.op) ? " ddof=" + std::to_string(options.ddof) : "") +
              histogram_what(options) + " of " + display_path(source.path()) + " (" +
              meta.describe() + ", " + source.kind() + ")" + (options_.verify ? " verified" : "");
  call.check = [&](const Bytes& payload) -> std::string {
    if (payload.size() != npy_header.size() + nbytes + edges_bytes ||
        std::memcmp(payload.data(), npy_header.data(), npy_header.size()) != 0) {
      return "payload is not a " + expected.dtype.name() + " array of shape " +
             format_shape(expected.shape, true);
    }
    return {};
  };
  std::optional<ReduceResult> computed;
  call.compute = [&] {
    computed = compute();
    Bytes payload(npy_header.size() + computed->data.size() + computed->edges.size());
    std::memcpy(payload.data(), npy_header.data(), npy_header.size());
    if (!computed->data.empty()) {
      std::memcpy(payload.data() + npy_header.size(), computed->data.data(), computed->data.size());
    }
    if (!computed->edges.empty()) {
      std::memcpy(payload.data() + npy_header.size() + computed->data.size(),
                  computed->edges.data(), computed->edges.size());
    }
    // The header describes what reduce() returned; a disagreement is a bug, not a cache entry.
    if (computed->dtype != expected.dtype || computed->shape != expected.shape ||
        computed->edges.size() != edges_bytes) {
      throw Error(ErrorCode::Internal, "cache: reduce() returned " + computed->dtype.name() + " " +
                                           format_shape(computed->shape, true) + ", expected " +
                                           expected.dtype.name() + " " +
                                           format_shape(expected.shape, true));
    }
    return payload;
  };

  const Bytes payload = Protocol(options_, folder_, outcome).run(call);
  if (computed) return std::move(*computed);
  const auto data_begin = payload.begin() + static_cast<std::ptrdiff_t>(npy_header.size());
  const auto data_end = data_begin + static_cast<std::ptrdiff_t>(nbytes);
  expected.data.assign(data_begin, data_end);
  expected.edges.assign(data_end, payload.end());
  return expected;
}

Bytes Cache::memoize(std::string_view function_name, std::uint64_t function_version,
                     const Hasher& args, const std::function<Bytes()>& compute,
                     CacheOutcome* outcome) const {
  CacheOutcome local;
  if (outcome == nullptr) outcome = &local;
  *outcome = CacheOutcome();
  Hasher h;
  h.add("mmc.memoize").add(kResultFormatVersion).add(function_name).add(function_version);
  const CacheKey inner = args.digest();
  h.add(inner.high).add(inner.low);
  CachedCall call;
  call.key = h.digest();
  call.kind = EntryKind::Bytes;
  call.what = std::string(function_name) + " v" + std::to_string(function_version);
  call.compute = compute;
  return Protocol(options_, folder_, outcome).run(call);
}

Hasher Cache::typed(const Hasher& args, std::size_t item_size, int shape) {
  const CacheKey inner = args.digest();
  Hasher h;
  h.add("mmc.typed").add(item_size).add(shape).add(inner.high).add(inner.low);
  return h;
}

void Cache::throw_size_mismatch(std::string_view function_name, std::size_t size,
                                std::size_t item_size) {
  throw Error(ErrorCode::Corrupt, "cache: memoized " + std::string(function_name) + " returned " +
                                      std::to_string(size) + " bytes, not a whole number of " +
                                      std::to_string(item_size) + "-byte values");
}

ReduceResult cached_reduce(const Source& source, const ReduceOptions& options,
                           const CacheOptions& cache_options, CacheOutcome* outcome) {
  return Cache(cache_options).reduce(source, options, outcome);
}

}  // namespace mmc
