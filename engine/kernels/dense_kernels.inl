// The dense-run kernels of dispatch.hpp, written once with GCC vector extensions. Each of
// dense_portable.cpp, dense_avx2.cpp and dense_avx512.cpp defines MMC_KERNEL_ISA (the variant's
// namespace) and MMC_KERNEL_VECTOR_BYTES (its register width) and includes this file; CMake
// compiles each with its own -m flags.
//
// Rules that keep the variants interchangeable:
//  - logical vectors are 64 bytes in every variant (four SSE2 registers, two AVX2 ones, one
//    AVX-512 one), so every lane sees the same elements in the same order;
//  - the files are compiled with -ffp-contract=off: no a*b+c is fused in one variant only;
//  - everything but table() has internal linkage, and the only inline code included is
//    immintrin.h's (gnu_inline: never emitted out of line), so no function compiled with AVX
//    instructions can be picked by the linker for code that runs on a CPU without them.
// The arithmetic mirrors the scalar templates of families.hpp step for step (same blocks, same
// lanes, same order of the final additions): tests check that they agree bit for bit.

#if !defined(MMC_KERNEL_ISA) || !defined(MMC_KERNEL_VECTOR_BYTES)
#error "define MMC_KERNEL_ISA and MMC_KERNEL_VECTOR_BYTES before including dense_kernels.inl"
#endif

#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "kernels/dispatch.hpp"

