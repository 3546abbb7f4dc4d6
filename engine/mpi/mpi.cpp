// MPI scale-out (include/mmc/mpi.hpp): task shares, the all-ranks replay of results, and
// agreement on errors.
#include "mmc/mpi.hpp"

#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "reduce/runner.hpp"

namespace mmc::mpi {
namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(ErrorCode::Io,
                std::string(what) + ": " + std::string(text, static_cast<std::size_t>(len)));
  }
}

int rank_of(MPI_Comm comm) {
  int rank = 0;
  check(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  return rank;
}

int size_of(MPI_Comm comm) {
  int size = 1;
  check(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  return size;
}

// Counts and displacements for a gather of per-rank byte counts; throws past MPI's int range.
void layout(const std::vector<long long>& bytes, std::vector<int>* counts, std::vector<int>* displs,
            const char* what) {
  long long total = 0;
  counts->resize(bytes.size());
  displs->resize(bytes.size());
  for (std::size_t r = 0; r < bytes.size(); ++r) {
    if (total + bytes[r] > INT_MAX) {
      throw Error(ErrorCode::InvalidArgument,
                  std::string(what) +
                      ": more than 2 GiB of task results to exchange between "
                      "ranks; reduce over fewer outputs per call");
    }
    (*counts)[r] = static_cast<int>(bytes[r]);
    (*displs)[r] = static_cast<int>(total);
    total += bytes[r];
  }
}

}  // namespace

void task_share(std::size_t n_tasks, int rank, int size, std::size_t* first, std::size_t* last) {
  const auto r = static_cast<unsigned long long>(rank);
  const auto s = static_cast<unsigned long long>(size);
  *first = static_cast<std::size_t>(n_tasks * r / s);
  *last = static_cast<std::size_t>(n_tasks * (r + 1) / s);
}

void agree(MPI_Comm comm, std::exception_ptr error) {
  const int rank = rank_of(comm), size = size_of(comm);
  int mine = error ? rank : size;
  int lowest = size;
  check(MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (lowest == size) return;
  // The lowest failing rank tells everyone its error code and message.
  int code = static_cast<int>(ErrorCode::Internal);
  std::string message;
  if (rank == lowest) {
    try {
      std::rethrow_exception(error);
    } catch (const Error& e) {
      code = static_cast<int>(e.code());
      message = e.what();
    } catch (const std::exception& e) {
      message = e.what();
    } catch (...) {
      message = "unknown error";
    }
  }
  int length = static_cast<int>(message.size());
  check(MPI_Bcast(&code, 1, MPI_INT, lowest, comm), "MPI_Bcast");
  check(MPI_Bcast(&length, 1, MPI_INT, lowest, comm), "MPI_Bcast");
  message.resize(static_cast<std::size_t>(length));
  check(MPI_Bcast(message.data(), length, MPI_CHAR, lowest, comm), "MPI_Bcast");
  throw Error(static_cast<ErrorCode>(code),
              lowest == 0 ? message : "rank " + std::to_string(lowest) + ": " + message);
}

std::function<CallStats(const PoolOptions&, const TaskSet&)> task_sharer(MPI_Comm comm) {
  return [comm](const PoolOptions& pool, const TaskSet& call) {
    const int rank = rank_of(comm), size = size_of(comm);
    // Every rank must share the same task list: compare the counts before any exchange.
    const auto mine_tasks = static_cast<long long>(call.n_tasks);
    long long fewest = 0, most = 0;
    check(MPI_Allreduce(&mine_tasks, &fewest, 1, MPI_LONG_LONG, MPI_MIN, comm), "MPI_Allreduce");
    check(MPI_Allreduce(&mine_tasks, &most, 1, MPI_LONG_LONG, MPI_MAX, comm), "MPI_Allreduce");
    if (fewest != most) {
      throw Error(ErrorCode::InvalidArgument,
                  "the ranks planned different task lists (" + std::to_string(fewest) + " to " +
                      std::to_string(most) + " tasks): give every rank the same array and options");
    }
    std::size_t first = 0, last = 0;
    task_share(call.n_tasks, rank, size, &first, &last);
    std::vector<Bytes> results(last - first);
    TaskSet local;
    local.n_tasks = last - first;
    local.run = [&call, first](std::size_t t, ByteView arg, Bytes& out) {
      call.run(t + first, arg, out);
    };
    if (call.make_arg) {
      local.make_arg = [&call, first](std::size_t t) { return call.make_arg(t + first); };
    }
    local.on_result = [&results](std::size_t t, ByteView r) {
      results[t].assign(r.data, r.data + r.size);
    };
    // Progress: rank 0 reports its own share, scaled to the whole call.
    if (call.on_progress && rank == 0) {
      local.on_progress = [&call, size](const Progress& mine) {
        call.on_progress(
            Progress::at(std::min(call.n_tasks, mine.done * static_cast<std::size_t>(size)),
                         call.n_tasks, mine.elapsed_s));
      };
    }
    CallStats stats;
    std::exception_ptr error;
    try {
      stats = run_tasks(pool, local);
    } catch (...) {
      error = std::current_exception();
    }
    agree(comm, error);

    // Every rank gets every task's result size, then every result's bytes, in task order.
    std::vector<long long> sizes(last - first), all_sizes(call.n_tasks);
    long long mine = 0;
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      sizes[t] = static_cast<long long>(results[t].size());
      mine += sizes[t];
    }
    std::vector<long long> share_counts(static_cast<std::size_t>(size)),
        per_rank(static_cast<std::size_t>(size));
    for (int r = 0; r < size; ++r) {
      std::size_t f = 0, l = 0;
      task_share(call.n_tasks, r, size, &f, &l);
      share_counts[static_cast<std::size_t>(r)] =
          static_cast<long long>(l - f) * static_cast<long long>(sizeof(long long));
    }
    std::vector<int> counts, displs;
    layout(share_counts, &counts, &displs, "task sizes");
    check(MPI_Allgatherv(sizes.data(), static_cast<int>(sizes.size() * sizeof(long long)), MPI_BYTE,
                         all_sizes.data(), counts.data(), displs.data(), MPI_BYTE, comm),
          "MPI_Allgatherv");
    check(MPI_Allgather(&mine, 1, MPI_LONG_LONG, per_rank.data(), 1, MPI_LONG_LONG, comm),
          "MPI_Allgather");
    layout(per_rank, &counts, &displs, "task results");
    std::vector<std::byte> blob(static_cast<std::size_t>(mine));
    std::size_t at = 0;
    for (const Bytes& r : results) {
      if (!r.empty()) std::memcpy(blob.data() + at, r.data(), r.size());
      at += r.size();
    }
    std::vector<std::byte> all(static_cast<std::size_t>(displs.back()) +
                               static_cast<std::size_t>(counts.back()));
    check(MPI_Allgatherv(blob.data(), static_cast<int>(blob.size()), MPI_BYTE, all.data(),
                         counts.data(), displs.data(), MPI_BYTE, comm),
          "MPI_Allgatherv");
    at = 0;
    for (std::size_t t = 0; t < call.n_tasks; ++t) {
      const auto n = static_cast<std::size_t>(all_sizes[t]);
      call.on_result(t, ByteView{all.data() + at, n});
      at += n;
    }
    stats.tasks = call.n_tasks;
    return stats;
  };
}

int total_workers(MPI_Comm comm, const PoolOptions& pool) {
  const ResolvedOptions resolved = resolve(pool);
  const int mine = resolved.backend == Backend::Serial ? 1 : resolved.n_jobs;
  int total = 0;
  check(MPI_Allreduce(&mine, &total, 1, MPI_INT, MPI_SUM, comm), "MPI_Allreduce");
  return total;
}

namespace {

detail::ReduceRunner runner_for(MPI_Comm comm, const ReduceOptions& options) {
  detail::ReduceRunner runner;
  runner.run_call = task_sharer(comm);
  runner.plan_workers = total_workers(comm, options.pool);
  return runner;
}

}  // namespace

ReduceResult reduce(MPI_Comm comm, const AnyArray& array, const ReduceOptions& options) {
  return detail::reduce_with(array, options, runner_for(comm, options));
}

std::vector<ReduceResult> reduce_each(MPI_Comm comm, const AnyArray& array,
                                      const ReduceOptions& options) {
  return detail::reduce_each_with(array, options, runner_for(comm, options));
}

}  // namespace mmc::mpi
