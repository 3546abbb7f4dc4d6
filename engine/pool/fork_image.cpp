// ForkImage: /proc/self/maps at the fork, and the check of a callable's words against it.
#include "pool/fork_image.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace mmc::detail {
namespace {

// Below the kernel's mmap_min_addr nothing is ever mapped; above 2^56 (5-level paging's user
// limit) neither: such words are plain numbers.
constexpr std::uintptr_t kLowest = 0x10000;
constexpr std::uintptr_t kHighest = std::uintptr_t{1} << 56;

bool mapped_now(std::uintptr_t address) {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  unsigned char resident = 0;
  // ENOMEM: nothing is mapped there.
  return mincore(reinterpret_cast<void*>(address & ~(page - 1)), 1, &resident) == 0;
}

}  // namespace

ForkImage ForkImage::take() {
  ForkImage image;
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return image;
  char line[512];
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    std::uintptr_t begin = 0;
    std::uintptr_t end = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &begin, &end) == 2 && begin < end) {
      image.ranges_.emplace_back(begin, end);
    }
    // A line longer than the buffer (a very long path): skip the rest of it.
    while (std::strchr(line, '\n') == nullptr && std::fgets(line, sizeof line, maps) != nullptr) {
    }
  }
  std::fclose(maps);
  std::sort(image.ranges_.begin(), image.ranges_.end());
  image.known_ = !image.ranges_.empty();
  return image;
}

bool ForkImage::inside(std::uintptr_t address) const {
  auto it =
      std::upper_bound(ranges_.begin(), ranges_.end(), std::make_pair(address, ~std::uintptr_t{0}));
  if (it == ranges_.begin()) return false;
  --it;
  return address >= it->first && address < it->second;
}

std::uintptr_t ForkImage::late_pointer(const void* bytes, std::size_t size) const {
  if (!known_) return 0;
  const auto* at = static_cast<const unsigned char*>(bytes);
  for (std::size_t offset = 0; offset + sizeof(std::uintptr_t) <= size;
       offset += sizeof(std::uintptr_t)) {
    std::uintptr_t word;
    std::memcpy(&word, at + offset, sizeof word);
    if (word < kLowest || word >= kHighest || inside(word)) continue;
    if (mapped_now(word)) return word;
  }
  return 0;
}

}  // namespace mmc::detail