namespace mmc::kernels::MMC_KERNEL_ISA {
namespace {

// The variant's register width. A logical vector is 64 bytes in every variant and lives in
// kParts registers (4 with SSE2, 2 with AVX2, 1 with AVX-512); element k of 64 bytes is lane k,
// whatever the variant. (GCC keeps vectors wider than the hardware's in memory, so the split
// into registers is written out.)
constexpr int kRegBytes = MMC_KERNEL_VECTOR_BYTES;
constexpr int kParts = 64 / kRegBytes;

template <class T, int Bytes>
using Vec __attribute__((vector_size(Bytes))) = T;
template <class T>
using Reg = Vec<T, kRegBytes>;

// 64 bytes of T in kParts registers.
template <class T>
struct Lanes {
  static constexpr int kPerReg = kRegBytes / static_cast<int>(sizeof(T));
  static constexpr int kCount = kParts * kPerReg;
  Reg<T> reg[kParts];
  T lane(int k) const noexcept { return reg[k / kPerReg][k % kPerReg]; }
};

// Element i, read with memcpy: a raw file's data may start at any byte offset.
template <class T>
[[gnu::always_inline]] inline T at(const T* p, std::int64_t i) noexcept {
  T x;
  std::memcpy(&x, p + i, sizeof x);
  return x;
}

template <class T>
[[gnu::always_inline]] inline Lanes<T> load_lanes(const T* p) noexcept {
  Lanes<T> v;
  for (int j = 0; j < kParts; ++j) {
    std::memcpy(&v.reg[j], p + j * Lanes<T>::kPerReg, sizeof v.reg[j]);
  }
  return v;
}

// The lanes of v, in order, into out[0 .. kCount).
template <class T>
[[gnu::always_inline]] inline void store_lanes(const Lanes<T>& v, T* out) noexcept {
  for (int j = 0; j < kParts; ++j) {
    std::memcpy(out + j * Lanes<T>::kPerReg, &v.reg[j], sizeof v.reg[j]);
  }
}

template <class T>
[[gnu::always_inline]] inline Lanes<T> splat(T x) noexcept {
  Lanes<T> v;
  for (int j = 0; j < kParts; ++j) {
    v.reg[j] = Reg<T>{};
    for (int k = 0; k < Lanes<T>::kPerReg; ++k) v.reg[j][k] = x;
  }
  return v;
}

using D8 = Lanes<double>;  // the 8 double lanes of the pairwise sums
using L8 = Lanes<std::int64_t>;

// 8 consecutive elements as 8 doubles. GCC 12 splits __builtin_convertvector from 4 floats to
// 4 doubles into 128-bit pieces, so SSE2 and AVX2 widen with intrinsics.
[[gnu::always_inline]] inline D8 widen8(const float* p) noexcept {
  D8 d;
#if MMC_KERNEL_VECTOR_BYTES == 64
  d.reg[0] = __builtin_convertvector(_mm256_loadu_ps(p), Reg<double>);
#elif MMC_KERNEL_VECTOR_BYTES == 32
  d.reg[0] = _mm256_cvtps_pd(_mm_loadu_ps(p));
  d.reg[1] = _mm256_cvtps_pd(_mm_loadu_ps(p + 4));
#else
  const __m128 a = _mm_loadu_ps(p);
  const __m128 b = _mm_loadu_ps(p + 4);
  d.reg[0] = _mm_cvtps_pd(a);
  d.reg[1] = _mm_cvtps_pd(_mm_movehl_ps(a, a));
  d.reg[2] = _mm_cvtps_pd(b);
  d.reg[3] = _mm_cvtps_pd(_mm_movehl_ps(b, b));
#endif
  return d;
}
[[gnu::always_inline]] inline D8 widen8(const double* p) noexcept { return load_lanes(p); }

[[gnu::always_inline]] inline std::int64_t lane_total(const L8& a) noexcept {
  std::int64_t t = 0;
  for (int k = 0; k < 8; ++k) t += a.lane(k);
  return t;
}

// acc + x and x - m, each rounded once as the scalar templates' additions are, so the bits are
// the same. With FMA they go out as fma(x, 1, acc) and fms(x, 1, m), which issue on the
// multiply pipes: on Zen 3 the float-to-double conversions share the add pipes, and this moved
// the f32 variance from 20 to 27 GB/s in cache. (Not fma(x, 1, -m): negating a NaN mean would
// flip its sign bit.)
[[gnu::always_inline]] inline Reg<double> plus(Reg<double> acc, Reg<double> x) noexcept {
#if MMC_KERNEL_VECTOR_BYTES == 64
  return _mm512_fmadd_pd(x, _mm512_set1_pd(1.0), acc);
#elif MMC_KERNEL_VECTOR_BYTES == 32
  return _mm256_fmadd_pd(x, _mm256_set1_pd(1.0), acc);
#else
  return acc + x;
#endif
}
[[gnu::always_inline]] inline Reg<double> minus(Reg<double> x, double m) noexcept {
#if MMC_KERNEL_VECTOR_BYTES == 64
  return _mm512_fmsub_pd(x, _mm512_set1_pd(1.0), _mm512_set1_pd(m));
#elif MMC_KERNEL_VECTOR_BYTES == 32
  return _mm256_fmsub_pd(x, _mm256_set1_pd(1.0), _mm256_set1_pd(m));
#else
  return x - m;
#endif
}

// What a sum adds for each element, for a register of doubles and for one value (families.hpp's
// Identity, Square and NanAsZero).
struct Plain {
  [[gnu::always_inline]] static Reg<double> lanes(Reg<double> d) noexcept { return d; }
  [[gnu::always_inline]] static double one(double d) noexcept { return d; }
};
struct Squared {
  [[gnu::always_inline]] static Reg<double> lanes(Reg<double> d) noexcept { return d * d; }
  [[gnu::always_inline]] static double one(double d) noexcept { return d * d; }
};
struct NanAsZero {
  [[gnu::always_inline]] static Reg<double> lanes(Reg<double> d) noexcept {
    return d == d ? d : Reg<double>{};
  }
  [[gnu::always_inline]] static double one(double d) noexcept { return d == d ? d : 0.0; }
};

// acc += Map(x) lane by lane; with Count, cnt counts (down) the lanes that are not NaN.
template <class Map, bool Count>
[[gnu::always_inline]] inline void accumulate(D8& acc, L8& cnt, const D8& x) noexcept {
  for (int j = 0; j < kParts; ++j) {
    acc.reg[j] = plus(acc.reg[j], Map::lanes(x.reg[j]));
    if constexpr (Count) cnt.reg[j] += x.reg[j] == x.reg[j];
  }
}

// The kSumLanes = 16 double lanes of a sum leaf: lanes 0-7 in lo, 8-15 in hi.
struct D16 {
  D8 lo;
  D8 hi;
};
static_assert(kSumLanes == 16);

[[gnu::always_inline]] inline D16 zeros16() noexcept { return D16{splat(0.0), splat(0.0)}; }

[[gnu::always_inline]] inline D16 add16(const D16& a, const D16& b) noexcept {
  D16 r;
  for (int j = 0; j < kParts; ++j) {
    r.lo.reg[j] = a.lo.reg[j] + b.lo.reg[j];
    r.hi.reg[j] = a.hi.reg[j] + b.hi.reg[j];
  }
  return r;
}

// families.hpp's fold of the lanes by halves: lane k += lane k + w for w = 8, 4, 2, 1.
[[gnu::always_inline]] inline double fold16(const D16& v) noexcept {
  D8 a;
  for (int j = 0; j < kParts; ++j) a.reg[j] = v.lo.reg[j] + v.hi.reg[j];
  double t[8];
  store_lanes(a, t);
  for (int k = 0; k < 4; ++k) t[k] = t[k] + t[k + 4];
  for (int k = 0; k < 2; ++k) t[k] = t[k] + t[k + 2];
  return t[0] + t[1];
}

// How far ahead the float kernels prefetch. Their float-to-double conversions make them heavy
// enough in compute that the hardware prefetcher alone left memory idle: with 16 KiB ahead, the
// f32 variance from memory went from 23 to 28-31 GB/s with 2 threads (12-14 to 15-16 with one);
// a plain streaming byte sum (the roofline probe's loop) gains nothing from it.
constexpr std::int64_t kPrefetchBytes = 16 << 10;

template <class T>
[[gnu::always_inline]] inline void prefetch_ahead(const T* p) noexcept {
  __builtin_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes);
}

// A sum leaf: n (a multiple of 16) elements into the 16 lanes, lane k taking elements k, k + 16,
// ... With Count, cnt counts (down) the elements that are not NaN.
template <class Map, bool Count, class T>
[[gnu::always_inline]] inline D16 leaf16(const T* p, std::int64_t n, L8& cnt) noexcept {
  D16 acc = zeros16();
  for (std::int64_t i = 0; i < n; i += 16) {
    prefetch_ahead(p + i);
    accumulate<Map, Count>(acc.lo, cnt, widen8(p + i));
    accumulate<Map, Count>(acc.hi, cnt, widen8(p + i + 8));
  }
  return acc;
}

// families.hpp's SumTree: level[i] holds the lanes of 2^i leaves when bit i of `leaves` is set.
struct Tree {
  D16 level[64];
  std::uint64_t leaves = 0;

