// Reductions on a warm mmc::Pool: the job a worker rebuilds a reduction from (a source ticket
// and the plan's inputs), its cache in each worker, and the TaskRoute that hands a pass's task
// ranges to the pool. See docs/ARCHITECTURE.md, "pool.reduce".
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "io/source_ticket.hpp"
#include "mmc/parallel.hpp"
#include "reduce/context.hpp"

namespace mmc::detail {

// What a worker needs to run a reduction's tasks: where the array is, and the options the
// plan and the family are built from (normalized: axes sorted), and the workers it was planned
// for.
struct JobSpec {
  SourceTicket ticket;
  ReduceOptions options;  // op, axes, ddof, bins, range, q, task_bytes, nodata only
  int plan_workers = 0;
  std::optional<SourceTicket> mask;  // ReduceOptions::mask's file
  std::vector<int> reversed;         // the view's reversed axes, which the mask follows
};

// A reduction as one process runs its tasks: the array (opened from a ticket in a worker, or
// the caller's own), the options, and the plans of its passes, built once and kept.
// Thread-safe: the thread backend's workers share one.
class JobState {
 public:
  // Over the caller's input, which must outlive it; `main` is the caller's plan.
  JobState(const Input& input, const ReduceOptions& options, int plan_workers,
           const ReducePlan& main);
  // Opens spec.ticket (see open_ticket) and plans again, as the caller did.
  explicit JobState(const JobSpec& spec);
  JobState(const JobState&) = delete;
  JobState& operator=(const JobState&) = delete;

  const ReducePlan& plan(Phase phase) const;
  // Runs tasks [first, first + count) of `phase`, appending their partials to `out`. Stops at
  // the first task that throws, setting *failed to its index and leaving the exception to
  // propagate.
  void run(Phase phase, const HistogramRange& histogram, const RefineStep& refine,
           std::size_t first, std::size_t count, Bytes& out, std::size_t* failed) const;

 private:
  std::shared_ptr<const AnyArray> opened_;  // what a worker opened; null in the caller
  std::unique_ptr<ChunkedArray> widened_;   // opened_ as float64, when it is float16
  std::shared_ptr<const AnyArray> opened_mask_;
  std::optional<MaskGeometry> mask_;  // a worker's, over opened_mask_
  std::unique_ptr<Input> input_;
  ReduceOptions options_;
  ReduceRunner runner_;  // plan_workers only: tasks run where the JobState is
  int delay_ms_ = 0;
  bool swap_ = false;
  mutable std::mutex mutex_;
  mutable std::optional<ReducePlan> plans_[2];
};

// Tasks [first, first + count) of a pass: all a batch carries besides the job.
struct TaskRange {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
};

// A range's answer: its tasks' partials one after the other, or the first task's error.
struct RangeOutcome {
  std::uint64_t first = 0;
  std::uint64_t count = 0;
  Bytes partials;
  std::uint64_t failed = 0;  // 1 + the failing task, 0 when every task ran
  bool unreachable = false;  // the worker could not open the job: the caller runs the range
  std::uint64_t code = 0;    // its ErrorCode
  std::string message;
};

// The callable a pool runs: one pass of one job. In the process that made it (thread and serial
// backends) it runs on the caller's JobState; in a forked worker it opens the job from `spec`
// the first time and keeps it (the last few jobs per worker), so a task costs its index.
struct ReduceTasks {
  std::uint64_t job = 0;
  std::int64_t origin = 0;   // pid of the process that made the job
  std::uintptr_t local = 0;  // its JobState, valid in that process only
  Phase phase = Phase::Main;
  HistogramRange histogram;
  RefineStep refine;
  Bytes spec;  // the encoded JobSpec; empty when no other process can open the source
  // A mapped source's open file (SourceTicket::fd): it travels with every batch (SCM_RIGHTS),
  // and a worker maps it the first time; -1 for none. Open while source_keeper (or, in the
  // caller, the source) lives.
  int source_fd = -1;
  int mask_fd = -1;  // ReduceOptions::mask's open file, likewise; -1 for none
  std::shared_ptr<const void> source_keeper;

  RangeOutcome operator()(const TaskRange& range) const;
};

// Runs a reduction's passes on `pool` as ReduceTasks over task ranges.
class PoolRoute final : public TaskRoute {
 public:
  // `ticket`: how workers of a process pool open the input; without one, every backend runs
  // in this process (the caller makes the pool serial then). Input and options outlive it.
  // `mask`: the ticket of options.mask when given (a mapped file), `reversed` the view's
  // reversed axes, which workers need to walk it.
  PoolRoute(Pool& pool, const Input& input, const ReduceOptions& options, int plan_workers,
            const ReducePlan& main, const std::optional<SourceTicket>& ticket,
            const std::optional<SourceTicket>& mask, const std::vector<int>& reversed);
  CallStats run(Phase phase, const HistogramRange& histogram, const RefineStep& refine,
                std::size_t n_tasks, std::size_t task_result_bytes, const RangeFn& on_range,
                const ProgressCallback& progress) const override;
  const ReducePlan& plan(Phase phase) const override { return local_.plan(phase); }

 private:
  Pool& pool_;
  JobState local_;
  std::uint64_t job_;
  Bytes spec_;
  int source_fd_ = -1;
  int mask_fd_ = -1;
};

}  // namespace mmc::detail

namespace mmc {

template <>
struct Codec<detail::ReduceTasks> {
  static void write(ByteWriter& w, const detail::ReduceTasks& fn);
  static detail::ReduceTasks read(ByteReader& r);
};

template <>
struct Codec<detail::RangeOutcome> {
  static void write(ByteWriter& w, const detail::RangeOutcome& outcome);
  static detail::RangeOutcome read(ByteReader& r);
};

}  // namespace mmc
