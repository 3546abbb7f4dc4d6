// The fork server: a SOCK_SEQPACKET control socket carries spawn requests one way and
// "spawned" (with the worker's socket, SCM_RIGHTS) and "exited" reports the other; SIGCHLD
// arrives through a signalfd so one poll loop serves both.
#include "pool/fork_server.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "mmc/error.hpp"
#include "os/fd_passing.hpp"

namespace mmc::detail {
namespace {

enum class Kind : std::uint32_t { Spawn = 1, Spawned = 2, Exited = 3 };

struct Message {
  Kind kind = Kind::Spawn;
  std::int32_t pid = 0;
  std::int32_t signaled = 0;
  std::int32_t signal = 0;
  std::int32_t status = 0;
  std::int32_t reserved = 0;
  std::int64_t max_rss_kib = 0;
};

constexpr int kControlFd = 3;  // where the server keeps its control socket

// Sends one message, with `fd` attached when >= 0. Returns false when the peer is gone.
bool send_message(int socket, const Message& message, int fd) {
  iovec iov{const_cast<Message*>(&message), sizeof message};
  return send_with_fd(socket, &iov, 1, fd, false) == static_cast<ssize_t>(sizeof message);
}

// Receives one message (and its descriptor, if any). 0: peer gone; -1: EAGAIN; 1: got one.
int receive_message(int socket, bool wait, Message* message, UniqueFd* fd) {
  const Received got = receive_with_fd(socket, message, sizeof *message, !wait, *fd);
  if (got.bytes < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -1;
  return got.bytes == static_cast<ssize_t>(sizeof *message) ? 1 : 0;
}

// Reaps every ended child and reports it. Returns false when the parent is gone.
bool reap_children(int control, std::set<pid_t>& children) {
  for (;;) {
    ExitInfo info;
    const pid_t pid = reap_any_ended(&info);
    if (pid <= 0) return true;
    children.erase(pid);
    Message report;
    report.kind = Kind::Exited;
    report.pid = pid;
    report.max_rss_kib = info.max_rss_kib;
    report.signaled = info.signaled ? 1 : 0;
    report.signal = info.signal;
    report.status = info.status;
    if (!send_message(control, report, -1)) return false;
  }
}

// Runs in the server, whose SIGINT/SIGTERM are ignored (start() sets that up).
[[noreturn]] void server_main(int control_in, const std::function<void(int)>& worker_body,
                              const ForkHooks& hooks) {
  // Keep stdio and the control socket only: a descriptor of the caller's (another pool's
  // socket, a pipe) held here would keep its peer from ever seeing EOF.
  if (dup2(control_in, kControlFd) < 0) _exit(80);
  syscall(SYS_close_range, kControlFd + 1, ~0U, 0);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  const int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sigfd < 0) _exit(81);
  ChildSetup setup = pool_child_setup(/*tied=*/true, hooks);
  setup.default_signals = {SIGCHLD};  // blocked here for the signalfd
  std::set<pid_t> children;
  bool running = true;
  while (running) {
    pollfd fds[2] = {{kControlFd, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) {
      signalfd_siginfo info;
      while (read(sigfd, &info, sizeof info) > 0) {
      }
      if (!reap_children(kControlFd, children)) break;
    }
    if (fds[0].revents == 0) continue;
    Message request;
    UniqueFd unused;
    const int rc = receive_message(kControlFd, false, &request, &unused);
    if (rc == -1) continue;
    if (rc == 0 || request.kind != Kind::Spawn) break;  // the pool is gone
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) break;
    const pid_t pid = fork_child(setup, [&] {
      close(pair[0]);
      close(sigfd);
      close(kControlFd);
      worker_body(pair[1]);
    });
    close(pair[1]);
    Message reply;
    reply.kind = Kind::Spawned;
    reply.pid = pid;
    const bool sent = pid > 0 && send_message(kControlFd, reply, pair[0]);
    close(pair[0]);
    if (pid > 0) children.insert(pid);
    if (!sent) running = false;
  }
  for (const pid_t pid : children) kill(pid, SIGKILL);
  for (const pid_t pid : children) wait_child(pid);
  _exit(0);
}

}  // namespace

ForkServer ForkServer::start(std::function<void(int socket)> worker_body, const ForkHooks& hooks) {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw_errno("socketpair for the pool's fork server");
  }
  UniqueFd parent_end(pair[0]);
  UniqueFd child_end(pair[1]);
  ForkServer server;
  ChildSetup setup = pool_child_setup(/*tied=*/false, hooks);
  setup.ignored_signals = {SIGINT, SIGTERM};
  server.process_ = start_child(setup, [&] {
    parent_end.reset();
    server_main(child_end.get(), worker_body, hooks);
  });
  server.control_ = std::move(parent_end);
  return server;
}