  [[gnu::always_inline]] void push(D16 v) noexcept {
    int i = 0;
    for (; (leaves >> i) & 1; ++i) v = add16(level[i], v);
    level[i] = v;
    ++leaves;
  }

  double total() const noexcept {
    if (leaves == 0) return 0.0;
    D16 acc;
    bool any = false;
    for (int i = 0; i < 64; ++i) {
      if (((leaves >> i) & 1) == 0) continue;
      acc = any ? add16(level[i], acc) : level[i];
      any = true;
    }
    return fold16(acc);
  }
};

// families.hpp's tree_sum: leaves of kSumLeaf elements (the last one rounded down to whole
// lane rows) merged pairwise, then the last n % 16 elements one by one. With Count, *valid grows
// by the elements that are not NaN.
template <class Map, bool Count, class T>
double tree_sum(const T* p, std::int64_t n, std::int64_t* valid) noexcept {
  Tree tree;
  L8 cnt = splat(std::int64_t{0});
  std::int64_t i = 0;
  while (n - i >= kSumLanes) {
    const std::int64_t len = n - i >= kSumLeaf ? kSumLeaf : (n - i) - (n - i) % kSumLanes;
    tree.push(leaf16<Map, Count>(p + i, len, cnt));
    i += len;
  }
  double s = tree.total();
  std::int64_t c = 0;
  for (; i < n; ++i) {
    const double d = static_cast<double>(at(p, i));
    s += Map::one(d);
    if constexpr (Count) c += d == d;
  }
  if constexpr (Count) *valid += c - lane_total(cnt);  // compare results are -1 per lane
  return s;
}

template <class T>
double sum(const T* p, std::int64_t n) noexcept {
  return tree_sum<Plain, false>(p, n, nullptr);
}

template <class T>
double sum_squares(const T* p, std::int64_t n) noexcept {
  return tree_sum<Squared, false>(p, n, nullptr);
}

template <class T>
double nan_sum(const T* p, std::int64_t n, std::int64_t* valid) noexcept {
  return tree_sum<NanAsZero, true>(p, n, valid);
}

// The sum half of a variance block: Σx (NaN as zero with SkipNan) and the elements counted.
struct BlockSum {
  double s;
  std::int64_t valid;
};

// A block's sum from its lanes (the first n16 = n - n % 16 elements, counted down in cnt) and
// its last n % 16 elements one by one.
template <bool SkipNan, class T>
[[gnu::always_inline]] inline BlockSum close_sum(const T* p, std::int64_t n, std::int64_t n16,
                                                 const D16& lanes, const L8& cnt) noexcept {
  using Map = std::conditional_t<SkipNan, NanAsZero, Plain>;
  double s = n16 > 0 ? fold16(lanes) : 0.0;
  std::int64_t c = 0;
  for (std::int64_t i = n16; i < n; ++i) {
    const double d = static_cast<double>(at(p, i));
    s += Map::one(d);
    if constexpr (SkipNan) c += d == d;
  }
  return BlockSum{s, SkipNan ? c - lane_total(cnt) : n};
}

template <bool SkipNan, class T>
[[gnu::always_inline]] inline BlockSum block_sum(const T* p, std::int64_t n) noexcept {
  using Map = std::conditional_t<SkipNan, NanAsZero, Plain>;
  const std::int64_t n16 = n - n % kSumLanes;
  L8 cnt = splat(std::int64_t{0});
  const D16 lanes = leaf16<Map, SkipNan>(p, n16, cnt);
  return close_sum<SkipNan>(p, n, n16, lanes, cnt);
}

// (x - mean)² of 16 elements, added to the 16 lanes (NaN adds nothing with SkipNan).
template <bool SkipNan, class T>
[[gnu::always_inline]] inline void add_deviations(D16& acc, const T* p, double mean) noexcept {
  const D8 x[2] = {widen8(p), widen8(p + 8)};
  D8* lanes[2] = {&acc.lo, &acc.hi};
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < kParts; ++j) {
      const Reg<double> e = minus(x[h].reg[j], mean);
      if constexpr (SkipNan) {
        lanes[h]->reg[j] += x[h].reg[j] == x[h].reg[j] ? e * e : Reg<double>{};
      } else {
        lanes[h]->reg[j] += e * e;
      }
    }
  }
}

// A block's M2 from its lanes and its last n % 16 elements one by one.
template <bool SkipNan, class T>
[[gnu::always_inline]] inline double close_m2(const T* p, std::int64_t n, std::int64_t n16,
                                              const D16& lanes, double mean) noexcept {
  double m2 = fold16(lanes);
  for (std::int64_t i = n16; i < n; ++i) {
    const double d = static_cast<double>(at(p, i));
    const double e = d - mean;
    if constexpr (SkipNan) {
      m2 += d == d ? e * e : 0.0;
    } else {
      m2 += e * e;
    }
  }
  return m2;
}

