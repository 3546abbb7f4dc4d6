// The reduction executor's templates: a task runner per family, the finalizers that turn merged
// partials into results, and run_plan, which runs a plan's tasks on the pool and merges their
// partials in a fixed order. Only the per-type translation units (by_type/*.cpp) include this
// header: each instantiates execute_for_type for one element type, so the ~20 families x 2 byte
// orders x 11 types spread over files that compile in parallel and in bounded memory.
#pragma once

#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <thread>

#include "kernels/families.hpp"
#include "kernels/histogram.hpp"
#include "mmc/error.hpp"
#include "reduce/context.hpp"
#include "reduce/read_ahead.hpp"

namespace mmc::detail {

// Partials per output: one, or the family's width() (a histogram's bins).
template <class F>
std::int64_t width_of(const F& family) noexcept {
  if constexpr (requires { family.width(); }) {
    return family.width();
  } else {
    return 1;
  }
}

// Folds the elements of one task (a block of units, one piece of reduced[0]) into partials.
// Families are called through an object: most have only static members, the histogram carries
// its bins.
template <class F>
class TaskRunner {
 public:
  using Partial = typename F::Partial;

  TaskRunner(const F& family, const ReducePlan& plan, std::int64_t task)
      : family_(family), plan_(plan), width_(width_of(family)) {
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

  // Partials of the task's result: outputs() * width.
  std::int64_t partials() const { return outputs() * width_; }

  void run(const std::byte* data, Partial* parts) const { run_part(data, parts, r0_, r1_, true); }

  // The indices [r0, r1) of reduced[0] the task folds.
  std::int64_t r0() const noexcept { return r0_; }
  std::int64_t r1() const noexcept { return r1_; }

  // Folds the task's elements whose reduced[0] index is in [rb, re) (inside [r0, r1)) into
  // parts, initializing them first when `init`. Every family folds an output's elements in
  // order of reduced[0] one index (or one run) at a time, so folding [r0, m) then [m, r1) gives
  // the same partials as [r0, r1) at once, provided reduced[0] is not the run itself (A with
  // a single reduced dim: there the run's pairwise sum would split differently).
  void run_part(const std::byte* data, Partial* parts, std::int64_t rb, std::int64_t re,
                bool init) const {
    TaskRunner part = *this;
    part.r0_ = rb;
    part.r1_ = re;
    for (std::int64_t u = u0_; u < u1_; ++u) {
      const std::byte* base = data + plan_.unit_offset(u);
      if (plan_.inner_reduced) {
        if (init) family_.init(*parts);
        part.fold_output(*parts, base, 0, 0);
        parts += width_;
      } else {
        const std::int64_t n = plan_.unit_outputs(u);
        if (init) {
          for (std::int64_t j = 0; j < n; ++j) family_.init(parts[j * width_]);
        }
        part.fold_line(parts, base, n, 0, 0);
        parts += n * width_;
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
        family_.run(p, ptr + b * d.stride, e - b, d.stride, index + b * d.index_stride,
                    d.index_stride);
      } else {
        family_.run(p, ptr + b * d.stride, e - b, d.stride);
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
    if constexpr (!F::kNeedsIndex && requires { family_.lines(parts, ptr, n, n, n, n); }) {
      if (last) {
        family_.lines(parts, ptr + b * d.stride, n, plan_.line.stride, e - b, d.stride);
        return;
      }
    }
    for (std::int64_t i = b; i < e; ++i) {
      const std::byte* q = ptr + i * d.stride;
      const std::int64_t at = index + i * d.index_stride;
      if (!last) {
        fold_line(parts, q, n, level + 1, at);
      } else if constexpr (F::kNeedsIndex) {
        family_.line(parts, q, n, plan_.line.stride, at);
      } else {
        family_.line(parts, q, n, plan_.line.stride);
      }
    }
  }

  const F& family_;
  const ReducePlan& plan_;
  std::int64_t width_;
  std::int64_t u0_ = 0, u1_ = 0, r0_ = 0, r1_ = 0;
};

template <class V>
void store(std::byte* dst, V v) {
  std::memcpy(dst, &v, sizeof v);
}

// Writes one output element of `op` from its merged partial (a histogram: its bins' counts).
template <class F, class T>
void finalize(const F& family, ReduceOp op, int ddof, const typename F::Partial& p,
              std::byte* dst) {
  using kernels::FamilyKind;
  if constexpr (F::kKind == FamilyKind::Histogram) {
    std::memcpy(dst, &p, static_cast<std::size_t>(width_of(family)) * sizeof p);
  } else if constexpr (F::kKind == FamilyKind::Sum) {
    if (op == ReduceOp::Sum || op == ReduceOp::NanSum) {
      if constexpr (kernels::kIsFloat<T>) {
        store(dst, F::total(p));
      } else {
        // Modulo 2^64, as numpy's 64-bit accumulators wrap.
        store(dst, static_cast<std::uint64_t>(static_cast<kernels::u128>(p.sum)));
      }
      return;
    }
    double mean = std::numeric_limits<double>::quiet_NaN();
    if (p.n > 0) {
      if constexpr (kernels::kIsFloat<T>) {
        mean = F::total(p) / static_cast<double>(p.n);
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
    store(dst, std::sqrt(F::total(p)));
  } else {
    static_assert(F::kKind == FamilyKind::Arg);
    store(dst, F::result(p));
  }
}

// Runs `plan`'s tasks with `family` and calls emit(output_index, parts) for every output,
// parts being its width_of(family) merged partials; outputs of a block come together, blocks in
// any order. The tasks run through ctx.route (a warm pool), ctx.runner.run_call (MPI) or
// run_tasks; in a worker (ctx.worker) only the worker's tasks run, their partials appended to
// its buffer, and nothing is merged or emitted. Returns the pool's statistics.
template <class F, class Emit>
CallStats run_plan(const Context& ctx, const ReducePlan& plan, const F& family,
                   const ProgressCallback& progress, Emit&& emit_output) {
  using Partial = typename F::Partial;
  static_assert(std::is_trivially_copyable_v<Partial>);
  const Input& input = ctx.input;
  const ReduceOptions& options = ctx.options;
  const int delay_ms = ctx.delay_ms;
  const std::int64_t width = width_of(family);
  const std::int64_t populate_limit = 4 * std::max(options.task_bytes, detail::kTaskBytes);

  auto result_bytes = [&family, &plan](std::int64_t t) {
    return static_cast<std::size_t>(TaskRunner<F>(family, plan, t).partials()) * sizeof(Partial);
  };
  // Folds task t into parts (result_bytes(t) bytes).
  auto run_task = [&plan, &family, &input, delay_ms, populate_limit](std::int64_t t,
                                                                     Partial* parts) {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    const TaskRunner<F> runner(family, plan, t);
    if (input.chunked != nullptr) {
      // An empty array has nothing to read (its runs are empty): a placeholder origin.
      static constexpr std::byte kNothing{};
      if (input.meta.size() == 0) return runner.run(&kNothing, parts);
      // Decode the task's box at its dense offsets, in slabs of whole chunk rows along
      // reduced[0] when the plan allows, so memory stays at one slab.
      const std::int64_t step = slab_step(plan, input.meta, input.chunked->chunk_shape());
      if (step == 0) {
        return runner.run(materialize_box(*input.chunked, task_box(plan, input.meta, t)), parts);
      }
      for (std::int64_t rb = runner.r0(); rb < runner.r1();) {
        const std::int64_t re = std::min(runner.r1(), (rb / step + 1) * step);
        const Box box = task_box(plan, input.meta, t, rb, re);
        runner.run_part(materialize_box(*input.chunked, box), parts, rb, re, rb == runner.r0());
        rb = re;
      }
      return;
    }
    const MappedFile& mapping = input.dense->mapping();
    std::int64_t first, last;
    plan.task_span(t, &first, &last);
    const bool dense = last > first && last - first <= populate_limit;
    // Fault the task's pages in one call rather than one fault per 64 KiB. (An explicit
    // MADV_WILLNEED look-ahead was measured to cost more on a warm cache than it saved on a
    // cold one, where MADV_SEQUENTIAL read-ahead already streams.)
    if (dense) {
      mapping.populate(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last - first));
    }
    runner.run(input.dense->data(), parts);
    // Unmap what was read (the page cache keeps it), so resident memory stays flat however
    // large the cube.
    if (dense) {
      mapping.dont_need(static_cast<std::uint64_t>(first),
                        static_cast<std::uint64_t>(last - first));
    }
  };

  if (ctx.worker != nullptr) {
    // One buffer for the range, sized once; every task's partials start at a multiple of
    // sizeof(Partial), so they stay aligned.
    const auto first = static_cast<std::int64_t>(ctx.worker->first);
    const auto end = first + static_cast<std::int64_t>(ctx.worker->count);
    Bytes& out = *ctx.worker->out;
    const std::size_t base = out.size();
    std::size_t total = 0;
    for (std::int64_t t = first; t < end; ++t) total += result_bytes(t);
    out.resize(base + total);
    std::size_t at = base;
    for (std::int64_t t = first; t < end; ++t) {
      run_task(t, reinterpret_cast<Partial*>(out.data() + at));
      at += result_bytes(t);
    }
    return {};
  }

  // A cold cube streams from disk in task order ahead of the workers (read_ahead.hpp). Not
  // under run_call (MPI): a rank's share of the tasks is not known here.
  std::optional<ReadAhead> read_ahead;
  if (input.dense != nullptr && !ctx.runner.run_call && read_ahead_enabled()) {
    read_ahead.emplace(input.dense->mapping(), plan, populate_limit, kReadAheadWindow);
  }

  TaskSet call;
  call.n_tasks = static_cast<std::size_t>(plan.n_tasks());
  call.run = [&](std::size_t task, ByteView, Bytes& result) {
    const auto t = static_cast<std::int64_t>(task);
    result.resize(result_bytes(t));
    run_task(t, reinterpret_cast<Partial*>(result.data()));
  };

  // Hands the outputs of a block to emit_output from its merged partials.
  auto emit = [&](std::int64_t block, const Partial* parts) {
    const std::int64_t u0 = block * plan.units_per_task;
    const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task);
    const std::int64_t step = plan.unit_out_step();
    for (std::int64_t u = u0; u < u1; ++u) {
      const std::int64_t base = plan.unit_out_index(u);
      const std::int64_t n = plan.unit_outputs(u);
      for (std::int64_t j = 0; j < n; ++j) {
        emit_output(base + j * step, parts);
        parts += width;
      }
    }
  };

  // Pieces of a block arrive in any order; they are merged in piece order once all are here.
  std::vector<Bytes> pending(plan.pieces > 1 ? call.n_tasks : 0);
  std::vector<std::int64_t> arrived(plan.pieces > 1 ? static_cast<std::size_t>(plan.blocks()) : 0);
  call.on_result = [&](std::size_t task, ByteView bytes) {
    if (read_ahead) read_ahead->finished();
    const auto t = static_cast<std::int64_t>(task);
    const TaskRunner<F> runner(family, plan, t);
    const auto expected = static_cast<std::size_t>(runner.partials()) * sizeof(Partial);
    if (bytes.size != expected) {
      throw Error(ErrorCode::Internal, "task " + std::to_string(task) + ": result of " +
                                           std::to_string(bytes.size) + " bytes, expected " +
                                           std::to_string(expected));
    }
    const std::int64_t block = t / plan.pieces;
    if (plan.pieces == 1) {
      // Read in place when the transport left the partials aligned (a pool's result buffer);
      // copied otherwise.
      if (reinterpret_cast<std::uintptr_t>(bytes.data) % alignof(Partial) == 0) {
        emit(block, reinterpret_cast<const Partial*>(bytes.data));
        return;
      }
      std::vector<Partial> parts(static_cast<std::size_t>(runner.partials()));
      std::memcpy(parts.data(), bytes.data, bytes.size);
      emit(block, parts.data());
      return;
    }
    pending[task].assign(bytes.data, bytes.data + bytes.size);
    if (++arrived[static_cast<std::size_t>(block)] < plan.pieces) return;
    std::vector<Partial> acc(static_cast<std::size_t>(runner.partials()));
    std::memcpy(acc.data(), pending[static_cast<std::size_t>(block * plan.pieces)].data(),
                bytes.size);
    for (std::int64_t p = 1; p < plan.pieces; ++p) {
      Bytes& piece = pending[static_cast<std::size_t>(block * plan.pieces + p)];
      std::vector<Partial> next(acc.size());
      std::memcpy(next.data(), piece.data(), piece.size());
      for (std::size_t k = 0; k < acc.size(); k += static_cast<std::size_t>(width)) {
        family.merge(acc[k], next[k]);
      }
      Bytes().swap(piece);
    }
    Bytes().swap(pending[static_cast<std::size_t>(block * plan.pieces)]);
    emit(block, acc.data());
  };
  call.on_progress = progress;
  if (ctx.route != nullptr) {
    // A range's partials are its tasks' results one after the other.
    const RangeFn on_range = [&](std::size_t first, std::size_t count, ByteView bytes) {
      std::size_t at = 0;
      for (std::size_t task = first; task < first + count; ++task) {
        const std::size_t size = result_bytes(static_cast<std::int64_t>(task));
        if (size > bytes.size - at) break;
        call.on_result(task, {bytes.data + at, size});
        at += size;
      }
      if (at != bytes.size) {
        throw Error(ErrorCode::Internal, "tasks " + std::to_string(first) + ".." +
                                             std::to_string(first + count) + ": results of " +
                                             std::to_string(bytes.size) + " bytes, expected " +
                                             std::to_string(at));
      }
    };
    return ctx.route->run(ctx.phase, ctx.histogram, call.n_tasks, result_bytes(0), on_range,
                          progress);
  }
  return ctx.runner.run_call ? ctx.runner.run_call(options.pool, call)
                             : run_tasks(options.pool, call);
}

template <class F, class T, bool Swap>
void execute(Context& ctx, const F& family = F{}) {
  const std::size_t out_item =
      ctx.result.dtype.itemsize() * static_cast<std::size_t>(width_of(family));
  std::byte* out = ctx.result.data.data();
  const ReduceOp op = ctx.options.op;
  const int ddof = ctx.options.ddof;
  ctx.result.stats = run_plan(ctx, ctx.plan, family, ctx.options.progress,
                              [&](std::int64_t index, const typename F::Partial* parts) {
                                finalize<F, T>(family, op, ddof, *parts,
                                               out + static_cast<std::size_t>(index) * out_item);
                              });
}

// numpy's last - first for the types of the edges np.histogram derives from the data (numpy
// scalars of the array's dtype): float32 subtracts in float32, integers exactly in 64 bits
// (np.histogram's _unsigned_subtract), float64 in float64.
template <class T>
double data_span(T lo, T hi) {
  if constexpr (std::is_same_v<T, float>) {
    return static_cast<double>(hi - lo);
  } else if constexpr (std::is_same_v<T, double>) {
    return hi - lo;
  } else {
    return static_cast<double>(static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo));
  }
}

// The histogram: edges from the options' range, or from the min and max of the whole array (a
// first pass over it), then the counts.
template <class T, bool Swap>
void execute_histogram(Context& ctx) {
  using E = kernels::BinType<T>;
  using MinMax = kernels::MinMaxFamily<T, Swap>;
  const ReduceOptions& o = ctx.options;
  const ArrayMeta& meta = ctx.input.meta;
  if (ctx.worker != nullptr && ctx.phase == Phase::WholeMinMax) {
    run_plan(ctx, ctx.plan, MinMax{}, ProgressCallback{},
             [](std::int64_t, const typename MinMax::Partial*) {});
    return;
  }
  // A worker takes the range the parent settled (ctx.histogram).
  if (ctx.worker == nullptr) {
    double first = 0, last = 1, span = 1;  // numpy's range for empty data
    bool widen = false;                    // numpy widens an empty range by 0.5 on each side
    if (o.range_given) {
      first = o.range_lo;
      last = o.range_hi;
      span = last - first;
      widen = first == last;
    } else if (meta.size() > 0) {
      std::optional<ReducePlan> own;
      if (ctx.route == nullptr) {
        std::vector<int> all(static_cast<std::size_t>(meta.ndim()));
        for (int a = 0; a < meta.ndim(); ++a) all[static_cast<std::size_t>(a)] = a;
        own = plan_for(ctx.input, all, o, ctx.runner.plan_workers, false, 0);
      }
      const ReducePlan& whole = own ? *own : ctx.route->plan(Phase::WholeMinMax);
      typename MinMax::Partial mm;
      MinMax::init(mm);
      ctx.phase = Phase::WholeMinMax;
      run_plan(ctx, whole, MinMax{}, ProgressCallback{},
               [&](std::int64_t, const typename MinMax::Partial* p) { mm = *p; });
      ctx.phase = Phase::Main;
      const T lo = MinMax::result(mm, true);
      const T hi = MinMax::result(mm, false);
      if (!std::isfinite(static_cast<double>(lo)) || !std::isfinite(static_cast<double>(hi))) {
        throw Error(ErrorCode::InvalidArgument,
                    "histogram: the data's range [" + format_value(static_cast<double>(lo)) + ", " +
                        format_value(static_cast<double>(hi)) +
                        "] is not finite (NaN or infinity in the data): give a finite range "
                        "(--range LO,HI)");
      }
      first = static_cast<double>(lo);
      last = static_cast<double>(hi);
      span = data_span(lo, hi);
      widen = lo == hi;
    }
    if (widen) {
      first -= 0.5;
      last += 0.5;
      span = last - first;
    }
    ctx.histogram = {first, last, span};
  }
  const kernels::BinEdges<E> edges(o.bins, ctx.histogram.first, ctx.histogram.last,
                                   ctx.histogram.span);
  execute<kernels::HistogramFamily<T, Swap>, T, Swap>(
      ctx, kernels::HistogramFamily<T, Swap>(edges, ctx.plan.n_out * ctx.plan.n_red));
}

template <class T, bool Swap>
void execute_op(Context& ctx) {
  using namespace kernels;
  // An integer has no NaN: the nan* ops run the plain families, whose results are the same, so
  // the NaN-skipping ones are instantiated for floats only.
  constexpr bool kNan = kIsFloat<T>;
  switch (ctx.options.op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean:
      return execute<SumFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanSum:
    case ReduceOp::NanMean:
      return execute<SumFamily<T, Swap, kNan>, T, Swap>(ctx);
    case ReduceOp::Var:
    case ReduceOp::Std:
      return execute<MomentsFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanVar:
    case ReduceOp::NanStd:
      return execute<MomentsFamily<T, Swap, kNan>, T, Swap>(ctx);
    case ReduceOp::Min:
    case ReduceOp::Max:
      return execute<MinMaxFamily<T, Swap>, T, Swap>(ctx);
    case ReduceOp::NanMin:
    case ReduceOp::NanMax:
      return execute<MinMaxFamily<T, Swap, kNan>, T, Swap>(ctx);
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
    case ReduceOp::Histogram:
      return execute_histogram<T, Swap>(ctx);
  }
}

template <class T>
void execute_for_type(Context& ctx) {
  // A 1-byte element has no byte order: only the native families are instantiated for it.
  if constexpr (sizeof(T) > 1) {
    if (ctx.swap) return execute_op<T, true>(ctx);
  }
  execute_op<T, false>(ctx);
}

}  // namespace mmc::detail

// Explicit instantiation, one element type per translation unit.
#define MMC_REDUCE_INSTANTIATE(T) \
  template void mmc::detail::execute_for_type<T>(mmc::detail::Context&);
