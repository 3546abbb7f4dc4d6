// float16 widened to float64: a chunked array over a float16 source (dense or chunked) whose
// chunks read as float64 values. Reductions compute on it, so float16 needs no kernels of its
// own (every float16 value is exact in float64).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "mmc/chunked.hpp"
#include "mmc/source.hpp"

namespace mmc::detail {

// Converts n float16 values, `stride` bytes apart from src (in `order`), to float64.
void widen_float16(const std::byte* src, std::int64_t stride, ByteOrder order, double* out,
                   std::int64_t n);

// The float64 array of a float16 source's values: the same shape, C order, native byte order;
// a chunked source keeps its chunk grid (and order), a dense one is cut into chunks of about
// 1 MiB of float64 along its last axes. The source must outlive the result. REQUIRES: the
// source's dtype is float16.
std::unique_ptr<ChunkedArray> widened_float16(const Source& source);
std::unique_ptr<ChunkedArray> widened_float16(const ChunkedArray& source);

}  // namespace mmc::detail
