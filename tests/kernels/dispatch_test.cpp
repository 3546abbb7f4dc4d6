// The dense kernels: every variant this CPU runs gives the portable variant's bits, and the
// families give the same partials whether a run goes to the dense kernels (native byte order)
// or to the scalar templates (the same values byte-swapped).
#include "kernels/dispatch.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/families.hpp"

namespace mmc::kernels {
namespace {

// The variants this CPU runs. Those it cannot run are named in the output (once per process),
// so a machine without AVX-512 does not pass silently for one that checked it.
std::vector<const KernelTable*> variants() {
  static const std::vector<const KernelTable*> runnable = [] {
    std::vector<const KernelTable*> out;
    for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
      if (const KernelTable* t = kernels_for(isa)) {
        out.push_back(t);
      } else {
        std::printf("[ NOTE     ] %s kernels not checked: this CPU cannot run them\n",
                    to_string(isa));
      }
    }
    return out;
  }();
  return runnable;
}

const KernelTable& portable() { return *kernels_for(Isa::Portable); }

// Lengths around the lane (8, 16, 64 elements), leaf and block (1024), batch (16384) and flush
// boundaries.
const std::int64_t kLengths[] = {0,    1,    7,    8,     9,     63,    64,    65,    127,   128,
                                 129,  255,  256,  257,   1000,  1023,  1024,  1025,  2047,  2048,
                                 2049, 4099, 5000, 16383, 16384, 16385, 65536, 65599, 100003};

// Floats of every kind: ordinary values around an offset (so that variances cancel), zeros of
// both signs, subnormals, huge values, and (when `specials`) NaN and, unless `nan_only`,
// infinities (whose differences make NaNs of another sign).
template <class T>
std::vector<T> float_data(std::int64_t n, bool specials, std::uint64_t seed,
                          bool nan_only = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(1000.0, 3.0);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    const std::uint64_t kind = rng() % 64;
    if (kind == 0) {
      x = static_cast<T>(rng() % 2 ? 0.0 : -0.0);
    } else if (kind == 1) {
      x = std::numeric_limits<T>::denorm_min() * static_cast<T>(rng() % 5 + 1);
    } else if (kind == 2) {
      x = std::numeric_limits<T>::max() / static_cast<T>(rng() % 3 + 2);
    } else if (kind == 3 && specials) {
      x = std::numeric_limits<T>::quiet_NaN();
    } else if (kind == 4 && specials && !nan_only) {
      x = rng() % 2 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity();
    } else {
      x = static_cast<T>(normal(rng));
    }
  }
  return v;
}

template <class T>
std::vector<T> int_data(std::int64_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<T> v(static_cast<std::size_t>(n));
  for (auto& x : v) {
    const std::uint64_t r = rng();
    std::memcpy(&x, &r, sizeof x);
  }
  // The extremes, in runs, where widening sums come closest to overflowing.
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i % 1000 < 300) v[i] = std::numeric_limits<T>::max();
    if (i % 1000 >= 300 && i % 1000 < 400) v[i] = std::numeric_limits<T>::lowest();
  }
  return v;
}

