// Reduction kernels, one family per kind of partial result. Each family defines:
//   Partial                  the per-output state a task sends back (trivially copyable);
//   init(P&)                 the empty state;
//   run(P&, ptr, n, stride)  folds a run of n elements (byte stride) into one partial;
//   line(P*, ptr, n, stride) folds element j of a run into partial j (outputs along memory);
//   merge(P&, const P&)      appends a later partial.
// and may define
//   lines(P*, ptr, n, stride, m, line_stride)
//                            line() over m lines (line k at ptr + k * line_stride), in order,
//                            with the same partials bit for bit (but for which of two NaNs a
//                            sum keeps, as in the dense kernels). Dense lines in native byte
//                            order are folded a block of outputs at a time, which lets the
//                            compiler vectorize what line() does one output at a time
//                            (strategy B: the mean image, reduce over axis 0).
// Families with kNeedsIndex also receive the logical (C-order, over the reduced axes) index of
// each element: run(P&, ptr, n, stride, first_index, index_stride) and
// line(P*, ptr, n, stride, index).
// T is the element type, Swap whether stored bytes are in the other byte order, SkipNan whether
// NaN elements are ignored (numpy's nan* functions). Results depend only on the plan (how the
// elements are grouped into runs and pieces), never on which worker ran what.
// Contiguous runs in native byte order go to the dense kernels of dispatch.hpp (vector code,
// chosen per CPU); the scalar templates here are the reference they match bit for bit, and
// serve strided and byte-swapped runs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/dispatch.hpp"
#include "kernels/load.hpp"
#include "kernels/sum_u8.hpp"

namespace mmc::kernels {

// __extension__ keeps -Wpedantic quiet about the GCC/Clang 128-bit integers.
__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

template <class T>
inline constexpr bool kIsFloat = std::is_floating_point_v<T>;

// Running float totals carry their rounding errors, as in Kahan's summation, so the order and
// the grouping of the additions stop mattering to a few ulps: a partial gets element after
// element (strategy B) or run after run (strategy A), and stays as accurate as one pairwise sum
// over a dense run, however many additions it takes.
// s = a + b and *err its rounding error (Dekker's Fast2Sum): exact when |a| >= |b|, as a running
// total far from zero is against one more term; otherwise off by at most an ulp of b, no worse
// than the term's own rounding. Three flops instead of TwoSum's six: strategy B pays them per
// element.
[[gnu::always_inline]] inline double two_sum(double a, double b, double* err) noexcept {
  const double s = a + b;
  *err = b - (s - a);
  return s;
}

// hi + lo += x.
[[gnu::always_inline]] inline void add_compensated(double& hi, double& lo, double x) noexcept {
  double e;
  hi = two_sum(hi, x, &e);
  lo += e;
}

// The value of hi + lo. Once hi is infinite or NaN (an infinity in the data, an overflow) lo is
// NaN and meaningless: hi is the answer, as a plain sum would give it.
inline double compensated_value(double hi, double lo) noexcept {
  return std::isfinite(hi) ? hi + lo : hi;
}

enum class FamilyKind { Sum, Moments, MinMax, MomentsMinMax, Count, AnyAll, Norm, Arg, Histogram };

// Runs the dense kernels take: contiguous and in native byte order.
template <bool Swap, bool Contig>
inline constexpr bool kDenseNative = Contig && !Swap;

template <class T>
inline const T* elements(const std::byte* p) noexcept {
  return reinterpret_cast<const T*>(p);
}

template <class T>
inline bool is_nan(T x) noexcept {
  if constexpr (kIsFloat<T>) {
    return x != x;
  } else {
    (void)x;
    return false;
  }
}

// What a pairwise sum adds up for each element.
struct Identity {
  template <class T>
  static double apply(T x) noexcept {
    return static_cast<double>(x);
  }
};
struct NanAsZero {
  template <class T>
  static double apply(T x) noexcept {
    return is_nan(x) ? 0.0 : static_cast<double>(x);
  }
};
struct Square {
  template <class T>
  static double apply(T x) noexcept {
    const double d = static_cast<double>(x);
    return d * d;
  }
};

// Float sums in double, blocked and pairwise. A run is cut into leaves of kSumLeaf elements
// (the last one shorter, rounded down to whole lane rows); a leaf is summed in kSumLanes lanes,
// lane k taking the leaf's elements k, k + kSumLanes, ... in order. Leaves then combine lane by
// lane in a pairwise tree kept like a binary counter (SumTree): the new leaf merges with each
// complete subtree of its own size to its left. At the end the pending subtrees fold right to
// left, the lanes fold by halves (lane k + lane k + w, for w = 8, 4, 2, 1), and the last
// n % kSumLanes elements add one by one. Every step depends only on n, so the result is a
// function of the data; the dense kernels (dense_kernels.inl) make the same additions in
// vector registers.
// The pending subtrees of a pairwise sum over leaves: level[i] holds the sum of 2^i leaves
// when bit i of `leaves` is set.
struct SumTree {
  double level[64][kSumLanes];
  std::uint64_t leaves = 0;

  void push(double (&v)[kSumLanes]) noexcept {
    int i = 0;
    for (; (leaves >> i) & 1; ++i) {
      for (int k = 0; k < kSumLanes; ++k) v[k] = level[i][k] + v[k];
    }
    for (int k = 0; k < kSumLanes; ++k) level[i][k] = v[k];
    ++leaves;
  }

