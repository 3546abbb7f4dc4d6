// The only file that includes xxhash.h, compiled header-only (no libxxhash at link time).
#include "cache/xxh.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace mmc::detail {

CacheKey xxh3_128(const void* data, std::size_t size) noexcept {
  const XXH128_hash_t h = XXH3_128bits(data, size);
  return CacheKey{h.high64, h.low64};
}

std::uint64_t xxh3_64(const void* data, std::size_t size) noexcept {
  return XXH3_64bits(data, size);
}

}  // namespace mmc::detail
