// The process backend: workers forked once per call, each with a socketpair; the parent runs a
// poll loop over the sockets (nonblocking, so a big argument and a big result in opposite
// directions can never deadlock), the workers' pidfds and the interrupt self-pipe.
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/interrupt.hpp"
#include "os/unique_fd.hpp"
#include "pool/backends.hpp"
#include "pool/transport.hpp"
#include "pool/worker_process.hpp"

namespace mmc::detail {
namespace {

// Exit codes of a worker that stops on its own (anything else is the task's doing).
constexpr int kExitOrphaned = 71;
constexpr int kExitProtocol = 72;

// How long a worker whose socket closed may take to finish exiting before it is killed.
constexpr std::chrono::milliseconds kExitGrace{2000};

struct Worker {
  int index = 0;
  WorkerProcess process;
  UniqueFd socket;  // parent's end; destroyed before `process`, which kills and reaps
  FrameReader reader;
  std::deque<OutFrame> outbox;
  std::deque<std::size_t> in_flight;  // tasks sent, in the order the worker runs them
};

[[noreturn]] void worker_main(const Call& call, int socket, std::uint64_t max_nbytes, pid_t parent,
                              int threads) {
  // Die with the parent, and do not miss a parent that died before prctl took effect.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) exit_worker(kExitOrphaned);
  prepare_worker(threads);

  FrameReader reader;
  TransportCounters unused;  // the parent counts both directions
  for (;;) {
    std::optional<InMessage> message;
    try {
      message = reader.receive(socket, /*dont_wait=*/false, unused);
    } catch (const PeerGone&) {
      exit_worker(0);  // the parent closed our socket: the call is over
    }
    if (!message || message->header.kind != FrameKind::Task) exit_worker(kExitProtocol);
    const std::uint64_t task = message->header.task;
    OutFrame reply;
    try {
      Bytes out;
      call.run(task, message->payload(), out);
      message.reset();  // release the argument (and its mapping) before framing the result
      reply = OutFrame::make(FrameKind::Result, task, std::move(out), max_nbytes, unused);
    } catch (...) {
      const TaskFailure failure = current_task_failure();
      reply = OutFrame::failure(task, failure.code, failure.message);
    }
    flush_task_output();
    try {
      reply.send_some(socket, /*dont_wait=*/false);
    } catch (const PeerGone&) {
      exit_worker(0);
    }
  }
}

class ProcessCall {
 public:
  ProcessCall(const Call& call, int n_workers, std::uint64_t max_nbytes)
      : call_(call), max_nbytes_(max_nbytes) {
    const int threads = std::max(cpu_count() / n_workers, 1);
    const pid_t parent = getpid();
    workers_.reserve(static_cast<std::size_t>(n_workers));
    for (int i = 0; i < n_workers; ++i) {
      int pair[2];
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        raise_errno("socketpair for worker " + std::to_string(i));
      }
      UniqueFd parent_end(pair[0]);
      UniqueFd child_end(pair[1]);
      auto worker = std::make_unique<Worker>();
      worker->index = i;
      worker->process = WorkerProcess::start([&] {
        // Runs in the child: drop the parent's ends of the earlier workers and of our own pair.
        for (auto& other : workers_) {
          other->socket.reset();
          other->process.abandon_in_child();
        }
        parent_end.reset();
        worker_main(call_, child_end.get(), max_nbytes_, parent, threads);
      });
      worker->socket = std::move(parent_end);
      workers_.push_back(std::move(worker));
    }
  }

  // On failure: SIGKILL every worker first so they die together, then the members' destructors
  // close the sockets and reap them one by one.
  ~ProcessCall() {
    for (auto& worker : workers_) {
      if (worker->process.pid() > 0) kill(worker->process.pid(), SIGKILL);
    }
  }
  ProcessCall(const ProcessCall&) = delete;
  ProcessCall& operator=(const ProcessCall&) = delete;