  // The lanes of all leaves pushed, folded to one value (0 when none was).
  double total() const noexcept {
    double acc[kSumLanes] = {};
    bool any = false;
    for (int i = 0; i < 64; ++i) {
      if (((leaves >> i) & 1) == 0) continue;
      for (int k = 0; k < kSumLanes; ++k) acc[k] = any ? level[i][k] + acc[k] : level[i][k];
      any = true;
    }
    for (int w = kSumLanes / 2; w >= 1; w /= 2) {
      for (int k = 0; k < w; ++k) acc[k] = acc[k] + acc[k + w];
    }
    return acc[0];
  }
};

// The pairwise sum of Map::apply over the run; with Count, *valid grows by the elements that are
// not NaN.
template <class T, bool Swap, bool Contig, class Map, bool Count>
double tree_sum(const std::byte* p, std::int64_t n, std::int64_t runtime_stride,
                std::int64_t* valid) noexcept {
  // A compile-time stride for dense runs lets the compiler vectorize the lanes.
  const std::int64_t stride =
      Contig ? static_cast<std::int64_t>(sizeof(Stored<T>)) : runtime_stride;
  SumTree tree;
  std::int64_t c = 0;
  std::int64_t i = 0;
  while (n - i >= kSumLanes) {
    const std::int64_t end = n - i >= kSumLeaf ? i + kSumLeaf : n - (n - i) % kSumLanes;
    double acc[kSumLanes] = {};
    for (; i < end; i += kSumLanes) {
      for (int k = 0; k < kSumLanes; ++k) {
        const T x = load<T, Swap>(p + (i + k) * stride);
        acc[k] += Map::apply(x);
        if constexpr (Count) c += !is_nan(x);
      }
    }
    tree.push(acc);
  }
  double s = tree.total();
  for (; i < n; ++i) {
    const T x = load<T, Swap>(p + i * stride);
    s += Map::apply(x);
    if constexpr (Count) c += !is_nan(x);
  }
  if constexpr (Count) *valid += c;
  return s;
}

template <class T, bool Swap, bool Contig, class Map = Identity>
double pairwise_sum(const std::byte* p, std::int64_t n, std::int64_t runtime_stride) noexcept {
  return tree_sum<T, Swap, Contig, Map, false>(p, n, runtime_stride, nullptr);
}

// pairwise_sum with NaN as zero that also counts the elements that are not NaN, in one pass.
template <class T, bool Swap, bool Contig>
double pairwise_sum_counting(const std::byte* p, std::int64_t n, std::int64_t runtime_stride,
                             std::int64_t* valid) noexcept {
  return tree_sum<T, Swap, Contig, NanAsZero, true>(p, n, runtime_stride, valid);
}

// Calls f(std::true_type) when the run is dense, else f(std::false_type), so kernels get a
// compile-time stride for dense runs.
template <class T, class F>
inline void with_density(std::int64_t stride, F&& f) {
  if (stride == static_cast<std::int64_t>(sizeof(Stored<T>))) {
    f(std::true_type{});
  } else {
    f(std::false_type{});
  }
}

template <class T, bool Swap, bool Contig>
std::int64_t count_not_nan(const std::byte* p, std::int64_t n,
                           std::int64_t runtime_stride) noexcept {
  if constexpr (!kIsFloat<T>) {
    (void)p;
    (void)runtime_stride;
    return n;
  } else {
    const std::int64_t stride =
        Contig ? static_cast<std::int64_t>(sizeof(Stored<T>)) : runtime_stride;
    std::int64_t c = 0;
    for (std::int64_t i = 0; i < n; ++i) c += !is_nan(load<T, Swap>(p + i * stride));
    return c;
  }
}

// Exact integer sum of a run (bool counts true values).
template <class T, bool Swap, bool Contig>
i128 int_sum(const std::byte* p, std::int64_t n, std::int64_t runtime_stride) noexcept {
  const std::int64_t stride =
      Contig ? static_cast<std::int64_t>(sizeof(Stored<T>)) : runtime_stride;
  if constexpr (std::is_same_v<T, std::uint8_t> && Contig) {
    return static_cast<i128>(
        sum_u8(reinterpret_cast<const std::uint8_t*>(p), static_cast<std::size_t>(n)));
  } else if constexpr (sizeof(T) <= 2) {
    // 32-bit sums (twice the vector lanes of 64-bit ones) over blocks too short to overflow
    // them: 2^23 bytes (255 * 2^23 < 2^31) or 2^15 two-byte integers (65535 * 2^15 < 2^31).
    using Acc = std::conditional_t<std::is_signed_v<T>, std::int32_t, std::uint32_t>;
    constexpr std::int64_t kBlock = std::int64_t{1} << (sizeof(T) == 1 ? 23 : 15);
    i128 total = 0;
    for (std::int64_t start = 0; start < n; start += kBlock) {
      const std::int64_t end = start + kBlock < n ? start + kBlock : n;
      Acc s = 0;
      for (std::int64_t i = start; i < end; ++i)
        s += static_cast<Acc>(load<T, Swap>(p + i * stride));
      total += s;
    }
    return total;
  } else if constexpr (sizeof(T) <= 4) {
    // Blocks small enough that an int64 cannot overflow (2^32 * 2^20 < 2^63).
    constexpr std::int64_t kBlock = std::int64_t{1} << 20;
    i128 total = 0;
    for (std::int64_t start = 0; start < n; start += kBlock) {
      const std::int64_t end = start + kBlock < n ? start + kBlock : n;
      std::int64_t s = 0;
      for (std::int64_t i = start; i < end; ++i) {
        s += static_cast<std::int64_t>(load<T, Swap>(p + i * stride));
      }
      total += s;
    }
    return total;
  } else {
    i128 total = 0;
    for (std::int64_t i = 0; i < n; ++i) total += static_cast<i128>(load<T, Swap>(p + i * stride));
    return total;
  }
}

// Strategy B in blocks: line() touches one partial per element (32 bytes of state for one
// byte of u8 data), so lines() folds the m lines into kLineBlock outputs at a time, held in
// small local arrays the compiler vectorizes (narrow integer accumulators, flushed before they
// can overflow; doubles for floats), and touches the partials once per block.
inline constexpr std::int64_t kLineBlock = 2048;

// True when lines() must fall back to line() calls: strided or byte-swapped lines, or bool.
template <class T, bool Swap>
inline bool lines_by_line(std::int64_t stride) noexcept {
  return Swap || std::is_same_v<T, bool> || stride != static_cast<std::int64_t>(sizeof(T));
}

// Element j of the line starting at p (dense, native order, any alignment).
template <class T>
[[gnu::always_inline]] inline T line_at(const std::byte* p, std::int64_t j) noexcept {
  T x;
  std::memcpy(&x, p + j * static_cast<std::int64_t>(sizeof(T)), sizeof x);
  return x;
}

// The frame of every family's lines(): line() per line for what lines_by_line refuses, else
// block(j0, jn) for each block of kLineBlock outputs [j0, j0 + jn).
template <class T, bool Swap, class Family, class Block>
[[gnu::always_inline]] inline void lines_in_blocks(typename Family::Partial* a, const std::byte* p,
                                                   std::int64_t n, std::int64_t stride,
                                                   std::int64_t m, std::int64_t line_stride,
                                                   Block&& block) noexcept {
  if (lines_by_line<T, Swap>(stride)) {
    for (std::int64_t i = 0; i < m; ++i) Family::line(a, p + i * line_stride, n, stride);
    return;
  }
  for (std::int64_t j0 = 0; j0 < n; j0 += kLineBlock)
    block(j0, n - j0 < kLineBlock ? n - j0 : kLineBlock);
}

// Exact Σx (and with Squares, Σx²) over m lines for the block's outputs [j0, j0 + jn), added to
// s1[0, jn) (and s2). Narrow accumulators, flushed before they can overflow: 1-byte types sum in
// 16 bits and square in 32 for 256 lines at a time (255 * 256 < 2^16), 2-byte types sum in 32
// bits (squares in 64) for 2^15 lines; 4-byte types sum straight in 64 bits.
template <class T, bool Squares = false>
void int_lines(const std::byte* p, std::int64_t j0, std::int64_t jn, std::int64_t m,
               std::int64_t line_stride, std::int64_t* s1, std::uint64_t* s2 = nullptr) noexcept {
  static_assert(std::is_integral_v<T> && sizeof(T) <= 4 && (!Squares || sizeof(T) <= 2));
  constexpr bool kSigned = std::is_signed_v<T>;
  using Narrow = std::conditional_t<
      sizeof(T) == 1, std::conditional_t<kSigned, std::int16_t, std::uint16_t>,
      std::conditional_t<sizeof(T) == 2, std::conditional_t<kSigned, std::int32_t, std::uint32_t>,
                         std::int64_t>>;
  using Square = std::conditional_t<sizeof(T) == 1, std::uint32_t, std::uint64_t>;
  constexpr std::int64_t kLines = sizeof(T) == 1   ? 256
                                  : sizeof(T) == 2 ? (std::int64_t{1} << 15)
                                                   : std::numeric_limits<std::int64_t>::max();
  Narrow acc[kLineBlock];
  Square sq[Squares ? kLineBlock : 1];
  for (std::int64_t g = 0; g < m;) {
    const std::int64_t g1 = m - g < kLines ? m : g + kLines;
    for (std::int64_t j = 0; j < jn; ++j) acc[j] = 0;
    if constexpr (Squares) {
      for (std::int64_t j = 0; j < jn; ++j) sq[j] = 0;
    }
    for (std::int64_t i = g; i < g1; ++i) {
      const std::byte* q = p + i * line_stride;
      for (std::int64_t j = 0; j < jn; ++j) {
        const T x = line_at<T>(q, j0 + j);
        acc[j] = static_cast<Narrow>(acc[j] + static_cast<Narrow>(x));
        if constexpr (Squares) {
          using Product = std::conditional_t<kSigned, std::int32_t, std::uint32_t>;
          const Product w = static_cast<Product>(x);
          sq[j] += static_cast<Square>(static_cast<std::uint32_t>(w * w));
        }
      }
    }
    for (std::int64_t j = 0; j < jn; ++j) s1[j] += static_cast<std::int64_t>(acc[j]);
    if constexpr (Squares) {
      for (std::int64_t j = 0; j < jn; ++j) s2[j] += static_cast<std::uint64_t>(sq[j]);
    }
    g = g1;
  }
}

// sum, mean, nansum, nanmean: exact 128-bit integer sums, or double pairwise sums for floats.
// n counts the elements summed (NaN excluded when SkipNan).
template <class T, bool Swap, bool SkipNan = false>
struct SumFamily {
  static constexpr FamilyKind kKind = FamilyKind::Sum;
  static constexpr bool kNeedsIndex = false;
  struct FloatPartial {
    double sum;
    double sum_lo;  // the rounding error of sum (add_compensated)
    std::int64_t n;
  };
  struct IntPartial {
    i128 sum;
    std::int64_t n;
  };
  using Partial = std::conditional_t<kIsFloat<T>, FloatPartial, IntPartial>;
  static void init(Partial& a) noexcept {
    a.sum = 0;
    if constexpr (kIsFloat<T>) a.sum_lo = 0;
    a.n = 0;
  }
  // The float sum of what was folded.
  static double total(const Partial& a) noexcept {
    if constexpr (kIsFloat<T>) {
      return compensated_value(a.sum, a.sum_lo);
    } else {
      return static_cast<double>(a.sum);
    }
  }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      constexpr bool kDense = decltype(dense)::value;
      if constexpr (kIsFloat<T> && SkipNan) {
        std::int64_t valid = 0;
        const double s = kDenseNative<Swap, kDense>
                             ? float_kernels<T>(active_kernels()).nan_sum(elements<T>(p), n, &valid)
                             : pairwise_sum_counting<T, Swap, kDense>(p, n, stride, &valid);
        add_compensated(a.sum, a.sum_lo, s);
        a.n += valid;
      } else if constexpr (kIsFloat<T>) {
        const double s = kDenseNative<Swap, kDense>
                             ? float_kernels<T>(active_kernels()).sum(elements<T>(p), n)
                             : pairwise_sum<T, Swap, kDense>(p, n, stride);
        add_compensated(a.sum, a.sum_lo, s);
        a.n += n;
      } else {
        a.sum += int_sum<T, Swap, kDense>(p, n, stride);
        a.n += n;
      }
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      const T x = load<T, Swap>(p + j * stride);
      if constexpr (kIsFloat<T>) {
        if (SkipNan && is_nan(x)) continue;
        add_compensated(a[j].sum, a[j].sum_lo, static_cast<double>(x));
      } else {
        a[j].sum += static_cast<i128>(x);
      }
      a[j].n += 1;
    }
  }
  static void lines(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride,
                    std::int64_t m, std::int64_t line_stride) noexcept {
    lines_in_blocks<T, Swap, SumFamily>(
        a, p, n, stride, m, line_stride, [&](std::int64_t j0, std::int64_t jn) {
          if constexpr (kIsFloat<T>) {
            // The same additions as line(), in the same order per output.
            double acc[kLineBlock], lo[kLineBlock];
            std::int64_t valid[kLineBlock];
            for (std::int64_t j = 0; j < jn; ++j) {
              acc[j] = a[j0 + j].sum;
              lo[j] = a[j0 + j].sum_lo;
              valid[j] = 0;
            }
            for (std::int64_t i = 0; i < m; ++i) {
              const std::byte* q = p + i * line_stride;
              for (std::int64_t j = 0; j < jn; ++j) {
                const T x = line_at<T>(q, j0 + j);
                double e;
                const double s = two_sum(acc[j], static_cast<double>(x), &e);
                if constexpr (SkipNan) {
                  const bool ok = !is_nan(x);
                  acc[j] = ok ? s : acc[j];
                  lo[j] = ok ? lo[j] + e : lo[j];
                  valid[j] += ok;
                } else {
                  acc[j] = s;
                  lo[j] += e;
                }
              }
            }
            for (std::int64_t j = 0; j < jn; ++j) {
              a[j0 + j].sum = acc[j];
              a[j0 + j].sum_lo = lo[j];
              a[j0 + j].n += SkipNan ? valid[j] : m;
            }
          } else if constexpr (sizeof(T) <= 4 && !std::is_same_v<T, bool>) {
            std::int64_t acc[kLineBlock] = {};
            int_lines<T>(p, j0, jn, m, line_stride, acc);
            for (std::int64_t j = 0; j < jn; ++j) {
              a[j0 + j].sum += acc[j];
              a[j0 + j].n += m;
            }
          } else {
            // 8-byte integers: 128-bit sums, nothing narrower to vectorize.
            for (std::int64_t i = 0; i < m; ++i) {
              line(a + j0, p + i * line_stride + j0 * stride, jn, stride);
            }
          }
        });
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    if constexpr (kIsFloat<T>) {
      add_compensated(a.sum, a.sum_lo, b.sum);
      a.sum_lo += b.sum_lo;
    } else {
      a.sum += b.sum;
    }
    a.n += b.n;
  }
};

