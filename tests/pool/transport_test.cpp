// Tests of the max_nbytes transport: what is piped and what is shared, exact round trips of
// big payloads, and where segments live.
#include "pool/transport.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/pool.hpp"
#include "pool/segment.hpp"
#include "pool_test_util.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::ScopedEnv;

// One task per entry of `sizes`: the argument has sizes[t] bytes, the result is the argument
// echoed back. Checks every result against its argument.
CallStats echo(const std::vector<std::size_t>& sizes, std::uint64_t max_nbytes, int n_jobs = 1) {
  TaskSet call;
  call.n_tasks = sizes.size();
  call.make_arg = [&sizes](std::size_t task) { return test::pattern(task, sizes[task]); };
  call.run = [](std::size_t, ByteView arg, Bytes& out) { test::append(out, arg); };
  std::size_t delivered = 0;
  call.on_result = [&](std::size_t task, ByteView result) {
    ++delivered;
    Bytes got;
    test::append(got, result);
    EXPECT_EQ(got, test::pattern(task, sizes[task])) << "task " << task;
  };
  PoolOptions options;
  options.n_jobs = n_jobs;
  options.max_nbytes = max_nbytes;
  const CallStats stats = test::run_guarded([&] { return run_tasks(options, call); });
  EXPECT_EQ(delivered, sizes.size());
  return stats;
}

TEST(Transport, PayloadOfExactlyMaxNbytesIsPiped) {
  const CallStats stats = echo({1000}, 1000);
  EXPECT_EQ(stats.bytes_piped, 2000u);  // argument and result
  EXPECT_EQ(stats.bytes_shared, 0u);
  EXPECT_EQ(stats.segments, 0u);
}

TEST(Transport, PayloadOfMaxNbytesPlusOneIsShared) {
  const CallStats stats = echo({1001}, 1000);
  EXPECT_EQ(stats.bytes_piped, 0u);
  EXPECT_EQ(stats.bytes_shared, 2002u);
  EXPECT_EQ(stats.segments, 2u);
}

TEST(Transport, ZeroMaxNbytesSharesEveryNonEmptyPayload) {
  const CallStats stats = echo({0, 1, 0, 7}, 0, 2);
  EXPECT_EQ(stats.bytes_piped, 0u);
  EXPECT_EQ(stats.bytes_shared, 16u);
  EXPECT_EQ(stats.segments, 4u);
}

TEST(Transport, DefaultMaxNbytesIsOneMebibyteInclusive) {
  const CallStats stats = echo({kDefaultMaxNbytes, kDefaultMaxNbytes + 1}, kDefaultMaxNbytes);
  EXPECT_EQ(stats.bytes_piped, 2 * kDefaultMaxNbytes);
  EXPECT_EQ(stats.bytes_shared, 2 * (kDefaultMaxNbytes + 1));
  EXPECT_EQ(stats.segments, 2u);
}

TEST(Transport, EightMebibytePayloadsRoundTripExactlyThroughSegments) {
  test::LeakCheck leaks;
  const std::size_t size = 8u << 20;
  const CallStats stats = echo({size, size - 1, size + 3}, kDefaultMaxNbytes, 2);
  EXPECT_EQ(stats.bytes_shared, 2 * (3 * size + 2));
  EXPECT_EQ(stats.segments, 6u);
  leaks.expect_clean();
}

TEST(Transport, EightMebibytePayloadsRoundTripExactlyInline) {
  // Big inline payloads both ways at once: the parent must never block on a full socket.
  const std::size_t size = 8u << 20;
  const CallStats stats = echo(std::vector<std::size_t>(12, size), UINT64_MAX, 2);
  EXPECT_EQ(stats.bytes_piped, 2 * 12 * size);
  EXPECT_EQ(stats.segments, 0u);
}

