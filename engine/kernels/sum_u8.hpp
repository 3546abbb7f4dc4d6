// Sum of a contiguous run of bytes, exact in 64 bits, at memory speed (AVX2 when present).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/dispatch.hpp"

namespace mmc::kernels {

using SumU8Fn = std::uint64_t (*)(const std::uint8_t* p, std::size_t n) noexcept;

// Portable reference implementation.
std::uint64_t sum_u8_portable(const std::uint8_t* p, std::size_t n) noexcept;

// The variant for `isa` (AVX-512 machines run the AVX2 one: a SAD sum is bound by memory), or
// nullptr when this CPU cannot run it.
SumU8Fn sum_u8_for(Isa isa) noexcept;

// The variant of the active kernels (active_kernels(): the CPU's best, lowered by MMC_ISA).
SumU8Fn active_sum_u8() noexcept;

// Sums with active_sum_u8(); thread-safe.
std::uint64_t sum_u8(const std::uint8_t* p, std::size_t n) noexcept;

}  // namespace mmc::kernels