// L2 norm: sqrt of the pairwise double sum of squares.
template <class T, bool Swap>
struct NormFamily {
  static constexpr FamilyKind kKind = FamilyKind::Norm;
  static constexpr bool kNeedsIndex = false;
  struct Partial {
    double sumsq;
    double sumsq_lo;  // the rounding error of sumsq (add_compensated)
  };
  static void init(Partial& a) noexcept {
    a.sumsq = 0;
    a.sumsq_lo = 0;
  }
  static double total(const Partial& a) noexcept { return compensated_value(a.sumsq, a.sumsq_lo); }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      constexpr bool kDense = decltype(dense)::value;
      if constexpr (kDenseNative<Swap, kDense> && kHasFloatKernels<T>) {
        add_compensated(a.sumsq, a.sumsq_lo,
                        float_kernels<T>(active_kernels()).sum_squares(elements<T>(p), n));
      } else {
        add_compensated(a.sumsq, a.sumsq_lo, pairwise_sum<T, Swap, kDense, Square>(p, n, stride));
      }
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      add_compensated(a[j].sumsq, a[j].sumsq_lo, Square::apply(load<T, Swap>(p + j * stride)));
    }
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    add_compensated(a.sumsq, a.sumsq_lo, b.sumsq);
    a.sumsq_lo += b.sumsq_lo;
  }
};

