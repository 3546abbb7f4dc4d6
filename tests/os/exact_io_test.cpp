// Tests of os/exact_io.hpp: every byte moves through pipes that take less than a whole buffer at
// once, reads stop only at the end of a file, failures keep their errno.
#include "os/exact_io.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

namespace mmc::detail {
namespace {

struct Pipe {
  UniqueFd read_end;
  UniqueFd write_end;
};

Pipe make_pipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i * 7 % 26);
  return s;
}

TEST(ExactIo, WriteAllMovesMoreThanAPipeHoldsAndReadToEndGetsItAll) {
  Pipe p = make_pipe();
  const std::string sent = pattern(1 << 20);  // 16 times a default pipe buffer
  std::string got;
  bool read_ok = false;
  std::thread reader([&] { read_ok = read_to_end(p.read_end.get(), got); });
  const bool write_ok = write_all(p.write_end.get(), sent.data(), sent.size());
  p.write_end.reset();
  reader.join();
  EXPECT_TRUE(write_ok);
  EXPECT_TRUE(read_ok);
  EXPECT_EQ(got, sent);
}

TEST(ExactIo, WriteAllToAPipeWithoutReaderFailsWithEpipe) {
  Pipe p = make_pipe();
  p.read_end.reset();
  // SIGPIPE would end the test binary: ignored for this thread's write only.
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &pipe_only, &old), 0);
  errno = 0;
  const char byte = 1;
  EXPECT_FALSE(write_all(p.write_end.get(), &byte, 1));
  EXPECT_EQ(errno, EPIPE);
  timespec now{};
  sigtimedwait(&pipe_only, nullptr, &now);  // drop the pending SIGPIPE
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(ExactIo, PwriteAllAndPreadFullMeetAtTheirOffsetsAndReadsStopAtTheEnd) {
  const test::TempDir dir;
  const std::string path = dir.path() + "/f";
  UniqueFd fd = open_fd(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fd.valid());
  EXPECT_NE(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, 0);  // open_fd adds O_CLOEXEC
  const std::string head = pattern(5000), tail = pattern(3000);
  ASSERT_TRUE(pwrite_all(fd.get(), tail.data(), tail.size(), 5000));
  ASSERT_TRUE(pwrite_all(fd.get(), head.data(), head.size(), 0));
  std::vector<char> back(10000, 'x');
  // Asking for more than the file holds: the count says where it ended.
  EXPECT_EQ(pread_full(fd.get(), back.data(), back.size(), 0), 8000);
  EXPECT_EQ(std::string(back.data(), 5000), head);
  EXPECT_EQ(std::string(back.data() + 5000, 3000), tail);
  EXPECT_EQ(pread_full(fd.get(), back.data(), 10, 8000), 0);
}

TEST(ExactIo, FailuresReturnWithErrnoSet) {
  errno = 0;
  EXPECT_FALSE(open_fd("/nonexistent-folder/f", O_RDONLY).valid());
  EXPECT_EQ(errno, ENOENT);
  const UniqueFd read_only = open_fd("/dev/null", O_RDONLY);
  ASSERT_TRUE(read_only.valid());
  const char byte = 0;
  errno = 0;
  EXPECT_FALSE(pwrite_all(read_only.get(), &byte, 1, 0));
  EXPECT_EQ(errno, EBADF);
  char buf[4];
  errno = 0;
  EXPECT_EQ(pread_full(-1, buf, sizeof buf, 0), -1);
  EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace mmc::detail
