// Helpers shared by the reduce tests.
#pragma once

#include <vector>

namespace mmc::test {

// The axes a test reduces an ndim-dimensional array over: all, the first, the last and, from 3
// dimensions on, an inner pair and the outer two.
inline std::vector<std::vector<int>> axis_sets(int ndim) {
  std::vector<std::vector<int>> sets = {{}, {0}, {ndim - 1}};
  if (ndim >= 3) {
    sets.push_back({1, 2});
    sets.push_back({0, ndim - 1});
  }
  return sets;
}

}  // namespace mmc::test
