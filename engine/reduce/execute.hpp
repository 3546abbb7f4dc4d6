// The reduction executor's templates: a task runner per family, the finalizers that turn merged
// partials into results, and the slots that run_pass (run_pass.cpp) runs a pass's families
// through. Only the per-type translation units (by_type/*.cpp) include this
// header: each instantiates execute_for_type for one element type, so the ~20 families (each
// wrapped in Filtered) x 11 types spread over files that compile in parallel and in bounded
// memory.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/families.hpp"
#include "kernels/histogram.hpp"
#include "kernels/quantile.hpp"
#include "mmc/error.hpp"
#include "reduce/context.hpp"
#include "reduce/filtered.hpp"
#include "reduce/quantile.hpp"

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
  // A Filtered family: runs and lines come with their mask offsets and strides.
  static constexpr bool kFiltered = requires { F::kFiltered; };

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

  // Folds only units [ua, ub) of the task (inside [u0, u1)) into parts, the partials of unit ua
  // onward. Units are independent, so the task's partials are the same folded in groups.
  void run_units(const std::byte* data, Partial* parts, std::int64_t ua, std::int64_t ub) const {
    TaskRunner group = *this;
    group.u0_ = ua;
    group.u1_ = ub;
    group.run_part(data, parts, r0_, r1_, true);
  }

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
      std::int64_t mask = 0;
      if constexpr (kFiltered) {
        if (family_.spec().mask != nullptr) mask = plan_.unit_mask_offset(u);
      }
      if (plan_.inner_reduced) {
        if (init) init_output(*parts, plan_.unit_out_index(u));
        part.fold_output(*parts, base, 0, 0, mask);
        parts += width_;
      } else {
        const std::int64_t n = plan_.unit_outputs(u);
        if (init) {
          const std::int64_t out = plan_.unit_out_index(u), step = plan_.unit_out_step();
          for (std::int64_t j = 0; j < n; ++j) init_output(parts[j * width_], out + j * step);
        }
        part.fold_line(parts, base, n, 0, 0, mask);
        parts += n * width_;
      }
    }
  }

 private:
  // The empty partials of output `out` (families whose partials depend on the output, as a
  // quantile refining pass's, define init_at).
  void init_output(Partial& p, std::int64_t out) const {
    if constexpr (requires { family_.init_at(p, out); }) {
      family_.init_at(p, out);
    } else {
      family_.init(p);
    }
  }

  void range(std::size_t level, std::int64_t* b, std::int64_t* e) const {
    *b = level == 0 ? r0_ : 0;
    *e = level == 0 ? r1_ : plan_.reduced[level].extent;
  }

  // Folds the reduced elements under ptr; `index` is the C-order index over the reduced axes
  // of the first of them (used by families that need positions), `mask` its mask offset
  // (Filtered families).
  void fold_output(Partial& p, const std::byte* ptr, std::size_t level, std::int64_t index,
                   std::int64_t mask) const {
    const PlanDim& d = plan_.reduced[level];
    std::int64_t b, e;
    range(level, &b, &e);
    if (level + 1 == plan_.reduced.size()) {
      if constexpr (kFiltered && F::kNeedsIndex) {
        family_.run(p, ptr + b * d.stride, e - b, d.stride, index + b * d.index_stride,
                    d.index_stride, mask + b * d.mask_stride, d.mask_stride);
      } else if constexpr (kFiltered) {
        family_.run(p, ptr + b * d.stride, e - b, d.stride, mask + b * d.mask_stride,
                    d.mask_stride);
      } else if constexpr (F::kNeedsIndex) {
        family_.run(p, ptr + b * d.stride, e - b, d.stride, index + b * d.index_stride,
                    d.index_stride);
      } else {
        family_.run(p, ptr + b * d.stride, e - b, d.stride);
      }
      return;
    }
    for (std::int64_t i = b; i < e; ++i) {
      fold_output(p, ptr + i * d.stride, level + 1, index + i * d.index_stride,
                  mask + i * d.mask_stride);
    }
  }

  void fold_line(Partial* parts, const std::byte* ptr, std::int64_t n, std::size_t level,
                 std::int64_t index, std::int64_t mask) const {
    const PlanDim& d = plan_.reduced[level];
    std::int64_t b, e;
    range(level, &b, &e);
    const bool last = level + 1 == plan_.reduced.size();
    if constexpr (kFiltered && !F::kNeedsIndex) {
      if (last) {
        family_.lines(parts, ptr + b * d.stride, n, plan_.line.stride, e - b, d.stride,
                      mask + b * d.mask_stride, plan_.line.mask_stride, d.mask_stride);
        return;
      }
    } else if constexpr (!F::kNeedsIndex && requires { family_.lines(parts, ptr, n, n, n, n); }) {
      if (last) {
        family_.lines(parts, ptr + b * d.stride, n, plan_.line.stride, e - b, d.stride);
        return;
      }
    }
    for (std::int64_t i = b; i < e; ++i) {
      const std::byte* q = ptr + i * d.stride;
      const std::int64_t at = index + i * d.index_stride;
      const std::int64_t m = mask + i * d.mask_stride;
      if (!last) {
        fold_line(parts, q, n, level + 1, at, m);
      } else if constexpr (kFiltered && F::kNeedsIndex) {
        family_.line(parts, q, n, plan_.line.stride, at, m, plan_.line.mask_stride);
      } else if constexpr (F::kNeedsIndex) {
        family_.line(parts, q, n, plan_.line.stride, at);
      } else if constexpr (!kFiltered) {  // a Filtered family's last level went by lines() above
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

// An integer sum's result for sum (modulo 2^64, as numpy's 64-bit accumulators wrap) or mean
// (the exact sum over n in long double; NaN for no element): the sum family's and the small
// integers' moments' alike.
inline void store_int_sum(ReduceOp op, kernels::i128 sum, std::int64_t n, std::byte* dst) {
  if (op == ReduceOp::Sum || op == ReduceOp::NanSum) {
    return store(dst, static_cast<std::uint64_t>(static_cast<kernels::u128>(sum)));
  }
  store(dst, n > 0
                 ? static_cast<double>(static_cast<long double>(sum) / static_cast<long double>(n))
                 : std::numeric_limits<double>::quiet_NaN());
}

// var, std (or, for small integers, a sum or mean asked beside them) from a moments partial.
template <class Moments, class T>
void finalize_moments(ReduceOp op, int ddof, const typename Moments::Partial& p, std::byte* dst) {
  if constexpr (kernels::kExactMoments<T>) {
    // Small integers' moments hold the exact sum: a sum or mean asked beside var or std
    // comes from it, with the sum family's arithmetic (so its bits).
    if (op != ReduceOp::Var && op != ReduceOp::Std && op != ReduceOp::NanVar &&
        op != ReduceOp::NanStd) {
      return store_int_sum(op, p.s1, p.n, dst);
    }
  }
  const double var = Moments::variance(p, ddof);
  store(dst, op == ReduceOp::Std || op == ReduceOp::NanStd ? std::sqrt(var) : var);
}

// min or max from a min/max partial; `family` is the slot's (a Filtered one knows the nodata).
template <class MinMax, class T, class F>
void finalize_range(const F& family, ReduceOp op, const typename MinMax::Partial& p,
                    std::byte* dst) {
  T v = MinMax::result(p, op == ReduceOp::Min || op == ReduceOp::NanMin);
  if constexpr (!kernels::kIsFloat<T>) {
    // Nothing kept (nodata, mask): the nodata value, or 0 (ReduceOptions::nodata).
    if (!p.valid) {
      v = T{};
      if constexpr (requires { family.spec(); }) {
        if (family.spec().has_nodata) v = family.spec().nodata;
      }
    }
  }
  if constexpr (std::is_same_v<T, bool>) {
    store(dst, static_cast<std::uint8_t>(v ? 1 : 0));
  } else {
    store(dst, v);
  }
}

inline bool is_range_op(ReduceOp op) {
  return op == ReduceOp::Min || op == ReduceOp::Max || op == ReduceOp::NanMin ||
         op == ReduceOp::NanMax;
}

// Writes one output element of `op` from its merged partial (a histogram: its bins' counts).
template <class F, class T>
void finalize(const F& family, ReduceOp op, int ddof, const typename F::Partial& p,
              std::byte* dst) {
  using kernels::FamilyKind;
  if constexpr (F::kKind == FamilyKind::Histogram) {
    std::memcpy(dst, &p, static_cast<std::size_t>(width_of(family)) * sizeof p);
  } else if constexpr (F::kKind == FamilyKind::Sum) {
    if constexpr (kernels::kIsFloat<T>) {
      if (op == ReduceOp::Sum || op == ReduceOp::NanSum) return store(dst, F::total(p));
      store(dst, p.n > 0 ? F::total(p) / static_cast<double>(p.n)
                         : std::numeric_limits<double>::quiet_NaN());
    } else {
      store_int_sum(op, p.sum, p.n, dst);
    }
  } else if constexpr (F::kKind == FamilyKind::Moments) {
    finalize_moments<F, T>(op, ddof, p, dst);
  } else if constexpr (F::kKind == FamilyKind::MinMax) {
    finalize_range<F, T>(family, op, p, dst);
  } else if constexpr (F::kKind == FamilyKind::MomentsMinMax) {
    if (is_range_op(op)) return finalize_range<typename F::MinMax, T>(family, op, p.range, dst);
    finalize_moments<typename F::Moments, T>(op, ddof, p.moments, dst);
  } else if constexpr (F::kKind == FamilyKind::Count) {
    store(dst, p.n);
  } else if constexpr (F::kKind == FamilyKind::AnyAll) {
    store(dst, static_cast<std::uint8_t>((op == ReduceOp::Any ? p.any : p.all) ? 1 : 0));
  } else if constexpr (F::kKind == FamilyKind::Norm) {
    store(dst, std::sqrt(F::total(p)));
  } else {
    static_assert(F::kKind == FamilyKind::Arg);
    const std::int64_t at = F::result(p);
    store(dst, at == F::kNone ? std::int64_t{-1} : at);  // nothing kept (nodata, mask)
  }
}

// A family as one slot of a pass: TaskRunner<F> over the pass's plan, and emit_(family, output,
// parts) for each output's merged partials.
template <class F>
class FamilySlot final : public PassSlot {
 public:
  using Partial = typename F::Partial;
  using Emit = std::function<void(const F&, std::int64_t, const Partial*)>;
  static_assert(std::is_trivially_copyable_v<Partial>);
  static_assert(alignof(Partial) <= kSlotAlign);

  FamilySlot(const F& family, const ReducePlan& plan, Emit emit)
      : family_(family), plan_(plan), width_(width_of(family)), emit_(std::move(emit)) {}

  std::size_t task_bytes(std::int64_t task) const override {
    return static_cast<std::size_t>(TaskRunner<F>(family_, plan_, task).partials()) *
           sizeof(Partial);
  }
  std::size_t output_bytes() const override {
    return static_cast<std::size_t>(width_) * sizeof(Partial);
  }
  void run(std::int64_t task, const std::byte* data, std::byte* parts) const override {
    TaskRunner<F>(family_, plan_, task).run(data, reinterpret_cast<Partial*>(parts));
  }
  void run_units(std::int64_t task, const std::byte* data, std::byte* parts, std::int64_t ua,
                 std::int64_t ub, std::int64_t outputs_before) const override {
    TaskRunner<F>(family_, plan_, task)
        .run_units(data, reinterpret_cast<Partial*>(parts) + outputs_before * width_, ua, ub);
  }
  void run_part(std::int64_t task, const std::byte* data, std::byte* parts, std::int64_t rb,
                std::int64_t re, bool init) const override {
    TaskRunner<F>(family_, plan_, task)
        .run_part(data, reinterpret_cast<Partial*>(parts), rb, re, init);
  }
  void merge(std::byte* acc, const std::byte* next, std::int64_t outputs) const override {
    auto* a = reinterpret_cast<Partial*>(acc);
    const auto* b = reinterpret_cast<const Partial*>(next);
    for (std::int64_t k = 0; k < outputs * width_; k += width_) family_.merge(a[k], b[k]);
  }
  void emit(std::int64_t output, const std::byte* parts) const override {
    emit_(family_, output, reinterpret_cast<const Partial*>(parts));
  }

 private:
  F family_;
  const ReducePlan& plan_;
  std::int64_t width_;
  Emit emit_;
};

// The ops of a pass that one family serves (sum and mean share a sum, var and std the moments,
// min and max one scan), with their results' positions in ctx.results.
struct SlotOps {
  std::vector<ReduceOp> ops;
  std::vector<std::size_t> results;
};

// A slot of `family` whose emit finalizes each of `served`'s ops into its result. In a worker
// (which merges and emits nothing) the results are not touched.
template <class F, class T>
std::unique_ptr<PassSlot> finalizing_slot(Context& ctx, const F& family, const SlotOps& served) {
  struct Target {
    ReduceOp op;
    std::byte* out;
    std::size_t item;  // bytes of one output's result
  };
  std::vector<Target> targets;
  // A worker's results are placeholders: it merges and emits nothing.
  for (std::size_t k = 0; ctx.worker == nullptr && k < served.ops.size(); ++k) {
    ReduceResult& result = ctx.results[served.results[k]];
    targets.push_back({served.ops[k], result.data.data(),
                       result.dtype.itemsize() * static_cast<std::size_t>(width_of(family))});
  }
  const int ddof = ctx.options.ddof;
  return std::make_unique<FamilySlot<F>>(
      family, ctx.plan,
      [targets = std::move(targets), ddof](const F& family, std::int64_t index,
                                           const typename F::Partial* parts) {
        for (const Target& t : targets) {
          finalize<F, T>(family, t.op, ddof, *parts,
                         t.out + static_cast<std::size_t>(index) * t.item);
        }
      });
}

template <class T>
FilterSpec<T> filter_spec(const Context& ctx) {
  FilterSpec<T> spec;
  spec.mask = ctx.input.mask != nullptr ? ctx.input.mask->origin : nullptr;
  spec.swap = ctx.swap;
  if (const std::optional<T> v = nodata_as<T>(ctx.options.nodata, ctx.input.meta.dtype.name())) {
    spec.has_nodata = true;
    spec.nodata = *v;
  }
  return spec;
}

// `family` as a pass runs it: Filtered when Filter.
template <class T, bool Filter, class F>
auto wrap(const Context& ctx, const F& family) {
  if constexpr (Filter) {
    return Filtered<F, T>(family, filter_spec<T>(ctx));
  } else {
    return family;
  }
}

// A finalizing slot of `family`, wrapped when Filter.
template <class T, bool Filter, class F>
std::unique_ptr<PassSlot> slot_of(Context& ctx, const F& family, const SlotOps& served) {
  using W = decltype(wrap<T, Filter>(ctx, family));
  return finalizing_slot<W, T>(ctx, wrap<T, Filter>(ctx, family), served);
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

// The histogram's bin range, from the options' range or from the min and max of the whole array
// (a pass of its own over it, before the main one), into ctx.histogram. In a worker, runs its
// tasks of that first pass when ctx.phase says so (and returns false: nothing else to run).
template <class T, bool Swap, bool Filter>
bool settle_histogram_range(Context& ctx) {
  using MinMax = decltype(wrap<T, Filter>(ctx, kernels::MinMaxFamily<T, Swap>{}));
  const ReduceOptions& o = ctx.options;
  const ArrayMeta& meta = ctx.input.meta;
  if (ctx.worker != nullptr) {
    if (ctx.phase != Phase::WholeMinMax) return true;  // the parent settled ctx.histogram
    const FamilySlot<MinMax> slot(wrap<T, Filter>(ctx, kernels::MinMaxFamily<T, Swap>{}), ctx.plan,
                                  {});
    run_pass(ctx, ctx.plan, {&slot}, ProgressCallback{});
    return false;
  }
  double first = 0, last = 1, span = 1;  // numpy's range for empty data
  bool data_scalars = false;             // first and last are the data's (float16 scalars)
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
    const FamilySlot<MinMax> slot(
        wrap<T, Filter>(ctx, kernels::MinMaxFamily<T, Swap>{}), whole,
        [&mm](const MinMax&, std::int64_t, const typename MinMax::Partial* p) { mm = *p; });
    ctx.phase = Phase::WholeMinMax;
    run_pass(ctx, whole, {&slot}, ProgressCallback{});
    ctx.phase = Phase::Main;
    const T lo = MinMax::result(mm, true);
    const T hi = MinMax::result(mm, false);
    if (!mm.valid && !mm.nan) {
      // Every element left out (nodata, mask): numpy's range for an empty array.
      ctx.histogram = {0, 1, 1};
      return true;
    }
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
    if constexpr (std::is_same_v<T, double>) {
      if (ctx.input.float16 && lo != hi) {
        // float16 data: numpy's range is two float16 scalars, subtracted in float16. Past
        // float16's largest the span is infinite and np.histogram fails (its indices NaN).
        span = kernels::subtract_in(kernels::HalfBinType::F16, hi, lo);
        if (!std::isfinite(span)) {
          throw Error(ErrorCode::InvalidArgument,
                      "histogram: the float16 data's range [" + format_value(first) + ", " +
                          format_value(last) +
                          "] is wider than float16 holds (its span overflows, and numpy's "
                          "np.histogram fails on it): give a range (--range LO,HI)");
        }
        data_scalars = true;
      }
    }
    widen = lo == hi;
  }
  if (widen) {
    data_scalars = false;  // first - 0.5: a float64 scalar
    first -= 0.5;
    last += 0.5;
    span = last - first;
  }
  ctx.histogram = {first, last, span, data_scalars};
  return true;
}

// Which family serves an op: ops with the same key share one slot. NaN-skipping keys fold into
// the plain ones for types without NaN (an integer has no NaN: the results are the same).
enum class FamilyKey : std::uint8_t {
  Sum,
  NanSum,
  Moments,
  NanMoments,
  MinMax,
  NanMinMax,
  MomentsMinMax,  // small integers' Moments and MinMax fused (execute_pass)
  Count,
  AnyAll,
  Norm,
  ArgMin,
  ArgMax,
  Histogram,
  Quantile
};

template <class T>
FamilyKey family_key(ReduceOp op) {
  constexpr bool kNan = kernels::kIsFloat<T>;
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::Mean:
      return FamilyKey::Sum;
    case ReduceOp::NanSum:
    case ReduceOp::NanMean:
      return kNan ? FamilyKey::NanSum : FamilyKey::Sum;
    case ReduceOp::Var:
    case ReduceOp::Std:
      return FamilyKey::Moments;
    case ReduceOp::NanVar:
    case ReduceOp::NanStd:
      return kNan ? FamilyKey::NanMoments : FamilyKey::Moments;
    case ReduceOp::Min:
    case ReduceOp::Max:
      return FamilyKey::MinMax;
    case ReduceOp::NanMin:
    case ReduceOp::NanMax:
      return kNan ? FamilyKey::NanMinMax : FamilyKey::MinMax;
    case ReduceOp::Count:
      return FamilyKey::Count;
    case ReduceOp::Any:
    case ReduceOp::All:
      return FamilyKey::AnyAll;
    case ReduceOp::Norm:
      return FamilyKey::Norm;
    case ReduceOp::ArgMin:
      return FamilyKey::ArgMin;
    case ReduceOp::ArgMax:
      return FamilyKey::ArgMax;
    case ReduceOp::Histogram:
      return FamilyKey::Histogram;
    case ReduceOp::Median:
    case ReduceOp::NanMedian:
    case ReduceOp::Percentile:
    case ReduceOp::NanPercentile:
      return FamilyKey::Quantile;
  }
  return FamilyKey::Sum;
}

// The slot of one family key, finalizing `served`'s ops. `edges`: the histogram's, when key is
// Histogram.
template <class T, bool Swap, bool Filter>
std::unique_ptr<PassSlot> make_slot(Context& ctx, FamilyKey key, const SlotOps& served,
                                    const kernels::BinEdges<kernels::BinType<T>>* edges,
                                    const kernels::Float16BinEdges* edges16) {
  using namespace kernels;
  constexpr bool kNan = kIsFloat<T>;
  switch (key) {
    case FamilyKey::Sum:
      return slot_of<T, Filter>(ctx, SumFamily<T, Swap>{}, served);
    case FamilyKey::NanSum:
      return slot_of<T, Filter>(ctx, SumFamily<T, Swap, kNan>{}, served);
    case FamilyKey::Moments:
      return slot_of<T, Filter>(ctx, MomentsFamily<T, Swap>{}, served);
    case FamilyKey::NanMoments:
      return slot_of<T, Filter>(ctx, MomentsFamily<T, Swap, kNan>{}, served);
    case FamilyKey::MinMax:
      return slot_of<T, Filter>(ctx, MinMaxFamily<T, Swap>{}, served);
    case FamilyKey::NanMinMax:
      return slot_of<T, Filter>(ctx, MinMaxFamily<T, Swap, kNan>{}, served);
    case FamilyKey::MomentsMinMax:
      if constexpr (kHasExactMoments<T>) {
        return slot_of<T, Filter>(ctx, MomentsMinMaxFamily<T, Swap>{}, served);
      }
      break;
    case FamilyKey::Count:
      return slot_of<T, Filter>(ctx, CountFamily<T, Swap>{}, served);
    case FamilyKey::AnyAll:
      return slot_of<T, Filter>(ctx, AnyAllFamily<T, Swap>{}, served);
    case FamilyKey::Norm:
      return slot_of<T, Filter>(ctx, NormFamily<T, Swap>{}, served);
    case FamilyKey::ArgMin:
      return slot_of<T, Filter>(ctx, ArgFamily<T, Swap, false>{}, served);
    case FamilyKey::ArgMax:
      return slot_of<T, Filter>(ctx, ArgFamily<T, Swap, true>{}, served);
    case FamilyKey::Histogram:
      if constexpr (std::is_same_v<T, double>) {
        if (edges16 != nullptr) {
          return slot_of<T, Filter>(
              ctx,
              HistogramFamily<T, Swap, Float16BinEdges>(*edges16, ctx.plan.n_out * ctx.plan.n_red),
              served);
        }
      }
      return slot_of<T, Filter>(
          ctx, HistogramFamily<T, Swap>(*edges, ctx.plan.n_out * ctx.plan.n_red), served);
    case FamilyKey::Quantile:
      break;  // quantile_slot: its state lives across passes
  }
  return nullptr;
}

// The quantiles' slot for pass `pass` (tables per output and their prefixes: the refining
// passes'), handing each output's tables to `state` (none in a worker).
template <class T, bool Swap, bool Filter>
std::unique_ptr<PassSlot> quantile_slot(const Context& ctx, int tables, int pass,
                                        const std::uint64_t* prefixes, QuantileState* state,
                                        const std::vector<ReduceOp>* ops = nullptr) {
  using Q = kernels::QuantileFamily<T, Swap>;
  const int digit = quantile_digit_bits(kernels::kKeyBits<T>, ctx.plan.n_red);
  const std::int64_t gather =
      quantile_gathers(kernels::kKeyBits<T>, ctx.plan.n_red) ? ctx.plan.n_red : 0;
  Q counting(digit, pass, tables, prefixes, gather);
  if (ops != nullptr) {
    // Pass 0's ops: a run holding a whole output of 1- or 2-byte keys selects its ranks itself.
    counting.select_whole_outputs(ctx.plan.n_red, [ops = *ops, q = ctx.options.q](std::uint64_t n) {
      return quantile_ranks(ops, q, n);
    });
  }
  auto family = wrap<T, Filter>(ctx, std::move(counting));
  using F = decltype(family);
  typename FamilySlot<F>::Emit emit;
  if (state != nullptr) {
    emit = [state, pass](const F&, std::int64_t output, const std::uint64_t* tables) {
      state->take(pass, output, tables);
    };
  }
  return std::make_unique<FamilySlot<F>>(std::move(family), ctx.plan, std::move(emit));
}

// The quantiles' refining passes after the main one (keys wider than one digit), then their
// results. In a worker, runs its tasks of the refining pass ctx.refine names.
template <class T, bool Swap, bool Filter>
void refine_quantiles(Context& ctx, QuantileState* state) {
  if (ctx.worker != nullptr) {
    const auto slot = quantile_slot<T, Swap, Filter>(ctx, ctx.refine.tables, ctx.refine.pass,
                                                     ctx.refine.prefixes->data(), nullptr);
    run_pass(ctx, ctx.plan, {slot.get()}, ProgressCallback{});
    return;
  }
  for (int pass = 1; pass < state->passes(); ++pass) {
    auto prefixes = std::make_shared<std::vector<std::uint64_t>>();
    int tables = 0;
    if (!state->prepare(pass, prefixes.get(), &tables)) break;
    const auto slot = quantile_slot<T, Swap, Filter>(ctx, tables, pass, prefixes->data(), state);
    ctx.phase = Phase::Refine;
    ctx.refine = {pass, tables, prefixes};
    run_pass(ctx, ctx.plan, {slot.get()}, ctx.options.progress);
    ctx.phase = Phase::Main;
    ctx.refine = {};
  }
  state->finish();
}

// Runs ctx.ops in one pass over the data (after the histogram's range pass, when it needs one),
// each family once however many of its ops are asked for.
template <class T, bool Swap, bool Filter>
void execute_pass(Context& ctx) {
  std::vector<std::pair<FamilyKey, SlotOps>> groups;
  for (std::size_t i = 0; i < ctx.ops.size(); ++i) {
    const FamilyKey key = family_key<T>(ctx.ops[i]);
    auto it =
        std::find_if(groups.begin(), groups.end(), [key](const auto& g) { return g.first == key; });
    if (it == groups.end()) {
      groups.emplace_back(key, SlotOps{});
      it = groups.end() - 1;
    }
    it->second.ops.push_back(ctx.ops[i]);
    it->second.results.push_back(i);
  }
  // Small integers' moments carry the exact sum: the sum family's ops join them (one scan
  // fewer; finalize gives the same bits).
  if constexpr (kernels::kExactMoments<T>) {
    auto find = [&groups](FamilyKey key) {
      return std::find_if(groups.begin(), groups.end(),
                          [key](const auto& g) { return g.first == key; });
    };
    // Moves group `from`'s ops into group `to` and drops `from`.
    auto join = [&groups, &find](FamilyKey from, FamilyKey to) {
      const auto a = find(from);
      const auto b = find(to);
      if (a == groups.end() || b == groups.end()) return false;
      b->second.ops.insert(b->second.ops.end(), a->second.ops.begin(), a->second.ops.end());
      b->second.results.insert(b->second.results.end(), a->second.results.begin(),
                               a->second.results.end());
      groups.erase(a);
      return true;
    };
    join(FamilyKey::Sum, FamilyKey::Moments);
    // Moments beside min/max: one fused scan (MomentsMinMaxFamily; the same partials).
    if constexpr (kernels::kHasExactMoments<T>) {
      if (join(FamilyKey::MinMax, FamilyKey::Moments))
        find(FamilyKey::Moments)->first = FamilyKey::MomentsMinMax;
    }
  }
  using E = kernels::BinType<T>;
  std::optional<kernels::BinEdges<E>> edges;
  std::optional<kernels::Float16BinEdges> edges16;  // float16 data's
  for (const auto& group : groups) {
    if (group.first != FamilyKey::Histogram) continue;
    if (!settle_histogram_range<T, Swap, Filter>(ctx)) return;
    const HistogramRange& range = ctx.histogram;
    ReduceResult* result =
        ctx.worker == nullptr ? &ctx.results[group.second.results.front()] : nullptr;
    if (std::is_same_v<T, double> && ctx.input.float16) {
      edges16.emplace(ctx.options.bins, range.first, range.last, range.span, range.data_scalars);
      if (range.data_scalars && edges16->overflows()) {
        throw Error(ErrorCode::InvalidArgument,
                    "histogram: " + std::to_string(ctx.options.bins) + " bins over [" +
                        format_value(range.first) + ", " + format_value(range.last) +
                        "] overflow the float16 arithmetic numpy bins float16 data in (its "
                        "np.histogram fails on it): ask for fewer bins");
      }
      if (result != nullptr) set_float16_edges(*result, *edges16);
      continue;
    }
    edges.emplace(ctx.options.bins, range.first, range.last, range.span);
    if (result != nullptr) {
      result->edges_dtype = DType(type_id_of<E>());
      result->edges.resize(edges->edges().size() * sizeof(E));
      std::memcpy(result->edges.data(), edges->edges().data(), result->edges.size());
    }
  }
  // The quantiles: their first pass runs with the other families, their refining ones after.
  if (ctx.phase == Phase::Refine) return refine_quantiles<T, Swap, Filter>(ctx, nullptr);
  std::optional<QuantileState> quantiles;
  std::vector<std::unique_ptr<PassSlot>> slots;
  std::vector<const PassSlot*> pass;
  for (const auto& [key, served] : groups) {
    if (key == FamilyKey::Quantile) {
      if (ctx.worker == nullptr) {
        std::vector<QuantileState::Target> targets;
        for (std::size_t k = 0; k < served.ops.size(); ++k) {
          targets.push_back({served.ops[k], ctx.results[served.results[k]].data.data()});
        }
        const int digit = quantile_digit_bits(kernels::kKeyBits<T>, ctx.plan.n_red);
        quantiles.emplace(std::move(targets), ctx.options.q, ctx.plan.n_out, kernels::kKeyBits<T>,
                          digit, kernels::kIsFloat<T>,
                          quantile_gathers(kernels::kKeyBits<T>, ctx.plan.n_red),
                          &kernels::key_value<T>);
      }
      slots.push_back(quantile_slot<T, Swap, Filter>(
          ctx, 1, 0, nullptr, quantiles ? &*quantiles : nullptr, &served.ops));
    } else {
      slots.push_back(make_slot<T, Swap, Filter>(ctx, key, served, edges ? &*edges : nullptr,
                                                 edges16 ? &*edges16 : nullptr));
    }
    pass.push_back(slots.back().get());
  }
  const CallStats stats = run_pass(ctx, ctx.plan, pass, ctx.options.progress);
  if (quantiles) refine_quantiles<T, Swap, Filter>(ctx, &*quantiles);
  for (ReduceResult& result : ctx.results) result.stats = stats;
}

template <class T>
void execute_for_type(Context& ctx) {
  // Every pass runs Filtered families, native ones: byte-swapped data, with or without nodata
  // or a mask, is swapped as it is compacted (a 1-byte element has no byte order); with nothing
  // to leave out or swap they hand each run to the plain family whole (Filtered::passthrough),
  // so one instantiation serves both.
  execute_pass<T, false, true>(ctx);
}

}  // namespace mmc::detail

// Explicit instantiation, one element type per translation unit.
#define MMC_REDUCE_INSTANTIATE(T) \
  template void mmc::detail::execute_for_type<T>(mmc::detail::Context&);
