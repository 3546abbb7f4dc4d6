// Dense-run kernels compiled once per instruction set from one source (dense_kernels.inl) and
// chosen once per process from what the CPU supports, as simdjson does: a portable variant (the
// x86-64 baseline, SSE2) that tests use as the reference, AVX2 and AVX-512.
//
// Every kernel reads n contiguous elements in native byte order, at any alignment. Vectors
// have the same width (64 bytes) and the same lanes in every variant and nothing is fused
// (-ffp-contract=off), so all variants give bitwise identical results, equal to the scalar
// templates of families.hpp. (Except NaN payloads: which of two NaNs an addition keeps depends
// on the operand order the compiler picked.)
#pragma once

#include <cstdint>
#include <type_traits>

namespace mmc::kernels {

enum class Isa : std::uint8_t { Portable, Avx2, Avx512 };

// "portable", "avx2", "avx512".
const char* to_string(Isa isa) noexcept;

// Running min and max of a slice. nan: a NaN was seen; valid: a non-NaN element was seen.
template <class T>
struct MinMaxAcc {
  T min;
  T max;
  bool nan;
  bool valid;
};

// Float sums: leaves of kSumLeaf elements in kSumLanes double lanes, combined pairwise
// (families.hpp's tree_sum says how, the dense kernels do the same additions).
inline constexpr std::int64_t kSumLanes = 16;
inline constexpr std::int64_t kSumLeaf = 1024;

// Elements of a variance block (families.hpp's MomentsFamily); a block's mean is one sum leaf.
inline constexpr std::int64_t kMomentsBlock = 1024;
static_assert(kMomentsBlock <= kSumLeaf && kMomentsBlock % kSumLanes == 0);
// Blocks per call of the moments kernels.
inline constexpr std::int64_t kMomentsBatch = 16;

// Mean and M2 (sum of squared deviations from the mean) of one block, over n elements.
struct BlockMoments {
  double mean;
  double m2;
  std::int64_t n;
};

// Float kernels (T is float or double); sums are pairwise in double (see families.hpp).
template <class T>
struct FloatKernels {
  double (*sum)(const T* p, std::int64_t n) noexcept;
  double (*sum_squares)(const T* p, std::int64_t n) noexcept;
  // NaN counts as zero; *valid grows by the number of elements that are not NaN.
  double (*nan_sum)(const T* p, std::int64_t n, std::int64_t* valid) noexcept;
  // Variance blocks of kMomentsBlock elements (the last one shorter), each its mean by pairwise
  // sum then M2 in kSumLanes lanes: n <= kMomentsBatch * kMomentsBlock elements give out[k] for
  // block k.
  void (*moments)(const T* p, std::int64_t n, BlockMoments* out) noexcept;
  void (*nan_moments)(const T* p, std::int64_t n, BlockMoments* out) noexcept;
};

// Exact Σx and Σx² of n <= 2^20 integers of one or two bytes.
template <class T>
using ExactMomentsFn = void (*)(const T* p, std::int64_t n, std::int64_t* s1,
                                std::uint64_t* s2) noexcept;

// Exact Σx and Σx² (as ExactMomentsFn) and the min and max (as MinMaxFn) in one loop.
template <class T>
using MomentsMinMaxFn = void (*)(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2,
                                 MinMaxAcc<T>* acc) noexcept;

// Counts of the nibbles of n one-byte keys (each byte ^ flip): with group < 0, counts[v] grows by
// the keys whose high nibble is v; with group g in [0, 16), by the keys whose high nibble is g
// and low nibble v (an order statistic of bytes found by two such passes over data in cache).
using NibbleCountsFn = void (*)(const std::uint8_t* p, std::int64_t n, std::uint8_t flip, int group,
                                std::uint64_t* counts) noexcept;

// How many of n unsigned keys of one or two bytes (each ^ flip) are below each of three
// thresholds: below[j] += #{key < t[j]} (one pass; a search for an order statistic in cache).
template <class K>
using CountBelowFn = void (*)(const K* p, std::int64_t n, K flip, const K* t,
                              std::uint64_t* below) noexcept;

// The smallest of n unsigned keys (each ^ flip) above v, or the key type's largest + 1 when
// none is.
template <class K>
using MinAboveFn = std::int64_t (*)(const K* p, std::int64_t n, K flip, K v) noexcept;

// Of n unsigned keys of one or two bytes (each ^ flip): below += #{key < first}, and
// hist[key - first] += 1 for each key in [first, first + width). REQUIRES: width >= 1 and
// first + width <= 2^bits.
template <class K>
using WindowCountsFn = void (*)(const K* p, std::int64_t n, K flip, K first, std::uint32_t width,
                                std::uint64_t* below, std::uint32_t* hist) noexcept;

// Folds n elements into acc (min/max, and for floats the nan/valid flags).
template <class T>
using MinMaxFn = void (*)(const T* p, std::int64_t n, MinMaxAcc<T>* acc) noexcept;

struct KernelTable {
  Isa isa;
  FloatKernels<float> f32;
  FloatKernels<double> f64;
  ExactMomentsFn<std::int8_t> moments_i8;
  ExactMomentsFn<std::uint8_t> moments_u8;
  ExactMomentsFn<std::int16_t> moments_i16;
  ExactMomentsFn<std::uint16_t> moments_u16;
  MomentsMinMaxFn<std::int8_t> moments_minmax_i8;
  MomentsMinMaxFn<std::uint8_t> moments_minmax_u8;
  MomentsMinMaxFn<std::int16_t> moments_minmax_i16;
  MomentsMinMaxFn<std::uint16_t> moments_minmax_u16;
  NibbleCountsFn nibble_counts;
  CountBelowFn<std::uint8_t> count_below_u8;
  MinAboveFn<std::uint8_t> min_above_u8;
  CountBelowFn<std::uint16_t> count_below_u16;
  MinAboveFn<std::uint16_t> min_above_u16;
  WindowCountsFn<std::uint8_t> window_counts_u8;
  WindowCountsFn<std::uint16_t> window_counts_u16;
  MinMaxFn<std::int8_t> minmax_i8;
  MinMaxFn<std::uint8_t> minmax_u8;
  MinMaxFn<std::int16_t> minmax_i16;
  MinMaxFn<std::uint16_t> minmax_u16;
  MinMaxFn<std::int32_t> minmax_i32;
  MinMaxFn<std::uint32_t> minmax_u32;
  MinMaxFn<std::int64_t> minmax_i64;
  MinMaxFn<std::uint64_t> minmax_u64;
  MinMaxFn<float> minmax_f32;
  MinMaxFn<double> minmax_f64;
};

// The variant this process uses: the best the CPU supports, lowered (never raised) by the
// environment variable MMC_ISA=portable|avx2|avx512; other values of MMC_ISA are ignored.
// Chosen at the first call; thread-safe.
const KernelTable& active_kernels() noexcept;

// The variant for `isa`, or nullptr when it was not compiled in or this CPU cannot run it.
const KernelTable* kernels_for(Isa isa) noexcept;

// Typed access to a table's entries, for templates over the element type.
template <class T>
inline constexpr bool kHasFloatKernels = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <class T>
const FloatKernels<T>& float_kernels(const KernelTable& t) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return t.f32;
  } else {
    return t.f64;
  }
}

