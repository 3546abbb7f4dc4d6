// Chunked inputs of the reduction: the box each task reads, decoding it at its dense offsets,
// and regrouping a plan's units to follow the chunk grid (see context.hpp).
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "mmc/error.hpp"
#include "reduce/context.hpp"

namespace mmc::detail {
namespace {

// Inclusive index range per original axis.
struct Ranges {
  std::vector<std::int64_t> lo, hi;
};

// Axes with more than one index, outermost in memory (largest stride) first.
std::vector<int> memory_order(const ArrayMeta& meta) {
  std::vector<int> order;
  for (int a = 0; a < meta.ndim(); ++a) {
    if (meta.shape[static_cast<std::size_t>(a)] > 1) order.push_back(a);
  }
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) {
    return meta.strides[static_cast<std::size_t>(x)] > meta.strides[static_cast<std::size_t>(y)];
  });
  return order;
}

// The bounding ranges, per digit, of the flat indices [f, l] over a mixed radix (last digit
// fastest): digits before the first that differs are fixed, that one spans [f's, l's], the
// ones after it take every value.
void flat_bounds(const std::vector<std::int64_t>& radix, std::int64_t f, std::int64_t l,
                 std::vector<std::int64_t>* lo, std::vector<std::int64_t>* hi) {
  const std::size_t n = radix.size();
  std::vector<std::int64_t> df(n), dl(n);
  for (std::size_t k = n; k-- > 0;) {
    df[k] = f % radix[k];
    dl[k] = l % radix[k];
    f /= radix[k];
    l /= radix[k];
  }
  lo->assign(n, 0);
  hi->assign(n, 0);
  bool split = false;
  for (std::size_t k = 0; k < n; ++k) {
    if (split) {
      (*lo)[k] = 0;
      (*hi)[k] = radix[k] - 1;
    } else {
      (*lo)[k] = df[k];
      (*hi)[k] = dl[k];
      split = df[k] != dl[k];
    }
  }
}

// Sets the ranges of the original axes merged into plan dim d for its indices [b, e]. A plan
// dim is one run of axes adjacent in memory: an axis belongs to it when its stride lies in
// [d.stride, d.stride * d.extent).
void cover(const ArrayMeta& meta, const std::vector<int>& order, const PlanDim& d, std::int64_t b,
           std::int64_t e, Ranges* r) {
  const std::int64_t lo_off = b * d.stride, hi_off = e * d.stride;
  bool split = false;
  for (int a : order) {
    const auto ua = static_cast<std::size_t>(a);
    const std::int64_t s = meta.strides[ua], ext = meta.shape[ua];
    if (s < d.stride || s >= d.stride * d.extent) continue;
    if (split) {
      r->lo[ua] = 0;
      r->hi[ua] = ext - 1;
    } else {
      r->lo[ua] = (lo_off / s) % ext;
      r->hi[ua] = (hi_off / s) % ext;
      split = r->lo[ua] != r->hi[ua];
    }
  }
}

std::int64_t chunks_touched(const Box& box, const Shape& chunks) {
  std::int64_t n = 1;
  for (std::size_t a = 0; a < chunks.size(); ++a) {
    const std::int64_t c = chunks[a];
    n *= (box.start[a] + box.count[a] + c - 1) / c - box.start[a] / c;
  }
  return n;
}

std::int64_t box_span_bytes(const Box& box, const ArrayMeta& meta) {
  std::int64_t span = static_cast<std::int64_t>(meta.dtype.itemsize());
  for (std::size_t a = 0; a < box.count.size(); ++a) {
    span += (box.count[a] - 1) * meta.strides[a];
  }
  return span;
}

struct Scratch {
  std::unique_ptr<std::byte[]> data;
  std::size_t size = 0;
};

}  // namespace

