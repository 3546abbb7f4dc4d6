// What the reduction executor needs for one call, and the entry point per element type; the
// templates behind it are in execute.hpp, instantiated once per type in by_type/*.cpp.
#pragma once

#include <string>

#include "mmc/chunked.hpp"
#include "mmc/reduce.hpp"
#include "reduce/plan.hpp"

namespace mmc::detail {

// Where a plan's tasks read their elements: a dense mapping, or a chunked array. A chunked
// array is reduced with the plan of the same array stored dense (meta's strides): each task
// decodes the box its bytes cover into a private buffer laid out at those dense offsets and
// runs unchanged, so results are bitwise those of the dense file whatever the chunking.
struct Input {
  const ArrayMeta& meta;
  const Source* dense = nullptr;
  const ChunkedArray* chunked = nullptr;
};

struct Context {
  const Input& input;
  const ReducePlan& plan;
  const ReduceOptions& options;
  ReduceResult& result;
  int delay_ms;
  bool swap;  // stored in the other byte order
};

// "%.17g" of v, for messages.
std::string format_value(double v);

// The plan of a reduction over `axes` (make_reduce_plan with options.task_bytes), its tasks
// aligned to the chunk grid when the input is chunked.
ReducePlan plan_for(const Input& input, const std::vector<int>& axes, const ReduceOptions& options,
                    bool track_index, std::int64_t partial_bytes);

// Runs ctx.plan for element type T (the source's dtype) and writes ctx.result.
template <class T>
void execute_for_type(Context& ctx);

// ---- chunked inputs (chunked_input.cpp) ----

// The smallest box of `meta`'s index space that holds every element task `task` of `plan`
// reads (exact for tasks aligned to the plan's dims, a small superset otherwise).
// With rb <= re given, only the elements whose reduced[0] index is in [rb, re).
Box task_box(const ReducePlan& plan, const ArrayMeta& meta, std::int64_t task, std::int64_t rb = -1,
             std::int64_t re = -1);

// Indices of reduced[0] per chunk row of its outermost axis, when a task may be folded in such
// slabs one after the other with unchanged arithmetic (TaskRunner::run_part): strategy B, or A
// with more than one reduced dim. 0 otherwise.
std::int64_t slab_step(const ReducePlan& plan, const ArrayMeta& meta, const Shape& chunks);

// Decodes `box` of `array` into this thread's scratch buffer, placed so that the returned pointer
// is the dense array's origin: element idx of the box is at origin + sum(idx[i] * strides[i])
// (meta's dense strides). Bytes outside the box are not valid. The buffer is reused by the
// thread's next call. Throws what decoding throws.
const std::byte* materialize_box(const ChunkedArray& array, const Box& box);

// Regroups the plan's units (units_per_task only, which does not change the arithmetic, so the
// choice may depend on the worker count) so that tasks follow the chunk grid: among task sizes
// aligned to whole chunk rows, within a memory bound per task and 16 times the result bound of
// max_task_outputs(partial_bytes), picks the one with the fewest chunk decodes per worker (the
// decodes spread over min(tasks, workers)), then the task size nearest the planner's. Returns
// the number of chunk decodes the chosen plan makes.
std::int64_t align_plan_to_chunks(ReducePlan& plan, const ArrayMeta& meta, const Shape& chunks,
                                  std::int64_t task_bytes, std::int64_t partial_bytes,
                                  int workers = 1);

}  // namespace mmc::detail
