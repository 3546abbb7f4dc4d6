// reduce(): plans the tasks, runs them on the pool, merges the partials in a fixed order and
// turns them into the op's result.
#include "mmc/reduce.hpp"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <variant>

#include "core/debug_hooks.hpp"
#include "io/source_ticket.hpp"
#include "io/widened.hpp"
#include "kernels/dispatch.hpp"
#include "kernels/histogram.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/select.hpp"
#include "reduce/context.hpp"
#include "reduce/filtered.hpp"
#include "reduce/plan.hpp"
#include "reduce/pool_job.hpp"
#include "reduce/quantile.hpp"

namespace mmc {

std::string detail::format_value(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

namespace {

using detail::format_value;

// Bins of one histogram: a generous bound that keeps bin indices in 32 bits.
constexpr std::int64_t kMaxBins = std::int64_t{1} << 30;

void check_histogram_options(const ReduceOptions& o) {
  if (o.bins < 1 || o.bins > kMaxBins) {
    throw Error(ErrorCode::InvalidArgument, "histogram bins must be between 1 and " +
                                                std::to_string(kMaxBins) + ", got " +
                                                std::to_string(o.bins));
  }
  if (!o.range_given) return;
  const std::string range = "[" + format_value(o.range_lo) + ", " + format_value(o.range_hi) + "]";
  if (!std::isfinite(o.range_lo) || !std::isfinite(o.range_hi)) {
    throw Error(ErrorCode::InvalidArgument, "histogram range " + range + " is not finite");
  }
  if (o.range_lo > o.range_hi) {
    throw Error(ErrorCode::InvalidArgument,
                "histogram range " + range + ": the low end is above the high end");
  }
}

bool needs_nonempty(ReduceOp op) {
  return op == ReduceOp::Min || op == ReduceOp::Max || op == ReduceOp::NanMin ||
         op == ReduceOp::NanMax || op == ReduceOp::ArgMin || op == ReduceOp::ArgMax;
}

bool is_arg(ReduceOp op) { return op == ReduceOp::ArgMin || op == ReduceOp::ArgMax; }

// q: given for a percentile op, each in [0, 100].
void check_quantile_options(const ReduceOptions& o, const std::vector<ReduceOp>& ops) {
  if (std::none_of(ops.begin(), ops.end(), detail::is_percentile)) return;
  if (o.q.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                "percentile needs the percentiles to compute (q, e.g. 5,50,95; --q on the "
                "command line)");
  }
  if (o.q.size() > 16) {
    throw Error(ErrorCode::InvalidArgument,
                "percentile: at most 16 percentiles per call, got " + std::to_string(o.q.size()));
  }
  for (double q : o.q) {
    if (!(q >= 0 && q <= 100)) {
      throw Error(ErrorCode::InvalidArgument,
                  "percentile " + format_value(q) + " is outside [0, 100]");
    }
  }
}

}  // namespace

std::vector<ReduceOp> detail::ops_of(const ReduceOptions& options) {
  return options.ops.empty() ? std::vector<ReduceOp>{options.op} : options.ops;
}

bool detail::pass_tracks_index(const std::vector<ReduceOp>& ops) {
  return std::any_of(ops.begin(), ops.end(), is_arg);
}

std::int64_t detail::pass_partial_bytes(const ReduceOptions& pass, const ArrayMeta& meta,
                                        const std::vector<int>& axes) {
  // One op: what it always was (0 but for a histogram or a quantile). Several: the sum of their
  // families' partials, at most 48 bytes each but a histogram's and the quantiles' tables; only
  // how many outputs a task holds depends on it, never the arithmetic.
  const std::vector<ReduceOp> ops = ops_of(pass);
  const std::int64_t histogram = pass.bins * static_cast<std::int64_t>(sizeof(std::int64_t));
  std::int64_t n_red = 1;
  for (int a : axes) n_red *= meta.shape[static_cast<std::size_t>(a)];
  const std::int64_t quantiles = quantile_partial_bytes(ops, pass.q, meta.dtype.itemsize(), n_red);
  if (ops.size() == 1) {
    if (is_quantile(ops.front())) return quantiles;
    return ops.front() == ReduceOp::Histogram ? histogram : 0;
  }
  std::int64_t total = quantiles;
  for (ReduceOp op : ops) {
    if (!is_quantile(op)) total += op == ReduceOp::Histogram ? histogram : 48;
  }
  return total;
}

Shape result_shape(const ArrayMeta& meta, const ReduceOptions& options) {
  const std::vector<ReduceOp> ops = detail::ops_of(options);
  if (ops.size() != 1) {
    throw Error(ErrorCode::InvalidArgument,
                "result_shape: " + std::to_string(ops.size()) + " ops; ask for one at a time");
  }
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());
  std::vector<bool> reduced(meta.shape.size(), false);
  for (int a : axes) reduced[static_cast<std::size_t>(a)] = true;
  Shape shape;
  for (std::size_t k = 0; k < meta.shape.size(); ++k) {
    if (!reduced[k]) shape.push_back(meta.shape[k]);
  }
  if (ops.front() == ReduceOp::Histogram) shape.push_back(options.bins);
  if (detail::is_percentile(ops.front()))
    shape.insert(shape.begin(), static_cast<std::int64_t>(options.q.size()));
  return shape;
}

