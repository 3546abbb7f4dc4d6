// Strategy B's blocked fold: a family's lines() gives, bit for bit (NaN payloads aside), the
// partials of line() called once per line, for every element type, across the output blocks,
// at and past the lines after which narrow accumulators are flushed (with the type's extremes
// everywhere), on misaligned and gapped lines, in one call and in two slabs (as the chunked
// executor folds them).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/families.hpp"

namespace mmc::kernels {
namespace {

// Geometries: outputs per line (n) and lines (m). They cross the output block (kLineBlock),
// the 256 lines of 1-byte accumulators and the 2^15 lines of 2-byte ones.
struct Geometry {
  std::int64_t n;
  std::int64_t m;
};
const Geometry kGeometries[] = {{1, 1},    {7, 3},     {2049, 5}, {4100, 2},
                                {33, 600}, {3, 33000}, {0, 4},    {5, 0}};

// How lines are filled: mixed values, or the type's largest or lowest value everywhere (the
// narrow accumulators' worst case, right at their flush boundaries).
enum class Fill { Mixed, Max, Lowest };

// Element values that stress every path: the type's extremes in runs (where narrow sums come
// closest to overflowing), random bits, and for floats zeros of both signs, NaN, infinities.
template <class T>
T value(std::mt19937_64& rng, std::int64_t i, Fill fill) {
  if constexpr (!std::is_same_v<T, bool>) {
    if (fill == Fill::Max) return std::numeric_limits<T>::max();
    if (fill == Fill::Lowest) return std::numeric_limits<T>::lowest();
  }
  const std::uint64_t r = rng();
  if constexpr (std::is_same_v<T, bool>) {
    return (r & 1) != 0;
  } else if constexpr (std::is_floating_point_v<T>) {
    switch (r % 16) {
      case 0:
        return std::numeric_limits<T>::quiet_NaN();
      case 1:
        return (r >> 8) % 2 ? std::numeric_limits<T>::infinity()
                            : -std::numeric_limits<T>::infinity();
      case 2:
        return (r >> 8) % 2 ? T(0.0) : T(-0.0);
      case 3:
        return std::numeric_limits<T>::max() / T(3);
      default:
        return static_cast<T>(static_cast<double>(r % 100000) / 7.0 - 5000.0);
    }
  } else {
    if (i % 7 < 3) return std::numeric_limits<T>::max();
    if (i % 7 == 3) return std::numeric_limits<T>::lowest();
    T x;
    std::memcpy(&x, &r, sizeof x);
    return x;
  }
}

// Lines of n elements, line_stride bytes apart (a gap after each), starting one byte into the
// buffer so that no element is aligned.
template <class T>
std::vector<std::byte> make_lines(std::int64_t n, std::int64_t m, std::int64_t line_stride,
                                  std::uint64_t seed, Fill fill = Fill::Mixed) {
  std::vector<std::byte> buf(static_cast<std::size_t>(1 + m * line_stride));
  std::mt19937_64 rng(seed);
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t j = 0; j < n; ++j) {
      const T x = value<T>(rng, i + j, fill);
      std::byte* at = buf.data() + 1 + i * line_stride + j * static_cast<std::int64_t>(sizeof(T));
      std::memcpy(at, &x, sizeof x);
    }
  }
  return buf;
}

// Equal bits, except that for float partials (8-byte words: sums, means, M2, counts) two NaNs
// are equal whatever their sign and payload: which of two NaNs an addition keeps depends on the
// operand order the compiler picked, in vector code as in the dense kernels.
template <class T, class P>
bool same_partial(const P& a, const P& b) {
  if (std::memcmp(&a, &b, sizeof(P)) == 0) return true;
  if constexpr (!std::is_floating_point_v<T> || sizeof(P) % sizeof(double) != 0) {
    return false;
  } else {
    for (std::size_t at = 0; at < sizeof(P); at += sizeof(double)) {
      double x, y;
      std::memcpy(&x, reinterpret_cast<const char*>(&a) + at, sizeof x);
      std::memcpy(&y, reinterpret_cast<const char*>(&b) + at, sizeof y);
      if (std::memcmp(&x, &y, sizeof x) != 0 && !(std::isnan(x) && std::isnan(y))) return false;
    }
    return true;
  }
}

