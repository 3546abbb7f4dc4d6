// A test hook of the shared containers: die inside a change, as a killed worker would.
#pragma once

namespace mmc::detail {

// The next change to a shared container in this process (push_back, set, insert, erase,
// clear, append) raises SIGKILL once the change has begun, with the container's lock held.
// For tests of what a writer's death leaves behind; inert unless called.
void die_in_next_container_change() noexcept;

}  // namespace mmc::detail
