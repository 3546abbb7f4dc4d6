// Shared containers under contention: n_jobs process workers each make `updates / n_jobs`
// atomic map updates (a counter per key, 64 keys) and as many vector appends; prints the rates
// as JSON for bench/shared_containers_compare.py, which runs multiprocessing.Manager's dict and
// list on the same workload. Release build; the figures mean something only as ratios of one run.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "mmc/parallel.hpp"
#include "mmc/shared_containers.hpp"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int jobs = argc > 1 ? std::atoi(argv[1]) : 2;
  const long updates = argc > 2 ? std::atol(argv[2]) : 200000;
  if (jobs < 1 || updates < jobs) {
    std::fprintf(stderr, "usage: mmc_shared_containers_bench [JOBS >= 1] [UPDATES >= JOBS]\n");
    return 2;
  }
  mmc::ParallelOptions options;
  options.n_jobs = jobs;
  options.backend = mmc::Backend::Process;
  mmc::Pool pool(options);
  const long per_worker = updates / jobs;
  mmc::SharedMap<int, long> counts(mmc::SegmentSize{1 << 20});
  mmc::SharedVector<long> values(mmc::SegmentSize{std::uint64_t{64} * updates + (1 << 20)});
  using Args = std::tuple<mmc::SharedMap<int, long>, mmc::SharedVector<long>, long>;
  std::vector<Args> args(static_cast<std::size_t>(jobs), Args{counts, values, per_worker});
  mmc::CallOptions one_each;
  one_each.chunksize = 1;

  auto start = std::chrono::steady_clock::now();
  pool.starmap(
      [](mmc::SharedMap<int, long> c, mmc::SharedVector<long>, long n) {
        for (long i = 0; i < n; ++i) c.update(static_cast<int>(i % 64), 0, [](long& v) { ++v; });
      },
      args, one_each);
  const double update_s = seconds_since(start);

  start = std::chrono::steady_clock::now();
  pool.starmap(
      [](mmc::SharedMap<int, long>, mmc::SharedVector<long> v, long n) {
        for (long i = 0; i < n; ++i) v.push_back(i);
      },
      args, one_each);
  const double append_s = seconds_since(start);

  long total = 0;
  for (const auto& [key, n] : counts.to_map()) total += n;
  const long done = per_worker * jobs;
  if (total != done || static_cast<long>(values.size()) != done) {
    std::fprintf(stderr, "lost updates: %ld counted, %zu appended, %ld made\n", total,
                 values.size(), done);
    return 1;
  }
  std::printf("{\"jobs\": %d, \"ops\": %ld, \"update_per_s\": %.1f, \"append_per_s\": %.1f}\n",
              jobs, done, done / update_s, done / append_s);
  return 0;
}
