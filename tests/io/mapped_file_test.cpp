// Tests of mmc/mapped_file.hpp: numpy.memmap's modes, unaligned offsets, edge sizes, hints,
// moves and sharing with forked children.
#include "mmc/mapped_file.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <utility>

#include "mmc/error.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::read_file;
using test::TempDir;
using test::write_file;

// Bytes that differ from their neighbours and from any page's first byte, so a mapping that
// starts at the wrong place shows.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  return s;
}

std::string view(const MappedFile& m) {
  return std::string(reinterpret_cast<const char*>(m.data()), m.size());
}

std::uint64_t file_size(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<std::uint64_t>(st.st_size);
}

using test::expect_error;

TEST(MapMode, ParsesNumpyMemmapModes) {
  EXPECT_EQ(parse_map_mode("r"), MapMode::ReadOnly);
  EXPECT_EQ(parse_map_mode("r+"), MapMode::ReadWrite);
  EXPECT_EQ(parse_map_mode("w+"), MapMode::Create);
  EXPECT_EQ(parse_map_mode("c"), MapMode::CopyOnWrite);
  EXPECT_EQ(parse_map_mode("readonly"), MapMode::ReadOnly);
  EXPECT_EQ(parse_map_mode("copyonwrite"), MapMode::CopyOnWrite);
}

TEST(MapMode, RejectsOtherModes) {
  for (const char* bad : {"", "w", "rw", "R", "r+ ", "a"}) {
    expect_error([&] { parse_map_mode(bad); }, ErrorCode::InvalidArgument, {});
  }
}

TEST(MappedFile, ReadOnlySeesFileContent) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(10000);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadOnly);
  ASSERT_TRUE(m.valid());
  EXPECT_EQ(m.size(), bytes.size());
  EXPECT_EQ(m.offset(), 0u);
  EXPECT_EQ(m.path(), path);
  EXPECT_EQ(m.mode(), MapMode::ReadOnly);
  EXPECT_EQ(view(m), bytes);
}

TEST(MappedFile, MapsADescriptorTheCallerOpenedAndOutlivesIt) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(10000);
  write_file(path, bytes);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  const MappedFile m = MappedFile::map(fd, path, MapMode::ReadOnly, 4099, 5000);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(view(m), bytes.substr(4099, 5000));
  EXPECT_EQ(m.path(), path);
  EXPECT_EQ(m.inode(), static_cast<std::uint64_t>(st.st_ino));
  const int dir_fd = ::open(dir.path().c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(dir_fd, 0);
  expect_error([&] { MappedFile::map(dir_fd, dir.path(), MapMode::ReadOnly); },
               ErrorCode::InvalidArgument, {dir.path(), "directory"});
  ::close(dir_fd);
  const int again = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(again, 0);
  expect_error([&] { MappedFile::map(again, path, MapMode::ReadOnly, 9000, 2000); },
               ErrorCode::Corrupt, {path, "9000 + 2000", "10000"});
  ::close(again);
}

TEST(MappedFile, ReadWriteWritesReachTheFileAfterSync) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  std::string bytes = pattern(9000);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadWrite, 100, 5000);
  std::memcpy(m.mutable_data() + 4096, "hello", 5);
  m.sync();
  bytes.replace(100 + 4096, 5, "hello");
  EXPECT_EQ(read_file(path), bytes);
}

TEST(MappedFile, ReadWriteRequiresAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("missing.bin");
  expect_error([&] { MappedFile::open(path, MapMode::ReadWrite, 0, 10); }, ErrorCode::NotFound,
               {path});
  EXPECT_FALSE(test::file_exists(path));
}

TEST(MappedFile, CreateMakesAFileOfOffsetPlusLength) {
  TempDir dir;
  const std::string path = dir.file("new.bin");
  const MappedFile m = MappedFile::open(path, MapMode::Create, 100, 5000);
  EXPECT_EQ(file_size(path), 5100u);
  EXPECT_EQ(m.size(), 5000u);
  std::memcpy(m.mutable_data(), "start", 5);
  std::memcpy(m.mutable_data() + 4995, "end!!", 5);
  m.sync();
  const std::string got = read_file(path);
  ASSERT_EQ(got.size(), 5100u);
  EXPECT_EQ(got.substr(0, 100), std::string(100, '\0'));
  EXPECT_EQ(got.substr(100, 5), "start");
  EXPECT_EQ(got.substr(5095, 5), "end!!");
}

TEST(MappedFile, CreateTruncatesAnExistingFile) {
  TempDir dir;
  const std::string path = dir.file("old.bin");
  write_file(path, pattern(50000));
  const MappedFile m = MappedFile::open(path, MapMode::Create, 0, 10);
  EXPECT_EQ(file_size(path), 10u);
  EXPECT_EQ(view(m), std::string(10, '\0'));
}

TEST(MappedFile, CreateRequiresALength) {
  TempDir dir;
  const std::string path = dir.file("new.bin");
  expect_error([&] { MappedFile::open(path, MapMode::Create); }, ErrorCode::InvalidArgument,
               {path});
}

