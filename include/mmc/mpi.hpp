// Scale-out with MPI (link mmc::mpi; built when MMC_WITH_MPI is on). Every rank opens the same
// array (a shared filesystem is assumed), runs a deterministic share of the same plan's tasks
// on its local pool (options.pool.n_jobs workers per rank), and every rank receives every
// task's partials, merged in the fixed order: the result is bitwise that of one process.
//
//   MPI_Init(&argc, &argv);
//   const mmc::AnyArray cube = mmc::open_array("cube.h5:/images");
//   mmc::ReduceOptions options;
//   options.pool.n_jobs = 4;  // per rank
//   const mmc::ReduceResult r = mmc::mpi::reduce(MPI_COMM_WORLD, cube, options);
#pragma once

#include <mpi.h>

#include <exception>
#include <functional>
#include <utility>
#include <vector>

#include "mmc/open.hpp"
#include "mmc/pool.hpp"
#include "mmc/reduce.hpp"
#include "mmc/slices.hpp"

namespace mmc::mpi {

// Tasks [first, last) of n_tasks that rank `rank` of `size` runs: contiguous, balanced.
void task_share(std::size_t n_tasks, int rank, int size, std::size_t* first, std::size_t* last);

// A task runner (SliceOptions::run_call; mpi::reduce uses it too) that shares a call's tasks
// among the ranks of `comm`: each rank runs its share with run_tasks, then every rank hands
// every task's result to call.on_result in task order. Collective: every rank of comm must make the
// same calls. When a task fails on any rank, every rank throws the same Error ("rank R: ...", the
// code of the lowest failing rank); a rank that dies ends the job through the MPI runtime. Ranks
// whose calls have different task counts (their plans differ) all throw Error(InvalidArgument)
// before running any task. The CallStats returned are the local ones with tasks set to the call's
// total.
std::function<CallStats(const PoolOptions&, const TaskSet&)> task_sharer(MPI_Comm comm);

// The workers of every rank of `comm` together (collective): each rank's pool counts
// effective_n_jobs(pool.n_jobs), or 1 for the serial backend.
int total_workers(MPI_Comm comm, const PoolOptions& pool);

// reduce() over `comm` (collective): the tasks run through task_sharer(comm), planned for
// total_workers(comm, options.pool), so every rank plans the same tasks.
ReduceResult reduce(MPI_Comm comm, const AnyArray& array, const ReduceOptions& options);
// reduce_each() over `comm` (collective), likewise: several ops in one read of each rank's share.
std::vector<ReduceResult> reduce_each(MPI_Comm comm, const AnyArray& array,
                                      const ReduceOptions& options);

// map_slices() over `comm` (collective): each rank runs its share of the slices' tasks and every
// rank returns every slice's result, in order.
template <class T, class R, class Fn>
std::vector<R> map_slices(MPI_Comm comm, const AnyArray& array, Fn&& fn,
                          const SliceOptions& options = {}) {
  SliceOptions o = options;
  o.run_call = task_sharer(comm);
  return mmc::map_slices<T, R>(array, std::forward<Fn>(fn), o);
}

// Makes the ranks of `comm` agree on success (collective): when `error` is set on any rank,
// every rank throws the error of the lowest such rank (its mmc::Error code, else
// ErrorCode::Internal), prefixed with "rank R: " unless R is 0. Use it after steps that may fail
// on some ranks only (opening a file), so no rank waits forever in a later collective.
void agree(MPI_Comm comm, std::exception_ptr error);

}  // namespace mmc::mpi
