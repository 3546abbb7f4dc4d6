// imap: results stream back in order while the input is read lazily, a few batches ahead,
// with a progress bar on stderr; imap_unordered yields them as they finish.
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "mmc/parallel.hpp"

int main() {
  mmc::ParallelOptions options;
  options.n_jobs = 2;
  mmc::Pool pool(options);

  mmc::CallOptions call;
  call.progress_bar = true;
  std::vector<int> numbers(2000);
  std::iota(numbers.begin(), numbers.end(), 0);
  auto lines = pool.imap([](int i) { return "line " + std::to_string(i); }, numbers, call);
  std::size_t count = 0;
  for (const std::string& line : lines) {
    if (line != "line " + std::to_string(count)) return 1;
    ++count;
  }
  std::printf("%zu lines in order\n", count);

  long sum = 0;
  numbers.resize(100);
  auto squares = pool.imap_unordered([](int i) { return long{i} * i; }, numbers);
  while (auto v = squares.next()) sum += *v;
  std::printf("sum of squares = %ld\n", sum);
  return count == 2000 && sum == 328350 ? 0 : 1;
}
