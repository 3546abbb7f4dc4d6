// A program for the stdio tests (stdio_test.cpp): prints from the parent, from mmc::Pool tasks
// and from run_tasks tasks (the process backend of reduce and map_slices) without ever
// flushing, so a lost or repeated buffer shows as a missing or repeated line.
#include <cstdio>
#include <vector>

#include "mmc/parallel.hpp"

int main() {
  std::printf("parent before the pool\n");
  {
    mmc::ParallelOptions options;
    options.backend = mmc::Backend::Process;
    options.n_jobs = 2;
    mmc::Pool pool(options);
    std::vector<int> items = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    mmc::CallOptions call;
    call.chunksize = 1;
    pool.map([](int i) { return std::printf("pool task %d\n", i); }, items, call);
    pool.submit([] { std::printf("pool submit\n"); }).get();
  }
  std::printf("parent between\n");
  mmc::PoolOptions options;
  options.n_jobs = 2;
  options.backend = mmc::Backend::Process;
  mmc::Call call;
  call.n_tasks = 8;
  call.run = [](std::size_t task, mmc::ByteView, mmc::Bytes&) {
    std::printf("run_tasks task %zu\n", task);
  };
  call.on_result = [](std::size_t, mmc::ByteView) {};
  mmc::run_tasks(options, call);
  std::printf("parent after\n");
  return 0;
}
