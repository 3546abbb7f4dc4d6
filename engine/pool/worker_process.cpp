// What a pool's workers share: first steps, stdio flushing, exit, fork with the pool's statuses.
#include "pool/worker_process.hpp"

#include <signal.h>
#include <stdio_ext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "mmc/error.hpp"

#if defined(__GLIBCXX__)
#include <ext/stdio_sync_filebuf.h>
#endif

namespace mmc::detail {

void prepare_worker(int threads) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGINT, &ignore, nullptr);
  sigaction(SIGTERM, &ignore, nullptr);
  const std::string value = std::to_string(threads);
  for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}) {
    setenv(name, value.c_str(), /*overwrite=*/0);
  }
}

void flush_task_output() noexcept {
#if defined(__GLIBCXX__)
  // Synced with stdio (the default), std::cout keeps no buffer: it writes into stdout's.
  const bool own_buffer =
      dynamic_cast<__gnu_cxx::stdio_sync_filebuf<char>*>(std::cout.rdbuf()) == nullptr;
#else
  const bool own_buffer = true;
#endif
  if (own_buffer) {
    try {
      std::cout.flush();
    } catch (...) {
    }
  }
  if (__fpending(stdout) != 0) std::fflush(stdout);
}

void exit_worker(int status) noexcept {
  flush_stdio(/*every_file=*/true);
  _exit(status);
}

ChildSetup pool_child_setup(bool tied, const ForkHooks& hooks) {
  ChildSetup setup;
  setup.uncaught_status = kExitUncaught;
  setup.hooks = hooks;
  if (tied) {
    setup.death_signal = SIGKILL;
    setup.orphaned_status = kExitOrphaned;
  }
  return setup;
}

ChildProcess start_child(const ChildSetup& setup, const std::function<void()>& body) {
  ChildProcess child = ChildProcess::start(setup, body);
  if (child.pid() <= 0) throw_errno("fork of a worker process");
  return child;
}

}  // namespace mmc::detail
