// u8 sums: SAD-based AVX2 kernel with a portable fallback, chosen with the dense kernels
// (dispatch.hpp), so MMC_ISA lowers it too.
#include "kernels/sum_u8.hpp"

#include <immintrin.h>

namespace mmc::kernels {

std::uint64_t sum_u8_portable(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t total = 0;
  // 32-bit lanes cannot overflow within 2^24 bytes of 255s; the compiler widens in vectors.
  constexpr std::size_t kBlock = std::size_t{1} << 24;
  for (std::size_t start = 0; start < n; start += kBlock) {
    const std::size_t end = start + kBlock < n ? start + kBlock : n;
    std::uint32_t s = 0;
    for (std::size_t i = start; i < end; ++i) s += p[i];
    total += s;
  }
  return total;
}

namespace {

__attribute__((target("avx2"))) std::uint64_t sum_u8_avx2(const std::uint8_t* p,
                                                          std::size_t n) noexcept {
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc0 = zero, acc1 = zero, acc2 = zero, acc3 = zero;
  std::size_t i = 0;
  // _mm256_sad_epu8 against zero sums each 8 bytes into a 64-bit lane: exact widening.
  for (; i + 128 <= n; i += 128) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64));
    const __m256i d = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96));
    acc0 = _mm256_add_epi64(acc0, _mm256_sad_epu8(a, zero));
    acc1 = _mm256_add_epi64(acc1, _mm256_sad_epu8(b, zero));
    acc2 = _mm256_add_epi64(acc2, _mm256_sad_epu8(c, zero));
    acc3 = _mm256_add_epi64(acc3, _mm256_sad_epu8(d, zero));
  }
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
    acc0 = _mm256_add_epi64(acc0, _mm256_sad_epu8(a, zero));
  }
  const __m256i sum = _mm256_add_epi64(_mm256_add_epi64(acc0, acc1), _mm256_add_epi64(acc2, acc3));
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
  std::uint64_t total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < n; ++i) total += p[i];
  return total;
}

}  // namespace

SumU8Fn sum_u8_for(Isa isa) noexcept {
  if (kernels_for(isa) == nullptr) return nullptr;
  return isa == Isa::Portable ? &sum_u8_portable : &sum_u8_avx2;
}

SumU8Fn active_sum_u8() noexcept {
  static const SumU8Fn fn = sum_u8_for(active_kernels().isa);
  return fn;
}

std::uint64_t sum_u8(const std::uint8_t* p, std::size_t n) noexcept {
  return active_sum_u8()(p, n);
}

}  // namespace mmc::kernels
