// reduce() for f32 elements (one element type per file; see reduce/execute.hpp).
#include "reduce/execute.hpp"

MMC_REDUCE_INSTANTIATE(float)