const char* kernel_isa() noexcept { return kernels::to_string(kernels::active_kernels().isa); }

NoData parse_nodata(const std::string& text) {
  const auto bad = [&text](const std::string& why) -> NoData {
    throw Error(ErrorCode::InvalidArgument, "bad nodata value '" + text + "'" + why);
  };
  const std::string expected = " (expected a number, e.g. -9999)";
  if (text.empty()) return bad(expected);
  const char* first = text.c_str();
  const char* last = first + text.size();
  // Python's float() and int() of the text, but for hexadecimal and spaces: an optional '+'.
  const char* start = first + (text[0] == '+' ? 1 : 0);
  if (start == last || (start != first && *start == '-')) return bad(expected);
  // An integer when the text is one, kept exact; else a float.
  if (text.find_first_not_of("+-0123456789") == std::string::npos) {
    if (text[0] == '-') {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(start, last, v);
      if (ec == std::errc() && end == last) return v;
    } else {
      std::uint64_t v = 0;
      const auto [end, ec] = std::from_chars(start, last, v);
      if (ec == std::errc() && end == last) {
        if (v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          return static_cast<std::int64_t>(v);
        }
        return v;
      }
    }
  }
  double v = 0;
  const auto [end, ec] = std::from_chars(start, last, v);  // decimal or inf; no hex
  if (end != last || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return bad(expected);
  }
  if (ec == std::errc::result_out_of_range) {
    // Past a double's range: infinite, as Python's float() says; below it: refused, since the
    // text surely did not mean 0.
    v = std::strtod(first, nullptr);
    if (v == 0) return bad(": it underflows to 0 in a double (write 0 if 0 is meant)");
  }
  if (std::isnan(v)) return bad(": NaN equals nothing; leave NaN out with the nan ops");
  return v;
}

std::string format_nodata(const NoData& nodata) {
  if (const auto* i = std::get_if<std::int64_t>(&nodata)) return std::to_string(*i);
  if (const auto* u = std::get_if<std::uint64_t>(&nodata)) return std::to_string(*u);
  if (const auto* f = std::get_if<double>(&nodata)) {
    // The shortest text that reads back as the same double.
    char buf[64];
    for (int digits = 1; digits <= 17; ++digits) {
      std::snprintf(buf, sizeof buf, "%.*g", digits, *f);
      if (std::strtod(buf, nullptr) == *f || std::isnan(*f)) break;
    }
    return buf;
  }
  return "";
}

