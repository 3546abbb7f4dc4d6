// Sample data: the synthetic satellite cube the quick start reduces.
#pragma once

#include <cstdint>
#include <string>

#include "mmc/array.hpp"
#include "mmc/pool.hpp"

namespace mmc {

// Writes a cube of `shape` and `dtype` to `path`: a .npy file when path ends in ".npy",
// otherwise raw bytes (C order). Slice i (along axis 0) is a deterministic function of
// (seed, i) — smooth terrain plus noise, scaled to the dtype's range — so the bytes do not
// depend on the pool options. Slices are written in parallel by the pool into a shared
// mapping of a temporary file renamed into place at the end.
void generate_cube(const std::string& path, DType dtype, const Shape& shape, std::uint64_t seed,
                   const PoolOptions& pool, const ProgressCallback& progress = {});

}  // namespace mmc