// Partials of n outputs, zeroed first (so that padding bytes compare equal), then initialized.
template <class F>
std::vector<typename F::Partial> fresh_partials(std::int64_t n) {
  std::vector<typename F::Partial> parts(static_cast<std::size_t>(n));
  if (!parts.empty())
    std::memset(static_cast<void*>(parts.data()), 0, parts.size() * sizeof(parts[0]));
  for (auto& a : parts) F::init(a);
  return parts;
}

template <class F, class T>
void expect_geometry(const std::string& what, Geometry g, Fill fill) {
  constexpr auto kItem = static_cast<std::int64_t>(sizeof(T));
  const std::int64_t line_stride = (g.n + 3) * kItem;
  const std::vector<std::byte> buf = make_lines<T>(g.n, g.m, line_stride, 17 + g.n * g.m, fill);
  const std::byte* p = buf.data() + 1;
  auto want = fresh_partials<F>(g.n), whole = want, slabs = want;
  for (std::int64_t i = 0; i < g.m; ++i) F::line(want.data(), p + i * line_stride, g.n, kItem);
  F::lines(whole.data(), p, g.n, kItem, g.m, line_stride);
  const std::int64_t split = g.m / 3;  // two slabs: [0, split), [split, m)
  F::lines(slabs.data(), p, g.n, kItem, split, line_stride);
  F::lines(slabs.data(), p + split * line_stride, g.n, kItem, g.m - split, line_stride);
  for (std::int64_t j = 0; j < g.n; ++j) {
    const auto k = static_cast<std::size_t>(j);
    ASSERT_TRUE(same_partial<T>(want[k], whole[k]))
        << what << ": output " << j << " of " << g.n << " after " << g.m << " lines in one call";
    ASSERT_TRUE(same_partial<T>(want[k], slabs[k]))
        << what << ": output " << j << " of " << g.n << " after " << g.m << " lines in two slabs";
  }
}

template <class F, class T>
void expect_lines_match_line(const std::string& what) {
  for (const Geometry& g : kGeometries) expect_geometry<F, T>(what, g, Fill::Mixed);
  // The extremes everywhere, around the flush boundaries (256 lines for 1-byte types, 2^15
  // for 2-byte ones) and past them.
  for (std::int64_t m : {255, 256, 257, 513, 32767, 32768, 32769, 65537}) {
    expect_geometry<F, T>(what + " (all max)", {3, m}, Fill::Max);
    expect_geometry<F, T>(what + " (all lowest)", {3, m}, Fill::Lowest);
  }
}

template <class T>
void expect_all_families(const char* type) {
  const std::string t = type;
  expect_lines_match_line<SumFamily<T, false>, T>("sum " + t);
  expect_lines_match_line<MomentsFamily<T, false>, T>("moments " + t);
  expect_lines_match_line<MinMaxFamily<T, false>, T>("minmax " + t);
  if constexpr (kHasExactMoments<T>) {
    expect_lines_match_line<MomentsMinMaxFamily<T, false>, T>("moments+minmax " + t);
  }
  if constexpr (std::is_floating_point_v<T>) {
    expect_lines_match_line<SumFamily<T, false, true>, T>("nansum " + t);
    expect_lines_match_line<MomentsFamily<T, false, true>, T>("nanmoments " + t);
    expect_lines_match_line<MinMaxFamily<T, false, true>, T>("nanminmax " + t);
  }
}

TEST(Lines, MatchLineForEveryType) {
  expect_all_families<std::uint8_t>("u8");
  expect_all_families<std::int8_t>("i8");
  expect_all_families<std::uint16_t>("u16");
  expect_all_families<std::int16_t>("i16");
  expect_all_families<std::uint32_t>("u32");
  expect_all_families<std::int32_t>("i32");
  expect_all_families<std::uint64_t>("u64");
  expect_all_families<std::int64_t>("i64");
  expect_all_families<float>("f32");
  expect_all_families<double>("f64");
  expect_all_families<bool>("bool");
}

