// The three PoolCore implementations behind mmc::Pool.
#pragma once

#include <memory>

#include "mmc/parallel.hpp"

namespace mmc::detail {

// REQUIRES: options.n_jobs >= 1 (resolved).
std::shared_ptr<PoolCore> make_process_core(const CoreOptions& options);
std::shared_ptr<PoolCore> make_thread_core(const CoreOptions& options);
std::shared_ptr<PoolCore> make_serial_core(const CoreOptions& options);

}  // namespace mmc::detail