namespace detail {

ReducePlan plan_for(const Input& input, const std::vector<int>& axes, const ReduceOptions& options,
                    int plan_workers, bool track_index, std::int64_t partial_bytes) {
  const std::int64_t task_bytes = options.task_bytes > 0 ? options.task_bytes : kTaskBytes;
  ReducePlan plan = make_reduce_plan(input.meta, axes, task_bytes, track_index, partial_bytes,
                                     input.mask != nullptr ? &input.mask->strides : nullptr);
  if (input.chunked != nullptr) {
    const int workers = plan_workers > 0 ? plan_workers
                        : resolve(options.pool).backend == Backend::Serial
                            ? 1
                            : resolve(options.pool).n_jobs;
    align_plan_to_chunks(plan, input.meta, input.chunked->chunk_shape(), task_bytes, partial_bytes,
                         workers);
  }
  return plan;
}

std::unique_ptr<ChunkedArray> widened_if_float16(const Input& input) {
  if (input.meta.dtype.id() != TypeId::F16) return nullptr;
  return input.dense != nullptr ? widened_float16(*input.dense) : widened_float16(*input.chunked);
}

ReduceOptions float16_options(const ReduceOptions& options) {
  ReduceOptions out = options;
  if (const auto* f = std::get_if<double>(&options.nodata); f != nullptr && !std::isnan(*f)) {
    switch (kernels::scalar_type_beside_float16(*f)) {
      case kernels::HalfBinType::F16:
        out.nodata = Float16::from(*f).value();
        break;
      case kernels::HalfBinType::F32:
        out.nodata = static_cast<double>(static_cast<float>(*f));
        break;
      case kernels::HalfBinType::F64:
        break;
    }
  }
  return out;
}

void narrow_to_float16(ReduceOp op, ReduceResult& result) {
  if (op != ReduceOp::Min && op != ReduceOp::Max && op != ReduceOp::NanMin &&
      op != ReduceOp::NanMax) {
    return;
  }
  if (result.dtype != DType(TypeId::F64)) {
    throw Error(ErrorCode::Internal, "a float16 min or max was not computed in float64");
  }
  const std::size_t n = result.data.size() / sizeof(double);
  for (std::size_t i = 0; i < n; ++i) {
    double v;
    std::memcpy(&v, result.data.data() + i * sizeof v, sizeof v);
    const Float16 h = Float16::from(v);
    std::memcpy(result.data.data() + i * sizeof h, &h, sizeof h);
  }
  result.data.resize(n * sizeof(Float16));
  result.dtype = DType(TypeId::F16);
}

void set_float16_edges(ReduceResult& result, const kernels::Float16BinEdges& edges) {
  const std::vector<double>& values = edges.edges();
  switch (edges.edge_type()) {
    case kernels::HalfBinType::F16:
      result.edges_dtype = DType(TypeId::F16);
      result.edges.resize(values.size() * sizeof(Float16));
      for (std::size_t i = 0; i < values.size(); ++i) {
        const Float16 bits = Float16::from(values[i]);
        std::memcpy(result.edges.data() + i * sizeof bits, &bits, sizeof bits);
      }
      return;
    case kernels::HalfBinType::F32:
      result.edges_dtype = DType(TypeId::F32);
      result.edges.resize(values.size() * sizeof(float));
      for (std::size_t i = 0; i < values.size(); ++i) {
        const auto v = static_cast<float>(values[i]);
        std::memcpy(result.edges.data() + i * sizeof v, &v, sizeof v);
      }
      return;
    case kernels::HalfBinType::F64:
      break;
  }
  result.edges_dtype = DType(TypeId::F64);
  result.edges.resize(values.size() * sizeof(double));
  std::memcpy(result.edges.data(), values.data(), result.edges.size());
}

std::optional<MaskGeometry> mask_geometry(const std::shared_ptr<const Source>& mask,
                                          const ArrayMeta& meta, const std::vector<int>& reversed) {
  if (!mask) return std::nullopt;
  const ArrayMeta& m = mask->meta();
  const std::string shapes =
      format_shape(m.shape, true) + " against the array's " + format_shape(meta.shape, true);
  if (m.dtype.id() != TypeId::Bool) {
    throw Error(ErrorCode::InvalidArgument,
                "mask " + mask->path() + ": a mask is a bool array, this one is " + m.dtype.name());
  }
  if (m.ndim() > meta.ndim()) {
    throw Error(ErrorCode::InvalidArgument,
                "mask " + mask->path() + ": shape " + shapes + " has more axes than the array");
  }
  MaskGeometry g;
  g.origin = reinterpret_cast<const std::uint8_t*>(mask->data());
  g.strides.assign(static_cast<std::size_t>(meta.ndim()), 0);
  const int lead = meta.ndim() - m.ndim();
  for (int k = 0; k < m.ndim(); ++k) {
    const auto mk = static_cast<std::size_t>(k);
    const auto ak = static_cast<std::size_t>(k + lead);
    if (m.shape[mk] == meta.shape[ak]) {
      g.strides[ak] = m.shape[mk] == 1 ? 0 : m.strides[mk];
    } else if (m.shape[mk] != 1) {
      throw Error(ErrorCode::InvalidArgument,
                  "mask " + mask->path() + ": shape " + shapes +
                      " does not broadcast (numpy's rules: each axis, from the last, equal or 1)");
    }
  }
  if (meta.size() == 0) return g;  // nothing is read (and the mask may have no bytes)
  // Axes a dense view lays out ascending: the view's first element is the mask's last along
  // them.
  for (int r : reversed) {
    const auto k = static_cast<std::size_t>(r);
    if (g.strides[k] == 0 || meta.shape[k] == 0) continue;
    g.origin += (meta.shape[k] - 1) * g.strides[k];
    g.strides[k] = -g.strides[k];
  }
  return g;
}

}  // namespace detail

