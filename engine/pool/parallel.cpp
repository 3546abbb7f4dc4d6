// mmc::Pool's non-template parts: option resolution (explicit, scoped ParallelConfig,
// environment), running an encoded batch, and CallDriver (batch sizing, pre-dispatch,
// progress lines, bar and callback).
#include "mmc/parallel.hpp"

#include <cxxabi.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <string>

#include "core/interrupt.hpp"
#include "mmc/array.hpp"
#include "pool/options.hpp"
#include "pool/pool_core.hpp"

namespace mmc {
namespace {

thread_local PoolOptions t_config;

// joblib's auto batching bounds (MIN_IDEAL_BATCH_DURATION, MAX_IDEAL_BATCH_DURATION).
constexpr double kMinIdealBatchSeconds = 0.2;
// Batches in flight per worker by default, and the most while batches take under
// kTinyBatchSeconds.
constexpr std::size_t kDefaultDispatchPerJob = 2;
constexpr std::size_t kMaxDispatchPerJob = 64;
constexpr double kTinyBatchSeconds = 1e-3;
constexpr double kMaxIdealBatchSeconds = 2.0;
// A worker-side time below this is noise: do not let it blow the batch size up.
constexpr double kMinMeasurableSeconds = 10e-6;
constexpr std::size_t kMaxAutoBatch = std::size_t{1} << 20;

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

int parse_n_jobs(const char* text) {
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || value < -1'000'000 || value > 1'000'000) {
    throw_error(ErrorCode::InvalidArgument,
                std::string("MMC_N_JOBS='") + text + "' is not an integer n_jobs");
  }
  return static_cast<int>(value);
}

std::string short_time(double seconds) {
  char text[32];
  if (seconds < 60) {
    std::snprintf(text, sizeof text, "%5.1fs", seconds);
  } else {
    std::snprintf(text, sizeof text, "%4.1fmin", seconds / 60);
  }
  return text;
}

}  // namespace

ParallelConfig::ParallelConfig(PoolOptions defaults) : previous_(t_config) {
  if (defaults.n_jobs) t_config.n_jobs = defaults.n_jobs;
  if (defaults.backend) t_config.backend = defaults.backend;
  if (defaults.max_nbytes) t_config.max_nbytes = defaults.max_nbytes;
  if (defaults.initializer) t_config.initializer = defaults.initializer;
  if (defaults.maxtasksperchild != 0) t_config.maxtasksperchild = defaults.maxtasksperchild;
  if (defaults.verbose != 0) t_config.verbose = defaults.verbose;
}

ParallelConfig::~ParallelConfig() { t_config = previous_; }

namespace detail {

CoreOptions resolve_options(const PoolOptions& options) {
  CoreOptions core;
  int n_jobs = 1;
  if (options.n_jobs) {
    n_jobs = *options.n_jobs;
  } else if (t_config.n_jobs) {
    n_jobs = *t_config.n_jobs;
  } else if (const char* text = env("MMC_N_JOBS")) {
    n_jobs = parse_n_jobs(text);
  }
  // Counted once per call: sysconf, the affinity mask and the cgroup files cost a few syscalls.
  core.cpus = cpu_count();
  core.n_jobs = n_jobs > 0 ? n_jobs : effective_n_jobs(n_jobs, core.cpus);
  if (options.worker_memory > 0) {
    const int capped =
        cap_jobs_by_memory(core.n_jobs, options.worker_memory, cgroup_memory(), available_memory());
    if (capped < core.n_jobs && options.verbose > 0) {
      std::fprintf(stderr,
                   "[Parallel]: n_jobs lowered from %d to %d: %s per worker would not fit in "
                   "the memory left\n",
                   core.n_jobs, capped, format_bytes(options.worker_memory).c_str());
    }
    core.n_jobs = capped;
  }
  if (options.backend) {
    core.backend = *options.backend;
  } else if (t_config.backend) {
    core.backend = *t_config.backend;
  } else if (const char* text = env("MMC_BACKEND")) {
    core.backend = parse_backend(text);
  }
  if (options.max_nbytes) {
    core.max_nbytes = *options.max_nbytes;
  } else if (t_config.max_nbytes) {
    core.max_nbytes = *t_config.max_nbytes;
  } else if (const char* text = env("MMC_MAX_NBYTES")) {
    core.max_nbytes = parse_max_nbytes(text);
  }
  core.initializer = options.initializer ? options.initializer : t_config.initializer;
  core.maxtasksperchild =
      options.maxtasksperchild != 0 ? options.maxtasksperchild : t_config.maxtasksperchild;
  core.verbose = options.verbose != 0 ? options.verbose : t_config.verbose;
  core.fork_hooks = options.fork_hooks;
  return core;
}

}  // namespace detail

