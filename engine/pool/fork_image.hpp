// ForkImage: which address ranges the pool's workers inherited from the caller, so a callable
// whose bytes point into memory mapped later (its workers would read other data there, or
// crash) can be refused at submit instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace mmc::detail {

class ForkImage {
 public:
  // Reads /proc/self/maps; call just before the fork it describes. An unreadable maps file
  // gives an empty image, which detects nothing.
  static ForkImage take();

  // The first 8-byte-aligned word of `bytes` (a callable's bytes) that points into memory that
  // is mapped now but was not mapped in the image: the heap grown past its end at the fork,
  // a new anonymous or file mapping (a large malloc, a later thread's stack, a later mmap).
  // 0 when there is none. Cost: a binary search per word, and a mincore() call only for words
  // that look like user addresses outside the image.
  // Not detected: memory inside the image's ranges that was freed and reused for a later
  // allocation (a small malloc in a reused heap chunk), or unmapped and mapped again at the
  // same address: such a pointer still reads the fork-time bytes in the worker.
  std::uintptr_t late_pointer(const void* bytes, std::size_t size) const;

 private:
  bool inside(std::uintptr_t address) const;

  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> ranges_;  // [begin, end), sorted
  bool known_ = false;
};

}  // namespace mmc::detail
