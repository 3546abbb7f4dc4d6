// map: a function over a list, results in order, on 2 worker processes; a lambda that captures
// plain data by value travels to the workers as its bytes.
#include <cstdio>
#include <numeric>
#include <vector>

#include "mmc/parallel.hpp"

int main() {
  mmc::ParallelOptions options;
  options.n_jobs = 2;  // joblib's meaning: -1 is every CPU
  options.verbose = 5;
  mmc::Pool pool(options);  // workers start here and are reused by every call

  std::vector<int> items(10'000);
  std::iota(items.begin(), items.end(), 0);
  const double scale = 0.5;
  const std::vector<double> out = pool.map([scale](int x) { return scale * x * x; }, items);

  std::printf("out[9999] = %.1f\n", out[9999]);
  return out[9999] == 0.5 * 9999.0 * 9999.0 ? 0 : 1;
}
