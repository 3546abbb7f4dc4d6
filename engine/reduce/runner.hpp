// How a reduction's tasks run and are planned beyond what its ReduceOptions say: the engine's
// entry for mmc::mpi (which shares the tasks among ranks) and for pool.reduce. Users call
// reduce() (mmc/reduce.hpp), which takes only their options.
#pragma once

#include <functional>
#include <vector>

#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"

namespace mmc::detail {

struct ReduceRunner {
  // Runs a call's tasks; empty: run_tasks(options.pool, call). Whatever runs them must hand
  // every task's result to call.on_result on this process (in any order): mmc::mpi::task_sharer
  // runs a share on each MPI rank and replays every result on every rank.
  std::function<CallStats(const PoolOptions&, const TaskSet&)> run_call;
  // Workers the tasks of a chunked source are grouped for (the chunk alignment weighs decodes
  // per worker); 0: this process's pool. Under MPI every rank must plan the same tasks, so
  // mmc::mpi sets it to the workers of all ranks together.
  int plan_workers = 0;
};

// reduce(array, options) with its tasks run and planned as `runner` says. Throws what reduce()
// throws, and what runner.run_call throws.
ReduceResult reduce_with(const AnyArray& array, const ReduceOptions& options,
                         const ReduceRunner& runner);
// reduce_each(array, options) likewise.
std::vector<ReduceResult> reduce_each_with(const AnyArray& array, const ReduceOptions& options,
                                           const ReduceRunner& runner);

}  // namespace mmc::detail
