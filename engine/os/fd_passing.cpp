// SCM_RIGHTS send and receive.
#include "os/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mmc::detail {
namespace {

// Room for a few more than a message may carry lets a misbehaving peer's extras be received
// (and closed) instead of leaking in flight.
constexpr std::size_t kMaxFdsPerRead = kMaxFdsPerMessage + 4;

}  // namespace

ssize_t send_with_fds(int socket, const iovec* iov, std::size_t iov_count, const int* fds,
                      std::size_t fd_count, bool dont_wait) noexcept {
  if (fd_count > kMaxFdsPerMessage) {
    errno = EINVAL;
    return -1;
  }
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iov_count;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage)];
  if (fd_count > 0) {
    const std::size_t bytes = sizeof(int) * fd_count;
    std::memset(control, 0, CMSG_SPACE(bytes));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(bytes);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(bytes);
    std::memcpy(CMSG_DATA(cmsg), fds, bytes);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

ssize_t send_with_fd(int socket, const iovec* iov, std::size_t iov_count, int fd,
                     bool dont_wait) noexcept {
  return send_with_fds(socket, iov, iov_count, &fd, fd >= 0 ? 1 : 0, dont_wait);
}

namespace {

// recvmsg with room for kMaxFdsPerRead descriptors; each one received is offered to `keep`,
// which takes it (true) or leaves it to be closed (false: reported in extra_fds).
template <class Keep>
Received receive_into(int socket, void* data, std::size_t size, bool dont_wait,
                      Keep keep) noexcept {
  for (;;) {
    iovec iov{data, size};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    Received got;
    got.bytes = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | (dont_wait ? MSG_DONTWAIT : 0));
    if (got.bytes < 0 && errno == EINTR) continue;
    if (got.bytes < 0) return got;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
        UniqueFd owned(received);
        if (!keep(owned)) got.extra_fds = true;
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) got.cut_off = true;
    return got;
  }
}

}  // namespace

Received receive_with_fds(int socket, void* data, std::size_t size, bool dont_wait,
                          std::vector<UniqueFd>& fds, std::size_t max_fds) noexcept {
  return receive_into(socket, data, size, dont_wait, [&](UniqueFd& owned) {
    if (fds.size() >= max_fds) return false;
    try {
      fds.push_back(std::move(owned));  // on bad_alloc `owned` is left to be closed
    } catch (...) {
      return false;
    }
    return true;
  });
}

Received receive_with_fd(int socket, void* data, std::size_t size, bool dont_wait,
                         UniqueFd& fd) noexcept {
  return receive_into(socket, data, size, dont_wait, [&](UniqueFd& owned) {
    if (fd) return false;
    fd = std::move(owned);
    return true;
  });
}

}  // namespace mmc::detail