TEST(Transport, ResultsLargerThanArgumentsAreSharedOnTheWayBack) {
  TaskSet call;
  call.n_tasks = 4;
  call.run = [](std::size_t task, ByteView arg, Bytes& out) {
    if (arg.size != 0) throw Error(ErrorCode::Corrupt, "expected no argument");
    out = test::pattern(task, 5000);
  };
  std::size_t checked = 0;
  call.on_result = [&checked](std::size_t task, ByteView result) {
    Bytes got;
    test::append(got, result);
    EXPECT_EQ(got, test::pattern(task, 5000));
    ++checked;
  };
  PoolOptions options;
  options.n_jobs = 2;
  options.max_nbytes = 4096;
  const CallStats stats = run_tasks(options, call);
  EXPECT_EQ(checked, 4u);
  EXPECT_EQ(stats.bytes_shared, 4u * 5000);
  EXPECT_EQ(stats.bytes_piped, 0u);
  EXPECT_EQ(stats.segments, 4u);
}

// The paths behind the worker's open descriptors, as the task sees them.
std::vector<std::string> open_paths() {
  std::vector<std::string> paths;
  for (const std::string& name : test::list_dir("/proc/self/fd")) {
    char target[PATH_MAX];
    const std::string link = "/proc/self/fd/" + name;
    const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n > 0) paths.emplace_back(target, static_cast<std::size_t>(n));
  }
  return paths;
}

// Runs one task with a shared argument; the task returns the paths of its descriptors.
std::vector<std::string> paths_seen_by_a_task(CallStats* stats) {
  TaskSet call;
  call.n_tasks = 1;
  call.make_arg = [](std::size_t) { return test::pattern(9, 100000); };
  call.run = [](std::size_t, ByteView arg, Bytes& out) {
    if (arg.size != 100000) throw Error(ErrorCode::Corrupt, "argument truncated");
    for (const std::string& path : open_paths()) {
      test::append(out, {reinterpret_cast<const std::byte*>(path.data()), path.size()});
      out.push_back(std::byte{'\n'});
    }
  };
  std::vector<std::string> paths;
  call.on_result = [&paths](std::size_t, ByteView result) {
    std::string text = test::string_of(result);
    std::size_t start = 0;
    for (std::size_t end; (end = text.find('\n', start)) != std::string::npos; start = end + 1) {
      paths.push_back(text.substr(start, end - start));
    }
  };
  PoolOptions options;
  options.max_nbytes = 0;
  *stats = run_tasks(options, call);
  return paths;
}

bool any_starts_with(const std::vector<std::string>& paths, const std::string& prefix) {
  for (const std::string& path : paths) {
    if (path.rfind(prefix, 0) == 0) return true;
  }
  return false;
}