namespace {

// The ticket workers of a process pool open `input` with, or nothing when they cannot.
std::optional<detail::SourceTicket> ticket_for(const detail::Input& input) {
  std::string why;
  return input.dense != nullptr ? detail::ticket_of(*input.dense, &why)
                                : detail::ticket_of(*input.chunked, &why);
}

// The ops of options, checked: each listed once.
std::vector<ReduceOp> checked_ops(const ReduceOptions& options) {
  std::vector<ReduceOp> ops = detail::ops_of(options);
  for (std::size_t i = 0; i < ops.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (ops[i] == ops[j]) {
        throw Error(ErrorCode::InvalidArgument,
                    std::string("op ") + to_string(ops[i]) + " is listed twice");
      }
    }
  }
  return ops;
}

// The ops of options split into the passes that run them: one, or two when argmin/argmax's plan
// (reduced axes merged only when their C-order index is contiguous too) differs from the
// others'; each pass as the options that plan and run it.
std::vector<ReduceOptions> passes_of(const detail::Input& input, const ReduceOptions& options,
                                     const std::vector<ReduceOp>& ops,
                                     const std::vector<int>& axes) {
  std::vector<ReduceOp> plain, arg;
  for (ReduceOp op : ops) (is_arg(op) ? arg : plain).push_back(op);
  auto pass = [&options](std::vector<ReduceOp> subset) {
    ReduceOptions o = options;
    o.ops = std::move(subset);
    return o;
  };
  if (plain.empty() || arg.empty()) return {pass(ops)};
  const std::int64_t task_bytes = options.task_bytes > 0 ? options.task_bytes : detail::kTaskBytes;
  const std::vector<std::int64_t>* mask = input.mask != nullptr ? &input.mask->strides : nullptr;
  const detail::ReducePlan a =
      detail::make_reduce_plan(input.meta, axes, task_bytes, false, 0, mask);
  const detail::ReducePlan b =
      detail::make_reduce_plan(input.meta, axes, task_bytes, true, 0, mask);
  auto same_dims = [](const std::vector<detail::PlanDim>& x,
                      const std::vector<detail::PlanDim>& y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end(), [](const auto& p, const auto& q) {
      return p.extent == q.extent && p.stride == q.stride;
    });
  };
  if (same_dims(a.reduced, b.reduced) && a.pieces == b.pieces && a.piece_len == b.piece_len) {
    return {pass(ops)};
  }
  return {pass(plain), pass(arg)};
}

