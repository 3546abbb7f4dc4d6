// Tests of open_raw: raw files written by numpy, read in place like numpy.memmap.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using test::TempDir;

using test::expect_error;

// Element `flat` (in C index order) of the source, read through its strides and converted
// from its byte order.
std::int64_t element(const Source& s, std::int64_t flat) {
  const ArrayMeta& m = s.meta();
  std::int64_t at = 0;
  for (int axis = m.ndim() - 1; axis >= 0; --axis) {
    at += (flat % m.shape[axis]) * m.strides[axis];
    flat /= m.shape[axis];
  }
  unsigned char bytes[8];
  const std::size_t n = m.dtype.itemsize();
  std::memcpy(bytes, s.data() + at, n);
  if (!m.dtype.is_native()) {
    for (std::size_t i = 0; i < n / 2; ++i) std::swap(bytes[i], bytes[n - 1 - i]);
  }
  return visit_type(m.dtype.id(), [&](auto v) {
    using T = decltype(v);
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return static_cast<std::int64_t>(value);
  });
}

// Writes the files with numpy and checks every element open_raw reads against numpy's.
void expect_match_numpy(const std::vector<RawSpec>& specs) {
  std::vector<std::string> args;
  for (const RawSpec& spec : specs) {
    args.insert(args.end(), {spec.path, spec.dtype.numpy_descr(), format_shape(spec.shape),
                             spec.order == Order::C ? "C" : "F", std::to_string(spec.offset)});
  }
  std::istringstream out(test::run_python("io_write_raw.py", args));
  for (const RawSpec& spec : specs) {
    SCOPED_TRACE(spec.path);
    std::string line;
    ASSERT_TRUE(std::getline(out, line)) << "numpy printed too few lines";
    std::istringstream in(line);
    std::vector<std::int64_t> expected;
    for (std::int64_t v; in >> v;) expected.push_back(v);

    const Source s = open_raw(spec);
    EXPECT_EQ(s.kind(), "raw");
    EXPECT_EQ(s.path(), spec.path);
    EXPECT_EQ(s.data_offset(), spec.offset);
    EXPECT_EQ(s.meta().dtype, spec.dtype);
    EXPECT_EQ(s.meta().shape, spec.shape);
    EXPECT_EQ(s.meta().order, spec.order);
    EXPECT_EQ(s.mapping().size(), s.meta().nbytes());  // trailing bytes are not mapped
    ASSERT_EQ(static_cast<std::int64_t>(expected.size()), s.meta().size());
    for (std::int64_t i = 0; i < s.meta().size(); ++i) {
      ASSERT_EQ(element(s, i), expected[static_cast<std::size_t>(i)]) << "element " << i;
    }
  }
}

TEST(RawSource, ReadsWhatNumpyWroteInCOrder) {
  TempDir dir;
  expect_match_numpy({{dir.file("c.raw"), DType(TypeId::U16), {3, 4, 5}, 0, Order::C}});
}

TEST(RawSource, ReadsFortranOrderThroughItsStrides) {
  TempDir dir;
  expect_match_numpy({{dir.file("f.raw"), DType(TypeId::I32), {3, 4, 5}, 0, Order::F}});
}

TEST(RawSource, DataPointsAtTheFirstElementForUnalignedOffsets) {
  TempDir dir;
  expect_match_numpy({{dir.file("a.raw"), DType(TypeId::I64), {5, 7}, 7, Order::C},
                      {dir.file("b.raw"), DType(TypeId::U8), {4097}, 4099, Order::C}});
}

TEST(RawSource, ReadsBigEndianElements) {
  TempDir dir;
  expect_match_numpy(
      {{dir.file("be.raw"), DType(TypeId::U32, ByteOrder::Big), {6, 2}, 3, Order::C},
       {dir.file("bef.raw"), DType(TypeId::I16, ByteOrder::Big), {2, 3}, 0, Order::F}});
}

TEST(RawSource, ReadsBoolAndFloatElements) {
  TempDir dir;
  expect_match_numpy({{dir.file("b.raw"), DType(TypeId::Bool), {4, 4}, 1, Order::C},
                      {dir.file("f.raw"), DType(TypeId::F64), {3, 3}, 2, Order::C}});
}

TEST(RawSource, ShortFileNamesThePathTheBytesNeededAndTheFileSize) {
  TempDir dir;
  const std::string path = dir.file("short.raw");
  test::write_file(path, std::string(1000, 'x'));
  // 10 x 10 x 4 bytes + 16 = 416 fits; 20 x 20 x 4 + 16 = 1616 does not.
  EXPECT_NO_THROW(open_raw({path, DType(TypeId::F32), {10, 10}, 16, Order::C}));
  expect_error(
      [&] {
        open_raw({path, DType(TypeId::F32), {20, 20}, 16, Order::C});
      },
      ErrorCode::Corrupt, {path, "1616", "1000"});
}

TEST(RawSource, OverflowingShapeIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, std::string(64, 'x'));
  expect_error(
      [&] {
        open_raw({path, DType(TypeId::F32), {99999999999, 99999999999}, 0, Order::C});
      },
      ErrorCode::InvalidArgument, {path});
  expect_error(
      [&] {
        open_raw({path, DType(TypeId::U8), {INT64_MAX}, 1, Order::C});
      },
      ErrorCode::InvalidArgument, {path});
}

TEST(RawSource, NegativeExtentIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, std::string(64, 'x'));
  expect_error(
      [&] {
        open_raw({path, DType(TypeId::U8), {4, -2}, 0, Order::C});
      },
      ErrorCode::InvalidArgument, {path, "-2"});
}

TEST(RawSource, MissingFileIsNotFound) {
  TempDir dir;
  const std::string path = dir.file("missing.raw");
  expect_error(
      [&] {
        open_raw({path, DType(TypeId::U8), {4}, 0, Order::C});
      },
      ErrorCode::NotFound, {path});
}

TEST(RawSource, CreateModeMakesTheFile) {
  TempDir dir;
  const std::string path = dir.file("new.raw");
  const Source s = open_raw({path, DType(TypeId::U16), {3, 4}, 10, Order::C}, MapMode::Create);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 10 + 3 * 4 * 2);
  EXPECT_EQ(s.mapping().size(), 24u);
  EXPECT_EQ(s.mapping().mode(), MapMode::Create);
}

TEST(RawSource, ZeroSizeArrayOpensWithoutMapping) {
  TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, std::string(8, 'x'));
  const Source s = open_raw({path, DType(TypeId::F64), {0, 5}, 8, Order::C});
  EXPECT_EQ(s.meta().size(), 0);
  EXPECT_EQ(s.mapping().size(), 0u);
  EXPECT_TRUE(s.mapping().valid());
}

TEST(RawSource, ZeroDimensionalArrayIsOneElement) {
  TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, std::string("\x01\x02\x03\x04\x05", 5));
  const Source s = open_raw({path, DType(TypeId::U32, ByteOrder::Little), {}, 1, Order::C});
  EXPECT_EQ(s.meta().size(), 1);
  EXPECT_EQ(element(s, 0), 0x05040302);
}

TEST(RawSource, MovedSourceKeepsItsMapping) {
  TempDir dir;
  const std::string path = dir.file("a.raw");
  test::write_file(path, "abcdefgh");
  Source a = open_raw({path, DType(TypeId::U8), {4}, 2, Order::C});
  const std::byte* data = a.data();
  const Source b(std::move(a));
  EXPECT_EQ(b.data(), data);
  EXPECT_EQ(std::memcmp(b.data(), "cdef", 4), 0);
}

}  // namespace
}  // namespace mmc