// Variance blocks, as families.hpp's MomentsFamily: each block of kMomentsBlock elements (the
// last one shorter) gives its mean as one sum leaf (NaN as zero and not counted with SkipNan),
// then M2 in 16 lanes folded the same way, its last n % 16 elements one by one; out[k] is block
// k's. Between two whole blocks, the M2 pass of one runs in the same loop as the sum pass of
// the next: the same additions, but the next block streams in from memory while this one is
// worked on from L1 (one block at a time left the memory idle during each M2 pass).
template <bool SkipNan, class T>
void block_moments(const T* p, std::int64_t n, BlockMoments* out) noexcept {
  using Map = std::conditional_t<SkipNan, NanAsZero, Plain>;
  constexpr std::int64_t kBlock = kMomentsBlock;
  BlockSum current = block_sum<SkipNan>(p, n < kBlock ? n : kBlock);
  for (std::int64_t start = 0; start < n; start += kBlock, ++out) {
    const T* q = p + start;
    const std::int64_t len = n - start < kBlock ? n - start : kBlock;
    const T* r = q + len;
    const std::int64_t rest = n - start - len;
    const std::int64_t next_len = rest < kBlock ? rest : kBlock;
    BlockSum next{0.0, 0};
    if (current.valid == 0) {
      *out = BlockMoments{0.0, 0.0, 0};
      if (next_len > 0) next = block_sum<SkipNan>(r, next_len);
    } else {
      const double mean = current.s / static_cast<double>(current.valid);
      const std::int64_t n16 = len - len % kSumLanes;
      D16 acc = zeros16();
      if (len == kBlock && next_len == kBlock) {
        D16 lanes = zeros16();
        L8 cnt = splat(std::int64_t{0});
        for (std::int64_t i = 0; i < kBlock; i += 16) {
          prefetch_ahead(r + i);
          add_deviations<SkipNan>(acc, q + i, mean);
          accumulate<Map, SkipNan>(lanes.lo, cnt, widen8(r + i));
          accumulate<Map, SkipNan>(lanes.hi, cnt, widen8(r + i + 8));
        }
        next = close_sum<SkipNan>(r, kBlock, kBlock, lanes, cnt);
      } else {
        for (std::int64_t i = 0; i < n16; i += 16) add_deviations<SkipNan>(acc, q + i, mean);
        if (next_len > 0) next = block_sum<SkipNan>(r, next_len);
      }
      *out = BlockMoments{mean, close_m2<SkipNan>(q, len, n16, acc, mean), current.valid};
    }
    current = next;
  }
}

// Byte sums and pair products, the two integer steps that vector extensions cannot express:
// sum_bytes adds each 8 bytes into a 64-bit lane (SAD against zero); square_pairs gives
// x[2i]² + x[2i+1]² of 16-bit lanes in 32-bit lanes (PMADDWD). Both exist from SSE2 on.
using IntReg = Reg<long long>;  // what the intrinsics take: __m128i, __m256i or __m512i

[[gnu::always_inline]] inline Reg<std::uint64_t> sum_bytes(Reg<std::uint8_t> x) noexcept {
  const IntReg v = __builtin_bit_cast(IntReg, x);
#if MMC_KERNEL_VECTOR_BYTES == 64
  const IntReg r = _mm512_sad_epu8(v, _mm512_setzero_si512());
#elif MMC_KERNEL_VECTOR_BYTES == 32
  const IntReg r = _mm256_sad_epu8(v, _mm256_setzero_si256());
#else
  const IntReg r = _mm_sad_epu8(v, _mm_setzero_si128());
#endif
  return __builtin_bit_cast(Reg<std::uint64_t>, r);
}

[[gnu::always_inline]] inline Reg<std::int32_t> square_pairs(Reg<std::int16_t> x) noexcept {
  const IntReg v = __builtin_bit_cast(IntReg, x);
#if MMC_KERNEL_VECTOR_BYTES == 64
  const IntReg r = _mm512_madd_epi16(v, v);
#elif MMC_KERNEL_VECTOR_BYTES == 32
  const IntReg r = _mm256_madd_epi16(v, v);
#else
  const IntReg r = _mm_madd_epi16(v, v);
#endif
  return __builtin_bit_cast(Reg<std::int32_t>, r);
}

// Running min and max of the elements a moments kernel folds (MinMax), else nothing.
template <class T, bool MinMax>
struct RunningMinMax {
  explicit RunningMinMax(const MinMaxAcc<T>*) noexcept {}
  void fold(T) noexcept {}
  void finish(MinMaxAcc<T>*, std::int64_t) const noexcept {}
};
template <class T>
struct RunningMinMax<T, true> {
  T min, max;
  explicit RunningMinMax(const MinMaxAcc<T>* acc) noexcept : min(acc->min), max(acc->max) {}
  [[gnu::always_inline]] void fold(T x) noexcept {
    min = x < min ? x : min;
    max = x > max ? x : max;
  }
  void finish(MinMaxAcc<T>* acc, std::int64_t n) const noexcept {
    acc->min = min;
    acc->max = max;
    acc->valid = acc->valid || n > 0;
  }
};

