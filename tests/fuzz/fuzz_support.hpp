// Helpers shared by the fuzz targets: a scratch folder for the files the readers map, and a
// bounded read of whatever array a target managed to open.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "mmc/open.hpp"

namespace mmc::fuzz {

// Decoded bytes a target asks a reader for at most, so a valid but huge array costs time and
// memory in proportion to the input rather than to what its header claims (libFuzzer's
// -rss_limit_mb would report it as a finding otherwise). Size limits on metadata are the
// readers' own business and have their own tests.
inline constexpr std::uint64_t kReadCap = 64ull << 20;

// A folder of this process (tmpfs when there is one), made on first use, removed at exit.
const std::string& scratch_dir();

// Writes bytes to path (replacing it); aborts on failure, which is the harness's fault.
void write_bytes(const std::string& path, const std::uint8_t* data, std::size_t n);

// Removes path and everything under it; no error when it is absent.
void remove_all(const std::string& path);

// Reads a leading box of `array` of at most kReadCap bytes (whole trailing axes, as many rows
// of axis 0 as fit) and every chunk of a chunked array up to that budget, so decoders and the
// box copy run on the input; then, when the whole array is that small, a serial sum over axis 0
// (planner and kernels). Lets mmc::Error through.
void read_bounded(const AnyArray& array);

}  // namespace mmc::fuzz
