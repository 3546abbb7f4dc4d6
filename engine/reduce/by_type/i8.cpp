// reduce() for i8 elements (one element type per file; see reduce/execute.hpp).
#include "reduce/execute.hpp"

MMC_REDUCE_INSTANTIATE(std::int8_t)
