// The reduction planner (see plan.hpp).
#include "reduce/plan.hpp"

#include <algorithm>
#include <cassert>

#include "mmc/error.hpp"

namespace mmc::detail {
namespace {

// Merges neighbours (outer, inner) that are one contiguous axis in memory.
void merge_contiguous(std::vector<PlanDim>& dims, bool track_index = false) {
  std::vector<PlanDim> out;
  for (const PlanDim& d : dims) {
    if (!out.empty() && out.back().stride == d.extent * d.stride &&
        (!track_index || out.back().index_stride == d.extent * d.index_stride) &&
        out.back().mask_stride == d.extent * d.mask_stride) {
      out.back().extent *= d.extent;
      out.back().stride = d.stride;
      out.back().out_stride = d.out_stride;
      out.back().index_stride = d.index_stride;
      out.back().mask_stride = d.mask_stride;
    } else {
      out.push_back(d);
    }
  }
  dims.swap(out);
}

std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

// Decomposes a C-order linear index over dims (outer first); returns Σ idx·stride,
// Σ idx·out_stride and (when mask is given) Σ idx·mask_stride.
void decompose(const std::vector<PlanDim>& dims, std::int64_t linear, std::int64_t* offset,
               std::int64_t* out_index, std::int64_t* mask = nullptr) {
  std::int64_t off = 0, out = 0, m = 0;
  for (std::size_t k = dims.size(); k-- > 0;) {
    const std::int64_t idx = linear % dims[k].extent;
    linear /= dims[k].extent;
    off += idx * dims[k].stride;
    out += idx * dims[k].out_stride;
    m += idx * dims[k].mask_stride;
  }
  *offset = off;
  *out_index = out;
  if (mask != nullptr) *mask = m;
}

}  // namespace

std::int64_t max_task_outputs(std::int64_t partial_bytes) noexcept {
  // A task's result stays a few MiB: 2^17 partials of up to 48 bytes.
  constexpr std::int64_t kUsualPartialBytes = 48;
  constexpr std::int64_t kMaxResultBytes = (std::int64_t{1} << 17) * kUsualPartialBytes;
  return kMaxResultBytes / std::max(partial_bytes, kUsualPartialBytes);
}

ReducePlan make_reduce_plan(const ArrayMeta& meta, const std::vector<int>& axes,
                            std::int64_t task_bytes, bool track_index, std::int64_t partial_bytes,
                            const std::vector<std::int64_t>* mask_strides) {
  ReducePlan plan;
  plan.itemsize = meta.dtype.itemsize();
  const auto item = static_cast<std::int64_t>(plan.itemsize);
  std::vector<bool> is_reduced(meta.shape.size(), false);
  for (int a : axes) is_reduced[static_cast<std::size_t>(a)] = true;

  // A geometry built by hand (not by ArrayMeta::contiguous) may hold extents whose products
  // overflow even when one of them is zero; every product below is over a subset of these.
  if (!nbytes_fit(plan.itemsize, meta.shape)) {
    throw Error(ErrorCode::InvalidArgument,
                "shape " + format_shape(meta.shape, true) + ": size overflows 63 bits");
  }
  plan.n_out = 1;
  plan.n_red = 1;
  for (std::size_t k = 0; k < meta.shape.size(); ++k) {
    if (is_reduced[k]) {
      plan.n_red *= meta.shape[k];
    } else {
      plan.out_shape.push_back(meta.shape[k]);
      plan.n_out *= meta.shape[k];
    }
  }

  auto mask_stride = [mask_strides](std::size_t k) {
    return mask_strides != nullptr ? (*mask_strides)[k] : 0;
  };
  // Kept dims in output order, with their stride in the (C-order) output.
  std::int64_t out_stride = 1;
  for (std::size_t k = meta.shape.size(); k-- > 0;) {
    if (is_reduced[k]) continue;
    if (meta.shape[k] != 1) {
      plan.kept.push_back({meta.shape[k], meta.strides[k], out_stride, 0, mask_stride(k)});
    }
    out_stride *= meta.shape[k];
  }
  std::reverse(plan.kept.begin(), plan.kept.end());
  merge_contiguous(plan.kept);

  std::int64_t index_stride = 1;
  for (std::size_t k = meta.shape.size(); k-- > 0;) {
    if (!is_reduced[k]) continue;
    if (meta.shape[k] != 1) {
      plan.reduced.push_back({meta.shape[k], meta.strides[k], 0, index_stride, mask_stride(k)});
    }
    index_stride *= meta.shape[k];
  }
  if (plan.n_red == 0) plan.reduced = {{0, item, 0, 1}};
  // Memory order, outermost first; ties (never for real strides) keep C order.
  std::stable_sort(
      plan.reduced.begin(), plan.reduced.end(), [](const PlanDim& a, const PlanDim& b) {
        return a.stride != b.stride ? a.stride > b.stride : a.index_stride > b.index_stride;
      });
  merge_contiguous(plan.reduced, track_index);
  if (plan.reduced.empty()) plan.reduced.push_back({1, item, 0, 1});

  if (plan.n_out == 0) {
    plan.units = 0;
    return plan;
  }

  const std::int64_t row_bytes = std::max<std::int64_t>(plan.n_red * item, 1);
  std::int64_t unit_bytes;
  std::int64_t outputs_per_unit = 1;
  if (!plan.kept.empty()) {
    auto inner =
        std::min_element(plan.kept.begin(), plan.kept.end(),
                         [](const PlanDim& a, const PlanDim& b) { return a.stride < b.stride; });
    plan.inner_reduced = plan.reduced.back().stride < inner->stride;
    if (!plan.inner_reduced) {
      plan.line = *inner;
      for (auto it = plan.kept.begin(); it != plan.kept.end(); ++it) {
        if (it != inner) plan.line_outer.push_back(*it);
      }
    }
  }
  if (plan.inner_reduced) {
    plan.units = plan.n_out;
    unit_bytes = row_bytes;
  } else {
    constexpr std::int64_t kMinSegment = 256;
    const std::int64_t extent = plan.line.extent;
    if (extent * row_bytes <= task_bytes) {
      plan.segment = extent;
    } else {
      plan.segment = std::clamp<std::int64_t>(task_bytes / row_bytes, kMinSegment, extent);
    }
    plan.segments_per_line = ceil_div(extent, plan.segment);
    plan.units = (plan.n_out / extent) * plan.segments_per_line;
    unit_bytes = plan.segment * row_bytes;
    outputs_per_unit = plan.segment;
  }

  PlanDim& outer = plan.reduced.front();
  plan.piece_len = std::max<std::int64_t>(outer.extent, 1);
  plan.pieces = 1;
  if (unit_bytes > task_bytes && outer.extent > 1) {
    const std::int64_t want = std::min(outer.extent, ceil_div(unit_bytes, task_bytes));
    plan.piece_len = ceil_div(outer.extent, want);
    plan.pieces = ceil_div(outer.extent, plan.piece_len);
  }
  const std::int64_t piece_bytes = std::max<std::int64_t>(unit_bytes / plan.pieces, 1);
  plan.units_per_task = std::clamp<std::int64_t>(
      task_bytes / piece_bytes, 1,
      std::max<std::int64_t>(max_task_outputs(partial_bytes) / outputs_per_unit, 1));
  return plan;
}

std::int64_t ReducePlan::unit_outputs(std::int64_t unit) const noexcept {
  if (inner_reduced) return 1;
  const std::int64_t s = unit % segments_per_line;
  return std::min(segment, line.extent - s * segment);
}

std::int64_t ReducePlan::unit_offset(std::int64_t unit) const noexcept {
  std::int64_t off, out;
  if (inner_reduced) {
    decompose(kept, unit, &off, &out);
    return off;
  }
  decompose(line_outer, unit / segments_per_line, &off, &out);
  return off + (unit % segments_per_line) * segment * line.stride;
}

std::int64_t ReducePlan::unit_mask_offset(std::int64_t unit) const noexcept {
  std::int64_t off, out, mask;
  if (inner_reduced) {
    decompose(kept, unit, &off, &out, &mask);
    return mask;
  }
  decompose(line_outer, unit / segments_per_line, &off, &out, &mask);
  return mask + (unit % segments_per_line) * segment * line.mask_stride;
}

std::int64_t ReducePlan::unit_out_index(std::int64_t unit) const noexcept {
  std::int64_t off, out;
  if (inner_reduced) return unit;
  decompose(line_outer, unit / segments_per_line, &off, &out);
  return out + (unit % segments_per_line) * segment * line.out_stride;
}

void ReducePlan::task_span(std::int64_t task, std::int64_t* first,
                           std::int64_t* last) const noexcept {
  const std::int64_t u0 = task / pieces * units_per_task;
  span_of(task, u0, std::min(units, u0 + units_per_task), first, last);
}

void ReducePlan::unit_span(std::int64_t task, std::int64_t unit, std::int64_t* first,
                           std::int64_t* last) const noexcept {
  span_of(task, unit, unit + 1, first, last);
}

void ReducePlan::span_of(std::int64_t task, std::int64_t u0, std::int64_t u1, std::int64_t* first,
                         std::int64_t* last) const noexcept {
  const std::int64_t piece = task % pieces;
  const std::int64_t r0 = piece * piece_len;
  const std::int64_t r1 = std::min(reduced.front().extent, r0 + piece_len);
  *first = unit_offset(u0) + r0 * reduced.front().stride;
  std::int64_t end = unit_offset(u1 - 1) + static_cast<std::int64_t>(itemsize);
  if (!inner_reduced) end += (unit_outputs(u1 - 1) - 1) * line.stride;
  if (r1 > 0) end += (r1 - 1) * reduced.front().stride;
  for (std::size_t k = 1; k < reduced.size(); ++k) {
    end += (reduced[k].extent - 1) * reduced[k].stride;
  }
  *last = end;
}

std::int64_t ReducePlan::unit_bytes_folded(std::int64_t task, std::int64_t unit) const noexcept {
  const std::int64_t piece = task % pieces;
  const std::int64_t r0 = piece * piece_len;
  std::int64_t elements = std::min(reduced.front().extent, r0 + piece_len) - r0;
  for (std::size_t k = 1; k < reduced.size(); ++k) elements *= reduced[k].extent;
  return elements * unit_outputs(unit) * static_cast<std::int64_t>(itemsize);
}

std::int64_t ReducePlan::task_bytes_folded(std::int64_t task) const noexcept {
  const std::int64_t u0 = task / pieces * units_per_task;
  const std::int64_t u1 = std::min(units, u0 + units_per_task);
  std::int64_t bytes = 0;
  for (std::int64_t u = u0; u < u1; ++u) bytes += unit_bytes_folded(task, u);
  return bytes;
}

}  // namespace mmc::detail