template <class V>
bool same_bits(const V& a, const V& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Bitwise equal, or both NaN: which NaN an operation on two NaNs returns depends on the order
// the compiler gave its operands, which no variant controls.
bool same_value(double a, double b) { return same_bits(a, b) || (std::isnan(a) && std::isnan(b)); }

bool same_value(const BlockMoments& a, const BlockMoments& b) {
  return same_value(a.mean, b.mean) && same_value(a.m2, b.m2) && a.n == b.n;
}

template <class T>
void expect_float_kernels_agree(const FloatKernels<T>& ref, const FloatKernels<T>& got,
                                const char* isa) {
  for (std::int64_t n : kLengths) {
    for (bool specials : {false, true}) {
      const std::vector<T> v =
          float_data<T>(n, specials, static_cast<std::uint64_t>(n) * 2 + specials);
      const T* p = v.data();
      SCOPED_TRACE(testing::Message() << isa << " n=" << n << " specials=" << specials);
      EXPECT_TRUE(same_value(ref.sum(p, n), got.sum(p, n)));
      EXPECT_TRUE(same_value(ref.sum_squares(p, n), got.sum_squares(p, n)));
      std::int64_t valid_ref = 0, valid_got = 0;
      EXPECT_TRUE(same_value(ref.nan_sum(p, n, &valid_ref), got.nan_sum(p, n, &valid_got)));
      EXPECT_EQ(valid_ref, valid_got);
      constexpr std::int64_t kBatch = kMomentsBatch * kMomentsBlock;
      const std::int64_t m = n < kBatch ? n : kBatch;
      if (m == 0) continue;
      for (auto fn : {&FloatKernels<T>::moments, &FloatKernels<T>::nan_moments}) {
        BlockMoments a[kMomentsBatch] = {}, b[kMomentsBatch] = {};
        (ref.*fn)(p, m, a);
        (got.*fn)(p, m, b);
        for (std::int64_t j = 0; j * kMomentsBlock < m; ++j) {
          EXPECT_TRUE(same_value(a[j], b[j])) << "block " << j;
        }
      }
    }
  }
}

template <class T>
void expect_minmax_agree(MinMaxFn<T> ref, MinMaxFn<T> got, const char* isa) {
  for (std::int64_t n : kLengths) {
    std::vector<T> v;
    if constexpr (std::is_floating_point_v<T>) {
      v = float_data<T>(n, n % 2 == 1, static_cast<std::uint64_t>(n) + 5);
    } else {
      v = int_data<T>(n, static_cast<std::uint64_t>(n) + 5);
    }
    MinMaxAcc<T> a{std::numeric_limits<T>::max(), std::numeric_limits<T>::lowest(), false, false};
    MinMaxAcc<T> b = a;
    ref(v.data(), n, &a);
    got(v.data(), n, &b);
    EXPECT_TRUE(same_bits(a.min, b.min)) << isa << " n=" << n;
    EXPECT_TRUE(same_bits(a.max, b.max)) << isa << " n=" << n;
    EXPECT_EQ(a.nan, b.nan) << isa << " n=" << n;
    EXPECT_EQ(a.valid, b.valid) << isa << " n=" << n;
  }
}

template <class T>
void expect_exact_moments(ExactMomentsFn<T> fn, const char* isa) {
  for (std::int64_t n :
       {std::int64_t{0}, std::int64_t{5}, std::int64_t{4099}, std::int64_t{1} << 20}) {
    const std::vector<T> v = int_data<T>(n, static_cast<std::uint64_t>(n) + 9);
    std::int64_t s1 = 0, want1 = 0;
    std::uint64_t s2 = 0, want2 = 0;
    for (T x : v) {
      want1 += x;
      want2 += static_cast<std::uint64_t>(static_cast<std::int64_t>(x) * x);
    }
    fn(v.data(), n, &s1, &s2);
    EXPECT_EQ(s1, want1) << isa << " n=" << n;
    EXPECT_EQ(s2, want2) << isa << " n=" << n;
  }
  // All at the extreme that grows Σx² fastest.
  const std::vector<T> big(std::size_t{1} << 20, std::numeric_limits<T>::lowest() < 0
                                                     ? std::numeric_limits<T>::lowest()
                                                     : std::numeric_limits<T>::max());
  std::int64_t s1 = 0;
  std::uint64_t s2 = 0;
  fn(big.data(), static_cast<std::int64_t>(big.size()), &s1, &s2);
  const auto x = static_cast<std::int64_t>(big[0]);
  EXPECT_EQ(s1, x * static_cast<std::int64_t>(big.size())) << isa;
  EXPECT_EQ(s2, static_cast<std::uint64_t>(x * x) * big.size()) << isa;
}

// The fused kernel (moments with min and max) gives each half's result of the two kernels
// alone, from any starting min/max (a partial that already folded other runs), at any offset.
template <class T>
void expect_moments_minmax(MomentsMinMaxFn<T> fused, ExactMomentsFn<T> moments, MinMaxFn<T> minmax,
                           const char* isa) {
  for (std::int64_t n : kLengths) {
    // Values in the middle quarter of T's range, but one low and one high element placed
    // where a lane, a register or the scalar tail meets them (int_data's extremes in runs would
    // make every min and max the type's).
    std::mt19937_64 rng(static_cast<std::uint64_t>(n) + 21);
    const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
    const double span = static_cast<double>(std::numeric_limits<T>::max()) - lo;
    std::vector<T> v(static_cast<std::size_t>(n + 3));
    for (T& x : v) x = static_cast<T>(lo + span * (0.375 + 0.25 * (rng() % 1000) / 1000.0));
    if (n > 2) {
      v[rng() % static_cast<std::uint64_t>(n)] = static_cast<T>(lo + span * 0.1);
      v[static_cast<std::size_t>(n)] = static_cast<T>(lo + span * 0.9);  // the tail, offset 1
    }
    for (std::int64_t offset : {0, 1, 3}) {
      const T* p = v.data() + offset;
      const std::int64_t len = n - (offset > 0 && n > 0 ? 1 : 0);
      // Fresh, and after a previous run that saw mid-range values only.
      const T mid = static_cast<T>((std::numeric_limits<T>::max() / 2));
      for (MinMaxAcc<T> start : {MinMaxAcc<T>{std::numeric_limits<T>::max(),
                                              std::numeric_limits<T>::lowest(), false, false},
                                 MinMaxAcc<T>{mid, mid, false, true}}) {
        std::int64_t s1 = 7, want1 = 7;
        std::uint64_t s2 = 9, want2 = 9;
        MinMaxAcc<T> got = start, want = start;
        fused(p, len, &s1, &s2, &got);
        moments(p, len, &want1, &want2);
        minmax(p, len, &want);
        SCOPED_TRACE(testing::Message() << isa << " n=" << len << " offset=" << offset
                                        << " start valid=" << start.valid);
        EXPECT_EQ(s1, want1);
        EXPECT_EQ(s2, want2);
        EXPECT_EQ(got.min, want.min);
        EXPECT_EQ(got.max, want.max);
        EXPECT_EQ(got.valid, want.valid);
        EXPECT_FALSE(got.nan);
      }
    }
  }
}

TEST(DenseKernels, ThePortableVariantAlwaysRunsAndTheActiveOneIsSupported) {
  ASSERT_NE(kernels_for(Isa::Portable), nullptr);
  EXPECT_EQ(portable().isa, Isa::Portable);
  const KernelTable& active = active_kernels();
  EXPECT_EQ(kernels_for(active.isa), &active);
  for (const KernelTable* t : variants()) EXPECT_LE(t->isa, Isa::Avx512);
  EXPECT_STREQ(to_string(Isa::Avx2), "avx2");
}

// CTest also runs this test with MMC_ISA=portable (tests/kernels/CMakeLists.txt).
TEST(DenseKernels, TheActiveVariantIsAtMostTheOneMmcIsaNames) {
  const char* env = std::getenv("MMC_ISA");
  Isa cap = Isa::Avx512;
  for (Isa isa : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
    if (env != nullptr && std::strcmp(env, to_string(isa)) == 0) cap = isa;
  }
  EXPECT_LE(active_kernels().isa, cap);
}

TEST(DenseKernels, EveryVariantGivesThePortableFloatResultsBitForBit) {
  for (const KernelTable* t : variants()) {
    expect_float_kernels_agree(portable().f32, t->f32, to_string(t->isa));
    expect_float_kernels_agree(portable().f64, t->f64, to_string(t->isa));
  }
}

TEST(DenseKernels, EveryVariantGivesThePortableMinAndMax) {
  for (const KernelTable* t : variants()) {
    const char* isa = to_string(t->isa);
    expect_minmax_agree(portable().minmax_i8, t->minmax_i8, isa);
    expect_minmax_agree(portable().minmax_u8, t->minmax_u8, isa);
    expect_minmax_agree(portable().minmax_i16, t->minmax_i16, isa);
    expect_minmax_agree(portable().minmax_u16, t->minmax_u16, isa);
    expect_minmax_agree(portable().minmax_i32, t->minmax_i32, isa);
    expect_minmax_agree(portable().minmax_u32, t->minmax_u32, isa);
    expect_minmax_agree(portable().minmax_i64, t->minmax_i64, isa);
    expect_minmax_agree(portable().minmax_u64, t->minmax_u64, isa);
    expect_minmax_agree(portable().minmax_f32, t->minmax_f32, isa);
    expect_minmax_agree(portable().minmax_f64, t->minmax_f64, isa);
  }
}

TEST(DenseKernels, ExactMomentsOfSmallIntegersAreExactInEveryVariant) {
  for (const KernelTable* t : variants()) {
    const char* isa = to_string(t->isa);
    expect_exact_moments(t->moments_i8, isa);
    expect_exact_moments(t->moments_u8, isa);
    expect_exact_moments(t->moments_i16, isa);
    expect_exact_moments(t->moments_u16, isa);
  }
}

TEST(DenseKernels, FusedMomentsAndMinMaxEqualTheTwoKernelsInEveryVariant) {
  for (const KernelTable* t : variants()) {
    const char* isa = to_string(t->isa);
    expect_moments_minmax(t->moments_minmax_i8, t->moments_i8, t->minmax_i8, isa);
    expect_moments_minmax(t->moments_minmax_u8, t->moments_u8, t->minmax_u8, isa);
    expect_moments_minmax(t->moments_minmax_i16, t->moments_i16, t->minmax_i16, isa);
    expect_moments_minmax(t->moments_minmax_u16, t->moments_u16, t->minmax_u16, isa);
  }
}

TEST(DenseKernels, NibbleCountsEqualAByteHistogramsInEveryVariant) {
  for (const KernelTable* t : variants()) {
    for (std::int64_t n : kLengths) {
      // Bytes over a part of the range, so some groups are empty, at an odd address.
      std::mt19937_64 rng(static_cast<std::uint64_t>(n) + 41);
      std::vector<std::uint8_t> v(static_cast<std::size_t>(n + 1));
      for (auto& x : v) x = static_cast<std::uint8_t>(40 + rng() % 150);
      const std::uint8_t* p = v.data() + 1;
      for (std::uint8_t flip : {std::uint8_t{0}, std::uint8_t{0x80}}) {
        std::uint64_t hist[256] = {};
        for (std::int64_t i = 0; i < n; ++i) ++hist[static_cast<std::uint8_t>(p[i] ^ flip)];
        std::uint64_t high[16] = {};
        t->nibble_counts(p, n, flip, -1, high);
        for (int g = 0; g < 16; ++g) {
          std::uint64_t want = 0;
          for (int l = 0; l < 16; ++l) want += hist[16 * g + l];
          EXPECT_EQ(high[g], want) << to_string(t->isa) << " n=" << n << " high " << g;
          std::uint64_t low[16] = {7};  // counts add to what is there
          t->nibble_counts(p, n, flip, g, low);
          for (int l = 0; l < 16; ++l) {
            EXPECT_EQ(low[l], hist[16 * g + l] + (l == 0 ? 7 : 0))
                << to_string(t->isa) << " n=" << n << " group " << g << " low " << l;
          }
        }
      }
    }
  }
}

// count_below/min_above/window_counts of one key type against a histogram of the keys, for
// thresholds over the whole range; keys over a part of it (some thresholds above or below every
// key) and one value repeated past 2^bits - 1 registers, so that a narrow counter would wrap.
template <class K, class CountBelow, class MinAbove, class Window>
void expect_search_kernels(CountBelow count_below, MinAbove min_above, Window window,
                           const char* isa) {
  constexpr std::int64_t kKeys = std::int64_t{1} << (8 * sizeof(K));
  const std::int64_t lengths[] = {0,  1,    31,    32,    33,     64,
                                  65, 1000, 16383, 16385, 100003, sizeof(K) == 2 ? 2200000 : 70000};
  for (std::int64_t n : lengths) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(n) + 43);
    std::vector<K> v(static_cast<std::size_t>(n + 1));
    const std::int64_t lo = kKeys / 6, span = kKeys / 2;
    for (auto& x : v)
      x = static_cast<K>(rng() % 4 == 0 ? kKeys - 50 : lo + std::int64_t(rng() % span));
    const K* p = v.data() + 1;  // an odd address
    for (K flip : {K{0}, static_cast<K>(kKeys / 2)}) {
      std::vector<std::uint64_t> hist(static_cast<std::size_t>(kKeys));
      for (std::int64_t i = 0; i < n; ++i) ++hist[static_cast<K>(p[i] ^ flip)];
      for (std::int64_t a = 0; a < kKeys; a += kKeys / 7 + 1) {
        const K th[3] = {static_cast<K>(a), static_cast<K>((a + kKeys / 3) % kKeys),
                         static_cast<K>(kKeys - 1 - a)};
        std::uint64_t below[3] = {5, 0, 0};  // counts add to what is there
        count_below(p, n, flip, th, below);
        for (int j = 0; j < 3; ++j) {
          std::uint64_t want = j == 0 ? 5 : 0;
          for (std::int64_t x = 0; x < th[j]; ++x) want += hist[static_cast<std::size_t>(x)];
          EXPECT_EQ(below[j], want) << isa << " n=" << n << " t=" << std::int64_t{th[j]};
        }
        std::int64_t want_min = kKeys;
        for (std::int64_t x = a + 1; x < kKeys && want_min == kKeys; ++x) {
          if (hist[static_cast<std::size_t>(x)] != 0) want_min = x;
        }
        EXPECT_EQ(min_above(p, n, flip, static_cast<K>(a)), want_min)
            << isa << " n=" << n << " v=" << a;
        // The window from a to the end of the key range, and a narrow one.
        for (std::int64_t width : {kKeys - a, std::min<std::int64_t>(kKeys - a, 9)}) {
          std::uint64_t under = 3;
          std::vector<std::uint32_t> hist_in(static_cast<std::size_t>(width), 1);
          window(p, n, flip, static_cast<K>(a), static_cast<std::uint32_t>(width), &under,
                 hist_in.data());
          std::uint64_t want_under = 3;
          for (std::int64_t x = 0; x < a; ++x) want_under += hist[static_cast<std::size_t>(x)];
          EXPECT_EQ(under, want_under) << isa << " n=" << n << " first=" << a;
          for (std::int64_t j = 0; j < width; ++j) {
            ASSERT_EQ(hist_in[static_cast<std::size_t>(j)],
                      1 + hist[static_cast<std::size_t>(a + j)])
                << isa << " n=" << n << " first=" << a << " key=" << a + j;
          }
        }
      }
    }
  }
}