template <class T>
inline constexpr bool kHasExactMoments =
    std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t> ||
    std::is_same_v<T, std::int16_t> || std::is_same_v<T, std::uint16_t>;

template <class T>
ExactMomentsFn<T> exact_moments_kernel(const KernelTable& t) noexcept {
  if constexpr (std::is_same_v<T, std::int8_t>) return t.moments_i8;
  if constexpr (std::is_same_v<T, std::uint8_t>) return t.moments_u8;
  if constexpr (std::is_same_v<T, std::int16_t>) return t.moments_i16;
  if constexpr (std::is_same_v<T, std::uint16_t>) return t.moments_u16;
}

template <class T>
MomentsMinMaxFn<T> moments_minmax_kernel(const KernelTable& t) noexcept {
  if constexpr (std::is_same_v<T, std::int8_t>) return t.moments_minmax_i8;
  if constexpr (std::is_same_v<T, std::uint8_t>) return t.moments_minmax_u8;
  if constexpr (std::is_same_v<T, std::int16_t>) return t.moments_minmax_i16;
  if constexpr (std::is_same_v<T, std::uint16_t>) return t.moments_minmax_u16;
}

template <class T>
inline constexpr bool kHasMinMaxKernel =
    std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 8;

template <class T>
MinMaxFn<T> minmax_kernel(const KernelTable& t) noexcept {
  if constexpr (std::is_same_v<T, std::int8_t>) return t.minmax_i8;
  if constexpr (std::is_same_v<T, std::uint8_t>) return t.minmax_u8;
  if constexpr (std::is_same_v<T, std::int16_t>) return t.minmax_i16;
  if constexpr (std::is_same_v<T, std::uint16_t>) return t.minmax_u16;
  if constexpr (std::is_same_v<T, std::int32_t>) return t.minmax_i32;
  if constexpr (std::is_same_v<T, std::uint32_t>) return t.minmax_u32;
  if constexpr (std::is_same_v<T, std::int64_t>) return t.minmax_i64;
  if constexpr (std::is_same_v<T, std::uint64_t>) return t.minmax_u64;
  if constexpr (std::is_same_v<T, float>) return t.minmax_f32;
  if constexpr (std::is_same_v<T, double>) return t.minmax_f64;
}

}  // namespace mmc::kernels
