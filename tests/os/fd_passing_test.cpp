// Tests of os/fd_passing.hpp: descriptors sent over a socket pair arrive as working,
// close-on-exec copies, several in one message and in order; a surplus one is closed and
// reported, never leaked.
#include "os/fd_passing.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace mmc::detail {
namespace {

struct SocketPair {
  UniqueFd a;
  UniqueFd b;
};

SocketPair make_socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

ssize_t send_text(int socket, const char* text, int fd) {
  iovec iov{const_cast<char*>(text), std::strlen(text)};
  return send_with_fd(socket, &iov, 1, fd, false);
}

TEST(FdPassing, ADescriptorArrivesWithItsMessageAndWorks) {
  SocketPair s = make_socket_pair();
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd pipe_read(pipe_fds[0]);
  UniqueFd pipe_write(pipe_fds[1]);
  ASSERT_EQ(send_text(s.a.get(), "hello", pipe_write.get()), 5);
  pipe_write.reset();  // the copy in flight keeps the pipe's write end alive

  char buf[16] = {};
  UniqueFd received;
  const Received got = receive_with_fd(s.b.get(), buf, sizeof buf, false, received);
  ASSERT_EQ(got.bytes, 5);
  EXPECT_FALSE(got.extra_fds);
  EXPECT_STREQ(buf, "hello");
  ASSERT_TRUE(received.valid());
  EXPECT_NE(::fcntl(received.get(), F_GETFD) & FD_CLOEXEC, 0);
  ASSERT_EQ(::write(received.get(), "x", 1), 1);
  char byte = 0;
  ASSERT_EQ(::read(pipe_read.get(), &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
}

TEST(FdPassing, AMessageWithoutDescriptorLeavesTheHolderEmpty) {
  SocketPair s = make_socket_pair();
  ASSERT_EQ(send_text(s.a.get(), "plain", -1), 5);
  char buf[16] = {};
  UniqueFd received;
  const Received got = receive_with_fd(s.b.get(), buf, sizeof buf, false, received);
  EXPECT_EQ(got.bytes, 5);
  EXPECT_FALSE(got.extra_fds);
  EXPECT_FALSE(received.valid());
}

TEST(FdPassing, ASecondDescriptorIsClosedAndReported) {
  SocketPair s = make_socket_pair();
  UniqueFd first(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd second(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(send_text(s.a.get(), "1", first.get()), 1);
  char buf[1];
  UniqueFd received;
  ASSERT_EQ(receive_with_fd(s.b.get(), buf, 1, false, received).bytes, 1);
  const int kept = received.get();
  ASSERT_EQ(send_text(s.a.get(), "2", second.get()), 1);
  const Received got = receive_with_fd(s.b.get(), buf, 1, false, received);
  EXPECT_EQ(got.bytes, 1);
  EXPECT_TRUE(got.extra_fds);
  EXPECT_EQ(received.get(), kept);  // the first stays; the surplus was closed, not leaked
}

TEST(FdPassing, NonBlockingReceiveWithNothingQueuedSaysEagain) {
  SocketPair s = make_socket_pair();
  char buf[1];
  UniqueFd received;
  errno = 0;
  const Received got = receive_with_fd(s.b.get(), buf, 1, true, received);
  EXPECT_EQ(got.bytes, -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK);
}

TEST(FdPassing, EndOfStreamReadsAsZeroBytesAndSendingToAClosedPeerIsEpipe) {
  SocketPair s = make_socket_pair();
  s.a.reset();
  char buf[1];
  UniqueFd received;
  EXPECT_EQ(receive_with_fd(s.b.get(), buf, 1, false, received).bytes, 0);
  errno = 0;
  EXPECT_EQ(send_text(s.b.get(), "x", -1), -1);  // MSG_NOSIGNAL: no SIGPIPE ends the test
  EXPECT_EQ(errno, EPIPE);
}

TEST(FdPassing, SeveralDescriptorsTravelInOneMessageInOrder) {
  SocketPair s = make_socket_pair();
  constexpr int kPipes = 5;
  std::vector<UniqueFd> read_ends;
  std::vector<int> write_ends;
  std::vector<UniqueFd> owned_write_ends;
  for (int i = 0; i < kPipes; ++i) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    read_ends.emplace_back(pipe_fds[0]);
    owned_write_ends.emplace_back(pipe_fds[1]);
    write_ends.push_back(pipe_fds[1]);
  }
  iovec iov{const_cast<char*>("five"), 4};
  ASSERT_EQ(send_with_fds(s.a.get(), &iov, 1, write_ends.data(), write_ends.size(), false), 4);
  owned_write_ends.clear();  // the copies in flight keep the pipes open

  char buf[8] = {};
  std::vector<UniqueFd> received;
  const Received got = receive_with_fds(s.b.get(), buf, sizeof buf, false, received, 8);
  ASSERT_EQ(got.bytes, 4);
  EXPECT_FALSE(got.extra_fds);
  ASSERT_EQ(received.size(), static_cast<std::size_t>(kPipes));
  for (int i = 0; i < kPipes; ++i) {
    const auto index = static_cast<std::size_t>(i);
    EXPECT_NE(::fcntl(received[index].get(), F_GETFD) & FD_CLOEXEC, 0);
    const char byte = static_cast<char>('a' + i);
    ASSERT_EQ(::write(received[index].get(), &byte, 1), 1);
    char back = 0;
    ASSERT_EQ(::read(read_ends[index].get(), &back, 1), 1);
    EXPECT_EQ(back, byte) << "descriptor " << i << " arrived out of order";
  }
}

TEST(FdPassing, DescriptorsPastTheWantedCountAreClosedAndReported) {
  SocketPair s = make_socket_pair();
  const int three[3] = {::dup(0), ::dup(0), ::dup(0)};
  iovec iov{const_cast<char*>("x"), 1};
  ASSERT_EQ(send_with_fds(s.a.get(), &iov, 1, three, 3, false), 1);
  for (int fd : three) ::close(fd);
  char buf[1];
  std::vector<UniqueFd> received;
  const Received got = receive_with_fds(s.b.get(), buf, 1, false, received, 2);
  EXPECT_EQ(got.bytes, 1);
  EXPECT_TRUE(got.extra_fds);
  EXPECT_EQ(received.size(), 2u);
}

TEST(FdPassing, MoreDescriptorsThanAMessageMayCarryAreRefusedBeforeSending) {
  SocketPair s = make_socket_pair();
  std::vector<int> many(kMaxFdsPerMessage + 1, 0);
  iovec iov{const_cast<char*>("x"), 1};
  errno = 0;
  EXPECT_EQ(send_with_fds(s.a.get(), &iov, 1, many.data(), many.size(), false), -1);
  EXPECT_EQ(errno, EINVAL);
}

}  // namespace
}  // namespace mmc::detail