  CallStats run() {
    for (auto& worker : workers_) dispatch(*worker);
    std::vector<pollfd> fds;
    while (done_ < call_.n_tasks) {
      throw_if_interrupted();
      fds.clear();
      for (auto& worker : workers_) {
        const short events = static_cast<short>(POLLIN | (worker->outbox.empty() ? 0 : POLLOUT));
        fds.push_back({worker->socket.get(), events, 0});
        fds.push_back({worker->process.pidfd(), POLLIN, 0});  // -1 is ignored by poll
      }
      fds.push_back({interrupt_fd(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        raise_errno("poll on worker sockets");
      }
      for (std::size_t i = 0; i < workers_.size(); ++i) {
        service(*workers_[i], fds[2 * i].revents, fds[2 * i + 1].revents);
      }
    }
    shut_down();
    CallStats stats;
    stats.tasks = done_;
    stats.workers = static_cast<int>(workers_.size());
    stats.bytes_piped = counters_.bytes_piped;
    stats.bytes_shared = counters_.bytes_shared;
    stats.segments = counters_.segments;
    return stats;
  }

 private:
  // Keeps kTasksInFlightPerWorker tasks queued at `worker`: whoever finishes takes the next.
  void dispatch(Worker& worker) {
    while (worker.in_flight.size() < kTasksInFlightPerWorker && next_ < call_.n_tasks) {
      Bytes arg = call_.make_arg ? call_.make_arg(next_) : Bytes();
      worker.outbox.push_back(
          OutFrame::make(FrameKind::Task, next_, std::move(arg), max_nbytes_, counters_));
      worker.in_flight.push_back(next_);
      ++next_;
    }
  }

  void service(Worker& worker, short socket_events, short pid_events) {
    try {
      if (socket_events != 0 || pid_events != 0) {
        // Read first: what a dying worker sent (a result, a task's error) comes before its death.
        while (auto message = worker.reader.receive(worker.socket.get(), true, counters_)) {
          handle(worker, *message);
        }
      }
      if (pid_events != 0) report_lost(worker);  // exited, though its socket is held elsewhere
      while (!worker.outbox.empty() && worker.outbox.front().send_some(worker.socket.get(), true)) {
        worker.outbox.pop_front();
      }
    } catch (const PeerGone&) {
      report_lost(worker);
    }
  }

  void handle(Worker& worker, const InMessage& message) {
    const FrameHeader& header = message.header;
    if (header.kind == FrameKind::Failure) {
      const ByteView text = message.payload();
      TaskFailure failure;
      failure.code = header.code <= static_cast<std::uint32_t>(ErrorCode::Internal)
                         ? static_cast<ErrorCode>(header.code)
                         : ErrorCode::Internal;
      failure.message.assign(reinterpret_cast<const char*>(text.data), text.size);
      raise_task_failure(header.task, failure);
    }
    if (header.kind != FrameKind::Result || worker.in_flight.empty() ||
        worker.in_flight.front() != header.task) {
      raise(ErrorCode::Internal, "worker " + std::to_string(worker.index) + " answered for task " +
                                     std::to_string(header.task) + ", which it was not running");
    }
    worker.in_flight.pop_front();
    if (call_.on_result) call_.on_result(header.task, message.payload());
    ++done_;
    if (call_.on_progress) call_.on_progress(done_, call_.n_tasks);
    dispatch(worker);
  }

  [[noreturn]] void report_lost(Worker& worker) {
    const pid_t pid = worker.process.pid();
    const ExitInfo info = worker.process.reap(kExitGrace);
    std::string text = "worker " + std::to_string(worker.index) + " (pid " + std::to_string(pid) +
                       ") " + describe(info);
    text += worker.in_flight.empty()
                ? " while idle"
                : " while running task " + std::to_string(worker.in_flight.front());
    if (info.known) text += " (peak RSS " + std::to_string(info.max_rss_kib / 1024) + " MiB)";
    if (info.signaled && info.signal == SIGKILL) {
      text += "; SIGKILL often comes from the out-of-memory killer: check dmesg";
    }
    raise(ErrorCode::WorkerLost, text);
  }

  // All results are in: closing the sockets tells the idle workers to _exit(0).
  void shut_down() {
    for (auto& worker : workers_) worker->socket.reset();
    for (auto& worker : workers_) worker->process.reap(kExitGrace);
  }

  const Call& call_;
  const std::uint64_t max_nbytes_;
  std::vector<std::unique_ptr<Worker>> workers_;  // on any exception: sockets closed, SIGKILL, reap
  TransportCounters counters_;
  std::size_t next_ = 0;
  std::size_t done_ = 0;
};

}  // namespace

CallStats run_processes(const Call& call, int n_workers, std::uint64_t max_nbytes) {
  const int n =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(n_workers), call.n_tasks));
  ProcessCall process_call(call, n, max_nbytes);
  return process_call.run();
}

}  // namespace mmc::detail
