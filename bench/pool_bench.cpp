// mmc_pool_bench: what the pool costs apart from the work: a call of N empty tasks per backend
// and n_jobs. tasks_per_second is the dispatch rate (a task's round trip through the transport
// for the process backend); tasks:1 is the fixed cost of a call (fork, socketpair, reap).
// Names read pool/backend:process/jobs:2/tasks:1000/payload:0.
// The persistent mmc::Pool (parallel.hpp), workers started once outside the timed loop:
//   parallel/map/.../chunk:auto|1    tiny tasks (x*x on an int) through map, tasks_per_second
//   parallel/submit_get               one submit + get round trip (latency)
//   parallel/submit_many              N submits then N gets (multiprocessing's apply_async)
//   parallel/transport/{copy,shared}  a payload of `bytes` per task: copied (through the socket
//                                     up to max_nbytes = 1 MiB, a segment above) or a
//                                     SharedArray passed by reference; bytes_per_second.
// bench/pool_compare.py runs these beside joblib and multiprocessing.Pool.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "mmc/pool.hpp"
#include "mmc/shared.hpp"

namespace {

void bm_empty_tasks(benchmark::State& state, mmc::Backend backend, int n_jobs) {
  const auto n_tasks = static_cast<std::size_t>(state.range(0));
  const auto payload = static_cast<std::size_t>(state.range(1));
  mmc::PoolOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  mmc::TaskSet call;
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

int square(int x) { return x * x; }

mmc::Pool make_pool(mmc::Backend backend, int n_jobs) {
  mmc::ParallelOptions options;
  options.backend = backend;
  options.n_jobs = n_jobs;
  return mmc::Pool(options);
}

void bm_parallel_map(benchmark::State& state, mmc::Backend backend, int n_jobs) {
  const auto n_tasks = static_cast<std::size_t>(state.range(0));
  mmc::CallOptions call;
  call.chunksize = static_cast<std::size_t>(state.range(1));  // 0 = auto
  mmc::Pool pool = make_pool(backend, n_jobs);
  std::vector<int> items(n_tasks);
  std::iota(items.begin(), items.end(), 0);
  for (auto _ : state) {
    auto out = pool.map(square, items, call);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["tasks_per_second"] = benchmark::Counter(
      static_cast<double>(n_tasks), benchmark::Counter::kIsIterationInvariantRate);
}

void bm_submit_get(benchmark::State& state, mmc::Backend backend) {
  mmc::Pool pool = make_pool(backend, 1);
  int x = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(pool.submit(square, ++x & 0xFFFF).get());
  }
  state.counters["tasks_per_second"] =
      benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

void bm_submit_many(benchmark::State& state, mmc::Backend backend, int n_jobs) {
  const auto n_tasks = static_cast<std::size_t>(state.range(0));
  mmc::Pool pool = make_pool(backend, n_jobs);
  std::vector<mmc::Future<int>> futures(n_tasks);
  for (auto _ : state) {
    for (std::size_t i = 0; i < n_tasks; ++i) futures[i] = pool.submit(square, static_cast<int>(i));
    for (auto& f : futures) benchmark::DoNotOptimize(f.get());
  }
  state.counters["tasks_per_second"] = benchmark::Counter(
      static_cast<double>(n_tasks), benchmark::Counter::kIsIterationInvariantRate);
}

// 16 tasks, each gets `bytes` and sums one byte per 4 KiB page (the payload must arrive, the
// work must not dominate).
void bm_transport(benchmark::State& state, bool shared) {
  const auto bytes = static_cast<std::size_t>(state.range(0));
  constexpr int kTasks = 16;
  mmc::Pool pool = make_pool(mmc::Backend::Process, 2);
  mmc::CallOptions call;
  call.chunksize = 1;
  if (shared) {
    mmc::SharedArray<std::uint8_t> data(bytes);
    std::vector<mmc::ArrayRef<std::uint8_t>> args(kTasks, data.ref(mmc::MapMode::ReadOnly));
    for (auto _ : state) {
      auto out = pool.map(
          [](mmc::ArrayRef<std::uint8_t> a) {
            std::uint64_t s = 0;
            for (std::size_t i = 0; i < a.size(); i += 4096) s += a[i];
            return s;
          },
          args, call);
      benchmark::DoNotOptimize(out.data());
    }
  } else {
    std::vector<std::vector<std::uint8_t>> args(kTasks, std::vector<std::uint8_t>(bytes, 1));
    for (auto _ : state) {
      auto out = pool.map(
          [](const std::vector<std::uint8_t>& a) {
            std::uint64_t s = 0;
            for (std::size_t i = 0; i < a.size(); i += 4096) s += a[i];
            return s;
          },
          args, call);
      benchmark::DoNotOptimize(out.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kTasks * bytes));
}

void register_parallel() {
  const std::pair<mmc::Backend, int> pools[] = {
      {mmc::Backend::Serial, 1}, {mmc::Backend::Thread, 2}, {mmc::Backend::Process, 2}};
  for (auto [backend, jobs] : pools) {
    const std::string tag =
        std::string("/backend:") + mmc::to_string(backend) + "/jobs:" + std::to_string(jobs);
    benchmark::RegisterBenchmark(("parallel/map" + tag + "/chunk:auto").c_str(), bm_parallel_map,
                                 backend, jobs)
        ->ArgNames({"tasks", "chunk"})
        ->Args({100'000, 0})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("parallel/map" + tag + "/chunk:1").c_str(), bm_parallel_map,
                                 backend, jobs)
        ->ArgNames({"tasks", "chunk"})
        ->Args({10'000, 1})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("parallel/submit_many" + tag).c_str(), bm_submit_many, backend,
                                 jobs)
        ->ArgNames({"tasks"})
        ->Args({10'000})
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("parallel/submit_get/backend:process/jobs:1", bm_submit_get,
                               mmc::Backend::Process)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
  for (bool shared : {false, true}) {
    auto* b = benchmark::RegisterBenchmark(
        shared ? "parallel/transport/shared" : "parallel/transport/copy", bm_transport, shared);
    b->ArgNames({"bytes"});
    for (std::int64_t bytes :
         {64 << 10, 256 << 10, (1 << 20) - 4096, (1 << 20) + 4096, 4 << 20, 16 << 20, 64 << 20}) {
      b->Args({bytes});
    }
    b->UseRealTime()->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  register_parallel();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