TEST(DenseKernels, CountBelowMinAboveAndWindowCountsEqualAHistogramOfTheKeysInEveryVariant) {
  for (const KernelTable* t : variants()) {
    expect_search_kernels<std::uint8_t>(t->count_below_u8, t->min_above_u8, t->window_counts_u8,
                                        to_string(t->isa));
    expect_search_kernels<std::uint16_t>(t->count_below_u16, t->min_above_u16, t->window_counts_u16,
                                         to_string(t->isa));
  }
}

TEST(DenseKernels, MinMaxKeepsTheSameZeroAsTheScalarLanes) {
  // -0.0 == +0.0: which one a min keeps depends on the order elements meet; the kernels keep
  // the scalar templates' lanes, so both paths keep the same one.
  std::vector<float> v(200, 1.0f);
  for (std::size_t i = 0; i < v.size(); i += 3) v[i] = (i / 3) % 2 ? -0.0f : 0.0f;
  for (const KernelTable* t : variants()) {
    MinMaxAcc<float> a{std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity(), false, false};
    t->minmax_f32(v.data(), static_cast<std::int64_t>(v.size()), &a);
    MinMaxFamily<float, true>::Partial b;
    MinMaxFamily<float, true>::init(b);
    std::vector<float> swapped(v);
    for (float& x : swapped) x = byteswap(x);
    MinMaxFamily<float, true>::run(b, reinterpret_cast<const std::byte*>(swapped.data()),
                                   static_cast<std::int64_t>(v.size()), sizeof(float));
    EXPECT_TRUE(same_bits(a.min, b.min)) << to_string(t->isa);
    EXPECT_EQ(a.min, 0.0f);
  }
}

