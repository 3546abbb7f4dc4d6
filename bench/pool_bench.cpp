// mmc_pool_bench: what the pool costs apart from the work: a call of N empty tasks per backend
// and n_jobs. tasks_per_second is the dispatch rate (a task's round trip through the transport
// for the process backend); tasks:1 is the fixed cost of a call (fork, socketpair, reap).
// Names read pool/backend:process/jobs:2/tasks:1000/payload:0.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "mmc/pool.hpp"

namespace {

void bm_empty_tasks(benchmark::State& state, mmc::Backend backend, int n_jobs) {
  const auto n_tasks = static_cast<std::size_t>(state.range(0));
  const auto payload = static_cast<std::size_t>(state.range(1));
  mmc::PoolOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  mmc::Call call;
  call.n_tasks = n_tasks;
  // Each task returns `payload` bytes, so payloads past max_nbytes (1 MiB) show the cost of a
  // shared segment against the socket copy.
  call.run = [payload](std::size_t, mmc::ByteView, mmc::Bytes& out) { out.resize(payload); };
  std::size_t received = 0;
  call.on_result = [&received](std::size_t, mmc::ByteView r) { received += r.size; };
  for (auto _ : state) {
    const mmc::CallStats stats = mmc::run_tasks(options, call);
    benchmark::DoNotOptimize(stats.tasks);
  }
  benchmark::DoNotOptimize(received);
  state.counters["tasks_per_second"] = benchmark::Counter(
      static_cast<double>(n_tasks), benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n_tasks * payload));
}

void register_all() {
  const std::pair<mmc::Backend, int> pools[] = {{mmc::Backend::Serial, 1},
                                                {mmc::Backend::Thread, 2},
                                                {mmc::Backend::Process, 1},
                                                {mmc::Backend::Process, 2}};
  for (auto [backend, jobs] : pools) {
    const std::string name =
        std::string("pool/backend:") + mmc::to_string(backend) + "/jobs:" + std::to_string(jobs);
    benchmark::RegisterBenchmark(name.c_str(), bm_empty_tasks, backend, jobs)
        ->ArgNames({"tasks", "payload"})
        ->Args({1, 0})
        ->Args({1000, 0})
        ->Args({1000, 4096})
        ->Args({64, 2 << 20})
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
