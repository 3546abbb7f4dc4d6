// Pieces of the pool's option handling exposed for tests: parsing the cgroup CPU quota files.
#pragma once

#include <optional>
#include <string>

namespace mmc::detail {

// cgroup v2 cpu.max ("max 100000", "150000 100000"): the CPU limit rounded up, or nothing when
// unlimited or unparsable.
std::optional<int> cpus_from_cgroup_v2(const std::string& cpu_max);

// cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us contents ("-1" is unlimited).
std::optional<int> cpus_from_cgroup_v1(const std::string& quota, const std::string& period);

}  // namespace mmc::detail
