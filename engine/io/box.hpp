// Box checks shared by the array readers.
#pragma once

#include "mmc/array.hpp"
#include "mmc/chunked.hpp"

namespace mmc::detail {

// Throws Error(InvalidArgument) unless `box` has meta's rank and lies inside the array.
void check_box(const ArrayMeta& meta, const Box& box);

}  // namespace mmc::detail