// Integers of one or two bytes: variance is exact from n, Σx and Σx².
template <class T>
inline constexpr bool kExactMoments = !kIsFloat<T> && sizeof(T) <= 2;

// var, std, nanvar, nanstd. Exact integer moments for small integers; otherwise (count, mean,
// M2): strategy A makes each block of up to 1024 elements of a run by two passes and merges
// blocks with Chan et al.'s formula, strategy B folds element by element with Welford's update;
// the running mean and M2 carry their rounding errors (add_compensated), without which a mean
// far from zero (1000 + noise) cost the variance a digit or more.
template <class T, bool Swap, bool SkipNan = false>
struct MomentsFamily {
  static constexpr FamilyKind kKind = FamilyKind::Moments;
  static constexpr bool kNeedsIndex = false;
  struct ExactPartial {
    i128 s1;
    u128 s2;
    std::int64_t n;
  };
  struct FloatPartial {
    double mean;
    double mean_lo;  // the rounding error of mean (add_compensated)
    double m2;
    double m2_lo;  // the rounding error of m2
    std::int64_t n;
  };
  using Partial = std::conditional_t<kExactMoments<T>, ExactPartial, FloatPartial>;

  static void init(Partial& a) noexcept {
    if constexpr (kExactMoments<T>) {
      a.s1 = 0;
      a.s2 = 0;
    } else {
      a.mean = 0;
      a.mean_lo = 0;
      a.m2 = 0;
      a.m2_lo = 0;
    }
    a.n = 0;
  }

  // Appends the (count, mean, M2) of later elements, b, to a.
  static void merge_block(FloatPartial& a, const FloatPartial& b) noexcept {
    if (b.n == 0) return;
    if (a.n == 0) {
      a = b;
      return;
    }
    const double na = static_cast<double>(a.n), nb = static_cast<double>(b.n);
    const double total = na + nb;
    const double delta = (b.mean - a.mean) + (b.mean_lo - a.mean_lo);
    add_compensated(a.mean, a.mean_lo, delta * (nb / total));
    add_compensated(a.m2, a.m2_lo, b.m2);
    add_compensated(a.m2, a.m2_lo, delta * delta * (na * nb / total));
    a.m2_lo += b.m2_lo;
    a.n += b.n;
  }
  static void merge_block(FloatPartial& a, double mean, double m2, std::int64_t n) noexcept {
    merge_block(a, FloatPartial{mean, 0.0, m2, 0.0, n});
  }

