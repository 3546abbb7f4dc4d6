// Descriptor passing over a Unix socket (SCM_RIGHTS): the control-message setup written once,
// for the fork server's spawn replies and the transport's frames.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <vector>

#include "os/unique_fd.hpp"

namespace mmc::detail {

// Descriptors one sendmsg may carry (the kernel's SCM_MAX_FD is 253).
inline constexpr std::size_t kMaxFdsPerMessage = 64;

// sendmsg(2) of `iov` with the `fd_count` descriptors of `fds` attached (the peer gets its own
// copies; ours stay open). MSG_NOSIGNAL (a gone peer is EPIPE, not SIGPIPE); EINTR retried;
// MSG_DONTWAIT when `dont_wait`. Returns sendmsg's count (the descriptors travel with the
// first byte), or -1 with errno set (EINVAL when fd_count > kMaxFdsPerMessage).
ssize_t send_with_fds(int socket, const iovec* iov, std::size_t iov_count, const int* fds,
                      std::size_t fd_count, bool dont_wait) noexcept;
// The same with one descriptor, attached when fd >= 0.
ssize_t send_with_fd(int socket, const iovec* iov, std::size_t iov_count, int fd,
                     bool dont_wait) noexcept;

struct Received {
  ssize_t bytes = 0;       // recvmsg's count: 0 at end of stream, -1 with errno set
  bool extra_fds = false;  // more descriptors came than were wanted
  bool cut_off = false;    // the kernel dropped some (MSG_CTRUNC: at RLIMIT_NOFILE, or too many)
};

// recvmsg(2) into [data, data + size), EINTR retried, MSG_DONTWAIT when `dont_wait`. The
// descriptors that came along are owned at once (close-on-exec) and appended to `fds` while it
// holds fewer than `max_fds`; any other is closed and reported in extra_fds.
Received receive_with_fds(int socket, void* data, std::size_t size, bool dont_wait,
                          std::vector<UniqueFd>& fds, std::size_t max_fds) noexcept;
// The same for at most one descriptor: it goes into `fd` when `fd` is empty.
Received receive_with_fd(int socket, void* data, std::size_t size, bool dont_wait,
                         UniqueFd& fd) noexcept;

}  // namespace mmc::detail
