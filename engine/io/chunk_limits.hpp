// The chunk sizes every chunked reader refuses, beyond mmc::kMaxDecodedChunkBytes (chunked.hpp).
// Private to engine/io.
#pragma once

#include <cstdint>
#include <string>

namespace mmc::detail {

// Chunks larger than both the whole array and 64 MiB are refused as well: legal in zarr and
// HDF5 (an array may grow into its chunks), but nothing a writer needs, while a tiny damaged or
// hostile header (shape [4], chunks [2**30]) would make every worker allocate the whole chunk
// to read one element.
inline constexpr std::uint64_t kMaxChunkBeyondArrayBytes = std::uint64_t{64} << 20;
// Empty when chunks of `chunk_bytes` are acceptable for an array of `array_bytes`; otherwise
// why not, as the end of a sentence ("make N-byte chunks, over ...").
std::string chunk_size_problem(std::uint64_t chunk_bytes, std::uint64_t array_bytes);

}  // namespace mmc::detail
