// reduce(): plans the tasks, runs them on the pool, merges the partials in a fixed order and
// turns them into the op's result.
#include "mmc/reduce.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <thread>

#include "kernels/families.hpp"
#include "mmc/error.hpp"
#include "reduce/plan.hpp"

namespace mmc {
namespace {

using detail::PlanDim;
using detail::ReducePlan;

// Test hook: every task sleeps this long, so tests can kill or interrupt a run mid-way.
int debug_task_delay_ms() {
  const char* v = std::getenv("MMC_DEBUG_TASK_DELAY_MS");
  return v ? std::atoi(v) : 0;
}

struct Context {
  const Source& source;
  const ReducePlan& plan;
  const ReduceOptions& options;
  ReduceResult& result;
  int delay_ms;
};

// Folds the elements of one task (a block of units, one piece of reduced[0]) into partials.
template <class F>
class TaskRunner {
 public:
  using Partial = typename F::Partial;

  TaskRunner(const ReducePlan& plan, std::int64_t task) : plan_(plan) {
    const std::int64_t block = task / plan.pieces;
    const std::int64_t piece = task % plan.pieces;
    u0_ = block * plan.units_per_task;
    u1_ = std::min(plan.units, u0_ + plan.units_per_task);
    r0_ = piece * plan.piece_len;
    r1_ = std::min(plan.reduced.front().extent, r0_ + plan.piece_len);
  }

  std::int64_t outputs() const {
    if (plan_.inner_reduced) return u1_ - u0_;
    std::int64_t n = 0;
    for (std::int64_t u = u0_; u < u1_; ++u) n += plan_.unit_outputs(u);
    return n;
  }

  void run(const std::byte* data, Partial* parts) const {
    for (std::int64_t u = u0_; u < u1_; ++u) {
      const std::byte* base = data + plan_.unit_offset(u);
      if (plan_.inner_reduced) {
        F::init(*parts);
        fold_output(*parts, base, 0, 0);
        ++parts;
      } else {
        const std::int64_t n = plan_.unit_outputs(u);
        for (std::int64_t j = 0; j < n; ++j) F::init(parts[j]);
        fold_line(parts, base, n, 0, 0);
        parts += n;
      }
    }
  }

 private:
  void range(std::size_t level, std::int64_t* b, std::int64_t* e) const {
    *b = level == 0 ? r0_ : 0;
    *e = level == 0 ? r1_ : plan_.reduced[level].extent;
  }

  // Folds the reduced elements under ptr; `index` is the C-order index over the reduced axes
  // of the first of them (used by families that need positions).
  void fold_output(Partial& p, const std::byte* ptr, std::size_t level, std::int64_t index) const {
    const PlanDim& d = plan_.reduced[level];
    std::int64_t b, e;
    range(level, &b, &e);
    if (level + 1 == plan_.reduced.size()) {
      if constexpr (F::kNeedsIndex) {
        F::run(p, ptr + b * d.stride, e - b, d.stride, index + b * d.index_stride, d.index_stride);
      } else {
        F::run(p, ptr + b * d.stride, e - b, d.stride);
      }
      return;
    }
    for (std::int64_t i = b; i < e; ++i) {
      fold_output(p, ptr + i * d.stride, level + 1, index + i * d.index_stride);
    }
  }

  void fold_line(Partial* parts, const std::byte* ptr, std::int64_t n, std::size_t level,
                 std::int64_t index) const {
    const PlanDim& d = plan_.reduced[level];
    std::int64_t b, e;
    range(level, &b, &e);
    const bool last = level + 1 == plan_.reduced.size();
    for (std::int64_t i = b; i < e; ++i) {
      const std::byte* q = ptr + i * d.stride;
      const std::int64_t at = index + i * d.index_stride;
      if (!last) {
        fold_line(parts, q, n, level + 1, at);
      } else if constexpr (F::kNeedsIndex) {
        F::line(parts, q, n, plan_.line.stride, at);
      } else {
        F::line(parts, q, n, plan_.line.stride);
      }
    }
  }