// Two connected stream sockets, closed with the test; both invalid when socketpair failed.
struct ConnectedSockets {
  detail::UniqueFd sender;
  detail::UniqueFd receiver;
};
ConnectedSockets connected_sockets() {
  int pair[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return {};
  return {detail::UniqueFd(pair[0]), detail::UniqueFd(pair[1])};
}

// Frames of their own kind, not a Task whose payload starts with a zero word; the framing
// bytes (FrameHeader::envelope) are neither weighed against max_nbytes nor counted.
TEST(TransportFrames, AGroupOfTasksIsItsOwnKindAndItsFramingIsNotCounted) {
  auto [sender, receiver] = connected_sockets();
  ASSERT_TRUE(sender && receiver);
  Bytes payload(100, std::byte{7});
  detail::TransportCounters sent;
  // 100 bytes of which 60 are framing: 40 bytes of data, under max_nbytes = 50.
  detail::OutFrame frame =
      detail::OutFrame::make(detail::FrameKind::Group, 9, payload, 50, sent, 60);
  ASSERT_TRUE(frame.send_some(sender.get(), /*dont_wait=*/false));
  detail::FrameReader reader(1 << 20);
  detail::TransportCounters received;
  const std::optional<detail::InMessage> message =
      reader.receive(receiver.get(), /*dont_wait=*/false, received);
  ASSERT_TRUE(message.has_value());
  EXPECT_EQ(message->header.kind, detail::FrameKind::Group);
  EXPECT_EQ(message->header.task, 9u);
  EXPECT_EQ(message->header.flags & detail::kInSegment, 0);
  EXPECT_EQ(message->payload().size, payload.size());
  EXPECT_EQ(sent.bytes_piped.load(), 40u);
  EXPECT_EQ(received.bytes_piped.load(), 40u);
  EXPECT_EQ(sent.segments.load(), 0u);
  // Past max_nbytes the data goes in a segment, counted without its framing.
  detail::TransportCounters big;
  detail::OutFrame shared =
      detail::OutFrame::make(detail::FrameKind::Task, 1, Bytes(100), 30, big, 60);
  EXPECT_EQ(big.bytes_shared.load(), 40u);
  EXPECT_EQ(big.segments.load(), 1u);
}

// A peer's header is hostile: a length past max_nbytes plus the framing slack is refused
// before anything is allocated, with an Error the pool turns into a lost worker.
TEST(TransportFrames, AHeaderAnnouncingMoreInlineBytesThanTheLimitIsRefused) {
  auto [sender, receiver] = connected_sockets();
  ASSERT_TRUE(sender && receiver);
  detail::FrameHeader hostile;
  hostile.kind = detail::FrameKind::Result;
  hostile.length = std::uint64_t{1} << 62;
  ASSERT_EQ(write(sender.get(), &hostile, sizeof hostile), static_cast<ssize_t>(sizeof hostile));
  detail::FrameReader reader(1 << 20);
  detail::TransportCounters counters;
  const int from = receiver.get();  // clang 14 cannot capture a structured binding
  const auto caught = test::catch_error([&] { reader.receive(from, false, counters); });
  EXPECT_EQ(caught.code, ErrorCode::Internal);
  EXPECT_NE(caught.message.find("4611686018427387904 inline bytes"), std::string::npos)
      << caught.message;
  EXPECT_NE(caught.message.find(std::to_string((1 << 20) + detail::kFrameSlack)), std::string::npos)
      << caught.message;

  // Just under the limit is a frame like any other.
  detail::FrameReader roomy(1 << 20);
  hostile.length = 4;
  ASSERT_EQ(write(sender.get(), &hostile, sizeof hostile), static_cast<ssize_t>(sizeof hostile));
  ASSERT_EQ(write(sender.get(), "abcd", 4), 4);
  const std::optional<detail::InMessage> fine = roomy.receive(receiver.get(), false, counters);
  ASSERT_TRUE(fine.has_value());
  EXPECT_EQ(fine->payload().size, 4u);
}

TEST(TransportFrames, AHeaderWhoseDescriptorsDidNotComeIsRefused) {
  auto [sender, receiver] = connected_sockets();
  ASSERT_TRUE(sender && receiver);
  detail::FrameHeader header;
  header.kind = detail::FrameKind::Task;
  header.fds = 2;
  ASSERT_EQ(write(sender.get(), &header, sizeof header), static_cast<ssize_t>(sizeof header));
  detail::FrameReader reader(1 << 20);
  detail::TransportCounters counters;
  const int from = receiver.get();  // clang 14 cannot capture a structured binding
  const auto caught = test::catch_error([&] { reader.receive(from, false, counters); });
  EXPECT_EQ(caught.code, ErrorCode::Internal);
  EXPECT_NE(caught.message.find("malformed frame"), std::string::npos) << caught.message;
}

TEST(TransportFrames, AFramesDescriptorsArriveWithItInOrder) {
  auto [sender, receiver] = connected_sockets();
  ASSERT_TRUE(sender && receiver);
  test::TempDir dir;
  detail::MessageFds fds;
  for (int i = 0; i < 3; ++i) {
    const std::string path = dir.file("f" + std::to_string(i));
    test::write_file(path, std::string(static_cast<std::size_t>(i + 1), 'x'));
    detail::UniqueFd file(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(file.valid());
    EXPECT_EQ(fds.add_copy(file.get()), static_cast<std::uint64_t>(i));
    EXPECT_EQ(fds.add_copy(file.get()), static_cast<std::uint64_t>(i));  // one copy per file
  }
  detail::TransportCounters counters;
  // In a segment too (max_nbytes 2): the segment's descriptor comes first, then the list.
  detail::OutFrame frame =
      detail::OutFrame::make(detail::FrameKind::Task, 3, Bytes(10), 2, counters, 0, fds);
  fds = detail::MessageFds();  // the frame keeps its own share
  ASSERT_TRUE(frame.send_some(sender.get(), /*dont_wait=*/false));
  detail::FrameReader reader(2);
  const std::optional<detail::InMessage> message =
      reader.receive(receiver.get(), /*dont_wait=*/false, counters);
  ASSERT_TRUE(message.has_value());
  EXPECT_NE(message->header.flags & detail::kInSegment, 0);
  ASSERT_EQ(message->fds.size(), 3u);
  for (std::uint64_t i = 0; i < 3; ++i) {
    struct stat info {};
    ASSERT_EQ(fstat(message->fds.at(i), &info), 0);
    EXPECT_EQ(info.st_size, static_cast<off_t>(i + 1));
  }
  const auto caught = test::catch_error([&] { message->fds.at(3); });
  EXPECT_EQ(caught.code, ErrorCode::Corrupt);
}

TEST(Transport, SegmentsAreMemfdsByDefault) {
  CallStats stats;
  const std::vector<std::string> paths = paths_seen_by_a_task(&stats);
  EXPECT_EQ(stats.segments, 2u);
  EXPECT_TRUE(any_starts_with(paths, "/memfd:mmc-segment")) << ::testing::PrintToString(paths);
}

TEST(Transport, TempFolderHoldsSegmentsWhenMemfdIsDisabled) {
  test::TempDir dir;
  test::LeakCheck leaks;
  ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
  ScopedEnv folder("MMC_TEMP_FOLDER", dir.path());
  CallStats stats;
  const std::vector<std::string> paths = paths_seen_by_a_task(&stats);
  EXPECT_EQ(stats.segments, 2u);
  EXPECT_TRUE(any_starts_with(paths, dir.path() + "/")) << ::testing::PrintToString(paths);
  EXPECT_FALSE(any_starts_with(paths, "/memfd:")) << ::testing::PrintToString(paths);
  EXPECT_TRUE(test::list_dir(dir.path()).empty()) << "a segment file was left in the folder";
  leaks.expect_clean();
}

TEST(Transport, BigPayloadsRoundTripThroughTheTempFolder) {
  test::TempDir dir;
  ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
  ScopedEnv folder("MMC_TEMP_FOLDER", dir.path());
  const CallStats stats = echo({3u << 20, 5, 2u << 20}, kDefaultMaxNbytes, 2);
  EXPECT_EQ(stats.segments, 4u);
  EXPECT_TRUE(test::list_dir(dir.path()).empty());
}

TEST(Transport, MissingTempFolderFailsNamingIt) {
  test::TempDir dir;
  const std::string missing = dir.file("not-there");
  ScopedEnv no_memfd("MMC_DISABLE_MEMFD", "1");
  ScopedEnv folder("MMC_TEMP_FOLDER", missing);
  test::LeakCheck leaks;
  const test::Caught caught = test::catch_error([] { echo({10, 5000}, 1000); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::NotFound);
  EXPECT_NE(caught.message.find(missing), std::string::npos) << caught.message;
  leaks.expect_clean();
}

TEST(TransportSegment, MapsWhatWasWritten) {
  const Bytes contents = test::pattern(3, 12345);
  detail::SharedSegment written = detail::SharedSegment::create({contents.data(), contents.size()});
  ASSERT_GE(written.fd(), 0);
  const int dup_fd = fcntl(written.fd(), F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(dup_fd, 0);
  detail::SharedSegment mapped =
      detail::SharedSegment::map_received(detail::UniqueFd(dup_fd), contents.size());
  Bytes got;
  test::append(got, mapped.view());
  EXPECT_EQ(got, contents);
}

TEST(TransportSegment, RefusesToMapMoreThanTheSegmentHolds) {
  const Bytes contents = test::pattern(4, 100);
  detail::SharedSegment written = detail::SharedSegment::create({contents.data(), contents.size()});
  const int dup_fd = fcntl(written.fd(), F_DUPFD_CLOEXEC, 0);
  ASSERT_GE(dup_fd, 0);
  const test::Caught caught = test::catch_error(
      [&] { detail::SharedSegment::map_received(detail::UniqueFd(dup_fd), 101); });
  ASSERT_TRUE(caught.thrown);
  EXPECT_EQ(caught.code, ErrorCode::Internal);
}

}  // namespace
}  // namespace mmc