ResolvedOptions resolve(const PoolOptions& options) { return detail::resolve_options(options); }

Pool::Pool(const ParallelOptions& options) {
  detail::CoreOptions core = detail::resolve_options(options);
  verbose_ = core.verbose;
  n_jobs_ = core.n_jobs;
  backend_ = core.backend;
  max_nbytes_ = core.max_nbytes;
  core_ = detail::make_pool_core(core);
}

namespace detail {

std::shared_ptr<PoolCore> make_pool_core(const CoreOptions& options) {
  switch (options.backend) {
    case Backend::Process:
      return make_process_core(options);
    case Backend::Thread:
      return make_thread_core(options);
    case Backend::Serial:
      return make_serial_core(options);
  }
  throw_error(ErrorCode::InvalidArgument, "unknown backend");
}

std::string demangle(const char* mangled) {
  int status = 0;
  char* text = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  if (status != 0 || text == nullptr) return mangled;
  std::string name(text);
  std::free(text);
  return name;
}

namespace {

std::string late_pointer_text(std::uintptr_t address) {
  char hex[32];
  std::snprintf(hex, sizeof hex, "%#" PRIxPTR, address);
  return std::string("the callable captures a pointer (") + hex +
         ") into memory allocated after the pool was created; its worker processes are copies "
         "of this process as of the pool's creation and would read other data there: pass the "
         "data as an argument (or in an mmc::SharedArray), or create it before the pool";
}

}  // namespace

void throw_late_pointer(std::uintptr_t address) {
  throw_error(ErrorCode::InvalidArgument, "mmc::Pool: " + late_pointer_text(address));
}

std::string explain_transport(Backend backend, std::uint64_t max_nbytes, std::uint64_t header,
                              const std::vector<ArgumentNote>& arguments,
                              std::uintptr_t late_pointer) {
  std::uint64_t total = header;
  for (const ArgumentNote& a : arguments) total += a.encoded;
  std::string text;
  if (backend != Backend::Process) {
    text = std::string(backend == Backend::Thread ? "thread" : "serial") +
           " backend: nothing crosses a process boundary; arguments are copied in memory (" +
           format_bytes(total) + " for this task)\n";
  } else if (total > max_nbytes) {
    text = "task message: " + format_bytes(total) + " > max_nbytes " + format_bytes(max_nbytes) +
           ": written once into an unlinked shared segment (memfd) that the worker maps\n";
  } else {
    text = "task message: " + format_bytes(total) + " <= max_nbytes " + format_bytes(max_nbytes) +
           ": copied through the worker's socket\n";
  }
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    const ArgumentNote& a = arguments[i];
    text += "  arg " + std::to_string(i) + " (" + a.type + "): " + format_bytes(a.encoded) +
            " in the message; ";
    text += a.by_reference.empty() ? "its value travels in the message" : a.by_reference;
    text += "\n";
  }
  if (backend == Backend::Process) {
    text += "results: each batch's results are one message, under the same max_nbytes rule\n";
    text += late_pointer != 0
                ? "callable: refused: " + late_pointer_text(late_pointer) + "\n"
                : "callable: pointers it captures see the worker's copy of memory as of the "
                  "pool's creation (none found into memory allocated later)\n";
  }
  return text;
}

void current_failure(ErrorCode* code, std::string* message) {
  try {
    throw;
  } catch (const Error& error) {
    *code = error.code();
    *message = error.what();
  } catch (const std::exception& error) {
    *code = ErrorCode::TaskFailed;
    *message = error.what();
  } catch (...) {
    *code = ErrorCode::TaskFailed;
    *message = "the task threw something that is not a std::exception";
  }
}