TEST(MappedFile, CreateWithAnOverflowingSizeLeavesTheFileAlone) {
  TempDir dir;
  const std::string path = dir.file("old.bin");
  const std::string bytes = pattern(100);
  write_file(path, bytes);
  expect_error([&] { MappedFile::open(path, MapMode::Create, 10, INT64_MAX); },
               ErrorCode::InvalidArgument, {path});
  EXPECT_EQ(read_file(path), bytes);
}

TEST(MappedFile, CopyOnWriteWritesStayPrivate) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(8192);
  write_file(path, bytes);
  {
    const MappedFile m = MappedFile::open(path, MapMode::CopyOnWrite);
    std::memcpy(m.mutable_data() + 10, "private", 7);
    EXPECT_EQ(view(m).substr(10, 7), "private");
    m.sync();  // nothing to flush, and nothing may reach the file
    const MappedFile other = MappedFile::open(path, MapMode::ReadOnly);
    EXPECT_EQ(view(other), bytes);
  }
  EXPECT_EQ(read_file(path), bytes);
}

TEST(MappedFile, CopyOnWriteKeepsWritesThroughDontNeed) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  write_file(path, pattern(3 * 4096));
  const MappedFile m = MappedFile::open(path, MapMode::CopyOnWrite);
  std::memcpy(m.mutable_data() + 5000, "kept", 4);
  m.dont_need(0, m.size());
  EXPECT_EQ(view(m).substr(5000, 4), "kept");
}

TEST(MappedFile, UnalignedOffsetsPointDataAtTheOffset) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(5 * 4096 + 123);
  write_file(path, bytes);
  for (const std::uint64_t offset : {1ul, 7ul, 4095ul, 4096ul, 4097ul, 8191ul, 3 * 4096ul + 5}) {
    const MappedFile m = MappedFile::open(path, MapMode::ReadOnly, offset, 1000);
    EXPECT_EQ(m.offset(), offset);
    EXPECT_EQ(view(m), bytes.substr(offset, 1000)) << "offset " << offset;
    const MappedFile rest = MappedFile::open(path, MapMode::ReadOnly, offset);
    EXPECT_EQ(view(rest), bytes.substr(offset)) << "offset " << offset;
  }
}

TEST(MappedFile, UnalignedReadWriteMappingWritesAtTheOffset) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  std::string bytes = pattern(10000);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadWrite, 4099, 10);
  std::memcpy(m.mutable_data(), "0123456789", 10);
  m.sync();
  bytes.replace(4099, 10, "0123456789");
  EXPECT_EQ(read_file(path), bytes);
}

TEST(MappedFile, ZeroLengthMappingsAreValid) {
  TempDir dir;
  const std::string empty = dir.file("empty.bin");
  write_file(empty, "");
  const MappedFile a = MappedFile::open(empty, MapMode::ReadOnly);
  EXPECT_TRUE(a.valid());
  EXPECT_EQ(a.size(), 0u);
  const std::string path = dir.file("a.bin");
  write_file(path, pattern(100));
  const MappedFile b = MappedFile::open(path, MapMode::ReadOnly, 100);
  EXPECT_TRUE(b.valid());
  EXPECT_EQ(b.size(), 0u);
  const MappedFile c = MappedFile::open(path, MapMode::ReadWrite, 50, 0);
  EXPECT_EQ(c.size(), 0u);
  c.sync();
  c.populate(0, 100);
  c.dont_need(0, 100);
  const MappedFile d = MappedFile::open(dir.file("new.bin"), MapMode::Create, 0, 0);
  EXPECT_EQ(d.size(), 0u);
  EXPECT_EQ(file_size(dir.file("new.bin")), 0u);
}

TEST(MappedFile, ShortFileIsCorruptWithBothFigures) {
  TempDir dir;
  const std::string path = dir.file("short.bin");
  write_file(path, pattern(1000));
  expect_error([&] { MappedFile::open(path, MapMode::ReadOnly, 16, 2000); }, ErrorCode::Corrupt,
               {path, "2000", "1000"});
  expect_error([&] { MappedFile::open(path, MapMode::ReadWrite, 0, 1001); }, ErrorCode::Corrupt,
               {path, "1001", "1000"});
  EXPECT_EQ(file_size(path), 1000u);  // r+ never grows the file
}

TEST(MappedFile, OffsetPastTheEndIsCorrupt) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  write_file(path, pattern(1000));
  expect_error([&] { MappedFile::open(path, MapMode::ReadOnly, 1001); }, ErrorCode::Corrupt,
               {path, "1001", "1000"});
  expect_error([&] { MappedFile::open(path, MapMode::ReadOnly, 10, MappedFile::kToEnd - 5); },
               ErrorCode::Corrupt, {path});
}

