// Sum of a contiguous run of bytes, exact in 64 bits, at memory speed (AVX2 when present).
#pragma once

#include <cstddef>
#include <cstdint>

namespace mmc::kernels {

// Portable reference implementation.
std::uint64_t sum_u8_portable(const std::uint8_t* p, std::size_t n) noexcept;
// The fastest implementation this CPU runs (chosen once, at first call).
std::uint64_t sum_u8(const std::uint8_t* p, std::size_t n) noexcept;

}  // namespace mmc::kernels
