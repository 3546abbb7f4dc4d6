// Helpers of the cache tests: small cubes written at test time, mtimes, entries on disk, and
// forked children whose answers come back through a pipe.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mmc/cache.hpp"
#include "mmc/reduce.hpp"
#include "mmc/source.hpp"

namespace mmc::test {

// The shape of every test cube: 6 images of 16x24 u8.
inline const Shape kCubeShape = {6, 16, 24};
inline constexpr std::size_t kCubeBytes = 6 * 16 * 24;

// Bytes of a cube that depend on `seed` (different seeds differ in every image).
std::string cube_bytes(std::uint32_t seed);
// Writes cube_bytes(seed) to path (creating or truncating in place: same inode).
void write_cube(const std::string& path, std::uint32_t seed);
Source open_cube(const std::string& path);

// Options of a mean over each image, run on the serial backend unless said otherwise.
ReduceOptions mean_options(Backend backend = Backend::Serial, int n_jobs = 1);

// Cache options for `folder` whose warnings are appended to `*warnings`.
CacheOptions cache_options(const std::string& folder, std::vector<std::string>* warnings,
                           bool verify = false);

struct timespec mtime_of(const std::string& path);
void set_mtime(const std::string& path, const struct timespec& t);
// Sets mtime to now + offset seconds.
void set_mtime_relative(const std::string& path, std::int64_t offset_seconds);

// Flips the bits of one byte at `offset` of a file, in place.
void flip_byte(const std::string& path, std::uint64_t offset);
std::uint64_t file_size(const std::string& path);

// True when any message contains `needle`.
bool any_contains(const std::vector<std::string>& messages, const std::string& needle);

// Runs `body` in `n` forked children at once (released together through a pipe) and returns
// the byte string each wrote back, in child order. A child that dies or exits non-zero yields
// "<died>"; body must not use gtest assertions (it runs in a child).
std::vector<std::string> run_in_children(int n, const std::function<std::string()>& body);

}  // namespace mmc::test