// Exact Σx and Σx² of n <= 2^20 bytes (Signed: int8, else uint8), a register per step: Σx by
// byte sums (of x + 128 for int8), Σx² by squaring the even and the odd bytes as 16-bit lanes.
// The 32-bit lanes of squares get at most 4 * 65025 per step and are flushed every 4096 steps.
// With MinMax the same loop folds each register into a running min and max (two instructions a
// register: mean, std, min and max of a u8 cube read its data once, in one loop).
template <bool Signed, class T, bool MinMax>
void fold_bytes(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2,
                MinMaxAcc<T>* acc) noexcept {
  constexpr int kBytes = kRegBytes;
  constexpr std::int64_t kFlush = 4096;
  Reg<std::uint64_t> acc1 = {};
  std::uint64_t total2 = 0;
  Reg<T> mn = {}, mx = {};
  if constexpr (MinMax) {
    for (int k = 0; k < kRegBytes; ++k) {
      mn[k] = acc->min;
      mx[k] = acc->max;
    }
  }
  std::int64_t i = 0;
  while (i + kBytes <= n) {
    Reg<std::int32_t> acc2 = {};
    for (std::int64_t step = 0; step < kFlush && i + kBytes <= n; ++step, i += kBytes) {
      Reg<std::uint8_t> x;
      std::memcpy(&x, p + i, sizeof x);
      const auto w = __builtin_bit_cast(Reg<std::int16_t>, x);
      Reg<std::int16_t> even, odd;
      if constexpr (Signed) {
        acc1 += sum_bytes(x ^ 0x80);
        even = (w << 8) >> 8;  // arithmetic shifts: sign-extended bytes
        odd = w >> 8;
      } else {
        acc1 += sum_bytes(x);
        even = w & 0xFF;
        odd = __builtin_bit_cast(Reg<std::int16_t>, __builtin_bit_cast(Reg<std::uint16_t>, w) >> 8);
      }
      acc2 += square_pairs(even) + square_pairs(odd);
      if constexpr (MinMax) {
        const auto v = __builtin_bit_cast(Reg<T>, x);
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
      }
    }
    for (int k = 0; k < kRegBytes / 4; ++k) total2 += static_cast<std::uint32_t>(acc2[k]);
  }
  std::int64_t total1 = 0;
  for (int k = 0; k < kRegBytes / 8; ++k) total1 += static_cast<std::int64_t>(acc1[k]);
  if constexpr (Signed) total1 -= 128 * i;
  RunningMinMax<T, MinMax> range(acc);
  if constexpr (MinMax) {
    for (int k = 0; k < kRegBytes; ++k) {
      range.min = mn[k] < range.min ? mn[k] : range.min;
      range.max = mx[k] > range.max ? mx[k] : range.max;
    }
  }
  for (; i < n; ++i) {
    const T v = at(p, i);
    const auto x = static_cast<std::int64_t>(v);
    total1 += x;
    total2 += static_cast<std::uint64_t>(x * x);
    range.fold(v);
  }
  *s1 += total1;
  *s2 += total2;
  range.finish(acc, n);
}

// Exact Σx and Σx² of n <= 2^20 16-bit integers: Σx in 32 bits, flushed every 2^16 elements,
// x² in 32 bits (|x| < 2^16) summed in 64; the compiler vectorizes this loop well enough. With
// MinMax the loop also keeps the running min and max.
template <class T, bool MinMax>
void fold_words(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2,
                MinMaxAcc<T>* acc) noexcept {
  constexpr std::int64_t kChunk = std::int64_t{1} << 16;
  using Acc = std::conditional_t<std::is_signed_v<T>, std::int32_t, std::uint32_t>;
  std::int64_t total1 = 0;
  std::uint64_t total2 = 0;
  RunningMinMax<T, MinMax> range(acc);
  for (std::int64_t start = 0; start < n; start += kChunk) {
    const std::int64_t end = start + kChunk < n ? start + kChunk : n;
    Acc a1 = 0;
    std::uint64_t a2 = 0;
    for (std::int64_t i = start; i < end; ++i) {
      const T v = at(p, i);
      const Acc x = v;
      a1 += x;
      a2 += static_cast<std::uint32_t>(x * x);
      range.fold(v);
    }
    total1 += a1;
    total2 += a2;
  }
  *s1 += total1;
  *s2 += total2;
  range.finish(acc, n);
}

// The table's entries: moments alone (ExactMomentsFn), moments with min and max
// (MomentsMinMaxFn).
template <bool Signed, class T>
void byte_moments(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2) noexcept {
  fold_bytes<Signed, T, false>(p, n, s1, s2, nullptr);
}
template <bool Signed, class T>
void byte_moments_minmax(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2,
                         MinMaxAcc<T>* acc) noexcept {
  fold_bytes<Signed, T, true>(p, n, s1, s2, acc);
}
template <class T>
void word_moments(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2) noexcept {
  fold_words<T, false>(p, n, s1, s2, nullptr);
}
template <class T>
void word_moments_minmax(const T* p, std::int64_t n, std::int64_t* s1, std::uint64_t* s2,
                         MinMaxAcc<T>* acc) noexcept {
  fold_words<T, true>(p, n, s1, s2, acc);
}