ForkServer ForkServer::start_direct(std::function<void(int socket)> worker_body,
                                    const ForkHooks& hooks) {
  ForkServer server;
  server.direct_ = true;
  server.worker_body_ = std::move(worker_body);
  server.hooks_ = hooks;
  return server;
}

SpawnedWorker ForkServer::spawn_direct() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    throw_errno("socketpair for a worker");
  }
  UniqueFd parent_end(pair[0]);
  UniqueFd child_end(pair[1]);
  ChildProcess process = start_child(pool_child_setup(/*tied=*/true, hooks_), [&] {
    // The earlier workers' sockets would keep them from seeing the caller close its end.
    for (const int fd : parent_ends_) close(fd);
    parent_end.reset();
    worker_body_(child_end.get());
  });
  SpawnedWorker worker;
  worker.pid = process.pid();
  worker.socket = std::move(parent_end);
  worker.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, worker.pid, 0)));
  parent_ends_.push_back(worker.socket.get());
  children_.emplace(worker.pid, std::move(process));
  return worker;
}

bool ForkServer::read_one(bool wait, std::optional<SpawnedWorker>* spawned) {
  Message message;
  UniqueFd fd;
  const int rc = receive_message(control_.get(), wait, &message, &fd);
  if (rc < 0) return false;
  if (rc == 0) throw_error(ErrorCode::WorkerLost, "the pool's fork server is gone");
  if (message.kind == Kind::Exited) {
    if (ignored_.erase(message.pid) == 0) {
      ExitInfo info;
      info.known = true;
      info.signaled = message.signaled != 0;
      info.signal = message.signal;
      info.status = message.status;
      info.max_rss_kib = message.max_rss_kib;
      exits_[message.pid] = info;
    }
  } else if (message.kind == Kind::Spawned && spawned != nullptr) {
    SpawnedWorker worker;
    worker.pid = message.pid;
    worker.socket = std::move(fd);
    worker.pidfd.reset(static_cast<int>(syscall(SYS_pidfd_open, message.pid, 0)));
    *spawned = std::move(worker);
  }
  return true;
}

SpawnedWorker ForkServer::spawn() {
  if (direct_) return spawn_direct();
  Message request;
  request.kind = Kind::Spawn;
  if (!control_ || !send_message(control_.get(), request, -1)) {
    throw_error(ErrorCode::Io, "the pool's fork server is gone: cannot start a worker");
  }
  std::optional<SpawnedWorker> spawned;
  while (!spawned) read_one(/*wait=*/true, &spawned);
  if (!spawned->socket) throw_error(ErrorCode::Io, "the fork server could not start a worker");
  return std::move(*spawned);
}

void ForkServer::collect_exits() {
  if (direct_) return;
  while (read_one(/*wait=*/false, nullptr)) {
  }
}

std::optional<ExitInfo> ForkServer::exit_of(pid_t pid, std::chrono::milliseconds wait) {
  if (direct_) {
    auto it = children_.find(pid);
    if (it == children_.end()) return std::nullopt;
    const ExitInfo info = it->second.reap(wait);
    children_.erase(it);
    return info;
  }
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    collect_exits();
    if (auto it = exits_.find(pid); it != exits_.end()) {
      ExitInfo info = it->second;
      exits_.erase(it);
      return info;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd pfd{control_.get(), POLLIN, 0};
    poll(&pfd, 1, static_cast<int>(left.count()));
  }
}

void ForkServer::stop() noexcept {
  children_.clear();  // direct: each is killed and reaped
  parent_ends_.clear();
  if (!control_ && process_.pid() <= 0) return;
  control_.reset();
  process_.reap(std::chrono::milliseconds(5000));
  exits_.clear();
  ignored_.clear();
}

}  // namespace mmc::detail
