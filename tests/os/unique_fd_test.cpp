// Tests of os/unique_fd.hpp: ownership moves, and close() reports what a destructor cannot.
#include "os/unique_fd.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace mmc::detail {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

UniqueFd open_null() { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

TEST(UniqueFd, ClosesItsDescriptorWhenDestroyed) {
  int raw = -1;
  {
    const UniqueFd fd = open_null();
    raw = fd.get();
    ASSERT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MovingHandsOverOwnershipAndEmptiesTheSource) {
  UniqueFd a = open_null();
  const int raw = a.get();
  UniqueFd b = std::move(a);
  EXPECT_FALSE(a.valid());
  EXPECT_EQ(b.get(), raw);
  EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, CloseSucceedsOnceAndLeavesItEmpty) {
  UniqueFd fd = open_null();
  const int raw = fd.get();
  EXPECT_TRUE(fd.close());
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(is_open(raw));
  EXPECT_TRUE(fd.close());  // nothing held: nothing to fail
}

TEST(UniqueFd, CloseReportsAFailedCloseWithItsErrno) {
  UniqueFd fd = open_null();
  // Closed behind its back: close(2) then fails with EBADF, which close() must pass on.
  ASSERT_EQ(::close(fd.get()), 0);
  errno = 0;
  EXPECT_FALSE(fd.close());
  EXPECT_EQ(errno, EBADF);
  EXPECT_FALSE(fd.valid());
}

TEST(UniqueFd, ReleaseGivesUpOwnershipWithoutClosing) {
  UniqueFd fd = open_null();
  const int raw = fd.release();
  EXPECT_FALSE(fd.valid());
  EXPECT_TRUE(is_open(raw));
  ::close(raw);
}

}  // namespace
}  // namespace mmc::detail
