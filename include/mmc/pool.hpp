// The worker pool's vocabulary: options of pools and calls, the one progress type, task
// results; and run_tasks, which runs a TaskSet on n_jobs workers (forked processes, threads,
// or the caller's thread), moving arguments and results through the max_nbytes transport.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "mmc/codec.hpp"
#include "mmc/error.hpp"
#include "mmc/fork_hooks.hpp"
#include "mmc/interrupt.hpp"

namespace mmc {

enum class Backend : std::uint8_t { Process, Thread, Serial };

// "process", "thread", "serial". Throws Error(InvalidArgument).
Backend parse_backend(const std::string& text);
const char* to_string(Backend backend) noexcept;

// CPUs this process may use: the least of the online count, the affinity mask and the cgroup
// CPU quota; at least 1.
int cpu_count();

// joblib's n_jobs: n > 0 is n workers; n < 0 is max(cpu_count() + 1 + n, 1) (-1 all CPUs,
// -2 all but one). Throws Error(InvalidArgument) for 0.
int effective_n_jobs(int n_jobs);

// joblib's max_nbytes: "0", plain bytes ("4096"), or K/M/G suffixes in powers of 1024
// ("1M" = 1048576). Throws Error(InvalidArgument) for anything else.
std::uint64_t parse_max_nbytes(const std::string& text);
inline constexpr std::uint64_t kDefaultMaxNbytes = std::uint64_t{1} << 20;

// The options of a pool and of a call (run_tasks, reduce, convert, gen, mmc::Pool: one type).
// Unset fields take the scoped default (ParallelConfig), then the environment (MMC_N_JOBS,
// MMC_BACKEND, MMC_MAX_NBYTES), then n_jobs=1, process, 1M.
struct PoolOptions {
  std::optional<int> n_jobs;  // joblib's meaning (see effective_n_jobs)
  std::optional<Backend> backend;
  std::optional<std::uint64_t> max_nbytes;  // payloads larger than this go in a shared segment
  // mmc::Pool only: runs once in each worker before its first task (each process, each thread;
  // once on the caller's thread for serial): the place to open a per-worker database or HDF5
  // handle. If it throws, every task of the pool fails with its message.
  std::function<void()> initializer;
  std::size_t maxtasksperchild = 0;  // process backend: replace a worker after this many tasks
  int verbose = 0;  // joblib's levels: 0 silent, 1..9 some lines, >= 10 a line per batch
  // Memory one worker is expected to need, in bytes (0: unknown). When set, n_jobs is lowered so
  // that n_jobs workers fit in the cgroup's memory limit and the system's available memory
  // (never below 1), instead of meeting the out-of-memory killer; verbose > 0 says so.
  std::uint64_t worker_memory = 0;
  // Process backend: run around each fork of a worker (and of mmc::Pool's fork server), for a
  // host whose runtime has its own fork protocol (mmc/fork_hooks.hpp). They must not throw.
  ForkHooks fork_hooks;
};

// joblib.parallel_config: sets the defaults of pools and calls made on this thread while it
// lives. Nests; restores the previous defaults on destruction. Each thread has its own.
class ParallelConfig {
 public:
  explicit ParallelConfig(PoolOptions defaults);
  ~ParallelConfig();
  ParallelConfig(const ParallelConfig&) = delete;
  ParallelConfig& operator=(const ParallelConfig&) = delete;

 private:
  PoolOptions previous_;
};

// The options a call runs with: every unset field filled as PoolOptions says, n_jobs through
// effective_n_jobs (and lowered by worker_memory). Throws Error(InvalidArgument) for a bad
// value, from the options or the environment.
struct ResolvedOptions {
  int n_jobs = 1;
  Backend backend = Backend::Process;
  std::uint64_t max_nbytes = kDefaultMaxNbytes;
  int cpus = 1;  // cpu_count(), read once when resolved (negative n_jobs, workers' thread counts)
};
ResolvedOptions resolve(const PoolOptions& options);

// How far a call is. Every progress callback gets one (run_tasks, reduce, convert, gen,
// map_slices, mmc::Pool's calls), on the thread that drives the call, after each finished task
// (mmc::Pool: each batch).
struct Progress {
  std::size_t done = 0;   // tasks (mmc::Pool: items) finished
  std::size_t total = 0;  // 0 when the input's length is unknown (imap over a stream)
  double elapsed_s = 0;   // seconds since the call started
  double eta_s = -1;      // seconds left at the rate so far; -1 when unknown

