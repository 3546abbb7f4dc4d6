// SCM_RIGHTS send and receive.
#include "os/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace mmc::detail {
namespace {

// A frame carries one descriptor; room for a few more lets a misbehaving peer's extras be
// received (and closed) instead of leaking in flight.
constexpr std::size_t kMaxFdsPerRead = 4;

}  // namespace

ssize_t send_with_fd(int socket, const iovec* iov, std::size_t iov_count, int fd,
                     bool dont_wait) noexcept {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iov_count;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  for (;;) {
    const ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL | (dont_wait ? MSG_DONTWAIT : 0));
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

Received receive_with_fd(int socket, void* data, std::size_t size, bool dont_wait,
                         UniqueFd& fd) noexcept {
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
        if (fd) {
          got.extra_fds = true;
        } else {
          fd = std::move(owned);
        }
      }
    }
    if ((msg.msg_flags & MSG_CTRUNC) != 0) got.extra_fds = true;
    return got;
  }
}

}  // namespace mmc::detail