// `pool`: run the tasks there (warm workers) instead of on run_tasks' own. `reversed`: the
// axes a dense view lays out ascending (AnyArray::reversed_axes), which a mask follows.
std::vector<ReduceResult> reduce_input(const detail::Input& given_input,
                                       const ReduceOptions& given_options,
                                       const detail::ReduceRunner& given, Pool* pool,
                                       const std::vector<int>& reversed = {}) {
  const std::optional<detail::MaskGeometry> mask =
      detail::mask_geometry(given_options.mask, given_input.meta, reversed);
  // float16 is computed on as float64 (every value exact there): a chunked array over the
  // source that widens what it reads, and the nodata value as numpy compares it (float16).
  const std::unique_ptr<ChunkedArray> widened = detail::widened_if_float16(given_input);
  ReduceOptions own_options;
  if (widened) own_options = detail::float16_options(given_options);
  const ReduceOptions& options = widened ? own_options : given_options;
  const detail::Input input = widened ? detail::Input{widened->meta(), nullptr, widened.get(),
                                                      mask ? &*mask : nullptr, true}
                                      : detail::Input{given_input.meta, given_input.dense,
                                                      given_input.chunked, mask ? &*mask : nullptr};
  // A nodata value the dtype cannot hold is refused before any work.
  visit_type(input.meta.dtype.id(), [&](auto tag) {
    (void)detail::nodata_as<decltype(tag)>(options.nodata, input.meta.dtype.name());
  });
  // With a pool, chunk alignment weighs its workers (planned the same in every worker).
  detail::ReduceRunner pooled;
  if (pool != nullptr) {
    pooled.plan_workers = pool->backend() == Backend::Serial ? 1 : pool->n_jobs();
  }
  const detail::ReduceRunner& runner = pool != nullptr ? pooled : given;
  const ArrayMeta& meta = input.meta;
  const std::vector<ReduceOp> ops = checked_ops(options);
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());
  if (options.ddof < 0) {
    throw Error(ErrorCode::InvalidArgument,
                "ddof must be 0 or more, got " + std::to_string(options.ddof));
  }
  if (options.task_bytes < 0) {
    throw Error(ErrorCode::InvalidArgument, "task_bytes must be 0 (default) or positive");
  }
  const bool histogram = std::count(ops.begin(), ops.end(), ReduceOp::Histogram) > 0;
  if (histogram) check_histogram_options(options);
  check_quantile_options(options, ops);

  // Every result, sized before any task runs.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  std::vector<ReduceResult> results(ops.size());
  std::uint64_t total_bytes = 0;
  Shape kept;
  {
    std::vector<bool> reduced(meta.shape.size(), false);
    for (int a : axes) reduced[static_cast<std::size_t>(a)] = true;
    for (std::size_t k = 0; k < meta.shape.size(); ++k) {
      if (!reduced[k]) kept.push_back(meta.shape[k]);
    }
  }
  std::uint64_t n_out = 1, n_red = 1;
  for (std::int64_t extent : kept) {
    n_out = detail::checked_mul(n_out, static_cast<std::uint64_t>(extent), "result size");
  }
  for (int a : axes) {
    n_red = detail::checked_mul(n_red,
                                static_cast<std::uint64_t>(meta.shape[static_cast<std::size_t>(a)]),
                                "reduction size");
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (ops[i] == ReduceOp::Percentile && n_red == 0 && n_out > 0) {
      throw Error(ErrorCode::InvalidArgument,
                  "percentile of an empty axis: there is no element to interpolate (numpy "
                  "raises too; median and nanpercentile give NaN)");
    }
    if (needs_nonempty(ops[i]) && n_red == 0 && n_out > 0) {
      throw Error(ErrorCode::InvalidArgument, std::string(to_string(ops[i])) +
                                                  " of an empty axis: a zero-size reduction has "
                                                  "no identity");
    }
    ReduceResult& result = results[i];
    const std::int64_t width = ops[i] == ReduceOp::Histogram ? options.bins
                               : detail::is_percentile(ops[i])
                                   ? static_cast<std::int64_t>(options.q.size())
                                   : 1;
    result.dtype = result_dtype(ops[i], meta.dtype);
    result.shape = kept;
    if (ops[i] == ReduceOp::Histogram) result.shape.push_back(width);
    if (detail::is_percentile(ops[i])) result.shape.insert(result.shape.begin(), width);
    const std::uint64_t out_bytes = detail::checked_mul(
        detail::checked_mul(n_out, static_cast<std::uint64_t>(width), "result size"),
        result.dtype.itemsize(), "result size");
    total_bytes = detail::checked_add(total_bytes, out_bytes, "result size");
  }
  // A result larger than the machine's memory would fail in the allocator with a bare
  // std::bad_alloc (e.g. 2**40 sums over an empty axis); say what was asked instead.
  if (pages > 0 && page > 0 &&
      total_bytes / static_cast<std::uint64_t>(page) >= static_cast<std::uint64_t>(pages)) {
    const std::string what = ops.size() == 1 ? "the result, shape " +
                                                   format_shape(results.front().shape, true) +
                                                   " of " + results.front().dtype.name() + ","
                                             : "the " + std::to_string(ops.size()) + " results";
    throw Error(
        ErrorCode::Io,
        what + " needs " + format_bytes(total_bytes) + ", more than this machine's memory (" +
            format_bytes(static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page)) +
            "); reduce over more axes or a part of the array");
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    results[i].data.assign(
        static_cast<std::size_t>(results[i].size()) * results[i].dtype.itemsize(), std::byte{0});
  }
  if (given_input.dense != nullptr) {
    // A view of a part of its file reads only its spans (see reads_exact_spans).
    const Source& dense = *given_input.dense;
    dense.mapping().advise(detail::reads_exact_spans(dense) ? Access::Random : Access::Sequential);
  }

  // Each pass: its plan, its route to the pool, its share of the results.
  for (const ReduceOptions& pass : passes_of(input, options, ops, axes)) {
    const detail::ReducePlan plan = detail::plan_for(input, axes, pass, runner.plan_workers,
                                                     detail::pass_tracks_index(pass.ops),
                                                     detail::pass_partial_bytes(pass, meta, axes));
    std::vector<ReduceResult> share(pass.ops.size());
    std::vector<std::size_t> at(pass.ops.size());
    for (std::size_t k = 0; k < pass.ops.size(); ++k) {
      at[k] =
          static_cast<std::size_t>(std::find(ops.begin(), ops.end(), pass.ops[k]) - ops.begin());
      share[k] = std::move(results[at[k]]);
    }
    if (plan.n_tasks() > 0) {
      std::optional<detail::PoolRoute> route;
      std::optional<ReduceOptions> in_caller;
      if (pool != nullptr) {
        std::optional<detail::SourceTicket> ticket, mask_ticket;
        if (pool->backend() == Backend::Process) {
          ticket = ticket_for(given_input);  // a worker widens float16 itself (JobState)
          if (options.mask) {
            std::string why;
            mask_ticket = detail::ticket_of(*options.mask, &why);
            if (!mask_ticket) ticket.reset();  // the mask is out of the workers' reach too
          }
        }
        if (ticket || pool->backend() != Backend::Process) {
          route.emplace(*pool, input, pass, runner.plan_workers, plan, ticket, mask_ticket,
                        reversed);
        } else {
          // The pool's workers cannot reach these bytes (see ticket_of): the caller runs the
          // tasks.
          in_caller = pass;
          in_caller->pool = PoolOptions{};
          in_caller->pool.n_jobs = 1;
          in_caller->pool.backend = Backend::Serial;
        }
      }
      detail::Context ctx(input, plan, in_caller ? *in_caller : pass, runner, share,
                          detail::debug_task_delay_ms(), !meta.dtype.is_native());
      if (route) ctx.route = &*route;
      detail::run_executor(ctx, meta.dtype.id());
    } else if (std::count(pass.ops.begin(), pass.ops.end(), ReduceOp::Histogram) > 0) {
      // No task ran, but np.histogram still has edges: those of an empty array's range.
      const std::size_t k = static_cast<std::size_t>(
          std::find(pass.ops.begin(), pass.ops.end(), ReduceOp::Histogram) - pass.ops.begin());
      // numpy's range for empty data, widened by 0.5 on each side when it is empty itself.
      const double given_lo = options.range_given ? options.range_lo : 0;
      const double given_hi = options.range_given ? options.range_hi : 1;
      const bool widen = given_lo == given_hi;
      const double first = widen ? given_lo - 0.5 : given_lo;
      const double last = widen ? given_hi + 0.5 : given_hi;
      const double span = widen ? given_hi - given_lo + 1 : given_hi - given_lo;
      if (input.float16) {
        detail::set_float16_edges(share[k],
                                  kernels::Float16BinEdges(options.bins, first, last, span, false));
      } else {
        visit_type(meta.dtype.id(), [&](auto tag) {
          using E = kernels::BinType<decltype(tag)>;
          const kernels::BinEdges<E> edges(options.bins, first, last, span);
          share[k].edges_dtype = DType(type_id_of<E>());
          share[k].edges.resize(edges.edges().size() * sizeof(E));
          std::memcpy(share[k].edges.data(), edges.edges().data(), share[k].edges.size());
        });
      }
    }
    for (std::size_t k = 0; k < pass.ops.size(); ++k) results[at[k]] = std::move(share[k]);
  }
  if (input.float16) {
    for (std::size_t k = 0; k < ops.size(); ++k) detail::narrow_to_float16(ops[k], results[k]);
  }
  return results;
}