// A family's partial of one dense run, in native order (dense kernels) and byte-swapped
// (scalar templates).
template <class Native, class Swapped, class T>
void expect_paths_agree(const std::vector<T>& v, const char* what) {
  std::vector<T> swapped(v);
  for (T& x : swapped) x = byteswap(x);
  typename Native::Partial a;
  typename Swapped::Partial b;
  std::memset(&a, 0, sizeof a);  // padding too, for the byte comparison
  std::memset(&b, 0, sizeof b);
  Native::init(a);
  Swapped::init(b);
  const auto n = static_cast<std::int64_t>(v.size());
  Native::run(a, reinterpret_cast<const std::byte*>(v.data()), n, sizeof(T));
  Swapped::run(b, reinterpret_cast<const std::byte*>(swapped.data()), n, sizeof(T));
  static_assert(sizeof a == sizeof b);
  EXPECT_TRUE(std::memcmp(&a, &b, sizeof a) == 0) << what << " n=" << n;
}

template <class T>
void expect_float_families_agree(std::int64_t n, bool specials) {
  // NaN from the data only: every NaN then has the same bits, whatever the order of operands.
  const std::vector<T> v = float_data<T>(n, specials, static_cast<std::uint64_t>(n) + 77, true);
  expect_paths_agree<SumFamily<T, false>, SumFamily<T, true>>(v, "sum");
  expect_paths_agree<SumFamily<T, false, true>, SumFamily<T, true, true>>(v, "nansum");
  expect_paths_agree<NormFamily<T, false>, NormFamily<T, true>>(v, "norm");
  expect_paths_agree<MomentsFamily<T, false>, MomentsFamily<T, true>>(v, "var");
  expect_paths_agree<MomentsFamily<T, false, true>, MomentsFamily<T, true, true>>(v, "nanvar");
  expect_paths_agree<MinMaxFamily<T, false>, MinMaxFamily<T, true>>(v, "minmax");
}

