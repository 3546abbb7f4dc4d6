// Pool options with joblib's meanings: backend names, the CPU count, n_jobs and max_nbytes.
#include "pool/options.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "mmc/array.hpp"
#include "mmc/error.hpp"
#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"

namespace mmc {
namespace detail {
namespace {

std::optional<long long> parse_integer(const std::string& text) {
  long long value = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

std::optional<int> cpus_from_quota(long long quota, long long period) {
  if (quota <= 0 || period <= 0) return std::nullopt;
  const long long cpus = (quota + period - 1) / period;  // ceil, as loky does
  return static_cast<int>(std::clamp<long long>(cpus, 1, std::numeric_limits<int>::max()));
}

std::string trimmed_file(const char* path) {
  std::ifstream in(path);
  if (!in) return {};
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

int affinity_count() {
  // Start at 1024 CPUs and grow: sched_getaffinity fails with EINVAL when the set is too small.
  for (int n = 1024; n <= (1 << 20); n *= 2) {
    cpu_set_t* set = CPU_ALLOC(n);
    if (set == nullptr) return 0;
    const std::size_t size = CPU_ALLOC_SIZE(n);
    CPU_ZERO_S(size, set);
    const int rc = sched_getaffinity(0, size, set);
    const int count = rc == 0 ? CPU_COUNT_S(size, set) : 0;
    const int err = errno;
    CPU_FREE(set);
    if (rc == 0) return count;
    if (err != EINVAL) return 0;
  }
  return 0;
}

std::string whole_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::optional<std::uint64_t> stat_field(const std::string& stat, const std::string& key) {
  std::istringstream lines(stat);
  std::string name;
  std::string value;
  while (lines >> name >> value) {
    if (name != key) continue;
    const auto number = parse_integer(value);
    if (!number || *number < 0) return std::nullopt;
    return static_cast<std::uint64_t>(*number);
  }
  return std::nullopt;
}

}  // namespace

std::optional<CgroupMemory> cgroup_memory_from(const std::string& limit_text,
                                               const std::string& stat_text, bool v1) {
  std::string limit = limit_text;
  while (!limit.empty() && (limit.back() == '\n' || limit.back() == ' ')) limit.pop_back();
  if (limit.empty() || limit == "max") return std::nullopt;
  const auto bytes = parse_integer(limit);
  // v1 reports "no limit" as the largest page multiple below 2^63.
  if (!bytes || *bytes <= 0 || *bytes >= (1LL << 60)) return std::nullopt;
  const auto anon = stat_field(stat_text, v1 ? "total_rss" : "anon");
  const auto shmem = stat_field(stat_text, v1 ? "total_shmem" : "shmem");
  if (!anon || !shmem) return std::nullopt;
  return CgroupMemory{static_cast<std::uint64_t>(*bytes), *anon + *shmem};
}

std::optional<CgroupMemory> cgroup_memory() {
  std::string root = "/sys/fs/cgroup";
  if (const char* dir = std::getenv("MMC_CGROUP_DIR"); dir != nullptr && *dir != '\0') root = dir;
  if (auto v2 = cgroup_memory_from(whole_file(root + "/memory.max"),
                                   whole_file(root + "/memory.stat"), false)) {
    return v2;
  }
  for (const std::string& dir : {root + "/memory", root}) {
    if (auto v1 = cgroup_memory_from(whole_file(dir + "/memory.limit_in_bytes"),
                                     whole_file(dir + "/memory.stat"), true)) {
      return v1;
    }
  }
  return std::nullopt;
}

void check_shared_memory_room(std::uint64_t bytes, const std::string& what) {
  const std::optional<CgroupMemory> memory = cgroup_memory();
  // Slack for the rest of the process's growth meanwhile.
  constexpr std::uint64_t kSlack = 16u << 20;
  if (!memory || bytes + kSlack <= memory->headroom()) return;
  throw_error(ErrorCode::Io, "sharing " + what + " would pass this cgroup's memory limit (" +
                                 format_bytes(memory->used) + " of " + format_bytes(memory->limit) +
                                 " in use): pass the array by reference (ArrayRef of a file, or a "
                                 "SharedArray made once), lower n_jobs, or raise the limit");
}

std::uint64_t available_memory() {
  std::ifstream in("/proc/meminfo");
  std::string name;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> name >> kib >> unit) {
    if (name == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

int cap_jobs_by_memory(int n_jobs, std::uint64_t worker_memory,
                       const std::optional<CgroupMemory>& cgroup, std::uint64_t available) {
  if (worker_memory == 0) return n_jobs;
  std::uint64_t room = std::numeric_limits<std::uint64_t>::max();
  if (cgroup) room = cgroup->headroom();
  if (available > 0) room = std::min(room, available);
  const std::uint64_t fit = room / worker_memory;
  return static_cast<int>(std::clamp<std::uint64_t>(fit, 1, static_cast<std::uint64_t>(n_jobs)));
}

std::optional<int> cpus_from_cgroup_v2(const std::string& cpu_max) {
  std::istringstream in(cpu_max);
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  const auto q = parse_integer(quota);
  const auto p = parse_integer(period);
  if (!q || !p) return std::nullopt;
  return cpus_from_quota(*q, *p);
}

std::optional<int> cpus_from_cgroup_v1(const std::string& quota, const std::string& period) {
  const auto q = parse_integer(quota);
  const auto p = parse_integer(period);
  if (!q || !p) return std::nullopt;
  return cpus_from_quota(*q, *p);
}

}  // namespace detail

Backend parse_backend(const std::string& text) {
  if (text == "process") return Backend::Process;
  if (text == "thread") return Backend::Thread;
  if (text == "serial") return Backend::Serial;
  throw_error(ErrorCode::InvalidArgument,
              "unknown backend '" + text + "': use process, thread or serial");
}

const char* to_string(Backend backend) noexcept {
  switch (backend) {
    case Backend::Process:
      return "process";
    case Backend::Thread:
      return "thread";
    case Backend::Serial:
      return "serial";
  }
  return "unknown";
}

int cpu_count() {
  int count = std::numeric_limits<int>::max();
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online > 0) count = std::min<long>(count, online);
  if (const int affinity = detail::affinity_count(); affinity > 0)
    count = std::min(count, affinity);
  std::optional<int> quota =
      detail::cpus_from_cgroup_v2(detail::trimmed_file("/sys/fs/cgroup/cpu.max"));
  if (!quota) {
    quota =
        detail::cpus_from_cgroup_v1(detail::trimmed_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                                    detail::trimmed_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us"));
  }
  if (quota) count = std::min(count, *quota);
  if (count == std::numeric_limits<int>::max()) count = 1;
  return std::max(count, 1);
}

int effective_n_jobs(int n_jobs) {
  return detail::effective_n_jobs(n_jobs, n_jobs < 0 ? cpu_count() : 1);
}

namespace detail {

int effective_n_jobs(int n_jobs, int cpus) {
  if (n_jobs == 0) {
    throw_error(ErrorCode::InvalidArgument,
                "n_jobs=0 is invalid: use a positive count, -1 for all CPUs, -2 for all but one");
  }
  if (n_jobs > 0) return n_jobs;
  // n_jobs >= INT_MIN: cpus + 1 + n_jobs computed in 64 bits cannot overflow.
  const long long n = static_cast<long long>(cpus) + 1 + n_jobs;
  return static_cast<int>(std::max<long long>(n, 1));
}

}  // namespace detail

std::uint64_t parse_max_nbytes(const std::string& text) {
  const auto bad = [&text]() {
    throw_error(ErrorCode::InvalidArgument,
                "max_nbytes '" + text +
                    "' is invalid: use a byte count (\"4096\", \"0\") or a number with K, M or G "
                    "(powers of 1024, e.g. \"1M\")");
  };
  std::string digits = text;
  std::uint64_t multiplier = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k':
      case 'K':
        multiplier = std::uint64_t{1} << 10;
        break;
      case 'm':
      case 'M':
        multiplier = std::uint64_t{1} << 20;
        break;
      case 'g':
      case 'G':
        multiplier = std::uint64_t{1} << 30;
        break;
      default:
        break;
    }
    if (multiplier != 1) digits.pop_back();
  }
  if (digits.empty() ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    bad();
  }
  std::uint64_t value = 0;
  const char* end = digits.data() + digits.size();
  const auto [ptr, ec] = std::from_chars(digits.data(), end, value);
  if (ec != std::errc() || ptr != end) bad();
  if (value > std::numeric_limits<std::uint64_t>::max() / multiplier) bad();
  return value * multiplier;
}

}  // namespace mmc
