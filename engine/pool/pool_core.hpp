// The pool core's engine side: resolved options, the three PoolCore implementations behind
// mmc::Pool and run_tasks, and running an encoded batch.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "mmc/detail/pool_engine.hpp"
#include "mmc/pool.hpp"

namespace mmc::detail {

// Resolved options, plus what only a pool uses.
struct CoreOptions : ResolvedOptions {
  std::function<void()> initializer;
  std::size_t maxtasksperchild = 0;
  int verbose = 0;
  ForkHooks fork_hooks;
  // A core made for one run_tasks call: its workers are forked straight from the caller at
  // construction (no fork server; they keep the caller's descriptors, which its closures may
  // use), and a lost worker is not replaced (the call fails).
  bool one_call = false;
};
std::shared_ptr<PoolCore> make_pool_core(const CoreOptions& options);

// The options a pool gets: the explicit ones, then scoped defaults, then the environment.
CoreOptions resolve_options(const PoolOptions& options);

// "task 7" or "tasks 4..9": how messages name a batch's items.
std::string task_range(std::size_t first_task, std::size_t n_items);

// Runs one encoded batch in this process: calls its trampoline.
void run_batch(ByteView batch, const MessageFds& fds, Bytes& out, MessageFds& out_fds);

// REQUIRES: options.n_jobs >= 1 (resolved).
std::shared_ptr<PoolCore> make_process_core(const CoreOptions& options);
std::shared_ptr<PoolCore> make_thread_core(const CoreOptions& options);
std::shared_ptr<PoolCore> make_serial_core(const CoreOptions& options);

}  // namespace mmc::detail
