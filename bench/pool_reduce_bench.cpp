// The warm-pool win of reduce(array, options, pool), as one JSON line of timings measured in one
// run (bench/pool_reduce_compare.py prints the ratios):
//  - fixed cost: a tiny array (4x8x8 u8 .npy) reduced per image on a warm process pool against
//    reduce(array, options), which forks its workers per call;
//  - many files: the per-image means of every .npy file of a folder, in a loop over the files,
//    with one pool against fork per call (open_array included in both).
//  - and a pool made per call (what reduce(array, options) would pay if it went the pool's way).
// Usage: mmc_pool_reduce_bench TINY.npy FOLDER [JOBS] [REPEATS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "mmc/open.hpp"
#include "mmc/parallel.hpp"
#include "mmc/reduce.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Best of `repeats` of fn's seconds per call over `calls` calls: the machine's noise only adds.
template <class F>
double best_seconds(int repeats, int calls, F&& fn) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    for (int c = 0; c < calls; ++c) fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count() / calls);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TINY.npy FOLDER [JOBS] [REPEATS]\n", argv[0]);
    return 2;
  }
  const std::string tiny_path = argv[1];
  const std::string folder = argv[2];
  const int jobs = argc > 3 ? std::atoi(argv[3]) : 2;
  const int repeats = argc > 4 ? std::atoi(argv[4]) : 3;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() == ".npy") files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());

  try {
    mmc::ReduceOptions options;
    options.op = mmc::ReduceOp::Mean;  // per image: every axis but 0
    options.pool.n_jobs = jobs;
    options.pool.backend = mmc::Backend::Process;
    mmc::ParallelOptions pool_options;
    pool_options.n_jobs = jobs;
    pool_options.backend = mmc::Backend::Process;
    mmc::Pool pool(pool_options);

    const mmc::AnyArray tiny = mmc::open_array(tiny_path);
    double sink = 0;
    mmc::reduce(tiny, options, pool);  // warm: the workers exist and mapped nothing yet
    const double tiny_pool = best_seconds(
        repeats, 2000, [&] { sink += mmc::reduce(tiny, options, pool).as<double>()[0]; });
    const double tiny_fork =
        best_seconds(repeats, 200, [&] { sink += mmc::reduce(tiny, options).as<double>()[0]; });
    // What reduce(array, options) would cost if it made a pool per call and went the pool's way.
    const double tiny_new_pool = best_seconds(repeats, 100, [&] {
      mmc::Pool fresh(pool_options);
      sink += mmc::reduce(tiny, options, fresh).as<double>()[0];
    });

    auto all_files = [&](auto&& reduce_one) {
      for (const std::string& f : files)
        sink += reduce_one(mmc::open_array(f)).template as<double>()[0];
    };
    const double files_pool = best_seconds(repeats, 1, [&] {
      all_files([&](const mmc::AnyArray& a) { return mmc::reduce(a, options, pool); });
    });
    const double files_fork = best_seconds(repeats, 1, [&] {
      all_files([&](const mmc::AnyArray& a) { return mmc::reduce(a, options); });
    });
    std::printf(
        "{\"jobs\": %d, \"tiny_pool_s\": %.9g, \"tiny_fork_s\": %.9g, \"tiny_new_pool_s\": %.9g, "
        "\"files\": %zu, "
        "\"files_pool_s\": %.9g, \"files_fork_s\": %.9g, \"checksum\": %.17g}\n",
        jobs, tiny_pool, tiny_fork, tiny_new_pool, files.size(), files_pool, files_fork, sink);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mmc_pool_reduce_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
