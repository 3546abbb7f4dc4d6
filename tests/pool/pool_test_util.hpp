// Helpers shared by the pool tests: leak checks (children, descriptors, /dev/shm), a hang
// guard, and payload patterns.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include "mmc/pool.hpp"

namespace mmc::test {

inline int count_open_fds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int count = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++count;
  }
  closedir(dir);
  return count - 1;  // the DIR's own descriptor
}

// True when this process has no child at all (not even a zombie).
inline bool has_no_children() {
  int status = 0;
  const pid_t rc = waitpid(-1, &status, WNOHANG);
  return rc == -1 && errno == ECHILD;
}

// Entries of /dev/shm that a segment of ours could have left behind.
inline std::vector<std::string> shm_segments() {
  std::vector<std::string> names;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) {
    if (std::strncmp(entry->d_name, "mmc-segment", 11) == 0) names.push_back(entry->d_name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

// Takes a snapshot at construction; expect_clean() checks that nothing leaked since.
class LeakCheck {
 public:
  LeakCheck() : fds_(count_open_fds()), shm_(shm_segments()) {}
  void expect_clean() const {
    EXPECT_TRUE(has_no_children()) << "a worker process was left behind";
    EXPECT_EQ(count_open_fds(), fds_) << "descriptors leaked";
    EXPECT_EQ(shm_segments(), shm_) << "segments left in /dev/shm";
  }

 private:
  int fds_;
  std::vector<std::string> shm_;
};

// Runs `fn` on another thread and waits at most `seconds` for it. A hang aborts the whole test
// binary (a hung call cannot be cancelled from outside), which fails the run loudly.
template <class Fn>
auto run_guarded(Fn fn, int seconds = 20) {
  auto future = std::async(std::launch::async, std::move(fn));
  if (future.wait_for(std::chrono::seconds(seconds)) == std::future_status::timeout) {
    std::fprintf(stderr, "run_guarded: the call did not return within %d s\n", seconds);
    std::abort();
  }
  return future.get();
}

// The error a call throws, or nothing if it succeeds.
struct Caught {
  bool thrown = false;
  ErrorCode code = ErrorCode::Internal;
  std::string message;
};

inline Caught catch_error(const std::function<void()>& fn) {
  Caught caught;
  try {
    fn();
  } catch (const Error& error) {
    caught.thrown = true;
    caught.code = error.code();
    caught.message = error.what();
  }
  return caught;
}

// A byte pattern that depends on a seed and the position, so shifted or mixed data shows.
inline Bytes pattern(std::uint64_t seed, std::size_t size) {
  Bytes bytes(size);
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    bytes[i] = static_cast<std::byte>(x & 0xFF);
  }
  return bytes;
}

inline Bytes bytes_of(const std::string& text) {
  Bytes bytes(text.size());
  std::memcpy(bytes.data(), text.data(), text.size());
  return bytes;
}

inline std::string string_of(ByteView view) {
  return std::string(reinterpret_cast<const char*>(view.data), view.size);
}

inline void append(Bytes& out, ByteView view) {
  out.insert(out.end(), view.data, view.data + view.size);
}

// Waits at most `seconds` for child `pid` to end; kills it on timeout. Returns its exit status,
// 128 + signal when killed, or -1 on timeout.
inline int wait_child(pid_t pid, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (;;) {
    int status = 0;
    const pid_t rc = waitpid(pid, &status, WNOHANG);
    if (rc == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (rc < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    usleep(2000);
  }
}

// Reads one byte from `fd` within `seconds`; false on timeout or EOF.
inline bool read_byte(int fd, int seconds) {
  pollfd pfd{fd, POLLIN, 0};
  if (poll(&pfd, 1, seconds * 1000) <= 0) return false;
  char byte;
  return read(fd, &byte, 1) == 1;
}

// Sets an environment variable for one scope, restoring what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

// Pool options with a backend and a number of workers.
inline PoolOptions with(Backend backend, int n_jobs) {
  PoolOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  return options;
}

}  // namespace mmc::test
