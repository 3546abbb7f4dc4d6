// Reductions on a warm mmc::Pool (see pool_job.hpp).
// GCC 12 takes the first append to an empty vector in mmc::Pool's batch encoding (parallel.hpp,
// inlined into PoolRoute::run) for a write past an empty buffer: a false positive of
// -Wstringop-overflow, which GCC reports at the inlined library line, so only a file-wide
// pragma reaches it.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
#include "reduce/pool_job.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <string>
#include <utility>
#include <variant>
#include <vector>

// AnyArray (its io header once it leaves convert.hpp).
#include "core/debug_hooks.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "pool/pool_core.hpp"

namespace mmc::detail {
namespace {

// ---- the job's encoding (it travels in every batch, so it stays a few hundred bytes) ----

void write_meta(ByteWriter& w, const ArrayMeta& meta) {
  w.u64(static_cast<std::uint64_t>(meta.dtype.id()));
  w.u64(static_cast<std::uint64_t>(meta.dtype.byte_order()));
  Codec<Shape>::write(w, meta.shape);
  Codec<std::vector<std::int64_t>>::write(w, meta.strides);
  w.u64(static_cast<std::uint64_t>(meta.order));
}

ArrayMeta read_meta(ByteReader& r) {
  ArrayMeta meta;
  const auto id = static_cast<TypeId>(r.u64());
  const auto order = static_cast<ByteOrder>(r.u64());
  meta.dtype = DType(id, order);
  meta.shape = Codec<Shape>::read(r);
  meta.strides = Codec<std::vector<std::int64_t>>::read(r);
  meta.order = static_cast<Order>(r.u64());
  return meta;
}

template <class T>
void write_plain(ByteWriter& w, const T& value) {
  Codec<T>::write(w, value);
}

template <class T>
T read_plain(ByteReader& r) {
  return Codec<T>::read(r);
}

void write_ticket(ByteWriter& w, const SourceTicket& ticket) {
  w.u64(static_cast<std::uint64_t>(ticket.kind));
  Codec<std::string>::write(w, ticket.format);
  Codec<std::string>::write(w, ticket.path);
  w.u64(ticket.offset);
  w.u64(ticket.length);
  write_meta(w, ticket.meta);
  Codec<Shape>::write(w, ticket.chunk_shape);
  Codec<std::string>::write(w, ticket.selection);
}

SourceTicket read_ticket(ByteReader& r) {
  SourceTicket t;
  t.kind = static_cast<SourceTicket::Kind>(r.u64());
  t.format = Codec<std::string>::read(r);
  t.path = Codec<std::string>::read(r);
  t.offset = r.u64();
  t.length = r.u64();
  t.meta = read_meta(r);
  t.chunk_shape = Codec<Shape>::read(r);
  t.selection = Codec<std::string>::read(r);
  return t;
}

Bytes encode_spec(const JobSpec& spec) {
  const ReduceOptions& o = spec.options;
  Bytes out;
  ByteWriter w(out);
  write_ticket(w, spec.ticket);
  const std::vector<ReduceOp> ops = ops_of(o);
  w.u64(ops.size());
  for (ReduceOp op : ops) w.u64(static_cast<std::uint64_t>(op));
  Codec<std::vector<int>>::write(w, normalize_axes(o.axes, o.axes_given, spec.ticket.meta.ndim()));
  write_plain(w, o.ddof);
  write_plain(w, o.bins);
  write_plain(w, o.range_given);
  write_plain(w, o.range_lo);
  write_plain(w, o.range_hi);
  Codec<std::vector<double>>::write(w, o.q);
  write_plain(w, o.task_bytes);
  write_plain(w, spec.plan_workers);
  // nodata: its alternative, then its bits.
  w.u64(static_cast<std::uint64_t>(o.nodata.index()));
  std::visit(
      [&w](const auto& v) {
        if constexpr (!std::is_same_v<std::decay_t<decltype(v)>, std::monostate>) write_plain(w, v);
      },
      o.nodata);
  w.u64(spec.mask ? 1 : 0);
  if (spec.mask) write_ticket(w, *spec.mask);
  Codec<std::vector<int>>::write(w, spec.reversed);
  return out;
}

JobSpec decode_spec(const Bytes& bytes) {
  ByteReader r({bytes.data(), bytes.size()});
  JobSpec spec;
  spec.ticket = read_ticket(r);
  ReduceOptions& o = spec.options;
  const std::uint64_t n_ops = r.u64();
  if (n_ops == 0 || n_ops > 64)
    throw Error(ErrorCode::Internal, "a reduce job of " + std::to_string(n_ops) + " ops");
  for (std::uint64_t k = 0; k < n_ops; ++k) o.ops.push_back(static_cast<ReduceOp>(r.u64()));
  o.op = o.ops.front();
  o.axes = Codec<std::vector<int>>::read(r);
  o.axes_given = true;
  o.ddof = read_plain<int>(r);
  o.bins = read_plain<std::int64_t>(r);
  o.range_given = read_plain<bool>(r);
  o.range_lo = read_plain<double>(r);
  o.range_hi = read_plain<double>(r);
  o.q = Codec<std::vector<double>>::read(r);
  o.task_bytes = read_plain<std::int64_t>(r);
  spec.plan_workers = read_plain<int>(r);
  switch (r.u64()) {
    case 0:
      break;
    case 1:
      o.nodata = read_plain<std::int64_t>(r);
      break;
    case 2:
      o.nodata = read_plain<std::uint64_t>(r);
      break;
    case 3:
      o.nodata = read_plain<double>(r);
      break;
    default:
      throw Error(ErrorCode::Internal, "a reduce job with an unknown nodata kind");
  }
  if (r.u64() != 0) spec.mask = read_ticket(r);
  spec.reversed = Codec<std::vector<int>>::read(r);
  return spec;
}

// The options a job keeps: what plans and families are built from, nothing that runs tasks.
ReduceOptions job_options(const ReduceOptions& o) {
  ReduceOptions kept;
  kept.op = o.op;
  kept.ops = ops_of(o);
  kept.axes = o.axes;
  kept.axes_given = o.axes_given;
  kept.ddof = o.ddof;
  kept.bins = o.bins;
  kept.range_given = o.range_given;
  kept.range_lo = o.range_lo;
  kept.range_hi = o.range_hi;
  kept.q = o.q;
  kept.task_bytes = o.task_bytes;
  kept.nodata = o.nodata;
  kept.mask = o.mask;
  return kept;
}

// ---- the worker's cache: the jobs it ran last, so a batch of a known job opens nothing ----

// Jobs a worker keeps open (their mappings, HDF5 handles): a pool reducing many files in turn
// holds at most this many per worker.
constexpr std::size_t kJobsKept = 4;

std::shared_ptr<const JobState> job_in_worker(const ReduceTasks& fn) {
  static std::mutex mutex;
  static std::deque<std::pair<std::pair<std::int64_t, std::uint64_t>, std::shared_ptr<JobState>>>
      kept;
  const std::pair<std::int64_t, std::uint64_t> key(fn.origin, fn.job);
  std::lock_guard lock(mutex);
  for (const auto& [k, state] : kept) {
    if (k == key) return state;
  }
  JobSpec spec = decode_spec(fn.spec);
  spec.ticket.fd = fn.source_fd;  // the caller's open files, come with this batch
  if (spec.mask) spec.mask->fd = fn.mask_fd;
  auto state = std::make_shared<JobState>(spec);
  if (kept.size() == kJobsKept) kept.pop_back();
  kept.emplace_front(key, state);
  return state;
}

std::uint64_t next_job_id() {
  static std::atomic<std::uint64_t> counter{0};
  return ++counter;
}

}  // namespace

JobState::JobState(const Input& input, const ReduceOptions& options, int plan_workers,
                   const ReducePlan& main)
    : input_(std::make_unique<Input>(input)),  // its mask geometry lives with the caller's call
      options_(job_options(options)),
      runner_{{}, plan_workers},
      delay_ms_(debug_task_delay_ms()),
      swap_(!input.meta.dtype.is_native()) {
  plans_[static_cast<int>(Phase::Main)] = main;
}

JobState::JobState(const JobSpec& spec)
    : opened_(std::make_shared<const AnyArray>(open_ticket(spec.ticket))),
      options_(spec.options),
      runner_{{}, spec.plan_workers},
      delay_ms_(debug_task_delay_ms()),
      swap_(spec.ticket.meta.dtype.id() != TypeId::F16 && !spec.ticket.meta.dtype.is_native()) {
  if (spec.mask) {
    // The mask: a mapped file, opened from the descriptor that came with the batch.
    opened_mask_ = std::make_shared<const AnyArray>(open_ticket(*spec.mask));
    if (opened_mask_->dense() == nullptr) {
      throw Error(ErrorCode::Internal, "a reduce job's mask is not a mapped file");
    }
    options_.mask = std::shared_ptr<const Source>(opened_mask_, opened_mask_->dense());
    mask_ = mask_geometry(options_.mask, opened_->meta(), spec.reversed);
  }
  // float16 is widened here as the caller widened it (the caller's options came widened).
  widened_ = widened_if_float16(Input{opened_->meta(), opened_->dense(), opened_->chunked()});
  input_ = std::make_unique<Input>(
      widened_ ? Input{widened_->meta(), nullptr, widened_.get(), mask_ ? &*mask_ : nullptr, true}
               : Input{opened_->meta(), opened_->dense(), opened_->chunked(),
                       mask_ ? &*mask_ : nullptr});
}

const ReducePlan& JobState::plan(Phase phase) const {
  if (phase == Phase::Refine) phase = Phase::Main;  // the quantiles refine over the main plan
  std::lock_guard lock(mutex_);
  std::optional<ReducePlan>& plan = plans_[static_cast<int>(phase)];
  if (!plan) {
    // The caller's planning, step for step: the same inputs give the same tasks.
    const ArrayMeta& meta = input_->meta;
    if (phase == Phase::Main) {
      const std::vector<int> axes = normalize_axes(options_.axes, options_.axes_given, meta.ndim());
      plan = plan_for(*input_, axes, options_, runner_.plan_workers,
                      pass_tracks_index(options_.ops), pass_partial_bytes(options_, meta, axes));
    } else {
      std::vector<int> all(static_cast<std::size_t>(meta.ndim()));
      for (int a = 0; a < meta.ndim(); ++a) all[static_cast<std::size_t>(a)] = a;
      plan = plan_for(*input_, all, options_, runner_.plan_workers, false, 0);
    }
  }
  return *plan;
}

void JobState::run(Phase phase, const HistogramRange& histogram, const RefineStep& refine,
                   std::size_t first, std::size_t count, Bytes& out, std::size_t* failed) const {
  std::vector<ReduceResult> unused(options_.ops.size());  // a worker merges and emits nothing
  const ReducePlan& pass = plan(phase);
  WorkerTasks tasks;
  tasks.out = &out;
  tasks.count = 1;
  Context ctx(*input_, pass, options_, runner_, unused, delay_ms_, swap_);
  ctx.worker = &tasks;
  ctx.phase = phase;
  ctx.histogram = histogram;
  ctx.refine = refine;
  // One task at a time, so an error names its task.
  for (std::size_t t = first; t < first + count; ++t) {
    *failed = t;
    tasks.first = t;
    run_executor(ctx, input_->meta.dtype.id());
  }
}

RangeOutcome ReduceTasks::operator()(const TaskRange& range) const {
  RangeOutcome outcome;
  outcome.first = range.first;
  outcome.count = range.count;
  std::shared_ptr<const JobState> remote;
  const JobState* state = nullptr;
  if (origin == static_cast<std::int64_t>(::getpid())) {
    state = reinterpret_cast<const JobState*>(local);
  } else {
    try {
      remote = job_in_worker(*this);
      state = remote.get();
    } catch (...) {
      // Only a chunked array can be out of a worker's reach (HDF5 files the pool's image held
      // open; see open_ticket): the caller runs the range instead (see PoolRoute::run).
      outcome.unreachable = true;
      return outcome;
    }
  }
  std::size_t task = range.first;
  try {
    state->run(phase, histogram, refine, range.first, range.count, outcome.partials, &task);
  } catch (...) {
    ErrorCode code = ErrorCode::TaskFailed;
    current_failure(&code, &outcome.message);
    outcome.code = static_cast<std::uint64_t>(code);
    outcome.failed = task + 1;
    Bytes().swap(outcome.partials);
  }
  return outcome;
}

namespace {

// The pool names a failed batch by its index among the call's ranges ("task K: ..." for a
// timeout or a cancel, "worker N (pid P) ... while running task K" for a lost worker): say
// which of the reduction's tasks it held instead.
[[noreturn]] void raise_for_range(const Error& error, const std::vector<TaskRange>& ranges) {
  const std::string message = error.what();
  const std::string word = "task ";
  for (std::size_t at = message.find(word); at != std::string::npos;
       at = message.find(word, at + 1)) {
    std::size_t end = at + word.size();
    while (end < message.size() && message[end] >= '0' && message[end] <= '9') ++end;
    if (end == at + word.size() || end - at > word.size() + 18) continue;  // no number, or huge
    const std::uint64_t batch =
        std::stoull(message.substr(at + word.size(), end - at - word.size()));
    if (batch >= ranges.size()) continue;
    const TaskRange& range = ranges[batch];
    throw Error(error.code(), message.substr(0, at) + "reduce " +
                                  task_range(range.first, range.count) + message.substr(end));
  }
  throw error;
}

}  // namespace

PoolRoute::PoolRoute(Pool& pool, const Input& input, const ReduceOptions& options, int plan_workers,
                     const ReducePlan& main, const std::optional<SourceTicket>& ticket,
                     const std::optional<SourceTicket>& mask, const std::vector<int>& reversed)
    : pool_(pool), local_(input, options, plan_workers, main), job_(next_job_id()) {
  if (ticket) {
    JobSpec spec;
    spec.ticket = *ticket;
    spec.options = job_options(options);
    spec.plan_workers = plan_workers;
    spec.mask = mask;
    spec.reversed = reversed;
    spec_ = encode_spec(spec);
    source_fd_ = ticket->fd;
    if (mask) mask_fd_ = mask->fd;
  }
}

CallStats PoolRoute::run(Phase phase, const HistogramRange& histogram, const RefineStep& refine,
                         std::size_t n_tasks, std::size_t task_result_bytes,
                         const RangeFn& on_range, const ProgressCallback& progress) const {
  // About four ranges per worker balance uneven tasks; a range's partials stay under 16 MiB.
  constexpr std::size_t kMaxRangeBytes = std::size_t{16} << 20;
  const auto workers = static_cast<std::size_t>(std::max(pool_.n_jobs(), 1));
  std::size_t per = std::max<std::size_t>((n_tasks + 4 * workers - 1) / (4 * workers), 1);
  per = std::min(
      per, std::max<std::size_t>(kMaxRangeBytes / std::max<std::size_t>(task_result_bytes, 1), 1));
  std::vector<TaskRange> ranges;
  ranges.reserve((n_tasks + per - 1) / per);
  for (std::size_t first = 0; first < n_tasks; first += per) {
    ranges.push_back({first, std::min(per, n_tasks - first)});
  }

  ReduceTasks fn;
  fn.job = job_;
  fn.origin = static_cast<std::int64_t>(::getpid());
  fn.local = reinterpret_cast<std::uintptr_t>(&local_);
  fn.phase = phase;
  fn.histogram = histogram;
  fn.refine = refine;
  fn.spec = spec_;
  fn.source_fd = source_fd_;
  fn.mask_fd = mask_fd_;
  CallOptions call;
  call.chunksize = 1;  // a batch is one range
  auto results = pool_.imap_unordered(fn, ranges, call);
  std::size_t done = 0;
  std::size_t in_caller = 0;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    std::optional<RangeOutcome> outcome;
    try {
      outcome = results.next();
    } catch (const Error& error) {
      raise_for_range(error, ranges);
    }
    if (!outcome) break;
    if (outcome->unreachable) {
      // A worker could not open the array (replaced since, or a worker that cannot use HDF5):
      // the caller's own copy is the truth, so it runs the range itself.
      const TaskRange range{outcome->first, outcome->count};
      ReduceTasks here = fn;
      here.origin = static_cast<std::int64_t>(::getpid());
      *outcome = here(range);
      in_caller += range.count;
    }
    if (outcome->failed != 0) {
      throw_error(static_cast<ErrorCode>(outcome->code),
                  "task " + std::to_string(outcome->failed - 1) + ": " + outcome->message);
    }
    on_range(outcome->first, outcome->count, {outcome->partials.data(), outcome->partials.size()});
    done += outcome->count;
    if (progress) {
      progress(Progress::at(
          done, n_tasks,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
    }
  }
  CallStats stats;
  stats.tasks = n_tasks;
  stats.tasks_in_caller = in_caller;
  stats.workers = static_cast<int>(std::min(workers, std::max<std::size_t>(ranges.size(), 1)));
  return stats;
}

}  // namespace mmc::detail

namespace mmc {

void Codec<detail::ReduceTasks>::write(ByteWriter& w, const detail::ReduceTasks& fn) {
  w.u64(fn.job);
  w.u64(static_cast<std::uint64_t>(fn.origin));
  w.u64(fn.local);
  w.u64(static_cast<std::uint64_t>(fn.phase));
  w.raw(&fn.histogram, sizeof fn.histogram);
  w.u64(static_cast<std::uint64_t>(fn.refine.pass));
  w.u64(static_cast<std::uint64_t>(fn.refine.tables));
  Codec<std::vector<std::uint64_t>>::write(
      w, fn.refine.prefixes ? *fn.refine.prefixes : std::vector<std::uint64_t>{});
  Codec<Bytes>::write(w, fn.spec);
  // The source's open file travels beside the batch: 1 + its index, 0 for none.
  w.u64(fn.source_fd >= 0 && w.fds() != nullptr ? 1 + w.fds()->add_copy(fn.source_fd) : 0);
  w.u64(fn.mask_fd >= 0 && w.fds() != nullptr ? 1 + w.fds()->add_copy(fn.mask_fd) : 0);
}

detail::ReduceTasks Codec<detail::ReduceTasks>::read(ByteReader& r) {
  detail::ReduceTasks fn;
  fn.job = r.u64();
  fn.origin = static_cast<std::int64_t>(r.u64());
  fn.local = static_cast<std::uintptr_t>(r.u64());
  fn.phase = static_cast<detail::Phase>(r.u64());
  r.raw(&fn.histogram, sizeof fn.histogram);
  fn.refine.pass = static_cast<int>(r.u64());
  fn.refine.tables = static_cast<int>(r.u64());
  fn.refine.prefixes = std::make_shared<const std::vector<std::uint64_t>>(
      Codec<std::vector<std::uint64_t>>::read(r));
  fn.spec = Codec<Bytes>::read(r);
  if (const std::uint64_t index = r.u64(); index != 0) {
    if (r.fds() == nullptr)
      throw_error(ErrorCode::Corrupt, "a reduction's batch without descriptors");
    fn.source_fd = r.fds()->at(index - 1);
    fn.source_keeper = r.fds()->keeper();
  }
  if (const std::uint64_t index = r.u64(); index != 0) {
    if (r.fds() == nullptr)
      throw_error(ErrorCode::Corrupt, "a reduction's batch without descriptors");
    fn.mask_fd = r.fds()->at(index - 1);
    fn.source_keeper = r.fds()->keeper();
  }
  return fn;
}

void Codec<detail::RangeOutcome>::write(ByteWriter& w, const detail::RangeOutcome& outcome) {
  w.u64(outcome.first);
  w.u64(outcome.count);
  w.u64(outcome.failed);
  w.u64(outcome.unreachable ? 1 : 0);
  w.u64(outcome.code);
  Codec<std::string>::write(w, outcome.message);
  Codec<Bytes>::write(w, outcome.partials);
}

detail::RangeOutcome Codec<detail::RangeOutcome>::read(ByteReader& r) {
  detail::RangeOutcome outcome;
  outcome.first = r.u64();
  outcome.count = r.u64();
  outcome.failed = r.u64();
  outcome.unreachable = r.u64() != 0;
  outcome.code = r.u64();
  outcome.message = Codec<std::string>::read(r);
  outcome.partials = Codec<Bytes>::read(r);
  return outcome;
}

}  // namespace mmc