// Byte-swapped and strided lines go through line(): still the same partials.
TEST(Lines, SwappedAndStridedLinesFallBackToLine) {
  using F = SumFamily<std::uint16_t, true>;
  const std::int64_t n = 9, m = 4, line_stride = 64;
  const std::vector<std::byte> buf = make_lines<std::uint16_t>(2 * n, m, line_stride, 3);
  for (std::int64_t stride : {2, 4}) {
    std::vector<F::Partial> want(n), got(n);
    for (auto& a : want) F::init(a);
    for (auto& a : got) F::init(a);
    for (std::int64_t i = 0; i < m; ++i)
      F::line(want.data(), buf.data() + i * line_stride, n, stride);
    F::lines(got.data(), buf.data(), n, stride, m, line_stride);
    for (std::int64_t j = 0; j < n; ++j) {
      EXPECT_TRUE(want[j].sum == got[j].sum && want[j].n == got[j].n) << j;
    }
  }
}

// Strategy B folds an output's elements one by one: far from zero (1000 + noise) the old plain
// Welford update and plain running sum lost 1000+ ulps over 65536 lines. Within 8 ulps of the
// answer computed in long double, for both the blocked lines() and line() on swapped bytes.
TEST(Lines, FloatSumsAndVariancesFarFromZeroKeepTheirDigits) {
  constexpr std::int64_t kOutputs = 3, kLines = 65536;
  std::mt19937_64 rng(5);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<float> data(static_cast<std::size_t>(kOutputs * kLines));
  for (float& x : data) x = static_cast<float>(1000.0 + noise(rng));
  std::vector<float> swapped(data.size());
  for (std::size_t i = 0; i < data.size(); ++i) swapped[i] = byteswap(data[i]);
  const auto ulps = [](double got, long double want) {
    const double w = static_cast<double>(want);
    return std::fabs(got - w) / (std::nextafter(std::fabs(w), INFINITY) - std::fabs(w));
  };
  constexpr std::int64_t kItem = sizeof(float), kLineStride = kOutputs * kItem;
  for (bool swap : {false, true}) {
    const auto* p = reinterpret_cast<const std::byte*>(swap ? swapped.data() : data.data());
    auto sums = fresh_partials<SumFamily<float, false>>(kOutputs);
    auto moments = fresh_partials<MomentsFamily<float, false>>(kOutputs);
    auto swapped_sums = fresh_partials<SumFamily<float, true>>(kOutputs);
    auto swapped_moments = fresh_partials<MomentsFamily<float, true>>(kOutputs);
    if (swap) {
      SumFamily<float, true>::lines(swapped_sums.data(), p, kOutputs, kItem, kLines, kLineStride);
      MomentsFamily<float, true>::lines(swapped_moments.data(), p, kOutputs, kItem, kLines,
                                        kLineStride);
    } else {
      SumFamily<float, false>::lines(sums.data(), p, kOutputs, kItem, kLines, kLineStride);
      MomentsFamily<float, false>::lines(moments.data(), p, kOutputs, kItem, kLines, kLineStride);
    }
    for (std::int64_t j = 0; j < kOutputs; ++j) {
      long double s = 0;
      for (std::int64_t i = 0; i < kLines; ++i)
        s += data[static_cast<std::size_t>(i * kOutputs + j)];
      const long double mean = s / kLines;
      long double m2 = 0;
      for (std::int64_t i = 0; i < kLines; ++i) {
        const long double d = data[static_cast<std::size_t>(i * kOutputs + j)] - mean;
        m2 += d * d;
      }
      const auto k = static_cast<std::size_t>(j);
      const double sum = swap ? SumFamily<float, true>::total(swapped_sums[k])
                              : SumFamily<float, false>::total(sums[k]);
      const double var = swap ? MomentsFamily<float, true>::variance(swapped_moments[k], 0)
                              : MomentsFamily<float, false>::variance(moments[k], 0);
      EXPECT_LE(ulps(sum, s), 8) << "sum of output " << j << (swap ? " (swapped)" : "");
      EXPECT_LE(ulps(var, m2 / kLines), 8) << "var of output " << j << (swap ? " (swapped)" : "");
    }
  }
}

}  // namespace
}  // namespace mmc::kernels