  const ReducePlan& plan_;
  std::int64_t u0_ = 0, u1_ = 0, r0_ = 0, r1_ = 0;
};

template <class V>
void store(std::byte* dst, V v) {
  std::memcpy(dst, &v, sizeof v);
}

// Writes one output element of `op` from its merged partial.
template <class F, class T>
void finalize(ReduceOp op, int ddof, const typename F::Partial& p, std::byte* dst) {
  using kernels::FamilyKind;
  if constexpr (F::kKind == FamilyKind::Sum) {
    if (op == ReduceOp::Sum || op == ReduceOp::NanSum) {
      if constexpr (kernels::kIsFloat<T>) {
        store(dst, p.sum);
      } else {
        // Modulo 2^64, as numpy's 64-bit accumulators wrap.
        store(dst, static_cast<std::uint64_t>(static_cast<kernels::u128>(p.sum)));
      }
      return;
    }
    double mean = std::numeric_limits<double>::quiet_NaN();
    if (p.n > 0) {
      if constexpr (kernels::kIsFloat<T>) {
        mean = p.sum / static_cast<double>(p.n);
      } else {
        mean = static_cast<double>(static_cast<long double>(p.sum) / static_cast<long double>(p.n));
      }
    }
    store(dst, mean);
  } else if constexpr (F::kKind == FamilyKind::Moments) {
    const double var = F::variance(p, ddof);
    store(dst, op == ReduceOp::Std || op == ReduceOp::NanStd ? std::sqrt(var) : var);
  } else if constexpr (F::kKind == FamilyKind::MinMax) {
    const T v = F::result(p, op == ReduceOp::Min || op == ReduceOp::NanMin);
    if constexpr (std::is_same_v<T, bool>) {
      store(dst, static_cast<std::uint8_t>(v ? 1 : 0));
    } else {
      store(dst, v);
    }
  } else if constexpr (F::kKind == FamilyKind::Count) {
    store(dst, p.n);
  } else if constexpr (F::kKind == FamilyKind::AnyAll) {
    store(dst, static_cast<std::uint8_t>((op == ReduceOp::Any ? p.any : p.all) ? 1 : 0));
  } else if constexpr (F::kKind == FamilyKind::Norm) {
    store(dst, std::sqrt(p.sumsq));
  } else {
    static_assert(F::kKind == FamilyKind::Arg);
    store(dst, F::result(p));
  }
}

template <class F, class T, bool Swap>
void execute(Context& ctx) {
  using Partial = typename F::Partial;
  static_assert(std::is_trivially_copyable_v<Partial>);
  const ReducePlan& plan = ctx.plan;
  const std::size_t out_item = ctx.result.dtype.itemsize();
  std::byte* out = ctx.result.data.data();
  const ReduceOp op = ctx.options.op;
  const int ddof = ctx.options.ddof;
  const std::byte* data = ctx.source.data();
  const MappedFile& mapping = ctx.source.mapping();
  const int delay_ms = ctx.delay_ms;
  const std::int64_t populate_limit = 4 * std::max(ctx.options.task_bytes, detail::kTaskBytes);

  const std::int64_t n_tasks = plan.n_tasks();

  Call call;
  call.n_tasks = static_cast<std::size_t>(n_tasks);
  call.run = [&plan, data, &mapping, delay_ms, populate_limit](std::size_t task, ByteView,
                                                               Bytes& result) {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    const auto t = static_cast<std::int64_t>(task);
    const TaskRunner<F> runner(plan, t);
    std::int64_t first, last;
    plan.task_span(t, &first, &last);
    const bool dense = last > first && last - first <= populate_limit;
    // Fault the task's pages in one call rather than one fault per 64 KiB. (An explicit
    // MADV_WILLNEED look-ahead was measured to cost more on a warm cache than it saved on a
    // cold one, where MADV_SEQUENTIAL read-ahead already streams.)
    if (dense) {
      mapping.populate(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last - first));
    }
    result.resize(static_cast<std::size_t>(runner.outputs()) * sizeof(Partial));
    runner.run(data, reinterpret_cast<Partial*>(result.data()));
    // Unmap what was read (the page cache keeps it), so resident memory stays flat however
    // large the cube.
    if (dense) {
      mapping.dont_need(static_cast<std::uint64_t>(first),
                        static_cast<std::uint64_t>(last - first));
    }
  };

