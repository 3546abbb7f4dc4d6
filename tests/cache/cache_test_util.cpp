// Helpers of the cache tests.
#include "cache/cache_test_util.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <fstream>

#include "support/test_support.hpp"

namespace mmc::test {

std::string cube_bytes(std::uint32_t seed) {
  std::string bytes(kCubeBytes, '\0');
  std::uint32_t x = seed * 2654435761u + 12345u;
  for (char& c : bytes) {
    x = x * 1664525u + 1013904223u;
    c = static_cast<char>(x >> 24);
  }
  return bytes;
}

void write_cube(const std::string& path, std::uint32_t seed) {
  const std::string bytes = cube_bytes(seed);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(bytes.size())), 0);
  ::close(fd);
}

Source open_cube(const std::string& path) {
  RawSpec spec;
  spec.path = path;
  spec.dtype = DType(TypeId::U8);
  spec.shape = kCubeShape;
  return open_raw(spec);
}

ReduceOptions mean_options(Backend backend, int n_jobs) {
  ReduceOptions options;
  options.op = ReduceOp::Mean;
  options.pool.backend = backend;
  options.pool.n_jobs = n_jobs;
  return options;
}

CacheOptions cache_options(const std::string& folder, std::vector<std::string>* warnings,
                           bool verify) {
  CacheOptions options;
  options.folder = folder;
  options.verify = verify;
  options.on_warning = [warnings](const std::string& m) { warnings->push_back(m); };
  return options;
}

struct timespec mtime_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mtim;
}

void set_mtime(const std::string& path, const struct timespec& t) {
  const struct timespec times[2] = {{0, UTIME_OMIT}, t};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

void set_mtime_relative(const std::string& path, std::int64_t offset_seconds) {
  struct timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  now.tv_sec += offset_seconds;
  set_mtime(path, now);
}

void flip_byte(const std::string& path, std::uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  char c = 0;
  ASSERT_EQ(::pread(fd, &c, 1, static_cast<off_t>(offset)), 1);
  c = static_cast<char>(~c);
  ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

std::uint64_t file_size(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<std::uint64_t>(st.st_size);
}

bool any_contains(const std::vector<std::string>& messages, const std::string& needle) {
  for (const std::string& m : messages) {
    if (m.find(needle) != std::string::npos) return true;
  }
  return false;
}

std::vector<std::string> run_in_children(int n, const std::function<std::string()>& body) {
  int go[2];
  EXPECT_EQ(::pipe2(go, O_CLOEXEC), 0);
  std::vector<pid_t> pids;
  std::vector<int> outputs;
  for (int i = 0; i < n; ++i) {
    int out[2];
    EXPECT_EQ(::pipe2(out, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(go[1]);
      ::close(out[0]);
      char c;
      // Every child starts when the parent closes the write end: as close to together as we can.
      while (::read(go[0], &c, 1) < 0 && errno == EINTR) {
      }
      std::string answer;
      int status = 0;
      try {
        answer = body();
      } catch (const std::exception& e) {
        answer = std::string("<threw: ") + e.what() + ">";
        status = 3;
      }
      const char* p = answer.data();
      std::size_t left = answer.size();
      while (left > 0) {
        const ssize_t w = ::write(out[1], p, left);
        if (w <= 0) break;
        p += w;
        left -= static_cast<std::size_t>(w);
      }
      ::_exit(status);
    }
    ::close(out[1]);
    pids.push_back(pid);
    outputs.push_back(out[0]);
  }
  ::close(go[0]);
  ::close(go[1]);
  std::vector<std::string> answers;
  for (int i = 0; i < n; ++i) {
    std::string answer;
    char buf[4096];
    ssize_t r;
    while ((r = ::read(outputs[static_cast<std::size_t>(i)], buf, sizeof buf)) != 0) {
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) break;
      answer.append(buf, static_cast<std::size_t>(r));
    }
    ::close(outputs[static_cast<std::size_t>(i)]);
    int status = 0;
    ::waitpid(pids[static_cast<std::size_t>(i)], &status, 0);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    answers.push_back(ok ? answer : "<died> " + answer);
  }
  return answers;
}

}  // namespace mmc::test