std::string task_range(std::size_t first_task, std::size_t n_items) {
  if (n_items <= 1) return "task " + std::to_string(first_task);
  return "tasks " + std::to_string(first_task) + ".." + std::to_string(first_task + n_items - 1);
}

void run_batch(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds) {
  if (batch.size < 3 * sizeof(std::uint64_t)) {
    throw_error(ErrorCode::Internal,
                "a batch of " + std::to_string(batch.size) + " bytes is too short");
  }
  std::uint64_t address;
  std::memcpy(&address, batch.data, sizeof address);
  const auto trampoline = reinterpret_cast<Trampoline>(address);
  trampoline(batch, fds, out, out_fds);
}

// ---------------------------------------------------------------------------------------------

struct CallDriver::Shared {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Done> completed;
};

CallDriver::CallDriver(std::shared_ptr<PoolCore> core, int n_jobs, int pool_verbose,
                       CallOptions options, std::size_t total, Encode encode)
    : core_(std::move(core)),
      n_jobs_(n_jobs),
      verbose_(options.verbose >= 0 ? options.verbose : pool_verbose),
      options_(std::move(options)),
      total_(total),
      encode_(std::move(encode)),
      shared_(std::make_shared<Shared>()),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {
  if (options_.chunksize > 0) batch_size_ = options_.chunksize;
  dispatch_cap_ = options_.pre_dispatch > 0
                      ? options_.pre_dispatch
                      : kDefaultDispatchPerJob * static_cast<std::size_t>(n_jobs_);
}

CallDriver::~CallDriver() { cancel_all(); }

void CallDriver::cancel_all() {
  cancelled_ = true;
  for (std::uint64_t id : in_flight_) {
    core_->cancel(id, ErrorCode::Cancelled, "cancelled: another task of the call failed");
  }
  in_flight_.clear();
}

std::size_t CallDriver::next_batch_size() {
  std::size_t size = batch_size_;
  if (options_.chunksize == 0 && total_ > 0) {
    // Smaller batches near the end, so the workers finish together (joblib does the same).
    const std::size_t remaining = total_ > next_first_ ? total_ - next_first_ : 1;
    size = std::min(size, std::max<std::size_t>(1, remaining / (2 * n_jobs_)));
  }
  return std::max<std::size_t>(size, 1);
}

void CallDriver::dispatch() {
  while (!exhausted_ && !cancelled_ && in_flight_.size() + held_ < dispatch_cap_) {
    BatchRequest request;
    const std::size_t first = next_first_;
    const std::size_t n = encode_(request.payload, request.fds, first, next_batch_size());
    if (n == 0) {
      exhausted_ = true;
      return;
    }
    request.first_task = first;
    request.n_items = n;
    request.timeout = options_.timeout * static_cast<double>(n);
    request.on_done = [shared = shared_, first, n](BatchOutcome& outcome) {
      {
        std::lock_guard lock(shared->mutex);
        shared->completed.push_back({first, n, std::move(outcome)});
      }
      shared->ready.notify_one();
    };
    next_first_ += n;
    const std::uint64_t id = core_->submit(std::move(request));
    in_flight_.push_back(id);
    // The batch's id is matched to its completion by order of `first` below.
    ids_by_first_.emplace(first, id);
  }
}