// The lanes of a register of bytes equal to v, as the bits of a mask (lane k: bit k).
#if MMC_KERNEL_VECTOR_BYTES == 64
using LaneBits = std::uint64_t;
[[gnu::always_inline]] inline LaneBits lanes_equal(Reg<std::uint8_t> x, std::uint8_t v) noexcept {
  return _mm512_cmpeq_epi8_mask(__builtin_bit_cast(IntReg, x),
                                _mm512_set1_epi8(static_cast<char>(v)));
}
#elif MMC_KERNEL_VECTOR_BYTES == 32
using LaneBits = std::uint32_t;
[[gnu::always_inline]] inline LaneBits lanes_equal(Reg<std::uint8_t> x, std::uint8_t v) noexcept {
  return static_cast<LaneBits>(_mm256_movemask_epi8(
      _mm256_cmpeq_epi8(__builtin_bit_cast(IntReg, x), _mm256_set1_epi8(static_cast<char>(v)))));
}
#else
using LaneBits = std::uint32_t;
[[gnu::always_inline]] inline LaneBits lanes_equal(Reg<std::uint8_t> x, std::uint8_t v) noexcept {
  return static_cast<LaneBits>(_mm_movemask_epi8(
      _mm_cmpeq_epi8(__builtin_bit_cast(IntReg, x), _mm_set1_epi8(static_cast<char>(v)))));
}
#endif

// counts += 1 in the byte lanes where key == v (AVX-512: a masked subtract of -1 under the
// compare's mask; otherwise the compare's -1 lanes subtracted).
[[gnu::always_inline]] inline Reg<std::uint8_t> count_equal(Reg<std::uint8_t> counts,
                                                            Reg<std::uint8_t> key,
                                                            std::uint8_t v) noexcept {
#if MMC_KERNEL_VECTOR_BYTES == 64
  const IntReg c = __builtin_bit_cast(IntReg, counts);
  return __builtin_bit_cast(Reg<std::uint8_t>,
                            _mm512_mask_sub_epi8(c, lanes_equal(key, v), c, _mm512_set1_epi8(-1)));
#else
  return counts - __builtin_bit_cast(Reg<std::uint8_t>, key == v);
#endif
}

// dispatch.hpp's NibbleCountsFn: each register's keys (the high nibbles, or the low ones with
// the lanes outside the group moved past 15) counted into 16 registers of byte counters, one
// per nibble value, which are added up (SAD) every 255 registers, before a byte could wrap:
// two vector instructions per nibble value and register, about 0.2 cycles a byte per pass
// with AVX-512.
void nibble_counts(const std::uint8_t* p, std::int64_t n, std::uint8_t flip, int group,
                   std::uint64_t* counts) noexcept {
  std::uint64_t c[16] = {};
  const bool low = group >= 0;
  const auto outside = static_cast<std::uint8_t>(low ? group : 0);
  constexpr std::int64_t kBlockRegs = 255;
  std::int64_t i = 0;
  while (i + kRegBytes <= n) {
    const std::int64_t left = (n - i) / kRegBytes;
    const std::int64_t regs = left < kBlockRegs ? left : kBlockRegs;
    Reg<std::uint8_t> cnt[16] = {};
    for (std::int64_t r = 0; r < regs; ++r, i += kRegBytes) {
      Reg<std::uint8_t> x;
      std::memcpy(&x, p + i, sizeof x);
      x ^= flip;
      const auto hi =
          __builtin_bit_cast(Reg<std::uint8_t>, __builtin_bit_cast(Reg<std::uint16_t>, x) >> 4) &
          0x0F;
      Reg<std::uint8_t> key = hi;
      if (low) {
        // Lanes of other groups get a key of 16 or more, which no value counts.
        key = (x & 0x0F) | (__builtin_bit_cast(Reg<std::uint8_t>, hi != outside) & 0x10);
      }
      for (int v = 0; v < 16; ++v) cnt[v] = count_equal(cnt[v], key, static_cast<std::uint8_t>(v));
    }
    for (int v = 0; v < 16; ++v) {
      const Reg<std::uint64_t> sums = sum_bytes(cnt[v]);
      for (int k = 0; k < kRegBytes / 8; ++k) c[v] += sums[k];
    }
  }
  for (; i < n; ++i) {
    const auto x = static_cast<std::uint8_t>(p[i] ^ flip);
    if (!low) {
      ++c[x >> 4];
    } else if (x >> 4 == group) {
      ++c[x & 0x0F];
    }
  }
  for (int v = 0; v < 16; ++v) counts[v] += c[v];
}

// The lanes of a register whose compare result (all ones or zero) is set, as the bits of a
// mask (lane k: bit k).
template <class K>
[[gnu::always_inline]] inline std::uint64_t set_lanes(Reg<K> all_or_none) noexcept {
  const IntReg v = __builtin_bit_cast(IntReg, all_or_none);
#if MMC_KERNEL_VECTOR_BYTES == 64
  if constexpr (sizeof(K) == 1) {
    return _mm512_movepi8_mask(v);
  } else {
    return _mm512_movepi16_mask(v);
  }
#else
#if MMC_KERNEL_VECTOR_BYTES == 32
  const auto bytes = static_cast<std::uint32_t>(_mm256_movemask_epi8(v));
#else
  const auto bytes = static_cast<std::uint32_t>(_mm_movemask_epi8(v));
#endif
  if constexpr (sizeof(K) == 1) {
    return bytes;
  } else {
    std::uint64_t lanes = 0;  // every second bit
    for (int k = 0; k < kRegBytes / 2; ++k) lanes |= std::uint64_t{(bytes >> (2 * k)) & 1u} << k;
    return lanes;
  }
#endif
}

