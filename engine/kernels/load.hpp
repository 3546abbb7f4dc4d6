// Element loads from mapped bytes: unaligned, optionally byte-swapped, widened for kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace mmc::kernels {

template <class T>
inline T byteswap(T v) noexcept {
  if constexpr (sizeof(T) == 1) {
    return v;
  } else {
    using U = std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                 std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
    U u;
    std::memcpy(&u, &v, sizeof u);
    if constexpr (sizeof(T) == 2) u = __builtin_bswap16(u);
    if constexpr (sizeof(T) == 4) u = __builtin_bswap32(u);
    if constexpr (sizeof(T) == 8) u = __builtin_bswap64(u);
    std::memcpy(&v, &u, sizeof v);
    return v;
  }
}

// Storage type of an element: bool is read as a byte (numpy's bool is one byte, 0 or 1).
template <class T>
using Stored = std::conditional_t<std::is_same_v<T, bool>, std::uint8_t, T>;

// Loads the element at p (any alignment) in native order. bool: any non-zero byte is true.
template <class T, bool Swap>
inline T load(const std::byte* p) noexcept {
  Stored<T> v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (Swap) v = byteswap(v);
  if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    return v;
  }
}

}  // namespace mmc::kernels
