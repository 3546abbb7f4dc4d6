// Pieces of the pool's option handling exposed for tests: the cgroup CPU quota and memory
// limit files.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace mmc::detail {

// effective_n_jobs with the CPUs already counted (`cpus`, read only for n_jobs < 0).
int effective_n_jobs(int n_jobs, int cpus);

// cgroup v2 cpu.max ("max 100000", "150000 100000"): the CPU limit rounded up, or nothing when
// unlimited or unparsable.
std::optional<int> cpus_from_cgroup_v2(const std::string& cpu_max);

// cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us contents ("-1" is unlimited).
std::optional<int> cpus_from_cgroup_v1(const std::string& quota, const std::string& period);

// A cgroup's memory limit and what it holds that cannot be reclaimed (anonymous memory plus
// shared memory: tmpfs, memfd), in bytes.
struct CgroupMemory {
  std::uint64_t limit = 0;
  std::uint64_t used = 0;
  std::uint64_t headroom() const noexcept { return used < limit ? limit - used : 0; }
};

// From cgroup v2 memory.max ("max" or bytes) and memory.stat ("anon N", "shmem N" lines), or v1
// memory.limit_in_bytes and memory.stat ("total_rss N", "total_shmem N"). Nothing when
// unlimited (v1 reports about 2^63) or unparsable.
std::optional<CgroupMemory> cgroup_memory_from(const std::string& limit_text,
                                               const std::string& stat_text, bool v1);

// This process's cgroup memory, read from $MMC_CGROUP_DIR when set (tests), else
// /sys/fs/cgroup (v2) or /sys/fs/cgroup/memory (v1).
std::optional<CgroupMemory> cgroup_memory();

// Throws Error(Io) when `bytes` more shared memory would pass the cgroup's memory limit, saying
// what to do instead. `what` names the data ("a 64.0 MiB task message").
void check_shared_memory_room(std::uint64_t bytes, const std::string& what);

// n_jobs lowered so that n_jobs * worker_memory fits in the cgroup's headroom and the system's
// available memory (at least 1). `available` is MemAvailable of /proc/meminfo, 0 if unknown.
int cap_jobs_by_memory(int n_jobs, std::uint64_t worker_memory,
                       const std::optional<CgroupMemory>& cgroup, std::uint64_t available);

// MemAvailable of /proc/meminfo in bytes, 0 when unknown.
std::uint64_t available_memory();

}  // namespace mmc::detail