// counts += 1 in the lanes where x < t, unsigned (AVX-512: a masked subtract of -1 under the
// compare's mask, two instructions; otherwise the compare's -1 lanes subtracted).
template <class K>
[[gnu::always_inline]] inline Reg<K> count_less(Reg<K> counts, Reg<K> x, Reg<K> t) noexcept {
#if MMC_KERNEL_VECTOR_BYTES == 64
  const IntReg c = __builtin_bit_cast(IntReg, counts);
  const IntReg a = __builtin_bit_cast(IntReg, x), b = __builtin_bit_cast(IntReg, t);
  if constexpr (sizeof(K) == 1) {
    return __builtin_bit_cast(
        Reg<K>, _mm512_mask_sub_epi8(c, _mm512_cmplt_epu8_mask(a, b), c, _mm512_set1_epi8(-1)));
  } else {
    return __builtin_bit_cast(
        Reg<K>, _mm512_mask_sub_epi16(c, _mm512_cmplt_epu16_mask(a, b), c, _mm512_set1_epi16(-1)));
  }
#else
  return counts - __builtin_bit_cast(Reg<K>, x < t);
#endif
}

// The lanes where x - first <= last (unsigned, wrapping), as the bits of a mask.
template <class K>
[[gnu::always_inline]] inline std::uint64_t lanes_within(Reg<K> d, Reg<K> last) noexcept {
#if MMC_KERNEL_VECTOR_BYTES == 64
  const IntReg a = __builtin_bit_cast(IntReg, d), b = __builtin_bit_cast(IntReg, last);
  if constexpr (sizeof(K) == 1) {
    return _mm512_cmple_epu8_mask(a, b);
  } else {
    return _mm512_cmple_epu16_mask(a, b);
  }
#else
  return set_lanes<K>(__builtin_bit_cast(Reg<K>, d <= last));
#endif
}

// dispatch.hpp's CountBelowFn: per register, three unsigned compares counted into counters of
// the key's width, added up every 2^bits - 1 registers, before one could wrap: six vector
// instructions per register.
template <class K>
void count_below(const K* p, std::int64_t n, K flip, const K* t, std::uint64_t* below) noexcept {
  constexpr int kLanes = kRegBytes / static_cast<int>(sizeof(K));
  constexpr std::int64_t kBlockRegs = std::numeric_limits<K>::max();
  std::uint64_t c[3] = {};
  const Reg<K> t0 = Reg<K>{} + t[0];
  const Reg<K> t1 = Reg<K>{} + t[1];
  const Reg<K> t2 = Reg<K>{} + t[2];
  std::int64_t i = 0;
  while (i + kLanes <= n) {
    const std::int64_t left = (n - i) / kLanes;
    const std::int64_t regs = left < kBlockRegs ? left : kBlockRegs;
    Reg<K> c0 = {}, c1 = {}, c2 = {};
    for (std::int64_t r = 0; r < regs; ++r, i += kLanes) {
      Reg<K> x;
      std::memcpy(&x, p + i, sizeof x);
      x ^= flip;
      c0 = count_less<K>(c0, x, t0);
      c1 = count_less<K>(c1, x, t1);
      c2 = count_less<K>(c2, x, t2);
    }
    for (int k = 0; k < kLanes; ++k) {
      c[0] += c0[k];
      c[1] += c1[k];
      c[2] += c2[k];
    }
  }
  for (; i < n; ++i) {
    const auto x = static_cast<K>(p[i] ^ flip);
    for (int j = 0; j < 3; ++j) c[j] += x < t[j] ? 1 : 0;
  }
  for (int j = 0; j < 3; ++j) below[j] += c[j];
}

// dispatch.hpp's MinAboveFn: a running minimum of the keys above v (the others as the largest
// key), and whether any was above.
template <class K>
std::int64_t min_above(const K* p, std::int64_t n, K flip, K v) noexcept {
  constexpr int kLanes = kRegBytes / static_cast<int>(sizeof(K));
  constexpr K kTop = std::numeric_limits<K>::max();
  const Reg<K> vv = Reg<K>{} + v;
  const Reg<K> top = Reg<K>{} + kTop;
  Reg<K> m = top;
  Reg<K> seen = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Reg<K> x;
    std::memcpy(&x, p + i, sizeof x);
    x ^= flip;
    const auto above = x > vv;
    const Reg<K> y = above ? x : top;
    m = m < y ? m : y;
    seen |= __builtin_bit_cast(Reg<K>, above);
  }
  std::int64_t best = kTop;
  bool any = false;
  for (int k = 0; k < kLanes; ++k) {
    best = m[k] < best ? m[k] : best;
    any = any || seen[k] != 0;
  }
  for (; i < n; ++i) {
    const auto x = static_cast<K>(p[i] ^ flip);
    if (x > v) {
      any = true;
      best = x < best ? x : best;
    }
  }
  return any ? best : std::int64_t{kTop} + 1;
}

