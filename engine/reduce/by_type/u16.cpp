// reduce() for u16 elements (one element type per file; see reduce/execute.hpp).
#include "reduce/execute.hpp"

MMC_REDUCE_INSTANTIATE(std::uint16_t)
