// Test hooks read from the environment; inert unless a test sets them. In core: reduce and
// the jobs both use them.
#pragma once

#include <cstdlib>

namespace mmc::detail {

// MMC_DEBUG_TASK_DELAY_MS: every task of a reduction or a conversion sleeps this long first, so
// tests can interrupt or kill a run at moments spread over it. 0 when unset.
inline int debug_task_delay_ms() {
  const char* v = std::getenv("MMC_DEBUG_TASK_DELAY_MS");
  return v ? std::atoi(v) : 0;
}

}  // namespace mmc::detail