TEST(MappedFile, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.file("missing.bin");
  expect_error([&] { MappedFile::open(path, MapMode::ReadOnly); }, ErrorCode::NotFound, {path});
  expect_error([&] { MappedFile::open(path, MapMode::CopyOnWrite); }, ErrorCode::NotFound, {path});
  expect_error([&] { MappedFile::open(dir.file("no/such/dir.bin"), MapMode::Create, 0, 1); },
               ErrorCode::NotFound, {"no/such/dir.bin"});
}

TEST(MappedFile, DirectoryIsRejectedClearly) {
  TempDir dir;
  for (const MapMode mode : {MapMode::ReadOnly, MapMode::ReadWrite, MapMode::CopyOnWrite}) {
    expect_error([&] { MappedFile::open(dir.path(), mode); }, ErrorCode::InvalidArgument,
                 {dir.path(), "directory"});
  }
  expect_error([&] { MappedFile::open(dir.path(), MapMode::Create, 0, 1); },
               ErrorCode::InvalidArgument, {"directory"});
}

TEST(MappedFile, HintsOnAnyRangeKeepTheContent) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(10 * 4096 + 17);
  write_file(path, bytes);
  for (const MapMode mode : {MapMode::ReadOnly, MapMode::ReadWrite, MapMode::CopyOnWrite}) {
    const MappedFile m = MappedFile::open(path, mode, 333);
    for (const Access a : {Access::Sequential, Access::Random, Access::Normal}) m.advise(a);
    const std::uint64_t n = m.size();
    const std::pair<std::uint64_t, std::uint64_t> ranges[] = {{0, n},
                                                              {1, 1},
                                                              {4000, 200},
                                                              {n - 1, 1},
                                                              {n - 5, 100},
                                                              {n, 10},
                                                              {n + 4096, 1},
                                                              {0, MappedFile::kToEnd},
                                                              {5, MappedFile::kToEnd},
                                                              {0, 0},
                                                              {MappedFile::kToEnd, 5}};
    for (const auto& [pos, len] : ranges) {
      m.will_need(pos, len);
      m.populate(pos, len);
      m.dont_need(pos, len);
    }
    EXPECT_EQ(view(m), bytes.substr(333));
  }
}

TEST(MappedFile, DontNeedKeepsSharedWrites) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  std::string bytes = pattern(4 * 4096);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadWrite, 10);
  std::memcpy(m.mutable_data() + 5000, "dirty", 5);
  m.dont_need(0, m.size());
  EXPECT_EQ(view(m).substr(5000, 5), "dirty");
  m.sync();
  bytes.replace(5010, 5, "dirty");
  EXPECT_EQ(read_file(path), bytes);
}

TEST(MappedFile, MoveTransfersTheMapping) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(5000);
  write_file(path, bytes);
  MappedFile a = MappedFile::open(path, MapMode::ReadOnly, 3);
  const std::byte* data = a.data();
  MappedFile b(std::move(a));
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(b.size(), 4997u);
  EXPECT_EQ(b.offset(), 3u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.size(), 0u);

  MappedFile c = MappedFile::open(path, MapMode::ReadOnly, 0, 10);
  c = std::move(b);  // c's old mapping is released, b's taken over
  EXPECT_EQ(c.data(), data);
  EXPECT_EQ(view(c), bytes.substr(3));
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)

  MappedFile& alias = c;
  c = std::move(alias);  // self-move leaves it intact
  EXPECT_EQ(view(c), bytes.substr(3));
}

TEST(MappedFile, CloseIsIdempotent) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  write_file(path, pattern(100));
  MappedFile m = MappedFile::open(path, MapMode::ReadOnly);
  m.close();
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(m.size(), 0u);
  m.close();
  m.sync();
  m.populate(0, 10);
}

TEST(MappedFile, MappingOutlivesTheFileName) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(6000);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadOnly);
  ASSERT_EQ(::unlink(path.c_str()), 0);
  EXPECT_EQ(view(m), bytes);
}

TEST(MappedFile, ForkedChildReadsTheParentsMapping) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(3 * 4096 + 1);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::ReadOnly, 17);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Exit status 0 only when the child saw exactly the parent's bytes.
    const bool same =
        m.size() == bytes.size() - 17 && std::memcmp(m.data(), bytes.data() + 17, m.size()) == 0;
    ::_exit(same ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(MappedFile, ForkedChildWritesReachTheParentThroughASharedMapping) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  write_file(path, pattern(8192));
  const MappedFile m = MappedFile::open(path, MapMode::ReadWrite, 100, 8000);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::memcpy(m.mutable_data() + 7000, "child", 5);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(view(m).substr(7000, 5), "child");
}

TEST(MappedFile, ForkedChildCopyOnWriteWritesStayInTheChild) {
  TempDir dir;
  const std::string path = dir.file("a.bin");
  const std::string bytes = pattern(8192);
  write_file(path, bytes);
  const MappedFile m = MappedFile::open(path, MapMode::CopyOnWrite);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::memcpy(m.mutable_data() + 7000, "child", 5);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_EQ(view(m), bytes);
}

}  // namespace
}  // namespace mmc