Box task_box(const ReducePlan& plan, const ArrayMeta& meta, std::int64_t task, std::int64_t rb,
             std::int64_t re) {
  const std::size_t n = meta.shape.size();
  Ranges r{std::vector<std::int64_t>(n, 0), std::vector<std::int64_t>(n, 0)};
  const std::vector<int> order = memory_order(meta);
  const std::int64_t block = task / plan.pieces, piece = task % plan.pieces;
  const std::int64_t u0 = block * plan.units_per_task;
  const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task) - 1;

  std::vector<std::int64_t> radix, lo, hi;
  if (plan.inner_reduced) {
    for (const PlanDim& d : plan.kept) radix.push_back(d.extent);
    flat_bounds(radix, u0, u1, &lo, &hi);
    for (std::size_t k = 0; k < plan.kept.size(); ++k)
      cover(meta, order, plan.kept[k], lo[k], hi[k], &r);
  } else {
    for (const PlanDim& d : plan.line_outer) radix.push_back(d.extent);
    radix.push_back(plan.segments_per_line);
    flat_bounds(radix, u0, u1, &lo, &hi);
    for (std::size_t k = 0; k < plan.line_outer.size(); ++k) {
      cover(meta, order, plan.line_outer[k], lo[k], hi[k], &r);
    }
    const std::int64_t s0 = lo.back(), s1 = hi.back();
    cover(meta, order, plan.line, s0 * plan.segment,
          std::min((s1 + 1) * plan.segment, plan.line.extent) - 1, &r);
  }
  std::int64_t r0 = piece * plan.piece_len;
  std::int64_t r1 = std::min(plan.reduced.front().extent, r0 + plan.piece_len) - 1;
  if (rb >= 0 && re > rb) {
    r0 = std::max(r0, rb);
    r1 = std::min(r1, re - 1);
  }
  cover(meta, order, plan.reduced.front(), r0, r1, &r);
  for (std::size_t k = 1; k < plan.reduced.size(); ++k) {
    cover(meta, order, plan.reduced[k], 0, plan.reduced[k].extent - 1, &r);
  }
  Box box;
  box.start = r.lo;
  box.count.resize(n);
  for (std::size_t a = 0; a < n; ++a) box.count[a] = r.hi[a] - r.lo[a] + 1;
  return box;
}

std::int64_t slab_step(const ReducePlan& plan, const ArrayMeta& meta, const Shape& chunks) {
  if (plan.inner_reduced && plan.reduced.size() < 2) return 0;
  const PlanDim& d = plan.reduced.front();
  // The outermost axis of reduced[0]'s group: the largest stride inside it.
  std::int64_t step = 0, widest = -1;
  for (std::size_t a = 0; a < meta.shape.size(); ++a) {
    const std::int64_t s = meta.strides[a];
    if (meta.shape[a] <= 1 || s < d.stride || s >= d.stride * d.extent || s <= widest) continue;
    widest = s;
    step = chunks[a] * (s / d.stride);
  }
  return step;
}

const std::byte* materialize_box(const ChunkedArray& array, const Box& box) {
  thread_local Scratch scratch;
  const ArrayMeta& meta = array.meta();
  const auto span = static_cast<std::size_t>(box_span_bytes(box, meta));
  if (scratch.size < span) {
    scratch.data.reset();
    scratch.data.reset(new std::byte[span]);
    scratch.size = span;
  }
  std::int64_t first = 0;
  for (std::size_t a = 0; a < box.start.size(); ++a) first += box.start[a] * meta.strides[a];
  // The dense origin lies `first` bytes before the buffer: computed as an integer, since the
  // pointer would point outside the buffer; only the box's elements are ever read through it.
  const auto origin = reinterpret_cast<std::byte*>(
      reinterpret_cast<std::uintptr_t>(scratch.data.get()) - static_cast<std::uintptr_t>(first));
  array.read_into(box, origin, meta.strides);
  return origin;
}

