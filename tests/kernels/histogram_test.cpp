// Histogram bins: numpy's arithmetic, checked against the definition (the bin whose edges hold
// the value), and the counting paths (value table, sub-histograms, lines) against each other.
#include "kernels/histogram.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace mmc::kernels {
namespace {

// The bin of x by its definition: edges[i] <= x < edges[i + 1], the last bin closed.
template <class E>
std::int64_t bin_by_edges(const BinEdges<E>& b, E x) {
  const std::vector<E>& e = b.edges();
  if (!(x >= e.front() && x <= e.back())) return -1;
  std::int64_t i = 0;
  while (i + 1 < b.bins() && x >= e[static_cast<std::size_t>(i) + 1]) ++i;
  return i;
}

template <class E>
void expect_bins_match_edges(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> uni(-1000.0, 1000.0);
  for (int round = 0; round < 200; ++round) {
    const std::int64_t bins = 1 + static_cast<std::int64_t>(rng() % 300);
    double lo = uni(rng), hi = uni(rng);
    if (lo > hi) std::swap(lo, hi);
    if (lo == hi) continue;
    const BinEdges<E> b(bins, lo, hi, hi - lo);
    ASSERT_EQ(b.edges().size(), static_cast<std::size_t>(bins) + 1);
    EXPECT_EQ(b.edges().back(), static_cast<E>(hi));
    for (const E edge : b.edges()) {
      for (const E x : {edge, std::nextafter(edge, std::numeric_limits<E>::lowest()),
                        std::nextafter(edge, std::numeric_limits<E>::max())}) {
        ASSERT_EQ(b.bin(x), bin_by_edges(b, x))
            << "x=" << x << " bins=" << bins << " range " << lo << "," << hi;
      }
    }
    for (int k = 0; k < 50; ++k) {
      const auto x = static_cast<E>(uni(rng));
      ASSERT_EQ(b.bin(x), bin_by_edges(b, x)) << "x=" << x;
    }
  }
}

TEST(HistogramBins, EveryValueLandsInTheBinWhoseEdgesHoldIt) {
  expect_bins_match_edges<double>(1);
  expect_bins_match_edges<float>(2);
}

TEST(HistogramBins, NanAndValuesOutsideTheRangeHaveNoBin) {
  const BinEdges<double> b(4, 0.0, 1.0, 1.0);
  EXPECT_EQ(b.bin(std::numeric_limits<double>::quiet_NaN()), -1);
  EXPECT_EQ(b.bin(-0.1), -1);
  EXPECT_EQ(b.bin(std::nextafter(1.0, 2.0)), -1);
  EXPECT_EQ(b.bin(1.0), 3);
  EXPECT_EQ(b.bin(0.0), 0);
  EXPECT_EQ(b.bin(0.25), 1);
}

TEST(HistogramBins, EdgesAreNumpysLinspace) {
  // np.linspace(0.1, 0.7, 8): i * step + start in double, the last edge exactly `stop`.
  const BinEdges<double> b(7, 0.1, 0.7, 0.7 - 0.1);
  const double step = (0.7 - 0.1) / 7;
  for (int i = 0; i < 7; ++i) EXPECT_EQ(b.edges()[static_cast<std::size_t>(i)], i * step + 0.1);
  EXPECT_EQ(b.edges()[7], 0.7);
  // float32 bins: the same double edges, rounded.
  const BinEdges<float> f(7, 0.1, 0.7, 0.7 - 0.1);
  EXPECT_EQ(f.edges()[3], static_cast<float>(3 * step + 0.1));
}

// Counts of a run of `values` through run(), with and without the value table, and of its
// first elements through line() (one output per element, then summed).
template <class T>
void expect_counting_paths_agree(const std::vector<T>& values, double lo, double hi,
                                 std::int64_t bins) {
  using E = BinType<T>;
  const BinEdges<E> edges(bins, lo, hi, hi - lo);
  const HistogramFamily<T, false> with_table(edges, std::int64_t{1} << 40);
  const HistogramFamily<T, false> without(edges, 0);
  const auto n = static_cast<std::int64_t>(values.size());
  const auto* p = reinterpret_cast<const std::byte*>(values.data());
  std::vector<std::int64_t> a(static_cast<std::size_t>(bins)), b(a.size()), c(a.size());
  with_table.init(a[0]);
  without.init(b[0]);
  with_table.run(a[0], p, n, sizeof(T));
  without.run(b[0], p, n, sizeof(T));
  const std::size_t head = values.size() < 500 ? values.size() : 500;
  std::vector<std::int64_t> per_element(head * static_cast<std::size_t>(bins), 0);
  with_table.line(per_element.data(), p, static_cast<std::int64_t>(head), sizeof(T));
  for (std::size_t j = 0; j < head; ++j) {
    for (std::size_t k = 0; k < c.size(); ++k) c[k] += per_element[j * c.size() + k];
  }
  std::vector<std::int64_t> direct(a.size(), 0), direct_head(a.size(), 0);
  for (std::size_t j = 0; j < values.size(); ++j) {
    const std::int64_t i = edges.bin(static_cast<E>(values[j]));
    if (i < 0) continue;
    ++direct[static_cast<std::size_t>(i)];
    if (j < head) ++direct_head[static_cast<std::size_t>(i)];
  }
  EXPECT_EQ(a, direct);
  EXPECT_EQ(b, direct);
  EXPECT_EQ(c, direct_head);
}

TEST(HistogramFamily, TableSubHistogramsAndLinesCountAlike) {
  std::mt19937_64 rng(5);
  std::vector<std::uint8_t> u8(5000);
  std::vector<std::int16_t> i16(70000);
  std::vector<float> f32(3000);
  for (auto& x : u8) x = static_cast<std::uint8_t>(rng());
  for (std::size_t i = 0; i < i16.size(); ++i) {
    // Long stretches of one value, as in images, and then noise.
    i16[i] = static_cast<std::int16_t>(i < 20000 ? 1234 : static_cast<std::int16_t>(rng()));
  }
  for (auto& x : f32) x = static_cast<float>(static_cast<double>(rng() % 100000) / 997.0);
  expect_counting_paths_agree(u8, 10.5, 200.25, 7);
  expect_counting_paths_agree(u8, 0, 255, 256);
  expect_counting_paths_agree(i16, -30000, 30001, 7);
  expect_counting_paths_agree(i16, 1000, 1300, 3000);  // more bins than a run's 8x
  expect_counting_paths_agree(f32, 0.1, 70.7, 9);
}

}  // namespace
}  // namespace mmc::kernels