  // Welford's update by x of a running mean and M2, with their rounding errors; inv is
  // 1 / (count + 1), count being the elements folded before x (the caller counts x). lines()
  // computes inv once per line when all its outputs have the same count.
  [[gnu::always_inline]] static void welford(double& mean, double& mean_lo, double& m2,
                                             double& m2_lo, double x, double inv) noexcept {
    const double delta = (x - mean) - mean_lo;
    add_compensated(mean, mean_lo, delta * inv);
    add_compensated(m2, m2_lo, delta * ((x - mean) - mean_lo));
  }

  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      constexpr bool kDense = decltype(dense)::value;
      const std::int64_t s = kDense ? static_cast<std::int64_t>(sizeof(Stored<T>)) : stride;
      if constexpr (kExactMoments<T>) {
        run_exact<kDense>(a, p, n, s);
      } else {
        run_blocks<kDense>(a, p, n, s);
      }
    });
  }

  template <bool Contig>
  static void run_exact(Partial& a, const std::byte* p, std::int64_t n,
                        std::int64_t stride) noexcept {
    if constexpr (kExactMoments<T>) {
      constexpr std::int64_t kBlock = std::int64_t{1} << 20;  // Σx² < 2^32 * 2^20 fits u64
      for (std::int64_t start = 0; start < n; start += kBlock) {
        const std::int64_t end = start + kBlock < n ? start + kBlock : n;
        std::int64_t s1 = 0;
        std::uint64_t s2 = 0;
        if constexpr (kDenseNative<Swap, Contig> && kHasExactMoments<T>) {
          exact_moments_kernel<T>(active_kernels())(elements<T>(p + start * stride), end - start,
                                                    &s1, &s2);
        } else {
          for (std::int64_t i = start; i < end; ++i) {
            const std::int64_t x = static_cast<std::int64_t>(load<T, Swap>(p + i * stride));
            s1 += x;
            s2 += static_cast<std::uint64_t>(x * x);
          }
        }
        a.s1 += s1;
        a.s2 += s2;
      }
      a.n += n;
    }
  }

  template <bool Contig>
  static void run_blocks(Partial& a, const std::byte* p, std::int64_t n,
                         std::int64_t stride) noexcept {
    if constexpr (kDenseNative<Swap, Contig> && kHasFloatKernels<T>) {
      // kMomentsBatch blocks per call (the kernel overlaps their passes), merged in order.
      const FloatKernels<T>& k = float_kernels<T>(active_kernels());
      constexpr std::int64_t kBatch = kMomentsBatch * kMomentsBlock;
      for (std::int64_t start = 0; start < n; start += kBatch) {
        const std::int64_t m = n - start < kBatch ? n - start : kBatch;
        BlockMoments b[kMomentsBatch];
        (SkipNan ? k.nan_moments : k.moments)(elements<T>(p + start * stride), m, b);
        for (std::int64_t j = 0; j * kMomentsBlock < m; ++j)
          merge_block(a, b[j].mean, b[j].m2, b[j].n);
      }
    } else if constexpr (!kExactMoments<T>) {
      constexpr std::int64_t kBlock = kMomentsBlock;
      for (std::int64_t start = 0; start < n; start += kBlock) {
        const std::int64_t m = start + kBlock < n ? kBlock : n - start;
        const std::byte* q = p + start * stride;
        std::int64_t valid = m;
        double mean;
        if constexpr (SkipNan && kIsFloat<T>) {
          valid = count_not_nan<T, Swap, Contig>(q, m, stride);
          if (valid == 0) continue;
          mean =
              pairwise_sum<T, Swap, Contig, NanAsZero>(q, m, stride) / static_cast<double>(valid);
        } else {
          mean = pairwise_sum<T, Swap, Contig>(q, m, stride) / static_cast<double>(m);
        }
        // M2 in the lanes of a sum leaf, folded the same way (SumTree::total).
        double acc[kSumLanes] = {};
        std::int64_t i = 0;
        for (; i + kSumLanes <= m; i += kSumLanes) {
          for (int k = 0; k < kSumLanes; ++k) {
            acc[k] += deviation2(load<T, Swap>(q + (i + k) * stride), mean);
          }
        }
        for (int w = kSumLanes / 2; w >= 1; w /= 2) {
          for (int k = 0; k < w; ++k) acc[k] = acc[k] + acc[k + w];
        }
        double m2 = acc[0];
        for (; i < m; ++i) m2 += deviation2(load<T, Swap>(q + i * stride), mean);
        merge_block(a, mean, m2, valid);
      }
    }
  }

  static double deviation2(T x, double mean) noexcept {
    const double d = static_cast<double>(x) - mean;
    if constexpr (SkipNan && kIsFloat<T>) {
      return is_nan(x) ? 0.0 : d * d;
    } else {
      return d * d;
    }
  }

  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      const T v = load<T, Swap>(p + j * stride);
      if constexpr (kExactMoments<T>) {
        const auto x = static_cast<std::int64_t>(v);
        a[j].s1 += x;
        a[j].s2 += static_cast<std::uint64_t>(x * x);
        a[j].n += 1;
      } else {
        if (SkipNan && is_nan(v)) continue;
        welford(a[j].mean, a[j].mean_lo, a[j].m2, a[j].m2_lo, static_cast<double>(v),
                1.0 / (static_cast<double>(a[j].n) + 1.0));
        a[j].n += 1;
      }
    }
  }

  static void lines(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride,
                    std::int64_t m, std::int64_t line_stride) noexcept {
    lines_in_blocks<T, Swap, MomentsFamily>(
        a, p, n, stride, m, line_stride, [&](std::int64_t j0, std::int64_t jn) {
          Partial* out = a + j0;
          if constexpr (std::is_same_v<T, bool>) {
            return;  // never reached: bool goes by line()
          } else if constexpr (kExactMoments<T>) {
            std::int64_t s1[kLineBlock] = {};
            std::uint64_t s2[kLineBlock] = {};
            int_lines<T, true>(p, j0, jn, m, line_stride, s1, s2);
            for (std::int64_t j = 0; j < jn; ++j) {
              out[j].s1 += s1[j];
              out[j].s2 += s2[j];
              out[j].n += m;
            }
          } else {
            // line()'s Welford updates.
            double count[kLineBlock], mean[kLineBlock], mean_lo[kLineBlock], m2[kLineBlock],
                m2_lo[kLineBlock];
            for (std::int64_t j = 0; j < jn; ++j) {
              count[j] = static_cast<double>(out[j].n);
              mean[j] = out[j].mean;
              mean_lo[j] = out[j].mean_lo;
              m2[j] = out[j].m2;
              m2_lo[j] = out[j].m2_lo;
            }
            // Without NaN skipping every line adds one to every count: when the counts start
            // equal, 1 / count is computed once per line rather than once per element, and the
            // outputs go kWelfordBlock at a time so that their state stays in L1.
            bool same_count = !SkipNan;
            for (std::int64_t j = 1; j < jn && same_count; ++j) same_count = count[j] == count[0];
            if (same_count) {
              constexpr std::int64_t kWelfordBlock = 512;
              for (std::int64_t k0 = 0; k0 < jn; k0 += kWelfordBlock) {
                const std::int64_t k1 = jn - k0 < kWelfordBlock ? jn : k0 + kWelfordBlock;
                // Four lines per pass over the state, which stays in registers meanwhile.
                double c = count[0];
                std::int64_t i = 0;
                for (; i + 4 <= m; i += 4, c += 4.0) {
                  const std::byte* q = p + i * line_stride;
                  const double inv[4] = {1.0 / (c + 1.0), 1.0 / (c + 2.0), 1.0 / (c + 3.0),
                                         1.0 / (c + 4.0)};
                  for (std::int64_t j = k0; j < k1; ++j) {
                    double mn = mean[j], ml = mean_lo[j], s2 = m2[j], sl = m2_lo[j];
                    for (int r = 0; r < 4; ++r) {
                      welford(mn, ml, s2, sl,
                              static_cast<double>(line_at<T>(q + r * line_stride, j0 + j)), inv[r]);
                    }
                    mean[j] = mn;
                    mean_lo[j] = ml;
                    m2[j] = s2;
                    m2_lo[j] = sl;
                  }
                }
                for (; i < m; ++i, c += 1.0) {
                  const std::byte* q = p + i * line_stride;
                  const double inv = 1.0 / (c + 1.0);
                  for (std::int64_t j = k0; j < k1; ++j) {
                    welford(mean[j], mean_lo[j], m2[j], m2_lo[j],
                            static_cast<double>(line_at<T>(q, j0 + j)), inv);
                  }
                }
              }
              for (std::int64_t j = 0; j < jn; ++j) count[j] += static_cast<double>(m);
            } else {
              for (std::int64_t i = 0; i < m; ++i) {
                const std::byte* q = p + i * line_stride;
                for (std::int64_t j = 0; j < jn; ++j) {
                  const T v = line_at<T>(q, j0 + j);
                  double mn = mean[j], ml = mean_lo[j], s = m2[j], sl = m2_lo[j];
                  welford(mn, ml, s, sl, static_cast<double>(v), 1.0 / (count[j] + 1.0));
                  const bool take = !(SkipNan && is_nan(v));  // nan*: a NaN changes nothing
                  count[j] = take ? count[j] + 1.0 : count[j];
                  mean[j] = take ? mn : mean[j];
                  mean_lo[j] = take ? ml : mean_lo[j];
                  m2[j] = take ? s : m2[j];
                  m2_lo[j] = take ? sl : m2_lo[j];
                }
              }
            }
            for (std::int64_t j = 0; j < jn; ++j) {
              out[j].n = static_cast<std::int64_t>(count[j]);
              out[j].mean = mean[j];
              out[j].mean_lo = mean_lo[j];
              out[j].m2 = m2[j];
              out[j].m2_lo = m2_lo[j];
            }
          }
        });
  }

  static void merge(Partial& a, const Partial& b) noexcept {
    if constexpr (kExactMoments<T>) {
      a.s1 += b.s1;
      a.s2 += b.s2;
      a.n += b.n;
    } else {
      merge_block(a, b);
    }
  }

  // Variance with ddof: M2 / max(n - ddof, 0), as numpy (inf or NaN when that is 0).
  static double variance(const Partial& a, int ddof) noexcept {
    if (a.n == 0) return std::numeric_limits<double>::quiet_NaN();
    const std::int64_t dof = a.n - ddof > 0 ? a.n - ddof : 0;
    if constexpr (kExactMoments<T>) {
      // n·M2 = n·Σx² − (Σx)², exact and non-negative.
      const u128 n = static_cast<u128>(a.n);
      const i128 s1 = a.s1;
      const u128 s1_abs = static_cast<u128>(s1 < 0 ? -s1 : s1);
      const u128 nm2 = n * a.s2 - s1_abs * s1_abs;
      const long double m2 = static_cast<long double>(nm2) / static_cast<long double>(a.n);
      return static_cast<double>(m2 / static_cast<long double>(dof));
    } else {
      return compensated_value(a.m2, a.m2_lo) / static_cast<double>(dof);
    }
  }
};