// A dense view's axes taken with a negative step are laid out ascending
// (AnyArray::reversed_axes): each result is put back in the view's order along the kept ones,
// and argmin/argmax over a reduced one refused (its ties would resolve from the other end).
std::vector<ReduceResult> reduce_any(const AnyArray& array, const ReduceOptions& options,
                                     const detail::ReduceRunner& runner, Pool* pool) {
  const detail::Input input{array.meta(), array.dense(), array.chunked()};
  const std::vector<int>& reversed = array.reversed_axes();
  if (reversed.empty()) return reduce_input(input, options, runner, pool);
  const std::vector<ReduceOp> ops = detail::ops_of(options);
  const std::vector<int> axes =
      normalize_axes(options.axes, options.axes_given, array.meta().ndim());
  std::vector<int> kept_dims;  // positions among the kept axes of the reversed kept axes
  for (int r : reversed) {
    if (std::find(axes.begin(), axes.end(), r) != axes.end()) {
      for (ReduceOp op : ops) {
        if (is_arg(op)) {
          throw Error(ErrorCode::InvalidArgument,
                      std::string(to_string(op)) + " over axis " + std::to_string(r) +
                          ", selected with a negative step, is not supported: select it with a "
                          "positive step");
        }
      }
      continue;
    }
    kept_dims.push_back(r - static_cast<int>(std::count_if(axes.begin(), axes.end(),
                                                           [r](int a) { return a < r; })));
  }
  std::vector<ReduceResult> results = reduce_input(input, options, runner, pool, reversed);
  for (std::size_t k = 0; k < results.size(); ++k) {
    ReduceResult& result = results[k];
    const std::size_t item = result.dtype.itemsize();
    for (int kept : kept_dims) {
      const std::size_t dim =
          static_cast<std::size_t>(kept) + (detail::is_percentile(ops[k]) ? 1 : 0);
      std::size_t outer = 1, inner = item;
      for (std::size_t d = 0; d < dim; ++d) outer *= static_cast<std::size_t>(result.shape[d]);
      for (std::size_t d = dim + 1; d < result.shape.size(); ++d) {
        inner *= static_cast<std::size_t>(result.shape[d]);
      }
      const auto n = static_cast<std::size_t>(result.shape[dim]);
      std::vector<std::byte> swap(inner);
      for (std::size_t o = 0; o < outer; ++o) {
        std::byte* row = result.data.data() + o * n * inner;
        for (std::size_t i = 0; i < n / 2; ++i) {
          std::memcpy(swap.data(), row + i * inner, inner);
          std::memcpy(row + i * inner, row + (n - 1 - i) * inner, inner);
          std::memcpy(row + (n - 1 - i) * inner, swap.data(), inner);
        }
      }
    }
  }
  return results;
}