std::int64_t align_plan_to_chunks(ReducePlan& plan, const ArrayMeta& meta, const Shape& chunks,
                                  std::int64_t task_bytes, std::int64_t partial_bytes,
                                  int workers) {
  if (plan.n_tasks() == 0 || meta.size() == 0) return 0;
  const std::int64_t step = slab_step(plan, meta, chunks);
  // Chunk decodes of a plan, and the largest buffer one of its tasks needs (one slab's).
  auto cost_of = [&](const ReducePlan& p, std::int64_t* max_span) {
    std::int64_t decodes = 0;
    *max_span = 0;
    for (std::int64_t t = 0; t < p.n_tasks(); ++t) {
      const Box box = task_box(p, meta, t);
      decodes += chunks_touched(box, chunks);
      const std::int64_t r0 = (t % p.pieces) * p.piece_len;
      const Box slab = step > 0 ? task_box(p, meta, t, r0, (r0 / step + 1) * step) : box;
      *max_span = std::max(*max_span, box_span_bytes(slab, meta));
    }
    return decodes;
  };
  const std::int64_t k0 = plan.units_per_task;
  std::int64_t span0 = 0;
  const std::int64_t cost0 = cost_of(plan, &span0);
  // Too many tasks to weigh (each is one box computation per candidate): keep the plan.
  constexpr std::int64_t kMaxWeighed = std::int64_t{1} << 16;
  if (plan.n_tasks() > kMaxWeighed) return cost0;

  // Task sizes that end on chunk boundaries: q whole chunk rows of a unit dim, times the
  // units inside one index of it.
  std::vector<std::int64_t> unit_dims;  // extents of the unit radix, outer first
  std::vector<const PlanDim*> unit_plan_dims;
  if (plan.inner_reduced) {
    for (const PlanDim& d : plan.kept) {
      unit_dims.push_back(d.extent);
      unit_plan_dims.push_back(&d);
    }
  } else {
    for (const PlanDim& d : plan.line_outer) {
      unit_dims.push_back(d.extent);
      unit_plan_dims.push_back(&d);
    }
    unit_dims.push_back(plan.segments_per_line);
    unit_plan_dims.push_back(nullptr);
  }
  std::vector<std::int64_t> steps;
  std::int64_t inner = 1;  // units per index of dim k
  for (std::size_t k = unit_dims.size(); k-- > 0;) {
    steps.push_back(inner);
    if (const PlanDim* d = unit_plan_dims[k]) {
      for (int a = 0; a < meta.ndim(); ++a) {
        const auto ua = static_cast<std::size_t>(a);
        const std::int64_t s = meta.strides[ua];
        if (meta.shape[ua] <= 1 || s < d->stride || s >= d->stride * d->extent) continue;
        // Indices of d per chunk row of axis a.
        steps.push_back(inner * chunks[ua] * (s / d->stride));
      }
    } else {
      // B's segments of the line: segments per chunk row of each axis of the line, when a
      // chunk row is a whole number of segments.
      for (int a = 0; a < meta.ndim(); ++a) {
        const auto ua = static_cast<std::size_t>(a);
        const std::int64_t s = meta.strides[ua];
        const PlanDim& line = plan.line;
        if (meta.shape[ua] <= 1 || s < line.stride || s >= line.stride * line.extent) continue;
        const std::int64_t per_row = chunks[ua] * (s / line.stride);
        if (per_row % plan.segment == 0) steps.push_back(inner * (per_row / plan.segment));
      }
    }
    inner *= unit_dims[k];
  }
  steps.push_back(inner);  // every unit in one task
  const std::int64_t outputs_per_unit = plan.inner_reduced ? 1 : plan.segment;
  // Task results may grow to 16 times the planner's bound (up to ~100 MiB) to follow chunks.
  const std::int64_t max_k =
      std::max<std::int64_t>(16 * max_task_outputs(partial_bytes) / outputs_per_unit, 1);
  // A task may hold a chunk row of the outermost axis, up to 1 GiB.
  std::int64_t row = task_bytes;
  if (!meta.shape.empty()) {
    const std::vector<int> order = memory_order(meta);
    if (!order.empty()) {
      const auto a = static_cast<std::size_t>(order.front());
      row = std::min(chunks[a], meta.shape[a]) * meta.strides[a];
    }
  }
  std::int64_t max_span = std::max(4 * task_bytes, span0);
  if (2 * row <= (std::int64_t{1} << 30)) max_span = std::max(max_span, 2 * row);

  // Decodes per worker when the tasks spread over the workers: a plan whose tasks must each
  // decode every chunk (the reduced axis spans every chunk) is best with one task per worker.
  const auto wall = [&](std::int64_t cost, std::int64_t tasks) {
    return static_cast<double>(cost) /
           static_cast<double>(std::max<std::int64_t>(1, std::min<std::int64_t>(tasks, workers)));
  };
  std::int64_t best_k = k0, best_cost = cost0;
  double best_wall = wall(cost0, plan.n_tasks());
  double best_distance = 0;
  // Candidates: the planner's size rounded to each alignment step, and sizes that give every
  // worker one, two or four tasks (for plans where each task must touch every chunk).
  std::vector<std::int64_t> candidates;
  for (std::int64_t m : steps) {
    if (m < 1) continue;
    candidates.push_back(std::max<std::int64_t>(k0 / m, 1) * m);
    candidates.push_back((k0 + m - 1) / m * m);
  }
  for (std::int64_t per : {1, 2, 4}) {
    const std::int64_t tasks = per * std::max(workers, 1);
    candidates.push_back((plan.units + tasks - 1) / tasks);
  }
  {
    for (std::int64_t k : candidates) {
      k = std::min(k, plan.units);
      if (k < 1 || k > max_k || k == best_k) continue;
      ReducePlan p = plan;
      p.units_per_task = k;
      std::int64_t span = 0;
      const std::int64_t cost = cost_of(p, &span);
      if (span > max_span) continue;
      const double w = wall(cost, p.n_tasks());
      const double distance = std::fabs(std::log(static_cast<double>(k) / static_cast<double>(k0)));
      // Ties go to the task size nearest the planner's (more tasks share the folding too).
      if (w < best_wall || (w == best_wall && distance < best_distance)) {
        best_k = k;
        best_cost = cost;
        best_wall = w;
        best_distance = distance;
      }
    }
  }
  plan.units_per_task = best_k;
  return best_cost;
}

}  // namespace mmc::detail
