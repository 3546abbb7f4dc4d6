// Tests of mmc/output.hpp's sinks: they take dtype, shape and bytes, check that the three agree,
// and write atomically.
#include "mmc/output.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

std::vector<std::byte> bytes_of(const std::vector<std::int64_t>& values) {
  std::vector<std::byte> out(values.size() * sizeof(std::int64_t));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

TEST(Output, AnNpyResultReadsBackWithItsDtypeShapeAndBytes) {
  const test::TempDir dir;
  const std::string path = dir.file("r.npy");
  const std::vector<std::byte> bytes = bytes_of({1, -2, 3, 4, 5, 6});
  write_result(DType(TypeId::I64), {2, 3}, bytes, path);
  const Source back = open_npy(path);
  EXPECT_EQ(back.meta().dtype, DType(TypeId::I64));
  EXPECT_EQ(back.meta().shape, (Shape{2, 3}));
  ASSERT_EQ(back.meta().nbytes(), bytes.size());
  EXPECT_EQ(std::memcmp(back.data(), bytes.data(), bytes.size()), 0);
}

TEST(Output, TextHasOneRowPerLeadingIndex) {
  const std::vector<std::byte> bytes = bytes_of({1, -2, 3, 4});
  EXPECT_EQ(format_result_text(DType(TypeId::I64), {2, 2}, bytes), "1 -2\n3 4\n");
}

TEST(Output, BytesThatDoNotMatchTheShapeAreRefusedAndNothingIsWritten) {
  const test::TempDir dir;
  const std::string path = dir.file("r.csv");
  const std::vector<std::byte> bytes = bytes_of({1, 2, 3});
  try {
    write_result(DType(TypeId::I64), {2, 2}, bytes, path);
    ADD_FAILURE() << "a 2x2 i64 array of 24 bytes was written";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("32 bytes, not 24"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // not even a temporary
  EXPECT_THROW(format_result_text(DType(TypeId::I64), {4}, bytes), Error);
}

}  // namespace
}  // namespace mmc