// min and max together (one pass gives both). Without SkipNan a NaN makes the result NaN, like
// numpy's minimum/maximum; with SkipNan NaNs are ignored and an all-NaN slice gives NaN.
template <class T, bool Swap, bool SkipNan = false>
struct MinMaxFamily {
  static constexpr FamilyKind kKind = FamilyKind::MinMax;
  static constexpr bool kNeedsIndex = false;
  using Partial = MinMaxAcc<T>;  // min, max, nan (a NaN was seen), valid (a non-NaN was seen)
  static void init(Partial& a) noexcept {
    if constexpr (kIsFloat<T>) {
      a.min = std::numeric_limits<T>::infinity();
      a.max = -std::numeric_limits<T>::infinity();
    } else {
      a.min = std::numeric_limits<T>::max();
      a.max = std::numeric_limits<T>::lowest();
    }
    a.nan = false;
    a.valid = false;
  }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      constexpr bool kDense = decltype(dense)::value;
      if constexpr (kDenseNative<Swap, kDense> && kHasMinMaxKernel<T>) {
        minmax_kernel<T>(active_kernels())(elements<T>(p), n, &a);
        return;
      }
      const std::int64_t s = kDense ? static_cast<std::int64_t>(sizeof(Stored<T>)) : stride;
      // The lanes of the dense kernel (64 bytes of elements), so that the zero kept among
      // -0.0 and +0.0 does not depend on the path taken.
      constexpr int kLanes = 64 / sizeof(Stored<T>);
      T mn[kLanes], mx[kLanes];
      std::int64_t nans[kLanes];
      for (int k = 0; k < kLanes; ++k) {
        mn[k] = a.min;
        mx[k] = a.max;
        nans[k] = 0;
      }
      std::int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes) {
        for (int k = 0; k < kLanes; ++k) {
          const T x = load<T, Swap>(p + (i + k) * s);
          nans[k] += is_nan(x);
          mn[k] = x < mn[k] ? x : mn[k];  // NaN compares false: never taken
          mx[k] = x > mx[k] ? x : mx[k];
        }
      }
      for (; i < n; ++i) {
        const T x = load<T, Swap>(p + i * s);
        nans[0] += is_nan(x);
        mn[0] = x < mn[0] ? x : mn[0];
        mx[0] = x > mx[0] ? x : mx[0];
      }
      std::int64_t total_nans = 0;
      for (int k = 0; k < kLanes; ++k) {
        a.min = mn[k] < a.min ? mn[k] : a.min;
        a.max = mx[k] > a.max ? mx[k] : a.max;
        total_nans += nans[k];
      }
      a.nan = a.nan || total_nans > 0;
      a.valid = a.valid || total_nans < n;
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      const T x = load<T, Swap>(p + j * stride);
      if (is_nan(x)) {
        a[j].nan = true;
        continue;
      }
      a[j].min = x < a[j].min ? x : a[j].min;
      a[j].max = x > a[j].max ? x : a[j].max;
      a[j].valid = true;
    }
  }
  static void lines(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride,
                    std::int64_t m, std::int64_t line_stride) noexcept {
    lines_in_blocks<T, Swap, MinMaxFamily>(
        a, p, n, stride, m, line_stride, [&](std::int64_t j0, std::int64_t jn) {
          if constexpr (!std::is_same_v<T, bool>) {  // bool goes by line()
            T mn[kLineBlock], mx[kLineBlock];
            std::uint8_t nan[kLineBlock], valid[kLineBlock];
            for (std::int64_t j = 0; j < jn; ++j) {
              mn[j] = a[j0 + j].min;
              mx[j] = a[j0 + j].max;
            }
            block_lines(p, j0, jn, m, line_stride, mn, mx, nan, valid);
            for (std::int64_t j = 0; j < jn; ++j) {
              Partial& out = a[j0 + j];
              out.min = mn[j];
              out.max = mx[j];
              out.nan = out.nan || nan[j] != 0;
              out.valid = out.valid || valid[j] != 0;
            }
          }
        });
  }
  // lines()' block: m lines folded into the running min and max of outputs [j0, j0 + jn), held
  // in mn[0, jn) and mx; nan[j] and valid[j] say whether output j met a NaN or anything else.
  static void block_lines(const std::byte* p, std::int64_t j0, std::int64_t jn, std::int64_t m,
                          std::int64_t line_stride, T* mn, T* mx, std::uint8_t* nan,
                          std::uint8_t* valid) noexcept {
    for (std::int64_t j = 0; j < jn; ++j) {
      nan[j] = 0;
      valid[j] = 0;
    }
    for (std::int64_t i = 0; i < m; ++i) {
      const std::byte* q = p + i * line_stride;
      for (std::int64_t j = 0; j < jn; ++j) {
        const T x = line_at<T>(q, j0 + j);
        mn[j] = x < mn[j] ? x : mn[j];  // NaN compares false: skipped, as in line()
        mx[j] = x > mx[j] ? x : mx[j];
        const std::uint8_t is = is_nan(x) ? 1 : 0;
        nan[j] |= is;
        valid[j] |= static_cast<std::uint8_t>(is ^ 1);
      }
    }
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    a.min = b.min < a.min ? b.min : a.min;
    a.max = b.max > a.max ? b.max : a.max;
    a.nan = a.nan || b.nan;
    a.valid = a.valid || b.valid;
  }
  // The min or max as stored in the output; NaN per the rules above.
  static T result(const Partial& a, bool want_min) noexcept {
    if constexpr (kIsFloat<T>) {
      if ((!SkipNan && a.nan) || !a.valid) return std::numeric_limits<T>::quiet_NaN();
    }
    return want_min ? a.min : a.max;
  }
};