  // `done` of `total` after `elapsed_s` seconds, with eta_s from the rate so far.
  static Progress at(std::size_t done, std::size_t total, double elapsed_s) noexcept {
    Progress p;
    p.done = done;
    p.total = total;
    p.elapsed_s = elapsed_s;
    if (total > 0 && done > 0) {
      p.eta_s = elapsed_s / static_cast<double>(done) *
                static_cast<double>(total - (done < total ? done : total));
    }
    return p;
  }
};
using ProgressCallback = std::function<void(const Progress&)>;

// Options of one map/imap/starmap call.
struct CallOptions {
  std::size_t chunksize = 0;  // items per batch; 0 = joblib's 'auto' (sized by measured time)
  // Batches in flight at once. 0: 2 * n_jobs (joblib's default), allowed to grow up to
  // 64 * n_jobs while batches take under a millisecond each (explicit tiny chunksizes), so the
  // round trip does not bound the rate; read-ahead stays bounded either way.
  std::size_t pre_dispatch = 0;
  double timeout = 0;            // seconds a task may run (a batch: its items' sum); 0 = none
  int verbose = -1;              // -1: the pool's
  bool progress_bar = false;     // a bar with rate and ETA on stderr
  bool progress_json = false;    // a JSON line per batch on stderr, for scripts
  ProgressCallback on_progress;  // after each batch, on the calling thread
};

// Options of one submitted task.
struct TaskOptions {
  double timeout = 0;  // seconds; the process backend kills and replaces the worker past it
};

// The value returned by a task that returns void.
struct NoValue {
  friend bool operator==(NoValue, NoValue) { return true; }
};

// A task's value or its error (map_collect's element).
template <class T>
class TaskResult {
 public:
  explicit TaskResult(T value) : state_(std::move(value)) {}
  explicit TaskResult(Error error) : state_(std::move(error)) {}
  bool ok() const noexcept { return state_.index() == 0; }
  // The value; throws the task's error when it failed.
  const T& value() const {
    if (!ok()) throw std::get<1>(state_);
    return std::get<0>(state_);
  }
  // REQUIRES: !ok().
  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// The work of one task: reads `arg`, appends its result to `out`. It runs in a worker process
// forked from the caller (so everything the function captures is there, as a copy; writes to
// captured state are NOT seen by the caller), in a worker thread, or on the caller's thread.
// It may throw; the call then fails with the task's index and the message.
using TaskFn = std::function<void(std::size_t task, ByteView arg, Bytes& out)>;
// Receives each task's result on the caller's thread, one at a time, in completion order.
using ResultFn = std::function<void(std::size_t task, ByteView result)>;
// Makes the argument of a task on the caller's thread (optional: tasks may take none).
using ArgFn = std::function<Bytes(std::size_t task)>;

// The tasks of one run_tasks call: how many, what each runs, and where its argument comes from
// and its result and progress go.
struct TaskSet {
  std::size_t n_tasks = 0;
  TaskFn run;
  ResultFn on_result;
  ArgFn make_arg;                // may be empty
  ProgressCallback on_progress;  // may be empty; after each finished task
};

// What crossed process boundaries during a call. The transport fields (bytes_piped,
// bytes_shared, segments) count both directions (arguments and results) and stay zero for the
// thread and serial backends, where nothing crosses a process boundary.
struct CallStats {
  std::size_t tasks = 0;
  int workers = 0;                 // processes forked or threads started; 1 for serial
  std::uint64_t bytes_piped = 0;   // payload bytes copied through worker pipes
  std::uint64_t bytes_shared = 0;  // payload bytes handed over in shared segments
  std::uint64_t segments = 0;      // shared segments created
  // reduce(array, options, pool): tasks the caller ran itself because no worker could reach
  // the array (a chunked HDF5 file the pool's workers cannot open; see mmc/reduce.hpp).
  std::size_t tasks_in_caller = 0;
};

// Runs every task of `call` and returns when all results were delivered. Options left unset
// are resolved as PoolOptions says (ParallelConfig, then MMC_N_JOBS, MMC_BACKEND,
// MMC_MAX_NBYTES).
// Runs on the same pool core as mmc::Pool, made for the call: process backend: the workers
// are forked once at the start of the call (after `call` exists, so its closures are there)
// and reused for all its tasks; each payload (argument or result) larger than
// options.max_nbytes travels in an unlinked shared segment (memfd), smaller ones through the
// worker's socket.
// Throws: Error(InvalidArgument) for bad options; the task's error code with "task N: ..." when
// a task throws; Error(WorkerLost) naming the worker, signal and task when a worker dies;
// Error(Cancelled) after SIGINT/SIGTERM when install_interrupt_handlers() was called.
// In every case all workers are stopped and reaped and no segment is left behind.
// Not reentrant from inside a task.
// Details of the process backend: at most min(n_jobs, n_tasks) workers, about two tasks queued
// per worker (up to 16 while tasks take under a millisecond), a free worker takes the next
// task; workers keep the caller's open descriptors, ignore SIGINT/SIGTERM, die with the thread
// that called run_tasks (PR_SET_PDEATHSIG) and get OMP_NUM_THREADS,
// OPENBLAS_NUM_THREADS and MKL_NUM_THREADS = max(cpu_count() / workers, 1) unless set.
// A lost worker reads "worker 1 (pid 1234) was killed by signal 9 (SIGKILL) while running
// task 17 (peak RSS ...); SIGKILL often comes from the out-of-memory killer: check dmesg; ..."
// or "... exited with status 3 while running task 17 ..." (workers and tasks count from 0).
// Environment: MMC_TEMP_FOLDER: where segments go when memfd_create is unavailable (default
// /dev/shm when it has room, else $TMPDIR, else /tmp); files are unlinked as soon as opened.
// MMC_DISABLE_MEMFD=1: never use memfd_create (for tests of the temp folder path).
// Thread and serial backends check the interrupt flag between tasks, so a task already
// running finishes first.
// Output: stdio (and std::cout) is flushed before the workers are forked, so they never print
// the caller's pending output again, and workers flush stdout after each task and before they
// exit, so what tasks print is not lost when stdout is a file or a pipe.
CallStats run_tasks(const PoolOptions& options, const TaskSet& call);

}  // namespace mmc
