// XXH3 hashes for the cache, behind plain functions so xxhash.h stays in one file.
#pragma once

#include <cstddef>
#include <cstdint>

#include "mmc/cache.hpp"

namespace mmc::detail {

// XXH3-128 of [data, data + size), seed 0. Thread-safe.
CacheKey xxh3_128(const void* data, std::size_t size) noexcept;
// XXH3-64 of [data, data + size), seed 0. Thread-safe.
std::uint64_t xxh3_64(const void* data, std::size_t size) noexcept;

}  // namespace mmc::detail