// Small integers' moments with their min and max (MomentsFamily and MinMaxFamily in one scan):
// the executor fuses the two when a pass asks for both (mean, std, min and max of a u8 cube in
// one loop over the data rather than two). Each half is what its own family would make.
template <class T, bool Swap>
struct MomentsMinMaxFamily {
  static_assert(kHasExactMoments<T>);
  using Moments = MomentsFamily<T, Swap>;
  using MinMax = MinMaxFamily<T, Swap>;
  static constexpr FamilyKind kKind = FamilyKind::MomentsMinMax;
  static constexpr bool kNeedsIndex = false;
  struct Partial {
    typename Moments::Partial moments;
    typename MinMax::Partial range;
  };
  static void init(Partial& a) noexcept {
    Moments::init(a.moments);
    MinMax::init(a.range);
  }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      if constexpr (kDenseNative<Swap, decltype(dense)::value>) {
        const MomentsMinMaxFn<T> fused = moments_minmax_kernel<T>(active_kernels());
        constexpr std::int64_t kBlock = std::int64_t{1} << 20;  // as Moments::run_exact
        for (std::int64_t start = 0; start < n; start += kBlock) {
          const std::int64_t end = start + kBlock < n ? start + kBlock : n;
          std::int64_t s1 = 0;
          std::uint64_t s2 = 0;
          fused(elements<T>(p + start * stride), end - start, &s1, &s2, &a.range);
          a.moments.s1 += s1;
          a.moments.s2 += s2;
        }
        a.moments.n += n;
      } else {
        Moments::run(a.moments, p, n, stride);
        MinMax::run(a.range, p, n, stride);
      }
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      Moments::line(&a[j].moments, p + j * stride, 1, stride);
      MinMax::line(&a[j].range, p + j * stride, 1, stride);
    }
  }
  static void lines(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride,
                    std::int64_t m, std::int64_t line_stride) noexcept {
    lines_in_blocks<T, Swap, MomentsMinMaxFamily>(
        a, p, n, stride, m, line_stride, [&](std::int64_t j0, std::int64_t jn) {
          Partial* out = a + j0;
          std::int64_t s1[kLineBlock] = {};
          std::uint64_t s2[kLineBlock] = {};
          T mn[kLineBlock], mx[kLineBlock];
          std::uint8_t nan[kLineBlock], valid[kLineBlock];
          for (std::int64_t j = 0; j < jn; ++j) {
            mn[j] = out[j].range.min;
            mx[j] = out[j].range.max;
          }
          // The moments, then the min and max, of kChunk lines at a time: the second scan finds
          // them in cache (64 lines of 2048 outputs: 256 KiB of u16).
          constexpr std::int64_t kChunk = 64;
          for (std::int64_t i = 0; i < m; i += kChunk) {
            const std::int64_t mi = m - i < kChunk ? m - i : kChunk;
            const std::byte* q = p + i * line_stride;
            int_lines<T, true>(q, j0, jn, mi, line_stride, s1, s2);
            MinMax::block_lines(q, j0, jn, mi, line_stride, mn, mx, nan, valid);
          }
          for (std::int64_t j = 0; j < jn; ++j) {
            out[j].moments.s1 += s1[j];
            out[j].moments.s2 += s2[j];
            out[j].moments.n += m;
            out[j].range.min = mn[j];
            out[j].range.max = mx[j];
            out[j].range.valid = out[j].range.valid || m > 0;
          }
        });
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    Moments::merge(a.moments, b.moments);
    MinMax::merge(a.range, b.range);
  }
};

