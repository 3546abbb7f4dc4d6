// reduce(): plans the tasks, runs them on the pool, merges the partials in a fixed order and
// turns them into the op's result.
#include "mmc/reduce.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/debug_hooks.hpp"
#include "io/source_ticket.hpp"
#include "kernels/dispatch.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "reduce/context.hpp"
#include "reduce/plan.hpp"
#include "reduce/pool_job.hpp"

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

}  // namespace

Shape result_shape(const ArrayMeta& meta, const ReduceOptions& options) {
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());
  std::vector<bool> reduced(meta.shape.size(), false);
  for (int a : axes) reduced[static_cast<std::size_t>(a)] = true;
  Shape shape;
  for (std::size_t k = 0; k < meta.shape.size(); ++k) {
    if (!reduced[k]) shape.push_back(meta.shape[k]);
  }
  if (options.op == ReduceOp::Histogram) shape.push_back(options.bins);
  return shape;
}

const char* kernel_isa() noexcept { return kernels::to_string(kernels::active_kernels().isa); }

namespace detail {

ReducePlan plan_for(const Input& input, const std::vector<int>& axes, const ReduceOptions& options,
                    int plan_workers, bool track_index, std::int64_t partial_bytes) {
  const std::int64_t task_bytes = options.task_bytes > 0 ? options.task_bytes : kTaskBytes;
  ReducePlan plan = make_reduce_plan(input.meta, axes, task_bytes, track_index, partial_bytes);
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

}  // namespace detail

namespace {

// The ticket workers of a process pool open `input` with, or nothing when they cannot.
std::optional<detail::SourceTicket> ticket_for(const detail::Input& input) {
  std::string why;
  return input.dense != nullptr ? detail::ticket_of(*input.dense, &why)
                                : detail::ticket_of(*input.chunked, &why);
}

// `pool`: run the tasks there (warm workers) instead of on run_tasks' own.
ReduceResult reduce_input(const detail::Input& input, const ReduceOptions& options,
                          const detail::ReduceRunner& given, Pool* pool) {
  // With a pool, chunk alignment weighs its workers (planned the same in every worker).
  detail::ReduceRunner pooled;
  if (pool != nullptr) {
    pooled.plan_workers = pool->backend() == Backend::Serial ? 1 : pool->n_jobs();
  }
  const detail::ReduceRunner& runner = pool != nullptr ? pooled : given;
  const ArrayMeta& meta = input.meta;
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());
  if (options.ddof < 0) {
    throw Error(ErrorCode::InvalidArgument,
                "ddof must be 0 or more, got " + std::to_string(options.ddof));
  }
  if (options.task_bytes < 0) {
    throw Error(ErrorCode::InvalidArgument, "task_bytes must be 0 (default) or positive");
  }
  const bool histogram = options.op == ReduceOp::Histogram;
  if (histogram) check_histogram_options(options);
  const std::int64_t width = histogram ? options.bins : 1;
  const detail::ReducePlan plan =
      detail::plan_for(input, axes, options, runner.plan_workers,
                       options.op == ReduceOp::ArgMin || options.op == ReduceOp::ArgMax,
                       histogram ? width * static_cast<std::int64_t>(sizeof(std::int64_t)) : 0);
  if (needs_nonempty(options.op) && plan.n_red == 0 && plan.n_out > 0) {
    throw Error(ErrorCode::InvalidArgument, std::string(to_string(options.op)) +
                                                " of an empty axis: a zero-size reduction has "
                                                "no identity");
  }
  ReduceResult result;
  result.dtype = result_dtype(options.op, meta.dtype);
  result.shape = plan.out_shape;
  if (histogram) result.shape.push_back(width);
  const std::uint64_t out_bytes =
      detail::checked_mul(detail::checked_mul(static_cast<std::uint64_t>(plan.n_out),
                                              static_cast<std::uint64_t>(width), "result size"),
                          result.dtype.itemsize(), "result size");
  // A result larger than the machine's memory would fail in the allocator with a bare
  // std::bad_alloc (e.g. 2**40 sums over an empty axis); say what was asked instead.
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page > 0 &&
      out_bytes / static_cast<std::uint64_t>(page) >= static_cast<std::uint64_t>(pages)) {
    throw Error(
        ErrorCode::Io,
        "the result, shape " + format_shape(result.shape, true) + " of " + result.dtype.name() +
            ", needs " + format_bytes(out_bytes) + ", more than this machine's memory (" +
            format_bytes(static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page)) +
            "); reduce over more axes or a part of the array");
  }
  result.data.assign(static_cast<std::size_t>(out_bytes), std::byte{0});
  if (plan.n_tasks() == 0) return result;

  if (input.dense != nullptr) input.dense->mapping().advise(Access::Sequential);
  std::optional<detail::PoolRoute> route;
  std::optional<ReduceOptions> in_caller;
  if (pool != nullptr) {
    std::optional<detail::SourceTicket> ticket;
    if (pool->backend() == Backend::Process) ticket = ticket_for(input);
    if (ticket || pool->backend() != Backend::Process) {
      route.emplace(*pool, input, options, runner.plan_workers, plan, ticket);
    } else {
      // The pool's workers cannot reach these bytes (see ticket_of): the caller runs the tasks.
      in_caller = options;
      in_caller->pool = PoolOptions{};
      in_caller->pool.n_jobs = 1;
      in_caller->pool.backend = Backend::Serial;
    }
  }
  detail::Context ctx(input, plan, in_caller ? *in_caller : options, runner, result,
                      detail::debug_task_delay_ms(), !meta.dtype.is_native());
  if (route) ctx.route = &*route;
  visit_type(meta.dtype.id(), [&](auto tag) { detail::execute_for_type<decltype(tag)>(ctx); });
  return result;
}

}  // namespace

ReduceResult reduce(const Source& source, const ReduceOptions& options) {
  return reduce_input(detail::Input{source.meta(), &source, nullptr}, options, {}, nullptr);
}

ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options) {
  return reduce_input(detail::Input{array.meta(), nullptr, &array}, options, {}, nullptr);
}

ReduceResult reduce(const AnyArray& array, const ReduceOptions& options) {
  return array.dense() != nullptr ? reduce(*array.dense(), options)
                                  : reduce(*array.chunked(), options);
}

ReduceResult reduce(const Source& source, const ReduceOptions& options, Pool& pool) {
  return reduce_input(detail::Input{source.meta(), &source, nullptr}, options, {}, &pool);
}

ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options, Pool& pool) {
  return reduce_input(detail::Input{array.meta(), nullptr, &array}, options, {}, &pool);
}

ReduceResult reduce(const AnyArray& array, const ReduceOptions& options, Pool& pool) {
  return array.dense() != nullptr ? reduce(*array.dense(), options, pool)
                                  : reduce(*array.chunked(), options, pool);
}

ReduceResult detail::reduce_with(const AnyArray& array, const ReduceOptions& options,
                                 const ReduceRunner& runner) {
  return array.dense() != nullptr
             ? reduce_input(Input{array.meta(), array.dense(), nullptr}, options, runner, nullptr)
             : reduce_input(Input{array.meta(), nullptr, array.chunked()}, options, runner,
                            nullptr);
}

}  // namespace mmc
