// The reduction planner: turns (array geometry, axes) into a fixed list of tasks.
//
// Output elements are the kept axes in C order. After dropping extent-1 axes and merging axes
// that are contiguous in memory, one of two strategies applies:
//  - inner-reduced (A): the fastest-varying memory axis is reduced. A unit is one output
//    element; its reduced elements are folded in memory order, the innermost axis as a run.
//  - inner-kept (B): the fastest-varying memory axis is kept (axis 0 of a C cube, or a
//    Fortran-order cube). A unit is a segment of a "line" of outputs along that axis; each
//    reduced index folds a strided run of elements into the segment's partials.
// Tasks are blocks of units, and when one unit alone is large, pieces of the outermost reduced
// axis. Everything here depends on the geometry only, never on n_jobs or the backend, which
// is what makes results bitwise reproducible.
#pragma once

#include <cstdint>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/reduce.hpp"

namespace mmc::detail {

struct PlanDim {
  std::int64_t extent = 1;
  std::int64_t stride = 0;        // bytes
  std::int64_t out_stride = 0;    // elements of the output (kept dims only)
  std::int64_t index_stride = 0;  // reduced dims: step of the C-order index over reduced axes
  std::int64_t mask_stride = 0;   // bytes of the mask walked in step (0 without a mask)
};

struct ReducePlan {
  std::size_t itemsize = 1;
  Shape out_shape;
  std::int64_t n_out = 0;  // output elements
  std::int64_t n_red = 0;  // elements folded into each output

  bool inner_reduced = true;        // strategy A when true, B when false
  std::vector<PlanDim> reduced;     // outermost (largest stride) first; never empty
  std::vector<PlanDim> kept;        // A: kept dims in output order
  PlanDim line;                     // B: the innermost memory kept dim
  std::vector<PlanDim> line_outer;  // B: the other kept dims, output order
  std::int64_t segment = 1;         // B: outputs of a line per unit
  std::int64_t segments_per_line = 1;

  std::int64_t units = 0;  // A: outputs; B: lines × segments_per_line
  std::int64_t units_per_task = 1;
  std::int64_t pieces = 1;     // splits of reduced[0]
  std::int64_t piece_len = 1;  // indices of reduced[0] per piece

  std::int64_t blocks() const noexcept {
    return units == 0 ? 0 : (units + units_per_task - 1) / units_per_task;
  }
  std::int64_t n_tasks() const noexcept { return blocks() * pieces; }
  // Outputs a unit covers (A: 1; B: the segment, shorter at a line's end).
  std::int64_t unit_outputs(std::int64_t unit) const noexcept;
  // Byte offset of a unit's first element, and its first output index.
  std::int64_t unit_offset(std::int64_t unit) const noexcept;
  std::int64_t unit_out_index(std::int64_t unit) const noexcept;
  // Byte offset in the mask of a unit's first element (0 without a mask).
  std::int64_t unit_mask_offset(std::int64_t unit) const noexcept;
  // Output-index step between consecutive outputs of a unit (B: line.out_stride).
  std::int64_t unit_out_step() const noexcept { return inner_reduced ? 1 : line.out_stride; }
  // Bytes of the input a task reads, as [first, last) offsets (a superset for strided plans).
  void task_span(std::int64_t task, std::int64_t* first, std::int64_t* last) const noexcept;
  // The same for unit `unit` of task `task` alone.
  void unit_span(std::int64_t task, std::int64_t unit, std::int64_t* first,
                 std::int64_t* last) const noexcept;
  // Bytes of the elements a task folds (less than its span when the plan is strided: a view
  // that skips elements).
  std::int64_t task_bytes_folded(std::int64_t task) const noexcept;
  // Bytes of the elements of one unit of task `task`.
  std::int64_t unit_bytes_folded(std::int64_t task, std::int64_t unit) const noexcept;

 private:
  void span_of(std::int64_t task, std::int64_t u0, std::int64_t u1, std::int64_t* first,
               std::int64_t* last) const noexcept;
};

// Bytes of input a task should read (mmc/reduce.hpp says why 8 MiB).
inline constexpr std::int64_t kTaskBytes = kDefaultTaskBytes;

// Outputs one task may hold so that its result stays a few MiB (partial_bytes as below).
std::int64_t max_task_outputs(std::int64_t partial_bytes) noexcept;

// REQUIRES: axes normalized (sorted, unique, in range); meta.strides positive or zero-extent.
// With track_index, reduced axes merge only when their C-order index is contiguous too, so
// index_stride gives each element's position over the reduced axes (argmin/argmax).
// partial_bytes: bytes of one output's partial when larger than the usual (up to 48 bytes; a
// histogram's is 8 per bin); it bounds the outputs of a task so its result stays a few MiB.
// mask_strides: a mask's strides per axis of meta (MaskGeometry), walked in step with the data:
// axes merge only when they are contiguous in both.
ReducePlan make_reduce_plan(const ArrayMeta& meta, const std::vector<int>& axes,
                            std::int64_t task_bytes = kTaskBytes, bool track_index = false,
                            std::int64_t partial_bytes = 0,
                            const std::vector<std::int64_t>* mask_strides = nullptr);

}  // namespace mmc::detail
