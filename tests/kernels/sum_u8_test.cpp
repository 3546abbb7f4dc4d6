// The u8 sum (sum_u8.hpp): every variant this CPU runs gives the portable sum exactly, and the
// variant used follows the dense kernels' choice, so MMC_ISA lowers it too.
#include "kernels/sum_u8.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

namespace mmc::kernels {
namespace {

const Isa kEveryIsa[] = {Isa::Portable, Isa::Avx2, Isa::Avx512};

// The plain sum the kernels must match.
std::uint64_t reference_sum(const std::uint8_t* p, std::size_t n) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += p[i];
  return total;
}

TEST(SumU8, EveryVariantThisCpuRunsGivesTheExactSumAtEveryLengthAndAlignment) {
  std::mt19937_64 rng(7);
  std::vector<std::uint8_t> bytes(5000 + 64);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  // Lengths around the 32- and 128-byte steps of the AVX2 loop and its scalar tail.
  const std::size_t lengths[] = {0, 1, 31, 32, 33, 127, 128, 129, 255, 256, 1000, 4097, 5000};
  for (Isa isa : kEveryIsa) {
    const SumU8Fn fn = sum_u8_for(isa);
    if (fn == nullptr) {
      std::printf("[ NOTE     ] sum_u8 %s variant not run: this CPU lacks it\n", to_string(isa));
      continue;
    }
    for (std::size_t n : lengths) {
      for (std::size_t offset = 0; offset < 33; offset += 7) {
        const std::uint8_t* p = bytes.data() + offset;
        EXPECT_EQ(fn(p, n), reference_sum(p, n))
            << to_string(isa) << " n=" << n << " at +" << offset;
      }
    }
  }
}

TEST(SumU8, EveryVariantSumsMoreThanTwoToThe24BytesOf255WithoutOverflow) {
  // 2^24 + 300 bytes of 255: past the portable variant's 32-bit block and any 32-bit total.
  const std::vector<std::uint8_t> bytes((std::size_t{1} << 24) + 300, 255);
  const std::uint64_t want = std::uint64_t{255} * bytes.size();
  for (Isa isa : kEveryIsa) {
    if (const SumU8Fn fn = sum_u8_for(isa)) {
      EXPECT_EQ(fn(bytes.data(), bytes.size()), want) << to_string(isa);
    }
  }
}

TEST(SumU8, ThePortableVariantAlwaysRuns) {
  EXPECT_EQ(sum_u8_for(Isa::Portable), &sum_u8_portable);
}

// CTest also runs this test with MMC_ISA=portable (tests/kernels/CMakeLists.txt), where
// DenseKernels.TheActiveVariantIsAtMostTheOneMmcIsaNames checks the active kernels' variant.
TEST(SumU8, UsesTheVariantOfTheActiveKernels) {
  EXPECT_EQ(active_sum_u8(), sum_u8_for(active_kernels().isa));
  const std::uint8_t bytes[] = {1, 2, 3, 250};
  EXPECT_EQ(sum_u8(bytes, 4), 256u);
}

}  // namespace
}  // namespace mmc::kernels