template <class T>
void expect_int_families_agree(std::int64_t n) {
  const std::vector<T> v = int_data<T>(n, static_cast<std::uint64_t>(n) + 3);
  expect_paths_agree<MinMaxFamily<T, false>, MinMaxFamily<T, true>>(v, "minmax");
  expect_paths_agree<MomentsFamily<T, false>, MomentsFamily<T, true>>(v, "var");
  if constexpr (kHasExactMoments<T>) {
    expect_paths_agree<MomentsMinMaxFamily<T, false>, MomentsMinMaxFamily<T, true>>(
        v, "moments+minmax");
  }
}

TEST(DenseKernels, FamiliesGiveTheScalarTemplatesPartialsBitForBit) {
  // The active variant (what reduce() uses) against the scalar reference of families.hpp.
  for (std::int64_t n : {std::int64_t{1}, std::int64_t{100}, std::int64_t{129}, std::int64_t{1500},
                         std::int64_t{70001}}) {
    for (bool specials : {false, true}) {
      expect_float_families_agree<float>(n, specials);
      expect_float_families_agree<double>(n, specials);
    }
    expect_int_families_agree<std::int8_t>(n);
    expect_int_families_agree<std::uint8_t>(n);
    expect_int_families_agree<std::int16_t>(n);
    expect_int_families_agree<std::uint16_t>(n);
    expect_int_families_agree<std::int32_t>(n);
    expect_int_families_agree<std::uint64_t>(n);
  }
}

