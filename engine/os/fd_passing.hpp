// Descriptor passing over a Unix socket (SCM_RIGHTS): the control-message setup written once,
// for the fork server's spawn replies and the transport's segment frames.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

#include "os/unique_fd.hpp"

namespace mmc::detail {

// sendmsg(2) of `iov` with `fd` attached when fd >= 0 (the peer gets its own copy; ours stays
// open). MSG_NOSIGNAL (a gone peer is EPIPE, not SIGPIPE); EINTR retried; MSG_DONTWAIT when
// `dont_wait`. Returns sendmsg's count (the descriptor travels with the first byte), or -1
// with errno set.
ssize_t send_with_fd(int socket, const iovec* iov, std::size_t iov_count, int fd,
                     bool dont_wait) noexcept;

struct Received {
  ssize_t bytes = 0;       // recvmsg's count: 0 at end of stream, -1 with errno set
  bool extra_fds = false;  // more than one descriptor came, or some were cut off (closed)
};

// recvmsg(2) into [data, data + size), EINTR retried, MSG_DONTWAIT when `dont_wait`. A
// descriptor that came along is owned at once (close-on-exec): the first goes into `fd` when
// it is empty; any other is closed and reported in extra_fds.
Received receive_with_fd(int socket, void* data, std::size_t size, bool dont_wait,
                         UniqueFd& fd) noexcept;

}  // namespace mmc::detail