  // Writes the outputs of a block from its merged partials.
  auto emit = [&](std::int64_t block, const Partial* parts) {
    const std::int64_t u0 = block * plan.units_per_task;
    const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task);
    const std::int64_t step = plan.unit_out_step();
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t base = plan.unit_out_index(u);
      const std::int64_t n = plan.unit_outputs(u);
      for (std::int64_t j = 0; j < n; ++j) {
        finalize<F, T>(op, ddof, *parts++,
                       out + static_cast<std::size_t>(base + j * step) * out_item);
      }
    }
  };

  // Pieces of a block arrive in any order; they are merged in piece order once all are here.
  std::vector<Bytes> pending(plan.pieces > 1 ? call.n_tasks : 0);
  std::vector<std::int64_t> arrived(plan.pieces > 1 ? static_cast<std::size_t>(plan.blocks()) : 0);
  call.on_result = [&](std::size_t task, ByteView bytes) {
    const auto t = static_cast<std::int64_t>(task);
    const TaskRunner<F> runner(plan, t);
    if (bytes.size != static_cast<std::size_t>(runner.outputs()) * sizeof(Partial)) {
      throw Error(ErrorCode::Internal, "task " + std::to_string(task) + ": result of " +
                                           std::to_string(bytes.size) + " bytes, expected " +
                                           std::to_string(runner.outputs() * sizeof(Partial)));
    }
    const std::int64_t block = t / plan.pieces;
    if (plan.pieces == 1) {
      std::vector<Partial> parts(static_cast<std::size_t>(runner.outputs()));
      std::memcpy(parts.data(), bytes.data, bytes.size);
      emit(block, parts.data());
      return;
    }
    pending[task].assign(bytes.data, bytes.data + bytes.size);
    if (++arrived[static_cast<std::size_t>(block)] < plan.pieces) return;
    std::vector<Partial> acc(static_cast<std::size_t>(runner.outputs()));
    std::memcpy(acc.data(), pending[static_cast<std::size_t>(block * plan.pieces)].data(),
                bytes.size);
    for (std::int64_t p = 1; p < plan.pieces; ++p) {
      Bytes& piece = pending[static_cast<std::size_t>(block * plan.pieces + p)];
      std::vector<Partial> next(acc.size());
      std::memcpy(next.data(), piece.data(), piece.size());
      for (std::size_t k = 0; k < acc.size(); ++k) F::merge(acc[k], next[k]);
      Bytes().swap(piece);
    }
    Bytes().swap(pending[static_cast<std::size_t>(block * plan.pieces)]);
    emit(block, acc.data());
  };
  call.on_progress = ctx.options.progress;
  ctx.result.stats = run_tasks(ctx.options.pool, call);
}

template <class T, bool Swap>
void execute_op(Context& ctx) {
  using namespace kernels;
  switch (ctx.options.op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean:
      return execute<SumFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanSum:
    case ReduceOp::NanMean:
      return execute<SumFamily<T, Swap, true>, T, Swap>(ctx);
    case ReduceOp::Var:
    case ReduceOp::Std:
      return execute<MomentsFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanVar:
    case ReduceOp::NanStd:
      return execute<MomentsFamily<T, Swap, true>, T, Swap>(ctx);
    case ReduceOp::Min:
    case ReduceOp::Max:
      return execute<MinMaxFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanMin:
    case ReduceOp::NanMax:
      return execute<MinMaxFamily<T, Swap, true>, T, Swap>(ctx);
    case ReduceOp::Count:
      return execute<CountFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::Any:
    case ReduceOp::All:
      return execute<AnyAllFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::Norm:
      return execute<NormFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::ArgMin:
      return execute<ArgFamily<T, Swap, false>, T, Swap>(ctx);
    case ReduceOp::ArgMax:
      return execute<ArgFamily<T, Swap, true>, T, Swap>(ctx);
  }
}

bool needs_nonempty(ReduceOp op) {
  return op == ReduceOp::Min || op == ReduceOp::Max || op == ReduceOp::NanMin ||
         op == ReduceOp::NanMax || op == ReduceOp::ArgMin || op == ReduceOp::ArgMax;
}

}  // namespace

ReduceResult reduce(const Source& source, const ReduceOptions& options) {
  const ArrayMeta& meta = source.meta();
  const std::vector<int> axes = normalize_axes(options.axes, options.axes_given, meta.ndim());
  if (options.ddof < 0) {
    throw Error(ErrorCode::InvalidArgument,
                "ddof must be 0 or more, got " + std::to_string(options.ddof));
  }
  if (options.task_bytes < 0) {
    throw Error(ErrorCode::InvalidArgument, "task_bytes must be 0 (default) or positive");
  }
  const detail::ReducePlan plan = detail::make_reduce_plan(
      meta, axes, options.task_bytes > 0 ? options.task_bytes : detail::kTaskBytes,
      options.op == ReduceOp::ArgMin || options.op == ReduceOp::ArgMax);
  if (needs_nonempty(options.op) && plan.n_red == 0 && plan.n_out > 0) {
    throw Error(ErrorCode::InvalidArgument, std::string(to_string(options.op)) +
                                                " of an empty axis: a zero-size reduction has "
                                                "no identity");
  }
  ReduceResult result;
  result.dtype = result_dtype(options.op, meta.dtype);
  result.shape = plan.out_shape;
  result.data.assign(static_cast<std::size_t>(plan.n_out) * result.dtype.itemsize(), std::byte{0});
  if (plan.n_tasks() == 0) return result;

  source.mapping().advise(Access::Sequential);
  Context ctx{source, plan, options, result, debug_task_delay_ms()};
  const bool swap = !meta.dtype.is_native();
  visit_type(meta.dtype.id(), [&](auto tag) {
    using T = decltype(tag);
    if (swap) {
      execute_op<T, true>(ctx);
    } else {
      execute_op<T, false>(ctx);
    }
  });
  return result;
}

}  // namespace mmc
