// The persistent process backend of mmc::Pool: workers forked by a ForkServer, one dispatcher
// thread that polls the worker sockets, the server's exit reports, a wake-up eventfd and the
// interrupt self-pipe, enforces per-batch deadlines and replaces lost workers. A one-call core
// (run_tasks) has no dispatcher thread: its caller drives the same loop through dispatch().
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/interrupt.hpp"
#include "mmc/parallel.hpp"
#include "pool/fork_image.hpp"
#include "pool/fork_server.hpp"
#include "pool/pool_core.hpp"
#include "pool/run_board.hpp"
#include "pool/transport.hpp"
#include "pool/worker_process.hpp"

namespace mmc::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kInitFailedTask = ~std::uint64_t{0};
// A worker that dies before finishing any batch this many times in a row breaks the pool
// rather than being replaced forever (a crashing initializer, a broken environment).
constexpr int kMaxEarlyDeaths = 5;
// Batches queued at one worker: 2 normally (a free worker takes the next batch, so long tasks
// balance), up to 16 while its batches take under a millisecond, so tiny submitted tasks
// pipeline instead of paying a round trip each.
constexpr std::size_t kQueueDepth = 2;
constexpr std::size_t kQueueDepthTiny = 64;
static_assert(kQueueDepthTiny <= RunSlot::kSkips, "every job queued at a worker can be marked");
constexpr double kQueueDepthTinySeconds = 1e-3;
// Tiny jobs (submit() of small tasks) queued for one worker travel together in one Group frame.
constexpr std::size_t kMaxGroup = 32;
constexpr std::size_t kMaxGroupBytes = 64 * 1024;

// Results of grouped jobs are sent together once this many bytes are waiting, or when the
// oldest waiting result is this old, or when the group is done.
constexpr std::size_t kReplyBatchBytes = 64 * 1024;
constexpr auto kReplyBatchAge = std::chrono::milliseconds(1);
constexpr std::size_t kMaxReplyText = 64 * 1024;
// A Result's payload ends with the batch's run time in ns: framing (FrameHeader::envelope).
constexpr std::uint32_t kRunTimeBytes = sizeof(std::uint64_t);

// One job's answer before framing: a Result (the batch's results, then its run time in ns) or a
// Failure (code and message).
struct Reply {
  FrameKind kind = FrameKind::Result;
  std::uint32_t code = 0;
  Bytes payload;
  MessageFds fds;  // the descriptors the results carry
};

Reply run_one(ByteView batch, const MessageFds& fds) {
  Reply reply;
  try {
    Bytes out;
    const auto start = Clock::now();
    run_batch(batch, fds, out, reply.fds);
    const auto ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count());
    const auto* ns_bytes = reinterpret_cast<const std::byte*>(&ns);
    out.insert(out.end(), ns_bytes, ns_bytes + sizeof ns);
    reply.payload = std::move(out);
  } catch (...) {
    ErrorCode code = ErrorCode::TaskFailed;
    std::string text;
    current_failure(&code, &text);
    if (text.size() > kMaxReplyText) text.resize(kMaxReplyText);
    reply.kind = FrameKind::Failure;
    reply.code = static_cast<std::uint32_t>(code);
    reply.fds = MessageFds();
    reply.payload.assign(reinterpret_cast<const std::byte*>(text.data()),
                         reinterpret_cast<const std::byte*>(text.data()) + text.size());
  }
  flush_task_output();  // the worker may be killed before it exits
  return reply;
}

// Runs job `id` unless the dispatcher cancelled it while it was queued here, saying on the run
// board which job runs. A skipped job is answered with a Failure the dispatcher drops (it has
// already failed the job's future).
Reply run_marked(RunSlot& slot, std::uint64_t id, ByteView batch, const MessageFds& fds) {
  if (!slot.begin(id)) {
    Reply reply;
    reply.kind = FrameKind::Failure;
    reply.code = static_cast<std::uint32_t>(ErrorCode::Cancelled);
    return reply;
  }
  Reply reply = run_one(batch, fds);
  slot.end(id);
  return reply;
}

// Sends a frame, blocking; a pool that closed our socket means we are done.
void send_or_leave(int socket, OutFrame frame) {
  try {
    frame.send_some(socket, /*dont_wait=*/false);
  } catch (const PeerGone&) {
    exit_worker(0);
  }
}

void send_reply(int socket, std::uint64_t id, Reply reply, std::uint64_t max_nbytes) {
  TransportCounters unused;
  if (reply.kind == FrameKind::Failure) {
    send_or_leave(socket,
                  OutFrame::failure(id, static_cast<ErrorCode>(reply.code),
                                    std::string(reinterpret_cast<const char*>(reply.payload.data()),
                                                reply.payload.size())));
    return;
  }
  std::optional<OutFrame> frame;
  try {
    frame = OutFrame::make(FrameKind::Result, id, std::move(reply.payload), max_nbytes, unused,
                           kRunTimeBytes, std::move(reply.fds));
  } catch (const Error& error) {
    // A result that cannot travel (too many segments, no room for a segment) fails its task
    // with the reason; the worker lives on.
    send_or_leave(socket, OutFrame::failure(id, error.code(), error.what()));
    return;
  }
  send_or_leave(socket, std::move(*frame));
}

