// Helpers the zarr v2 and v3 tests share (zarr_test.cpp, zarr_v3_test.cpp).
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <vector>

#include "mmc/chunked.hpp"

namespace mmc::zarr_testing {

// The whole array, C order, stored byte order.
inline std::vector<std::byte> read_all(const ChunkedArray& a) {
  std::vector<std::byte> out(a.meta().nbytes());
  a.read_box({Shape(a.meta().shape.size(), 0), a.meta().shape}, out.data());
  return out;
}

// `text` with the first `from` replaced by `to`; a test failure when there is none.
inline std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const std::size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

}  // namespace mmc::zarr_testing
