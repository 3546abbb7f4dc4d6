// What the reduction executor needs for one call, and the entry point per element type; the
// templates behind it are in execute.hpp, instantiated once per type in by_type/*.cpp.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mmc/chunked.hpp"
#include "mmc/reduce.hpp"
#include "reduce/plan.hpp"
#include "reduce/runner.hpp"

namespace mmc::kernels {
class Float16BinEdges;
}  // namespace mmc::kernels

namespace mmc::detail {

// A mask broadcast against an input (ReduceOptions::mask): element idx of the input is left out
// when origin[Σ idx[k] · strides[k]] is not 0. Strides in bytes (a bool is one), one per axis of
// the input, 0 on broadcast axes, negative on the axes a view reverses (origin then points at
// the mask element of the view's first element).
struct MaskGeometry {
  const std::uint8_t* origin = nullptr;
  std::vector<std::int64_t> strides;
};

// The mask's geometry against `meta` (reversed: the axes a dense view lays out ascending, see
// AnyArray::reversed_axes), or nothing without a mask. Throws Error(InvalidArgument) for a mask
// that is not bool or not broadcastable against meta's shape (any layout: its strides are
// walked as they are).
std::optional<MaskGeometry> mask_geometry(const std::shared_ptr<const Source>& mask,
                                          const ArrayMeta& meta, const std::vector<int>& reversed);

// Where a plan's tasks read their elements: a dense mapping, or a chunked array. A chunked
// array is reduced with the plan of the same array stored dense (meta's strides): each task
// decodes the box its bytes cover into a private buffer laid out at those dense offsets and
// runs unchanged, so results are bitwise those of the dense file whatever the chunking.
struct Input {
  const ArrayMeta& meta;
  const Source* dense = nullptr;
  const ChunkedArray* chunked = nullptr;
  const MaskGeometry* mask = nullptr;  // ReduceOptions::mask's, when given
  // The elements are a float16 source's, widened to float64 (io/widened.hpp): histograms bin
  // them as numpy does in float16.
  bool float16 = false;
};

// float16 (see Input::float16): the float64 array reductions compute on when `input` is
// float16, else nothing.
std::unique_ptr<ChunkedArray> widened_if_float16(const Input& input);
// options with the nodata value as numpy compares a float16 array with a number (value-based
// casting): a float between -65000 and 65000 rounded to float16, a wider one to float32; an
// integer, or a float past float32, exactly.
ReduceOptions float16_options(const ReduceOptions& options);
// A result computed in float64 for float16 data made numpy's: min and max (and the nan forms)
// back to float16 (exact). Others are left as they are.
void narrow_to_float16(ReduceOp op, ReduceResult& result);
// Sets a histogram result's edges to numpy's for float16 data (float16, or float32/float64 for
// a range float16 cannot hold).
void set_float16_edges(ReduceResult& result, const kernels::Float16BinEdges& edges);

// The histogram's bin range as the parent settled it (from the options, or the data's min and
// max): what a worker needs to build the same BinEdges.
struct HistogramRange {
  double first = 0, last = 1, span = 1;
  // first and last are the data's min and max as they are (not a given range, not widened):
  // for float16 data, numpy's float16 scalars (Float16BinEdges).
  bool data_scalars = false;
};

// A reduction's passes: the histogram's min/max pass over the whole array, then the ops' own,
// then the quantiles' refining passes (wider types; RefineStep says which).
enum class Phase : std::uint8_t { WholeMinMax, Main, Refine };

// A quantile refining pass: its number (1, 2, ...) and the prefixes each output's tables count
// under (QuantileState::prepare), which every worker needs.
struct RefineStep {
  int pass = 0;
  int tables = 1;  // per output
  std::shared_ptr<const std::vector<std::uint64_t>> prefixes;
};

// Partials of tasks [first, first + count) of one pass, concatenated in task order (each task's
// TaskRunner::partials() of its family), handed to the parent by a TaskRoute.
using RangeFn = std::function<void(std::size_t first, std::size_t count, ByteView partials)>;

// How the tasks of a pass reach workers other than run_tasks' own: a warm mmc::Pool
// (pool_job.hpp). The workers rebuild the pass's plan and family from the job, so only task
// ranges travel.
class TaskRoute {
 public:
  virtual ~TaskRoute() = default;
  // Runs tasks [0, n_tasks) of `phase` in ranges and calls on_range for each on this thread
  // (in any order), then progress. task_result_bytes: the partials of the
  // largest task (task 0), which bound a range's size. Throws as run_tasks does.
  virtual CallStats run(Phase phase, const HistogramRange& range, const RefineStep& refine,
                        std::size_t n_tasks, std::size_t task_result_bytes, const RangeFn& on_range,
                        const ProgressCallback& progress) const = 0;
  // The plan of `phase` (the job caches it, so a chunked array's alignment is weighed once).
  virtual const ReducePlan& plan(Phase phase) const = 0;
};

// Set in a worker: run only these tasks of ctx.phase and append their partials to `out`.
struct WorkerTasks {
  std::size_t first = 0;
  std::size_t count = 0;
  Bytes* out = nullptr;
};

// The ops a reduction computes: options.ops, or options.op alone when that list is empty.
std::vector<ReduceOp> ops_of(const ReduceOptions& options);

// What a pass's plan depends on besides the geometry, from its ops alone (so that a worker plans
// the same tasks as the caller): whether reduced axes must keep their C-order index
// (argmin/argmax), and the bytes of one output's partials when larger than usual.
bool pass_tracks_index(const std::vector<ReduceOp>& ops);
// `pass`: the pass's options (its ops, bins, q), over `axes` of `meta`.
std::int64_t pass_partial_bytes(const ReduceOptions& pass, const ArrayMeta& meta,
                                const std::vector<int>& axes);

struct Context {
  // results: one per op of options (ops_of), in that order.
  Context(const Input& input_, const ReducePlan& plan_, const ReduceOptions& options_,
          const ReduceRunner& runner_, std::vector<ReduceResult>& results_, int delay_ms_,
          bool swap_)
      : input(input_),
        plan(plan_),
        options(options_),
        runner(runner_),
        ops(ops_of(options_)),
        results(results_),
        delay_ms(delay_ms_),
        swap(swap_) {}