TEST(DenseKernels, NanVarianceSkipsBlocksThatAreAllNan) {
  // Blocks 1 and 3 of a batch hold only NaN: the kernels give them no elements, the blocks
  // around them still overlap their passes, and both paths agree with a plain two-pass
  // variance of the values that are not NaN.
  const std::int64_t n = 5 * kMomentsBlock + 100;
  std::vector<double> v(static_cast<std::size_t>(n));
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal(-40.0, 2.5);
  double sum = 0;
  std::int64_t valid = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t block = i / kMomentsBlock;
    v[static_cast<std::size_t>(i)] =
        block == 1 || block == 3 ? std::numeric_limits<double>::quiet_NaN() : normal(rng);
    if (block != 1 && block != 3) {
      sum += v[static_cast<std::size_t>(i)];
      ++valid;
    }
  }
  const double mean = sum / static_cast<double>(valid);
  double m2 = 0;
  for (double x : v) m2 += std::isnan(x) ? 0.0 : (x - mean) * (x - mean);

  for (const KernelTable* t : variants()) {
    BlockMoments a[kMomentsBatch] = {}, b[kMomentsBatch] = {};
    portable().f64.nan_moments(v.data(), n, a);
    t->f64.nan_moments(v.data(), n, b);
    for (int j = 0; j < 6; ++j) EXPECT_TRUE(same_value(a[j], b[j])) << to_string(t->isa) << j;
    EXPECT_EQ(b[1].n, 0);
    EXPECT_EQ(b[3].n, 0);
    EXPECT_EQ(b[5].n, 100);
  }
  expect_paths_agree<MomentsFamily<double, false, true>, MomentsFamily<double, true, true>>(
      v, "nanvar with NaN blocks");
  MomentsFamily<double, false, true>::Partial p;
  MomentsFamily<double, false, true>::init(p);
  MomentsFamily<double, false, true>::run(p, reinterpret_cast<const std::byte*>(v.data()), n,
                                          sizeof(double));
  EXPECT_EQ(p.n, valid);
  EXPECT_NEAR(p.mean, mean, 1e-12 * std::abs(mean));
  EXPECT_NEAR(p.m2, m2, 1e-10 * m2);
}

}  // namespace
}  // namespace mmc::kernels