ReduceResult only_result(std::vector<ReduceResult> results) {
  if (results.size() != 1) {
    throw Error(ErrorCode::InvalidArgument,
                std::to_string(results.size()) + " ops asked of reduce(): call reduce_each");
  }
  return std::move(results.front());
}

// reduce(): one op, checked before any work.
const ReduceOptions& one_op(const ReduceOptions& options) {
  if (options.ops.size() > 1) {
    throw Error(ErrorCode::InvalidArgument,
                std::to_string(options.ops.size()) + " ops asked of reduce(): call reduce_each");
  }
  return options;
}

}  // namespace

ReduceResult reduce(const Source& source, const ReduceOptions& options) {
  return only_result(
      reduce_input(detail::Input{source.meta(), &source, nullptr}, one_op(options), {}, nullptr));
}

ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options) {
  return only_result(
      reduce_input(detail::Input{array.meta(), nullptr, &array}, one_op(options), {}, nullptr));
}

ReduceResult reduce(const AnyArray& array, const ReduceOptions& options) {
  return only_result(reduce_any(array, one_op(options), {}, nullptr));
}

ReduceResult reduce(const Source& source, const ReduceOptions& options, Pool& pool) {
  return only_result(
      reduce_input(detail::Input{source.meta(), &source, nullptr}, one_op(options), {}, &pool));
}

ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options, Pool& pool) {
  return only_result(
      reduce_input(detail::Input{array.meta(), nullptr, &array}, one_op(options), {}, &pool));
}