// Runs a group of small jobs, saying on the run board which one is running. Their results
// travel together in Batch frames (flushed by size, age, and at the end); a result too big for
// the pipe goes alone, in a segment, and so does one that carries descriptors. Grouped jobs
// carry none (the dispatcher sends those alone). Without a board slot, each job is answered on
// its own.
void run_group(int socket, ByteReader& group, std::uint64_t count, RunSlot* slot,
               std::uint64_t max_nbytes) {
  Bytes batch;
  std::size_t data = 0;  // results' own bytes in `batch`; the rest is framing
  Clock::time_point oldest;
  TransportCounters unused;
  const auto flush = [&] {
    if (batch.empty()) return;
    const auto envelope = static_cast<std::uint32_t>(batch.size() - data);
    send_or_leave(socket, OutFrame::make(FrameKind::Batch, 0, std::move(batch), ~std::uint64_t{0},
                                         unused, envelope));
    batch = Bytes();
    data = 0;
  };
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t id = group.u64();
    const std::uint64_t size = group.u64();
    const std::byte* at = group.take(size);
    if (slot == nullptr) {
      send_reply(socket, id, run_one({at, size}, MessageFds()), max_nbytes);
      continue;
    }
    Reply reply = run_marked(*slot, id, {at, size}, MessageFds());
    if (reply.kind == FrameKind::Result &&
        (reply.payload.size() - kRunTimeBytes > max_nbytes || !reply.fds.empty())) {
      flush();
      send_reply(socket, id, std::move(reply), max_nbytes);
      continue;
    }
    if (batch.empty()) oldest = Clock::now();
    if (reply.kind == FrameKind::Result) data += reply.payload.size() - kRunTimeBytes;
    append_subframe(batch, reply.kind, id, reply.code,
                    {reply.payload.data(), reply.payload.size()});
    if (batch.size() >= kReplyBatchBytes || Clock::now() - oldest >= kReplyBatchAge) flush();
  }
  flush();
}

// The loop of a worker process: runs the initializer, then each batch it receives.
void worker_main(int socket, const CoreOptions& options, int threads, RunBoard* board) {
  prepare_worker(threads);
  RunSlot* slot = board->claim(getpid());
  TransportCounters unused;
  if (options.initializer) {
    try {
      options.initializer();
    } catch (...) {
      ErrorCode code = ErrorCode::TaskFailed;
      std::string message;
      current_failure(&code, &message);
      OutFrame frame = OutFrame::failure(kInitFailedTask, code, message);
      try {
        frame.send_some(socket, /*dont_wait=*/false);
      } catch (...) {
      }
      exit_worker(kExitInitFailed);
    }
  }
  FrameReader reader(options.max_nbytes);
  for (;;) {
    std::optional<InMessage> message;
    try {
      message = reader.receive(socket, /*dont_wait=*/false, unused);
    } catch (const PeerGone&) {
      exit_worker(0);  // the pool closed our socket: retired or shut down
    }
    if (!message) exit_worker(kExitProtocol);
    const ByteView payload = message->payload();
    if (message->header.kind == FrameKind::Task) {
      const std::uint64_t id = message->header.task;
      Reply reply = slot != nullptr ? run_marked(*slot, id, payload, message->fds)
                                    : run_one(payload, message->fds);
      send_reply(socket, id, std::move(reply), options.max_nbytes);
    } else if (message->header.kind == FrameKind::Group) {
      ByteReader group(payload);
      const std::uint64_t count = group.u64();
      run_group(socket, group, count, slot, options.max_nbytes);
    } else {
      exit_worker(kExitProtocol);
    }
  }
}

struct ProcessJob {
  std::uint64_t id = 0;
  BatchRequest request;
  bool abandoned = false;  // already failed (cancelled while queued at a worker): drop its result
  bool payload_sent = false;  // its bytes were moved into the frame: it cannot be sent again
  int skip_entry = -1;        // its entry in its worker's RunSlot::skip, while marked not to run
};

struct Worker {
  explicit Worker(std::uint64_t max_nbytes) : reader(max_nbytes) {}
  int index = 0;
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd socket;
  FrameReader reader;  // what a worker sends inline is bounded by max_nbytes
  std::deque<OutFrame> outbox;
  std::deque<std::unique_ptr<ProcessJob>> in_flight;
  Clock::time_point front_since;  // when the front batch started running
  std::size_t items_assigned = 0;
  bool finished_one = false;
  double last_seconds = 1;  // run time of its last batch
  std::size_t depth() const {
    return last_seconds < kQueueDepthTinySeconds ? kQueueDepthTiny : kQueueDepth;
  }
};

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g s", seconds);
  return text;
}

// "worker 1 (pid 1234)".
std::string worker_name(const Worker& worker) {
  return "worker " + std::to_string(worker.index) + " (pid " + std::to_string(worker.pid) + ")";
}

std::string task_range(const BatchRequest& request) {
  return detail::task_range(request.first_task, request.n_items);
}