std::optional<CallDriver::Done> CallDriver::next() {
  dispatch();
  std::unique_lock lock(shared_->mutex);
  for (;;) {
    if (!shared_->completed.empty()) break;
    if (in_flight_.empty()) {
      lock.unlock();
      report(0);
      return std::nullopt;
    }
    shared_->ready.wait_for(lock, std::chrono::milliseconds(100));
    if (interrupted()) {
      lock.unlock();
      cancel_all();
      throw_if_interrupted();
    }
    if (options_.progress_bar && shared_->completed.empty()) {
      lock.unlock();
      report(0);
      lock.lock();
    }
  }
  Done done = std::move(shared_->completed.front());
  shared_->completed.pop_front();
  lock.unlock();
  if (auto it = ids_by_first_.find(done.first); it != ids_by_first_.end()) {
    in_flight_.erase(std::remove(in_flight_.begin(), in_flight_.end(), it->second),
                     in_flight_.end());
    ids_by_first_.erase(it);
  }
  if (options_.chunksize == 0 && !done.outcome.failed && done.n == batch_size_) {
    // joblib's rule: aim at batches of 0.2 s to 2 s of work.
    const double seconds = std::max(done.outcome.seconds, kMinMeasurableSeconds);
    if (seconds < kMinIdealBatchSeconds) {
      const double ideal = static_cast<double>(done.n) * kMinIdealBatchSeconds / seconds;
      batch_size_ = std::clamp<std::size_t>(static_cast<std::size_t>(2 * ideal), 1, kMaxAutoBatch);
    } else if (seconds > kMaxIdealBatchSeconds) {
      batch_size_ = std::max<std::size_t>(done.n / 2, 1);
    }
  }
  if (options_.pre_dispatch == 0 && !done.outcome.failed) {
    const std::size_t base = kDefaultDispatchPerJob * static_cast<std::size_t>(n_jobs_);
    if (done.outcome.seconds < kTinyBatchSeconds) {
      dispatch_cap_ =
          std::min(dispatch_cap_ * 2, kMaxDispatchPerJob * static_cast<std::size_t>(n_jobs_));
    } else if (done.outcome.seconds > 10 * kTinyBatchSeconds) {
      dispatch_cap_ = base;
    }
  }
  done_items_ += done.n;
  report(done.n);
  return done;  // the next call refills, once the caller said what it still holds
}

void CallDriver::report(std::size_t batch_items) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const bool finished = exhausted_ && in_flight_.empty();
  const Progress progress = Progress::at(done_items_, total_, elapsed);
  if (batch_items > 0 && options_.on_progress) options_.on_progress(progress);
  if (batch_items > 0 && options_.progress_json) {
    std::fprintf(stderr, "{\"done\": %zu, \"total\": %zu, \"elapsed_s\": %.3f, \"eta_s\": %.3f}\n",
                 done_items_, total_, elapsed, progress.eta_s);
  }
  if (verbose_ > 0 && (batch_items > 0 || finished)) {
    const double interval = verbose_ >= 10 ? 0 : 10.0 / verbose_;
    const bool last = total_ > 0 ? done_items_ >= total_ : finished;
    if (last || std::chrono::duration<double>(now - last_print_).count() >= interval) {
      if (!(finished && batch_items == 0 && last_printed_done_ == done_items_)) {
        last_print_ = now;
        last_printed_done_ = done_items_;
        if (total_ > 0) {
          std::fprintf(stderr,
                       "[Parallel(n_jobs=%d)]: Done %3zu out of %3zu | elapsed: %s remaining: %s\n",
                       n_jobs_, done_items_, total_, short_time(elapsed).c_str(),
                       short_time(std::max(progress.eta_s, 0.0)).c_str());
        } else {
          std::fprintf(stderr, "[Parallel(n_jobs=%d)]: Done %3zu tasks      | elapsed: %s\n",
                       n_jobs_, done_items_, short_time(elapsed).c_str());
        }
      }
    }
  }
  if (options_.progress_bar) {
    const bool due = std::chrono::duration<double>(now - last_bar_).count() >= 0.1;
    if (due || finished) {
      if (finished && bar_closed_) return;
      last_bar_ = now;
      constexpr int kWidth = 30;
      const double rate = elapsed > 0 ? static_cast<double>(done_items_) / elapsed : 0;
      std::string bar;
      if (total_ > 0) {
        const int filled = static_cast<int>(kWidth * static_cast<double>(done_items_) /
                                            static_cast<double>(total_));
        bar = "[" + std::string(static_cast<std::size_t>(filled), '#') +
              std::string(static_cast<std::size_t>(kWidth - filled), ' ') + "]";
        std::fprintf(stderr, "\r%s %zu/%zu %3.0f%% %.1f it/s ETA %s", bar.c_str(), done_items_,
                     total_, 100.0 * static_cast<double>(done_items_) / static_cast<double>(total_),
                     rate, short_time(std::max(progress.eta_s, 0.0)).c_str());
      } else {
        std::fprintf(stderr, "\r%zu done %.1f it/s elapsed %s", done_items_, rate,
                     short_time(elapsed).c_str());
      }
      if (finished) {
        std::fputc('\n', stderr);
        bar_closed_ = true;
      }
      std::fflush(stderr);
    }
  }
}

}  // namespace detail
}  // namespace mmc