// dispatch.hpp's WindowCountsFn: keys below `first` counted in vector counters; those in the
// window [first, first + width) counted one by one into hist, found from the lane masks (a
// register with none in the window costs a compare and a test).
template <class K>
void window_counts(const K* p, std::int64_t n, K flip, K first, std::uint32_t width,
                   std::uint64_t* below, std::uint32_t* hist) noexcept {
  constexpr int kLanes = kRegBytes / static_cast<int>(sizeof(K));
  constexpr std::int64_t kBlockRegs = std::numeric_limits<K>::max();
  const Reg<K> lo = Reg<K>{} + first;
  const Reg<K> last = Reg<K>{} + static_cast<K>(width - 1);  // width >= 1
  std::uint64_t c = 0;
  std::int64_t i = 0;
  while (i + kLanes <= n) {
    const std::int64_t left = (n - i) / kLanes;
    const std::int64_t regs = left < kBlockRegs ? left : kBlockRegs;
    Reg<K> cb = {};
    for (std::int64_t r = 0; r < regs; ++r, i += kLanes) {
      Reg<K> x;
      std::memcpy(&x, p + i, sizeof x);
      x ^= flip;
      cb = count_less<K>(cb, x, lo);
      const Reg<K> d = x - lo;  // wraps below first
      std::uint64_t in = lanes_within<K>(d, last);
      while (in != 0) {
        const int lane = __builtin_ctzll(in);
        in &= in - 1;
        ++hist[d[lane]];
      }
    }
    for (int k = 0; k < kLanes; ++k) c += cb[k];
  }
  for (; i < n; ++i) {
    const auto x = static_cast<K>(p[i] ^ flip);
    if (x < first) {
      ++c;
    } else if (static_cast<std::uint32_t>(x - first) < width) {
      ++hist[x - first];
    }
  }
  *below += c;
}

// Min and max in 64 / sizeof(T) lanes, the tail folded into lane 0, lanes merged in order: the
// lanes of families.hpp's MinMaxFamily. Float NaNs never win a comparison; they set acc->nan.
template <class T>
void minmax(const T* p, std::int64_t n, MinMaxAcc<T>* acc) noexcept {
  using V = Lanes<T>;
  using M = decltype(Reg<T>{} < Reg<T>{});
  constexpr int kLanes = V::kCount;
  V mn = splat(acc->min);
  V mx = splat(acc->max);
  M nan_lanes = {}, valid_lanes = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const V x = load_lanes(p + i);
    for (int j = 0; j < kParts; ++j) {
      const Reg<T> v = x.reg[j];
      mn.reg[j] = v < mn.reg[j] ? v : mn.reg[j];
      mx.reg[j] = v > mx.reg[j] ? v : mx.reg[j];
      nan_lanes |= v != v;
      valid_lanes |= v == v;
    }
  }
  T lane_min[kLanes], lane_max[kLanes];
  store_lanes(mn, lane_min);
  store_lanes(mx, lane_max);
  bool nan = false, valid = false;
  for (int k = 0; k < V::kPerReg; ++k) {
    nan = nan || nan_lanes[k] != 0;
    valid = valid || valid_lanes[k] != 0;
  }
  for (; i < n; ++i) {
    const T x = at(p, i);
    nan = nan || x != x;
    valid = valid || x == x;
    lane_min[0] = x < lane_min[0] ? x : lane_min[0];
    lane_max[0] = x > lane_max[0] ? x : lane_max[0];
  }
  for (int k = 0; k < kLanes; ++k) {
    acc->min = lane_min[k] < acc->min ? lane_min[k] : acc->min;
    acc->max = lane_max[k] > acc->max ? lane_max[k] : acc->max;
  }
  acc->nan = acc->nan || nan;
  acc->valid = acc->valid || valid;
}

template <class T>
constexpr FloatKernels<T> float_table() noexcept {
  return FloatKernels<T>{&sum<T>, &sum_squares<T>, &nan_sum<T>, &block_moments<false, T>,
                         &block_moments<true, T>};
}

constexpr KernelTable kTable{
    Isa::MMC_KERNEL_ISA_ENUM,
    float_table<float>(),
    float_table<double>(),
    &byte_moments<true, std::int8_t>,
    &byte_moments<false, std::uint8_t>,
    &word_moments<std::int16_t>,
    &word_moments<std::uint16_t>,
    &byte_moments_minmax<true, std::int8_t>,
    &byte_moments_minmax<false, std::uint8_t>,
    &word_moments_minmax<std::int16_t>,
    &word_moments_minmax<std::uint16_t>,
    &nibble_counts,
    &count_below<std::uint8_t>,
    &min_above<std::uint8_t>,
    &count_below<std::uint16_t>,
    &min_above<std::uint16_t>,
    &window_counts<std::uint8_t>,
    &window_counts<std::uint16_t>,
    &minmax<std::int8_t>,
    &minmax<std::uint8_t>,
    &minmax<std::int16_t>,
    &minmax<std::uint16_t>,
    &minmax<std::int32_t>,
    &minmax<std::uint32_t>,
    &minmax<std::int64_t>,
    &minmax<std::uint64_t>,
    &minmax<float>,
    &minmax<double>,
};

}  // namespace

const KernelTable& table() noexcept { return kTable; }

}  // namespace mmc::kernels::MMC_KERNEL_ISA