// count: elements that are not NaN.
template <class T, bool Swap>
struct CountFamily {
  static constexpr FamilyKind kKind = FamilyKind::Count;
  static constexpr bool kNeedsIndex = false;
  struct Partial {
    std::int64_t n;
  };
  static void init(Partial& a) noexcept { a.n = 0; }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      a.n += count_not_nan<T, Swap, decltype(dense)::value>(p, n, stride);
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) a[j].n += !is_nan(load<T, Swap>(p + j * stride));
  }
  static void merge(Partial& a, const Partial& b) noexcept { a.n += b.n; }
};

// any and all: truth is x != 0 (NaN is true, -0.0 is false), as numpy.
template <class T, bool Swap>
struct AnyAllFamily {
  static constexpr FamilyKind kKind = FamilyKind::AnyAll;
  static constexpr bool kNeedsIndex = false;
  struct Partial {
    bool any;
    bool all;
  };
  static void init(Partial& a) noexcept {
    a.any = false;
    a.all = true;
  }
  static bool truth(T x) noexcept { return x != T{}; }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    with_density<T>(stride, [&](auto dense) {
      const std::int64_t s =
          decltype(dense)::value ? static_cast<std::int64_t>(sizeof(Stored<T>)) : stride;
      std::int64_t true_count = 0;
      for (std::int64_t i = 0; i < n; ++i) true_count += truth(load<T, Swap>(p + i * s));
      a.any = a.any || true_count > 0;
      a.all = a.all && true_count == n;
    });
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride) noexcept {
    for (std::int64_t j = 0; j < n; ++j) {
      const bool t = truth(load<T, Swap>(p + j * stride));
      a[j].any = a[j].any || t;
      a[j].all = a[j].all && t;
    }
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    a.any = a.any || b.any;
    a.all = a.all && b.all;
  }
};

// argmin and argmax: the first (lowest C-order index over the reduced axes) extreme element;
// a NaN wins over everything, first NaN first, as numpy.
template <class T, bool Swap, bool IsMax>
struct ArgFamily {
  static constexpr FamilyKind kKind = FamilyKind::Arg;
  static constexpr bool kNeedsIndex = true;
  static constexpr std::int64_t kNone = std::numeric_limits<std::int64_t>::max();
  struct Partial {
    T best;
    std::int64_t index;      // of best; kNone when no element was seen
    std::int64_t nan_index;  // of the first NaN; kNone when none
  };
  static void init(Partial& a) noexcept {
    a.best = T{};
    a.index = kNone;
    a.nan_index = kNone;
  }
  static bool better(T x, T best) noexcept { return IsMax ? x > best : x < best; }
  static void update(Partial& a, T x, std::int64_t idx) noexcept {
    if (is_nan(x)) {
      a.nan_index = idx < a.nan_index ? idx : a.nan_index;
    } else if (a.index == kNone || better(x, a.best) || (x == a.best && idx < a.index)) {
      a.best = x;
      a.index = idx;
    }
  }
  static void run(Partial& a, const std::byte* p, std::int64_t n, std::int64_t stride,
                  std::int64_t first, std::int64_t index_stride) noexcept {
    // Lane k sees elements k, k + kLanes, ...: indices increase within a lane, so a strict
    // comparison keeps the first extreme; lanes then merge with ties going to lower indices.
    constexpr int kLanes = 8;
    if (n < 4 * kLanes) {
      for (std::int64_t i = 0; i < n; ++i) {
        update(a, load<T, Swap>(p + i * stride), first + i * index_stride);
      }
      return;
    }
    T best[kLanes];
    std::int64_t at[kLanes];
    std::int64_t nan_at = kNone;
    for (int k = 0; k < kLanes; ++k) {
      best[k] = load<T, Swap>(p + k * stride);
      at[k] = k;
    }
    std::int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const T x = load<T, Swap>(p + (i + k) * stride);
        const bool take = IsMax ? x > best[k] : x < best[k];
        best[k] = take ? x : best[k];
        at[k] = take ? i + k : at[k];
      }
      if constexpr (kIsFloat<T>) {
        if (nan_at == kNone) {
          for (int k = 0; k < kLanes; ++k) {
            if (is_nan(load<T, Swap>(p + (i + k) * stride))) {
              nan_at = i + k;
              break;
            }
          }
        }
      }
    }
    for (int k = 0; k < kLanes; ++k) {
      // A lane that started on a NaN never moved: its NaN is caught by the scan above.
      if (!is_nan(best[k])) update(a, best[k], first + at[k] * index_stride);
    }
    if (nan_at != kNone)
      update(a, std::numeric_limits<T>::quiet_NaN(), first + nan_at * index_stride);
    for (; i < n; ++i) update(a, load<T, Swap>(p + i * stride), first + i * index_stride);
  }
  static void line(Partial* a, const std::byte* p, std::int64_t n, std::int64_t stride,
                   std::int64_t index) noexcept {
    for (std::int64_t j = 0; j < n; ++j) update(a[j], load<T, Swap>(p + j * stride), index);
  }
  static void merge(Partial& a, const Partial& b) noexcept {
    a.nan_index = b.nan_index < a.nan_index ? b.nan_index : a.nan_index;
    if (b.index != kNone) update(a, b.best, b.index);
  }
  static std::int64_t result(const Partial& a) noexcept {
    return a.nan_index != kNone ? a.nan_index : a.index;
  }
};

}  // namespace mmc::kernels