ReduceResult reduce(const AnyArray& array, const ReduceOptions& options, Pool& pool) {
  return only_result(reduce_any(array, one_op(options), {}, &pool));
}

std::vector<ReduceResult> reduce_each(const Source& source, const ReduceOptions& options) {
  return reduce_input(detail::Input{source.meta(), &source, nullptr}, options, {}, nullptr);
}

std::vector<ReduceResult> reduce_each(const ChunkedArray& array, const ReduceOptions& options) {
  return reduce_input(detail::Input{array.meta(), nullptr, &array}, options, {}, nullptr);
}

std::vector<ReduceResult> reduce_each(const AnyArray& array, const ReduceOptions& options) {
  return reduce_any(array, options, {}, nullptr);
}

std::vector<ReduceResult> reduce_each(const AnyArray& array, const ReduceOptions& options,
                                      Pool& pool) {
  return reduce_any(array, options, {}, &pool);
}

std::vector<ReduceResult> detail::reduce_each_with(const AnyArray& array,
                                                   const ReduceOptions& options,
                                                   const ReduceRunner& runner) {
  return reduce_any(array, options, runner, nullptr);
}

ReduceResult detail::reduce_with(const AnyArray& array, const ReduceOptions& options,
                                 const ReduceRunner& runner) {
  return only_result(reduce_each_with(array, one_op(options), runner));
}

}  // namespace mmc