class ProcessPool final : public PoolCore {
 public:
  explicit ProcessPool(const CoreOptions& options) : options_(options) {
    wake_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_) throw_errno("eventfd for the pool's dispatcher");
    const int threads = std::max(options_.cpus / options_.n_jobs, 1);
    const CoreOptions* opts = &options_;  // stable: the pool outlives its server
    RunBoard* board = &board_;
    auto body = [opts, threads, board](int socket) { worker_main(socket, *opts, threads, board); };
    // One call: workers forked straight from the caller, one fork each (its fixed cost).
    server_ = options_.one_call ? ForkServer::start_direct(body, options_.fork_hooks)
                                : ForkServer::start(body, options_.fork_hooks);
    // Taken just after the fork: what was mapped between the two counts as inherited, so the
    // check errs on the side of letting a pointer through, never of refusing a good one.
    // A one-call core ships no callables' bytes (run_tasks names its TaskSet by address): reading
    // /proc/self/maps would only add to its fixed cost.
    if (!options_.one_call) image_ = ForkImage::take();
    for (int i = 0; i < options_.n_jobs; ++i) add_worker();
    // A one-call core's only caller waits for its results anyway: it runs the loop itself
    // (dispatch()), which spares two thread hand-offs per result on a busy machine.
    if (options_.one_call) return;
    thread_ = std::thread([this] {
      // Whatever ends the loop, no cancel() waits for it any longer.
      struct Done {
        ProcessPool* pool;
        ~Done() {
          {
            std::lock_guard lock(pool->mutex_);
            pool->dispatcher_done_ = true;
          }
          pool->cancel_cv_.notify_all();
        }
      } done{this};
      while (step(-1)) {
      }
      shut_down();
    });
  }

  ~ProcessPool() override {
    if (options_.one_call) {
      if (!shut_) shut_down();
      return;
    }
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake();
    if (thread_.joinable()) thread_.join();
  }

  bool dispatch(std::chrono::milliseconds wait) override {
    if (!options_.one_call) return false;
    if (shut_) return true;
    if (!step(static_cast<int>(wait.count()))) {
      shut_down();
      shut_ = true;
    }
    return true;
  }

  std::uint64_t submit(BatchRequest request) override {
    throw_if_interrupted();
    auto job = std::make_unique<ProcessJob>();
    std::uint64_t id;
    bool first = false;
    {
      std::lock_guard lock(mutex_);
      if (broken_) throw *broken_;
      id = job->id = ++last_id_;
      job->request = std::move(request);
      first = incoming_.empty();
      incoming_.push_back(std::move(job));
    }
    // The dispatcher drains incoming_ whole: one wake-up per burst of submissions is enough;
    // a one-call core's dispatcher is the caller itself.
    if (first && !options_.one_call) wake();
    return id;
  }

  CallStats traffic() const override {
    CallStats stats;
    stats.bytes_piped = counters_.bytes_piped;
    stats.bytes_shared = counters_.bytes_shared;
    stats.segments = counters_.segments;
    return stats;
  }

  std::uintptr_t late_pointer(ByteView callable) const override {
    if (options_.one_call) return 0;
    return image_.late_pointer(callable.data, callable.size);
  }

  // Returns once the dispatcher has applied the cancel (the job failed, marked not to run, or
  // its worker killed): fail fast throws right after cancelling the call's other tasks, and a
  // task the caller then lets proceed (a gate it opens, a file it removes) must not start on a
  // worker the mark has not reached yet. Not awaited on the dispatcher thread itself (a done
  // callback cancelling) nor once the dispatcher stopped.
  void cancel(std::uint64_t id, ErrorCode code, const std::string& why) override {
    if (options_.one_call) {  // the caller is the dispatcher
      if (!shut_) apply_cancel({id, code, why});
      return;
    }
    std::unique_lock lock(mutex_);
    cancels_.push_back({id, code, why});
    const std::uint64_t ticket = ++cancels_asked_;
    lock.unlock();
    wake();
    if (std::this_thread::get_id() == thread_.get_id()) return;
    lock.lock();
    cancel_cv_.wait(lock, [&] { return cancels_applied_ >= ticket || dispatcher_done_; });
  }

 private:
  struct CancelRequest {
    std::uint64_t id;
    ErrorCode code;
    std::string why;
  };

  void wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = write(wake_.get(), &one, sizeof one);
  }

  void add_worker() {
    SpawnedWorker spawned = server_.spawn();
    auto worker = std::make_unique<Worker>(options_.max_nbytes);
    worker->index = next_index_++;
    worker->pid = spawned.pid;
    worker->pidfd = std::move(spawned.pidfd);
    worker->socket = std::move(spawned.socket);
    workers_.push_back(std::move(worker));
  }

  static void finish(ProcessJob& job, BatchOutcome& outcome) {
    // The batch's descriptors close before its caller hears of the outcome (a caller that
    // counts its open files right after a call must not see ours).
    job.request.fds = MessageFds();
    if (job.abandoned || !job.request.on_done) return;
    auto on_done = std::move(job.request.on_done);
    job.request.on_done = nullptr;
    on_done(outcome);
  }

  static void fail(ProcessJob& job, ErrorCode code, const std::string& message) {
    BatchOutcome outcome;
    outcome.failed = true;
    outcome.code = code;
    outcome.message = message;
    finish(job, outcome);
  }

  // One round of the dispatcher: takes new jobs and cancels, assigns and sends, polls (up to
  // `wait_ms`, -1: until something happens or a deadline) and handles what arrived. False when
  // the pool must shut down.
  bool step(int wait_ms) {
    bool stop = false;
    std::vector<CancelRequest> cancels;
    {
      std::lock_guard lock(mutex_);
      stop = stop_;
      while (!incoming_.empty()) {
        pending_.push_back(std::move(incoming_.front()));
        incoming_.pop_front();
      }
      cancels.swap(cancels_);
    }
    if (stop) return false;
    for (auto& c : cancels) apply_cancel(c);
    if (!cancels.empty()) {
      {
        std::lock_guard lock(mutex_);
        cancels_applied_ += cancels.size();
      }
      cancel_cv_.notify_all();
    }
    retire_workers();
    replace_workers();  // before assigning: a cancel may have just killed a worker
    if (broken_copy_) {
      for (auto& job : pending_) fail(*job, broken_copy_->code(), broken_copy_->what());
      pending_.clear();
    }
    assign();
    for (auto& worker : workers_) flush(*worker);

    std::vector<pollfd>& fds = fds_;
    fds.clear();
    fds.push_back({wake_.get(), POLLIN, 0});
    fds.push_back({server_.control_fd(), POLLIN, 0});
    fds.push_back({interrupt_fd(), POLLIN, 0});
    for (auto& worker : workers_) {
      const short events = static_cast<short>(POLLIN | (worker->outbox.empty() ? 0 : POLLOUT));
      fds.push_back({worker->socket.get(), events, 0});
    }
    // Without a server's exit reports, a worker's pidfd says it ended (a process it forked
    // may hold its socket open).
    const std::size_t n_polled = workers_.size();
    if (options_.one_call) {
      for (auto& worker : workers_) fds.push_back({worker->pidfd.get(), POLLIN, 0});
    }
    int timeout = poll_timeout_ms();
    if (wait_ms >= 0 && (timeout < 0 || wait_ms < timeout)) timeout = wait_ms;
    const int rc = poll(fds.data(), fds.size(), timeout);
    if (rc < 0 && errno != EINTR) return false;  // cannot happen with valid descriptors
    if (fds[0].revents != 0) {
      std::uint64_t count;
      [[maybe_unused]] const ssize_t n = read(wake_.get(), &count, sizeof count);
    }
    if (fds[2].revents != 0 || interrupted()) {
      on_interrupt();
      return true;
    }
    if (fds[1].revents != 0) {
      try {
        server_.collect_exits();
      } catch (const Error& error) {
        break_pool(error);
        return true;
      }
    }
    // Service by index: losing a worker reorders workers_.
    std::vector<Worker*> ready;
    std::vector<Worker*> ended;
    for (std::size_t i = 0; i < n_polled; ++i) {
      if (fds[3 + i].revents != 0) ready.push_back(workers_[i].get());
      if (options_.one_call && fds[3 + n_polled + i].revents != 0) {
        ended.push_back(workers_[i].get());
      }
    }
    for (Worker* worker : ready) {
      // An earlier worker's failure may have broken the pool and dropped this one.
      const bool alive = std::any_of(workers_.begin(), workers_.end(),
                                     [worker](const auto& w) { return w.get() == worker; });
      if (alive) service(*worker);
    }
    // A worker the server saw exit while its socket stays open (a process it forked holds
    // the socket) is lost all the same.
    for (std::size_t i = 0; i < workers_.size();) {
      Worker* worker = workers_[i].get();
      if (server_.exited(worker->pid) ||
          std::find(ended.begin(), ended.end(), worker) != ended.end()) {
        lose(*worker, ErrorCode::WorkerLost, "");
        continue;  // workers_[i] is now another worker
      }
      ++i;
    }
    check_deadlines();
    return true;
  }

  int poll_timeout_ms() const {
    std::optional<Clock::time_point> nearest;
    for (const auto& worker : workers_) {
      if (worker->in_flight.empty()) continue;
      const ProcessJob& job = *worker->in_flight.front();
      if (job.request.timeout <= 0) continue;
      const auto deadline =
          worker->front_since + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(job.request.timeout));
      if (!nearest || deadline < *nearest) nearest = deadline;
    }
    if (!nearest) return -1;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(*nearest - Clock::now()).count();
    return static_cast<int>(std::clamp<long long>(left + 1, 0, 60'000));
  }

  // True when the worker was given its maxtasksperchild share and takes no more tasks.
  bool spent(const Worker& worker) const {
    return options_.maxtasksperchild > 0 && worker.items_assigned >= options_.maxtasksperchild;
  }

  // Keeps up to depth() batches queued at each worker, least loaded first.
  void assign() {
    while (!pending_.empty()) {
      Worker* best = nullptr;
      for (auto& worker : workers_) {
        if (worker->in_flight.size() >= worker->depth()) continue;
        if (spent(*worker)) continue;
        if (best == nullptr || worker->in_flight.size() < best->in_flight.size()) {
          best = worker.get();
        }
      }
      if (best == nullptr) return;
      if (best->depth() == kQueueDepthTiny && pending_.size() > 1 &&
          pending_.front()->request.timeout <= 0) {
        assign_group(*best);
        continue;
      }
      std::unique_ptr<ProcessJob> job = std::move(pending_.front());
      pending_.pop_front();
      try {
        // A job queued behind another may have to be sent again elsewhere if that worker is
        // lost: keep its bytes. The front job is never re-sent (it fails with its worker).
        job->payload_sent = best->in_flight.empty();
        Bytes payload = job->payload_sent ? std::move(job->request.payload) : job->request.payload;
        best->outbox.push_back(OutFrame::make(FrameKind::Task, job->id, std::move(payload),
                                              options_.max_nbytes, counters_, job->request.envelope,
                                              job->request.fds));
      } catch (const Error& error) {
        fail(*job, error.code(), task_range(job->request) + ": " + error.what());
        continue;
      }
      if (best->in_flight.empty()) best->front_since = Clock::now();
      best->items_assigned += job->request.n_items;
      best->in_flight.push_back(std::move(job));
    }
  }

  // Packs small pending jobs without a timeout into one frame for `worker`: its fair share of
  // the queue, within its depth and kMaxGroup / kMaxGroupBytes. A job that carries descriptors
  // goes alone.
  void assign_group(Worker& worker) {
    const std::size_t share =
        std::max<std::size_t>(1, (pending_.size() + workers_.size() - 1) / workers_.size());
    const std::size_t room = worker.depth() - worker.in_flight.size();
    const std::size_t limit = std::min({share, room, kMaxGroup});
    Bytes payload;
    ByteWriter w(payload);
    w.u64(0);  // count, patched below
    std::uint64_t count = 0;
    std::size_t data = 0;  // the jobs' own bytes in `payload`; the rest is framing
    // A group never takes a worker past maxtasksperchild (the worker then retires).
    while (count < limit && !pending_.empty() && pending_.front()->request.timeout <= 0 &&
           pending_.front()->request.fds.empty() &&
           payload.size() + pending_.front()->request.payload.size() <=
               std::min<std::uint64_t>(kMaxGroupBytes, options_.max_nbytes) &&
           !spent(worker)) {
      std::unique_ptr<ProcessJob> job = std::move(pending_.front());
      pending_.pop_front();
      const Bytes& batch = job->request.payload;
      w.u64(job->id);
      w.u64(batch.size());
      w.raw(batch.data(), batch.size());  // the job keeps its bytes: it may be re-sent
      data += batch.size() - job->request.envelope;
      if (worker.in_flight.empty()) worker.front_since = Clock::now();
      worker.items_assigned += job->request.n_items;
      worker.in_flight.push_back(std::move(job));
      ++count;
    }
    if (count == 0) {  // the first job alone is too big for a group: send it by itself
      std::unique_ptr<ProcessJob> job = std::move(pending_.front());
      pending_.pop_front();
      job->payload_sent = worker.in_flight.empty();
      payload = job->payload_sent ? std::move(job->request.payload) : job->request.payload;
      try {
        worker.outbox.push_back(OutFrame::make(FrameKind::Task, job->id, std::move(payload),
                                               options_.max_nbytes, counters_,
                                               job->request.envelope, job->request.fds));
      } catch (const Error& error) {
        fail(*job, error.code(), task_range(job->request) + ": " + error.what());
        return;
      }
      if (worker.in_flight.empty()) worker.front_since = Clock::now();
      worker.items_assigned += job->request.n_items;
      worker.in_flight.push_back(std::move(job));
      return;
    }
    std::memcpy(payload.data(), &count, sizeof count);
    const std::uint64_t first_id = worker.in_flight[worker.in_flight.size() - count]->id;
    const auto envelope = static_cast<std::uint32_t>(payload.size() - data);
    worker.outbox.push_back(OutFrame::make(FrameKind::Group, first_id, std::move(payload),
                                           options_.max_nbytes, counters_, envelope));
  }

  void flush(Worker& worker) {
    try {
      while (!worker.outbox.empty() &&
             worker.outbox.front().send_some(worker.socket.get(), /*dont_wait=*/true)) {
        worker.outbox.pop_front();
      }
    } catch (const PeerGone&) {
      // Seen as EOF on the next poll.
    } catch (const Error&) {
    }
  }

  void service(Worker& worker) {
    try {
      while (auto message = worker.reader.receive(worker.socket.get(), true, counters_)) {
        if (!handle(worker, *message)) return;
      }
      flush(worker);
    } catch (const PeerGone&) {
      lose(worker, ErrorCode::WorkerLost, "");
    } catch (const Error& error) {
      lose(worker, ErrorCode::Internal, error.what());
    }
  }

  // False when the worker is gone (its entry destroyed).
  bool handle(Worker& worker, const InMessage& message) {
    const FrameHeader& header = message.header;
    if (header.kind == FrameKind::Failure && header.task == kInitFailedTask) {
      const ByteView text = message.payload();
      break_pool(Error(ErrorCode::TaskFailed,
                       "the pool's initializer failed in worker " + std::to_string(worker.index) +
                           ": " +
                           std::string(reinterpret_cast<const char*>(text.data), text.size)));
      return false;
    }
    if (header.kind != FrameKind::Batch) {
      return handle_reply(worker, header, message.payload(), message.fds);
    }
    std::vector<SubFrame> replies;
    try {
      replies = split_batch(message.payload());
    } catch (const Error& error) {
      lose(worker, ErrorCode::Internal, error.what());
      return false;
    }
    for (const SubFrame& reply : replies) {
      if (!handle_reply(worker, reply.header, reply.payload, MessageFds())) return false;
    }
    return true;
  }

  // One job's Result or Failure. False when the worker is gone.
  bool handle_reply(Worker& worker, const FrameHeader& header, ByteView payload,
                    const MessageFds& fds) {
    if (take_reply(worker, header, payload, fds)) return true;
    lose(worker, ErrorCode::Internal,
         "worker answered for a batch it was not running (a bug in mmcompute)");
    return false;
  }

  // Completes the front job with a reply; false (nothing done) when the reply is not the
  // front job's.
  bool take_reply(Worker& worker, const FrameHeader& header, ByteView payload,
                  const MessageFds& fds) {
    if ((header.kind != FrameKind::Result && header.kind != FrameKind::Failure) ||
        worker.in_flight.empty() || worker.in_flight.front()->id != header.task) {
      return false;
    }
    std::unique_ptr<ProcessJob> job = std::move(worker.in_flight.front());
    worker.in_flight.pop_front();
    if (job->skip_entry >= 0) {
      if (RunSlot* slot = board_.find(worker.pid)) slot->clear_skip(job->skip_entry);
    }
    worker.front_since = Clock::now();
    worker.finished_one = true;
    early_deaths_ = 0;
    BatchOutcome outcome;
    if (header.kind == FrameKind::Failure) {
      outcome.failed = true;
      outcome.code = header.code <= static_cast<std::uint32_t>(ErrorCode::Internal)
                         ? static_cast<ErrorCode>(header.code)
                         : ErrorCode::Internal;
      outcome.message = task_range(job->request) + ": " +
                        std::string(reinterpret_cast<const char*>(payload.data), payload.size);
    } else if (payload.size >= sizeof(std::uint64_t)) {
      const std::size_t size = payload.size - sizeof(std::uint64_t);
      std::uint64_t ns;
      std::memcpy(&ns, payload.data + size, sizeof ns);
      outcome.seconds = static_cast<double>(ns) * 1e-9;
      worker.last_seconds = outcome.seconds;
      outcome.results.assign(payload.data, payload.data + size);
      outcome.fds = fds;
    }
    finish(*job, outcome);
    return true;
  }

  void apply_cancel(const CancelRequest& c) {
    for (auto it = pending_.begin(); it != pending_.end(); ++it) {
      if ((*it)->id == c.id) {
        fail(**it, c.code, task_range((*it)->request) + ": " + c.why);
        pending_.erase(it);
        return;
      }
    }
    for (auto& worker : workers_) {
      for (std::size_t i = 0; i < worker->in_flight.size(); ++i) {
        ProcessJob& job = *worker->in_flight[i];
        if (job.id != c.id || job.abandoned) continue;
        // Mark it first, then look where the worker stands (see RunSlot): a job seen as not
        // started is then never started.
        RunSlot* slot = board_.find(worker->pid);
        if (slot != nullptr && job.skip_entry < 0) job.skip_entry = slot->mark_skip(job.id);
        const Progress progress = progress_of(*worker);
        if (progress.known && i < progress.finished) return;  // done: its result is coming
        const bool running =
            progress.known ? progress.running == static_cast<std::ptrdiff_t>(i) : i == 0;
        if (running) {
          lose(*worker, c.code, c.why, c.id);
        } else {
          // Marked: the worker answers it without running it. (Unmarked, past the board's
          // 256 workers, it still runs and its result is dropped.)
          fail(job, c.code, task_range(job.request) + ": " + c.why);
          job.abandoned = true;
        }
        return;
      }
    }
  }

  void check_deadlines() {
    const auto now = Clock::now();
    for (std::size_t i = 0; i < workers_.size();) {
      Worker& worker = *workers_[i];
      if (!worker.in_flight.empty()) {
        const ProcessJob& job = *worker.in_flight.front();
        const double timeout = job.request.timeout;
        if (timeout > 0 && now - worker.front_since >= std::chrono::duration<double>(timeout)) {
          lose(worker, ErrorCode::Timeout, "passed its timeout of " + seconds_text(timeout),
               job.id);
          continue;  // workers_[i] is now another worker
        }
      }
      ++i;
    }
  }

  // Where a worker stands in its queue, from the run board: the index in in_flight of the job
  // it is running (-1: none), and how many jobs at the front have finished (their results may
  // still be on their way). Unknown for a worker without a board slot.
  struct Progress {
    bool known = false;
    std::ptrdiff_t running = -1;
    std::size_t finished = 0;
  };

  Progress progress_of(const Worker& worker) const {
    Progress progress;
    const RunSlot* slot = board_.find(worker.pid);
    if (slot == nullptr) return progress;
    progress.known = true;
    // Sequentially consistent, after any mark_skip: see RunSlot.
    const std::uint64_t running = slot->running.load();
    const std::uint64_t finished = slot->finished.load();
    for (std::size_t i = 0; i < worker.in_flight.size(); ++i) {
      const std::uint64_t id = worker.in_flight[i]->id;
      if (id == finished) progress.finished = i + 1;
      if (running != 0 && id == running) progress.running = static_cast<std::ptrdiff_t>(i);
    }
    if (progress.running >= 0 && static_cast<std::size_t>(progress.running) < progress.finished) {
      progress.running = -1;
    }
    return progress;
  }

  // After a worker ended: completes the jobs whose results it sent before dying.
  void drain(Worker& worker) {
    try {
      while (auto message = worker.reader.receive(worker.socket.get(), true, counters_)) {
        if (message->header.kind != FrameKind::Batch) {
          if (!take_reply(worker, message->header, message->payload(), message->fds)) return;
          continue;
        }
        for (const SubFrame& reply : split_batch(message->payload())) {
          if (!take_reply(worker, reply.header, reply.payload, MessageFds())) return;
        }
      }
    } catch (...) {
      // EOF, a frame cut short by the death, or garbage: what arrived whole was taken.
    }
  }

  // A worker died, timed out, or must be stopped: kill it, take the results it had sent, fail
  // the job it was running (or `target`, the job it is stopped for), run the other jobs queued
  // at it elsewhere, in their order, and drop it (replace_workers starts another). Jobs it had
  // finished whose results were still in its batch run again: results come from one run.
  void lose(Worker& worker, ErrorCode code, const std::string& why, std::uint64_t target = 0) {
    if (worker.pidfd) {
      syscall(SYS_pidfd_send_signal, worker.pidfd.get(), SIGKILL, nullptr, 0);
    } else {
      kill(worker.pid, SIGKILL);
    }
    std::optional<ExitInfo> info;
    try {
      info = server_.exit_of(worker.pid, std::chrono::milliseconds(3000));
    } catch (const Error&) {
    }
    drain(worker);
    const Progress progress = progress_of(worker);
    board_.release(worker.pid);
    const std::string who = worker_name(worker);
    std::ptrdiff_t culprit = -1;
    if (target != 0) {
      for (std::size_t i = 0; i < worker.in_flight.size(); ++i) {
        if (worker.in_flight[i]->id == target) culprit = static_cast<std::ptrdiff_t>(i);
      }
    } else if (progress.running >= 0) {
      culprit = progress.running;
    } else if (progress.finished < worker.in_flight.size()) {
      culprit = static_cast<std::ptrdiff_t>(progress.finished);  // the next one to run
    }
    if (culprit >= 0) {
      ProcessJob& job = *worker.in_flight[static_cast<std::size_t>(culprit)];
      std::string text;
      if (code == ErrorCode::WorkerLost) {
        text = who + " " + (info ? describe(*info) : std::string("ended")) + " while running " +
               task_range(job.request);
        if (info && info->known) {
          text += " (peak RSS " + std::to_string(info->max_rss_kib / 1024) + " MiB)";
        }
        if (info && info->signaled && info->signal == SIGKILL) {
          text += "; SIGKILL often comes from the out-of-memory killer: check dmesg";
        }
        text += "; the worker was replaced";
      } else {
        text = task_range(job.request) + ": " + why + "; " + who + " was killed and replaced";
      }
      fail(job, code, text);
      job.abandoned = true;
    }
    // The others never started, or finished without their results arriving: run them again
    // elsewhere, in their order.
    for (std::size_t i = worker.in_flight.size(); i-- > 0;) {
      ProcessJob& job = *worker.in_flight[i];
      if (job.abandoned) continue;
      if (job.payload_sent) {  // finished, but its answer died with the worker
        fail(job, ErrorCode::WorkerLost,
             who + " ended before the result of " + task_range(job.request) + " arrived");
        continue;
      }
      job.skip_entry = -1;  // its mark (if a cancel came too late) died with the worker's slot
      pending_.push_front(std::move(worker.in_flight[i]));
    }
    if (!worker.finished_one && code == ErrorCode::WorkerLost) ++early_deaths_;
    const auto it = std::find_if(workers_.begin(), workers_.end(),
                                 [&](const auto& w) { return w.get() == &worker; });
    workers_.erase(it);
    if (early_deaths_ >= kMaxEarlyDeaths && !broken_copy_) {
      break_pool(Error(ErrorCode::WorkerLost,
                       std::to_string(early_deaths_) +
                           " workers in a row died before finishing a batch; last: " + who + " " +
                           (info ? describe(*info) : std::string("ended"))));
    }
  }

  // maxtasksperchild: a worker that had its share and is idle is let go (it exits on EOF).
  void retire_workers() {
    if (options_.maxtasksperchild == 0) return;
    for (std::size_t i = 0; i < workers_.size();) {
      Worker& worker = *workers_[i];
      if (spent(worker) && worker.in_flight.empty() && worker.outbox.empty()) {
        server_.forget(worker.pid);
        board_.release(worker.pid);
        workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
      ++i;
    }
  }

  void replace_workers() {
    // A one-call core never forks from its dispatcher thread: a lost worker fails the call.
    if (broken_copy_ || options_.one_call) return;
    while (static_cast<int>(workers_.size()) < options_.n_jobs) {
      try {
        add_worker();
      } catch (const Error& error) {
        break_pool(error);
        return;
      }
    }
  }

  void break_pool(const Error& error) {
    {
      std::lock_guard lock(mutex_);
      if (!broken_) broken_.emplace(error);
    }
    if (!broken_copy_) broken_copy_.emplace(error);
    for (auto& worker : workers_) {
      for (auto& job : worker->in_flight) fail(*job, error.code(), error.what());
      if (worker->pidfd) syscall(SYS_pidfd_send_signal, worker->pidfd.get(), SIGKILL, nullptr, 0);
      server_.forget(worker->pid);
      board_.release(worker->pid);
    }
    workers_.clear();
    for (auto& job : pending_) fail(*job, error.code(), error.what());
    pending_.clear();
  }

  void on_interrupt() {
    try {
      throw_if_interrupted();
    } catch (const Error& error) {
      break_pool(error);
      return;
    }
    // A byte on the self-pipe without the flag cannot happen; treat as an interrupt anyway.
    break_pool(Error(ErrorCode::Cancelled, "interrupted"));
  }

  // At destruction, before the worker is killed: marks its queued jobs not to run, so the
  // worker stops at the job it is running (past the board's 256 workers, it runs on).
  void mark_all(Worker& worker) {
    RunSlot* slot = board_.find(worker.pid);
    if (slot == nullptr) return;
    for (auto& job : worker.in_flight) {
      if (job->skip_entry < 0 && !job->abandoned) job->skip_entry = slot->mark_skip(job->id);
    }
  }

  // At destruction, once the worker is dead: fails (and abandons, so its answer is dropped)
  // each job it skipped.
  void fail_skipped(Worker& worker, const Error& destroyed) {
    const RunSlot* slot = board_.find(worker.pid);
    if (slot == nullptr) return;
    for (auto& job : worker.in_flight) {
      if (job->skip_entry < 0 || !slot->skipped(job->skip_entry, job->id)) continue;
      fail(*job, destroyed.code(), destroyed.what());
      job->abandoned = true;
    }
  }

  void shut_down() {
    std::deque<std::unique_ptr<ProcessJob>> incoming;
    {
      std::lock_guard lock(mutex_);
      incoming.swap(incoming_);
      if (!broken_) broken_.emplace(ErrorCode::Cancelled, "the pool was destroyed");
    }
    const Error destroyed(ErrorCode::Cancelled, "the pool was destroyed before the task ran");
    for (auto& job : incoming) fail(*job, destroyed.code(), destroyed.what());
    for (auto& job : pending_) fail(*job, destroyed.code(), destroyed.what());
    pending_.clear();
    // Mark every job queued at a worker not to run, kill the workers, and only once each is
    // dead read where it stopped: the board then tells the job running, the jobs finished and
    // the jobs skipped or never started apart exactly.
    for (auto& worker : workers_) {
      drain(*worker);  // results that arrived are delivered
      mark_all(*worker);
      if (worker->pidfd) {
        syscall(SYS_pidfd_send_signal, worker->pidfd.get(), SIGKILL, nullptr, 0);
      } else {
        kill(worker->pid, SIGKILL);
      }
    }
    for (auto& worker : workers_) {
      // An idle worker has nothing to tell apart: the server kills and reaps it at stop().
      if (worker->in_flight.empty()) continue;
      try {
        server_.exit_of(worker->pid, std::chrono::milliseconds(3000));
      } catch (const Error&) {
        // The server is gone, and the worker with it (PR_SET_PDEATHSIG).
      }
      fail_skipped(*worker, destroyed);
      drain(*worker);  // results sent before the kill are delivered too
      Progress progress = progress_of(*worker);
      // Dead without a slot while every claim succeeded: it died before reading a task.
      if (!progress.known && board_.every_claim_succeeded()) progress.known = true;
      const std::ptrdiff_t running =
          progress.known ? progress.running : (worker->in_flight.empty() ? -1 : 0);
      for (std::size_t i = 0; i < worker->in_flight.size(); ++i) {
        ProcessJob& job = *worker->in_flight[i];
        if (progress.known && i < progress.finished) {
          fail(job, ErrorCode::Cancelled,
               task_range(job.request) + ": finished, but the pool was destroyed before its " +
                   "result arrived; " + worker_name(*worker) + " was killed");
        } else if (static_cast<std::ptrdiff_t>(i) == running) {
          fail(job, ErrorCode::Cancelled,
               task_range(job.request) + ": cancelled while running: the pool was destroyed; " +
                   worker_name(*worker) + " was killed");
        } else {
          fail(job, destroyed.code(), destroyed.what());
        }
      }
    }
    workers_.clear();
    server_.stop();  // the server SIGKILLs and reaps what is left, then exits; we reap it
  }

  CoreOptions options_;
  RunBoard board_;  // before server_: mapped before anything forks
  ForkServer server_;
  ForkImage image_;  // what the server (and so every worker) inherited; immutable once made
  UniqueFd wake_;
  std::thread thread_;

  std::mutex mutex_;  // guards the members below, up to the dispatcher's own
  std::deque<std::unique_ptr<ProcessJob>> incoming_;
  std::vector<CancelRequest> cancels_;
  std::optional<Error> broken_;
  std::uint64_t last_id_ = 0;
  bool stop_ = false;
  std::condition_variable cancel_cv_;  // cancels_applied_ grew, or the dispatcher ended
  std::uint64_t cancels_asked_ = 0;
  std::uint64_t cancels_applied_ = 0;
  bool dispatcher_done_ = false;

  // The dispatcher thread's own.
  std::deque<std::unique_ptr<ProcessJob>> pending_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<pollfd> fds_;
  bool shut_ = false;  // a one-call core: shut_down() ran
  std::optional<Error> broken_copy_;
  TransportCounters counters_;
  int next_index_ = 0;
  int early_deaths_ = 0;
};

}  // namespace

std::shared_ptr<PoolCore> make_process_core(const CoreOptions& options) {
  return std::make_shared<ProcessPool>(options);
}

}  // namespace mmc::detail
