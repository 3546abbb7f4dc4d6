// ForkServer: a small process forked when a persistent pool is created; it forks the pool's
// workers on request, so each starts from the same single-threaded image, and reports how each
// one ended.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "os/unique_fd.hpp"
#include "pool/worker_process.hpp"

namespace mmc::detail {

struct SpawnedWorker {
  pid_t pid = 0;
  UniqueFd socket;  // the parent's end of the worker's AF_UNIX stream socket
  UniqueFd pidfd;   // for signals that cannot hit a recycled pid; -1 on old kernels
};

// Move-only; not thread-safe (one dispatcher thread talks to it).
// The server keeps only its control socket open; it SIGKILLs and reaps every worker and exits
// when that socket closes (the pool was destroyed or the caller died). Workers have
// PR_SET_PDEATHSIG(SIGKILL) on the server, ignore SIGINT/SIGTERM, and get nothing of the
// parent's descriptors but their socket and stdio.
class ForkServer {
 public:
  // Forks the server. `worker_body(socket)` runs in each worker (a grandchild); it should not
  // return, and the worker _exits with 0 if it does. `hooks` run around the server's fork and
  // each worker's. Throws Error(Io).
  static ForkServer start(std::function<void(int socket)> worker_body, const ForkHooks& hooks);
  // No server: spawn() forks each worker straight from the caller (one fork per worker, not
  // two), and the workers keep the caller's descriptors. For a one-call core, whose workers
  // are all spawned at its construction on the caller's thread (PR_SET_PDEATHSIG ties them
  // to it). Exits are not reported (control_fd() is -1): watch the workers' pidfds.
  static ForkServer start_direct(std::function<void(int socket)> worker_body,
                                 const ForkHooks& hooks);

  ForkServer() = default;
  ForkServer(ForkServer&&) noexcept = default;
  ForkServer& operator=(ForkServer&&) noexcept = default;
  ~ForkServer() { stop(); }

  // Asks for one more worker and waits for it. Throws Error(Io) if the server is gone.
  SpawnedWorker spawn();
  // Readable when the server reported exits (or died).
  int control_fd() const noexcept { return control_.get(); }
  // Reads the exit reports available now (nonblocking).
  void collect_exits();
  // True when the server reported worker `pid`'s exit and nobody took the report yet.
  bool exited(pid_t pid) const { return exits_.count(pid) != 0; }
  // How worker `pid` ended, waiting up to `wait` for the report. Nothing if none came.
  std::optional<ExitInfo> exit_of(pid_t pid, std::chrono::milliseconds wait);
  // Forgets a worker's report (a retired worker nobody asks about).
  void forget(pid_t pid) {
    children_.erase(pid);
    exits_.erase(pid);
    ignored_.emplace(pid, true);
  }
  // Closes the control socket (the server kills its workers and exits) and reaps the server.
  void stop() noexcept;

 private:
  bool read_one(bool wait, std::optional<SpawnedWorker>* spawned);
  SpawnedWorker spawn_direct();

  bool direct_ = false;
  std::function<void(int socket)> worker_body_;       // direct: run in each worker
  ForkHooks hooks_;                                   // direct: around each worker's fork
  std::unordered_map<pid_t, ChildProcess> children_;  // direct: the workers
  std::vector<int> parent_ends_;  // direct: sockets handed out, closed in later workers

  ChildProcess process_;
  UniqueFd control_;
  std::unordered_map<pid_t, ExitInfo> exits_;
  std::unordered_map<pid_t, bool> ignored_;
};

}  // namespace mmc::detail