  const Input& input;
  const ReducePlan& plan;
  const ReduceOptions& options;
  const ReduceRunner& runner;          // how tasks run and are planned (MPI), beyond the options
  std::vector<ReduceOp> ops;           // what the pass computes: ops_of(options)
  std::vector<ReduceResult>& results;  // one per op
  int delay_ms;
  bool swap;                            // stored in the other byte order
  const TaskRoute* route = nullptr;     // parent: tasks go through it instead of run_tasks
  const WorkerTasks* worker = nullptr;  // worker: runs these tasks, merges and emits nothing
  Phase phase = Phase::Main;
  HistogramRange histogram;  // the main pass of a histogram: its bin range
  RefineStep refine;         // Phase::Refine: the quantiles' step
};

// One family's share of a pass, its type erased so that one pass over the data runs any set of
// families (several ops in one read). A task's result holds each slot's partials in turn, each
// section padded to kSlotAlign bytes. Made per call by execute_for_type; run_pass runs them.
class PassSlot {
 public:
  virtual ~PassSlot() = default;
  // Bytes of task `task`'s partials: its outputs × the family's width × sizeof(Partial).
  virtual std::size_t task_bytes(std::int64_t task) const = 0;
  // Bytes of one output's partials (width × sizeof(Partial)).
  virtual std::size_t output_bytes() const = 0;
  // Folds the task's elements (TaskRunner::run), or those of reduced[0] in [rb, re)
  // (TaskRunner::run_part), into parts.
  virtual void run(std::int64_t task, const std::byte* data, std::byte* parts) const = 0;
  virtual void run_part(std::int64_t task, const std::byte* data, std::byte* parts, std::int64_t rb,
                        std::int64_t re, bool init) const = 0;
  // Folds units [ua, ub) of the task only, into parts (the slot's section of the task) past
  // the partials of the task's first `outputs_before` outputs.
  virtual void run_units(std::int64_t task, const std::byte* data, std::byte* parts,
                         std::int64_t ua, std::int64_t ub, std::int64_t outputs_before) const = 0;
  // Merges the partials of `outputs` outputs in `next` into `acc`.
  virtual void merge(std::byte* acc, const std::byte* next, std::int64_t outputs) const = 0;
  // One output's merged partials, handed on (to its ops' results).
  virtual void emit(std::int64_t output, const std::byte* parts) const = 0;
};

inline constexpr std::size_t kSlotAlign = 16;

// Runs `plan`'s tasks with every slot of `slots` over each task's elements, read once (decoded
// once for a chunked input), and hands each output's merged partials to each slot's emit;
// outputs of a block come together, blocks in any order. The tasks run through ctx.route (a
// warm pool), ctx.runner.run_call (MPI) or run_tasks; in a worker (ctx.worker) only the
// worker's tasks run, their partials appended to its buffer, and nothing is merged or
// emitted. Returns the pool's statistics.
CallStats run_pass(const Context& ctx, const ReducePlan& plan,
                   const std::vector<const PassSlot*>& slots, const ProgressCallback& progress);

// True when a dense source is a view of a small part of its file, or skips most of its span
// (select.hpp): then tasks read exactly their spans (MADV_WILLNEED, then populate) under
// MADV_RANDOM, since a fault's read-around (up to the disk's read_ahead_kb, 8 MiB on some)
// would read far more than the view.
bool reads_exact_spans(const Source& source);

// "%.17g" of v, for messages.
std::string format_value(double v);

// The plan of a reduction over `axes` (make_reduce_plan with options.task_bytes), its tasks
// aligned to the chunk grid when the input is chunked, for `plan_workers` workers (0: those of
// options.pool).
// With input.mask, the plan walks the mask in step with the data (PlanDim::mask_stride).
ReducePlan plan_for(const Input& input, const std::vector<int>& axes, const ReduceOptions& options,
                    int plan_workers, bool track_index, std::int64_t partial_bytes);

// Runs ctx.plan for element type T (the source's dtype) and writes ctx.results.
template <class T>
void execute_for_type(Context& ctx);

// execute_for_type for the element type `id`. Throws Error(InvalidArgument) for a type this
// build leaves out (MMC_REDUCE_TYPES: only the ThreadSanitizer test build lists fewer than all).
void run_executor(Context& ctx, TypeId id);

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
