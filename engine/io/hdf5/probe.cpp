// The probe: untrusted HDF5 metadata read first in a forked child under a memory cap and a
// time limit, so a libhdf5 crash, runaway allocation or endless loop on a damaged file becomes
// one error line in the caller instead of a SIGSEGV.
#include "io/hdf5/probe.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

#include "mmc/error.hpp"
#include "os/exact_io.hpp"
#include "os/process.hpp"
#include "os/unique_fd.hpp"

namespace mmc::detail {
namespace {

// Address space the child may add to what it inherits: metadata of real files needs a few
// MiB; a damaged local heap or B-tree asks for far more.
constexpr std::uint64_t kProbeExtraBytes = std::uint64_t{512} << 20;
// Reading a file's metadata takes milliseconds; a damaged one can loop forever.
constexpr unsigned kProbeSeconds = 20;

// The probe's time limit: kProbeSeconds, or MMC_HDF5_PROBE_SECONDS when it holds 1 to 3600 (the
// tests of damaged files set a few, so that a runaway under the sanitizers ends sooner).
unsigned probe_seconds() {
  const char* v = std::getenv("MMC_HDF5_PROBE_SECONDS");
  if (v == nullptr) return kProbeSeconds;
  char* end = nullptr;
  const unsigned long n = std::strtoul(v, &end, 10);
  return end != v && *end == '\0' && n >= 1 && n <= 3600 ? static_cast<unsigned>(n)
                                                          : kProbeSeconds;
}

std::uint64_t address_space_now() {
  std::FILE* f = std::fopen("/proc/self/statm", "re");
  unsigned long long pages = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%llu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// The report's last chance: a child that cannot write it exits, and the parent says so.
void write_report(int fd, const std::string& text) {
  detail::write_all(fd, text.data(), text.size());
}

// Runs in the child, with SIGALRM's default action (it ends the child) restored.
[[noreturn]] void run_child(int fd, const std::string& file, const std::function<void()>& work,
                            unsigned seconds) {
  ::alarm(seconds);
  // An unprivileged process cannot raise its hard limit: a cap above it is the hard limit.
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) == 0) {
    rlim_t cap = address_space_now() + kProbeExtraBytes;
    if (limit.rlim_max != RLIM_INFINITY && cap > limit.rlim_max) cap = limit.rlim_max;
    limit = rlimit{cap, cap};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) {
      write_report(fd, std::string(1, static_cast<char>(ErrorCode::Internal)) + file +
                           ": cannot cap the probe's memory: " + std::strerror(errno));
      ::_exit(1);
    }
  }
  int status = 0;
  try {
    work();
  } catch (const Error& e) {
    write_report(fd, std::string(1, static_cast<char>(e.code())) + e.what());
    status = 1;
  } catch (const std::bad_alloc&) {
    write_report(fd, std::string(1, static_cast<char>(ErrorCode::Corrupt)) + file +
                         ": reading its metadata needs more than 512 MiB (damaged file?)");
    status = 1;
  } catch (...) {
    status = 2;
  }
  // _exit: no atexit handlers, no libhdf5 shutdown touching files the parent has open.
  ::_exit(status);
}

}  // namespace

bool probe_enabled() {
  const char* v = std::getenv("MMC_HDF5_PROBE");
  return v == nullptr || std::strcmp(v, "0") != 0;
}

void probe_hdf5(const std::string& file, const std::function<void()>& work) {
  if (!probe_enabled()) return;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_errno(file + ": cannot make a pipe for the probe");
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  ChildSetup setup;
  setup.default_signals = {SIGALRM};  // the caller may have ignored or blocked it
  const unsigned seconds = probe_seconds();
  const pid_t pid = fork_child(setup, [&] {
    read_end.reset();
    run_child(write_end.get(), file, work, seconds);
  });
  if (pid < 0) throw_errno(file + ": cannot fork the probe");
  write_end.reset();
  std::string report;
  detail::read_to_end(read_end.get(), report);  // a failed read leaves a short report: said below
  const ExitInfo end = wait_child(pid);
  if (!end.known) throw_errno(file + ": cannot wait for the probe");
  if (end.signaled) {
    if (end.signal == SIGALRM) {
      throw_error(ErrorCode::Corrupt, file + ": libhdf5 did not finish reading its metadata in " +
                                          std::to_string(seconds) + " s (damaged file?)");
    }
    throw_error(ErrorCode::Corrupt, file + ": libhdf5 crashed reading it (its probe " +
                                        describe(end) + "; damaged file?)");
  }
  if (end.status == 0) return;
  if (end.status == 1 && !report.empty()) {
    const auto code = static_cast<ErrorCode>(report[0]);
    std::string message = report.substr(1);
    if (message.find("memory allocation failed") != std::string::npos) {
      message += " (more than 512 MiB for metadata: damaged file?)";
    }
    throw_error(code, message);
  }
  // Any other end (a sanitizer's report of a crash, an exception that is not ours): a crash
  // too. Opening the file here would repeat it, or allocate without the cap.
  throw_error(ErrorCode::Corrupt, file + ": libhdf5 crashed reading it (its probe " +
                                      describe(end) + "; damaged file?)");
}

}  // namespace mmc::detail
