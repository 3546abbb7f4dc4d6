// Tests of mmc/array.hpp: dense strides, sizes, overflow checks and shape text; and of the
// typed views over a source's elements (ArrayRef::of).
#include "mmc/array.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mmc/error.hpp"
#include "mmc/shared.hpp"
#include "mmc/source.hpp"
#include "support/test_support.hpp"

namespace mmc {
namespace {

using Strides = std::vector<std::int64_t>;

TEST(FormatBytes, SaysBytesBelowAKibibyteAndOneDecimalOfTheLargestUnitAbove) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.0 KiB");
  EXPECT_EQ(format_bytes(std::uint64_t{3} << 29), "1.5 GiB");
  EXPECT_EQ(format_bytes(std::uint64_t{5} << 50), "5.0 PiB");
  EXPECT_EQ(format_bytes(std::uint64_t{1} << 62), "4096.0 PiB");  // no unit past PiB
}

TEST(ArrayMeta, ContiguousCOrderHasLastAxisFastest) {
  const ArrayMeta m = ArrayMeta::contiguous(DType(TypeId::U16), {2, 3, 4});
  EXPECT_EQ(m.strides, (Strides{24, 8, 2}));
  EXPECT_EQ(m.order, Order::C);
  EXPECT_EQ(m.ndim(), 3);
  EXPECT_EQ(m.size(), 24);
  EXPECT_EQ(m.nbytes(), 48u);
}

TEST(ArrayMeta, ContiguousFortranOrderHasFirstAxisFastest) {
  const ArrayMeta m = ArrayMeta::contiguous(DType(TypeId::F64), {2, 3, 4}, Order::F);
  EXPECT_EQ(m.strides, (Strides{8, 16, 48}));
  EXPECT_EQ(m.order, Order::F);
  EXPECT_EQ(m.nbytes(), 192u);
}

TEST(ArrayMeta, ZeroDimensionalArrayHoldsOneElement) {
  const ArrayMeta m = ArrayMeta::contiguous(DType(TypeId::I32), {});
  EXPECT_EQ(m.ndim(), 0);
  EXPECT_TRUE(m.strides.empty());
  EXPECT_EQ(m.size(), 1);
  EXPECT_EQ(m.nbytes(), 4u);
}

TEST(ArrayMeta, ZeroExtentMakesAnEmptyArray) {
  const ArrayMeta m = ArrayMeta::contiguous(DType(TypeId::U8), {5, 0, 7});
  EXPECT_EQ(m.size(), 0);
  EXPECT_EQ(m.nbytes(), 0u);
}

TEST(ArrayMeta, OneDimensionalStridesMatchInBothOrders) {
  EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::F32), {10}, Order::C).strides, (Strides{4}));
  EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::F32), {10}, Order::F).strides, (Strides{4}));
}

TEST(ArrayMeta, RejectsNegativeExtent) {
  try {
    ArrayMeta::contiguous(DType(TypeId::U8), {3, -1});
    FAIL() << "negative extent accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
}

TEST(ArrayMeta, RejectsShapeWhoseByteCountOverflows) {
  for (const Shape& shape : {Shape{99999999999, 99999999999}, Shape{INT64_MAX, 2},
                             Shape{std::int64_t{1} << 31, std::int64_t{1} << 31, 2}}) {
    EXPECT_THROW(ArrayMeta::contiguous(DType(TypeId::F32), shape), Error) << format_shape(shape);
  }
  try {
    ArrayMeta::contiguous(DType(TypeId::U64), {std::int64_t{1} << 60});
    FAIL() << "2^60 u64 elements accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
  }
}

TEST(ArrayMeta, RejectsHugeExtentsNextToAZeroAsNumpyDoes) {
  // np.empty refuses these ("array is too big"): the zero does not excuse the other extents.
  constexpr std::int64_t k62 = std::int64_t{1} << 62;
  for (const Order order : {Order::C, Order::F}) {
    for (const Shape& shape : {Shape{0, k62, k62}, Shape{k62, 0, k62}, Shape{0, INT64_MAX, 2}}) {
      EXPECT_THROW(ArrayMeta::contiguous(DType(TypeId::U8), shape, order), Error)
          << format_shape(shape);
    }
    EXPECT_THROW(ArrayMeta::contiguous(DType(TypeId::U16), {0, k62}, order), Error);
    // The same extents alone fit, so an empty array of them is fine.
    EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::U8), {0, k62}, order).size(), 0);
    EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::U8), {k62, 0, 1}, order).nbytes(), 0u);
  }
}

TEST(ArrayMeta, AcceptsTheLargestByteCountThatFits) {
  const ArrayMeta m = ArrayMeta::contiguous(DType(TypeId::U8), {INT64_MAX});
  EXPECT_EQ(m.nbytes(), static_cast<std::uint64_t>(INT64_MAX));
}

TEST(ArrayMeta, DescribesShapeDtypeAndOrder) {
  EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::U8), {2048, 1024, 1024}).describe(),
            "2048,1024,1024 u8 C");
  EXPECT_EQ(ArrayMeta::contiguous(DType(TypeId::F32), {3, 4}, Order::F).describe(), "3,4 f32 F");
}

TEST(CheckedSize, MultipliesAndAddsWithin63Bits) {
  EXPECT_EQ(detail::checked_mul(1u << 20, 1u << 20, "x"), std::uint64_t{1} << 40);
  EXPECT_EQ(detail::checked_add(5, 7, "x"), 12u);
  EXPECT_EQ(detail::checked_mul(0, UINT64_MAX, "x"), 0u);
  EXPECT_EQ(detail::checked_add(INT64_MAX - 1, 1, "x"), static_cast<std::uint64_t>(INT64_MAX));
}

TEST(CheckedSize, ThrowsNamingWhatOverflowed) {
  try {
    detail::checked_mul(std::uint64_t{1} << 32, std::uint64_t{1} << 32, "cube.raw: shape 1,2");
    FAIL() << "overflow not detected";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("cube.raw: shape 1,2"), std::string::npos) << e.what();
  }
  // Past 63 bits counts as overflow even though 64 would hold it.
  EXPECT_THROW(detail::checked_mul(std::uint64_t{1} << 62, 2, "x"), Error);
  EXPECT_THROW(detail::checked_add(INT64_MAX, 1, "x"), Error);
  EXPECT_THROW(detail::checked_add(UINT64_MAX, 1, "x"), Error);
}

TEST(Shape, FormatsInCliAndNumpyStyles) {
  EXPECT_EQ(format_shape({2048, 1024, 1024}), "2048,1024,1024");
  EXPECT_EQ(format_shape({2048, 1024, 1024}, true), "(2048, 1024, 1024)");
  EXPECT_EQ(format_shape({7}, true), "(7,)");
  EXPECT_EQ(format_shape({7}), "7");
  EXPECT_EQ(format_shape({}, true), "()");
  EXPECT_EQ(format_shape({}), "");
}

TEST(Shape, ParsesCommasAndTimesSigns) {
  EXPECT_EQ(parse_shape("2048,1024,1024"), (Shape{2048, 1024, 1024}));
  EXPECT_EQ(parse_shape("2048x1024x1024"), (Shape{2048, 1024, 1024}));
  EXPECT_EQ(parse_shape("5"), (Shape{5}));
  EXPECT_EQ(parse_shape("0,3"), (Shape{0, 3}));
  EXPECT_EQ(parse_shape("9223372036854775807"), (Shape{INT64_MAX}));
}

TEST(Shape, RoundTripsThroughFormat) {
  for (const Shape& s : {Shape{1}, Shape{3, 4}, Shape{2, 0, 9, 1}}) {
    EXPECT_EQ(parse_shape(format_shape(s)), s);
  }
}

TEST(Shape, RejectsMalformedText) {
  for (const char* bad : {"", ",", "1,", ",1", "1,,2", "-1", "3,-4", "a", "1.5", "2 3", "1x",
                          "99999999999999999999", " 3"}) {
    try {
      parse_shape(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << bad;
    }
  }
}

// The message of the Error(InvalidArgument) that f throws; empty when it throws nothing.
template <class F>
std::string invalid_argument_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << e.what();
    return e.what();
  }
  return "";
}

// A small .npy numpy wrote: four 1.5s of `descr`.
std::string numpy_file(const test::TempDir& dir, const std::string& descr) {
  const std::string path = dir.file("a.npy");
  test::run_python_code(
      "import numpy as np, sys\n"
      "np.save(sys.argv[1], np.full(4, 1.5, dtype=sys.argv[2]))\n",
      {path, descr});
  return path;
}

TEST(ArrayRefOf, ViewsNativeElementsOfTheSourcesType) {
  test::TempDir dir;
  const Source src = open_npy(numpy_file(dir, "<f4"));
  const ArrayRef<float> ref = ArrayRef<float>::of(src);
  ASSERT_EQ(ref.size(), 4u);
  EXPECT_EQ(ref[3], 1.5f);
}

TEST(ArrayRefOf, RefusesABigEndianSourceNamingItsByteOrder) {
  test::TempDir dir;
  const Source src = open_npy(numpy_file(dir, ">f4"));
  const std::string why = invalid_argument_of([&] { ArrayRef<float>::of(src); });
  EXPECT_NE(why.find(">f4"), std::string::npos) << why;
  EXPECT_NE(why.find("byte order"), std::string::npos) << why;
}

TEST(ArrayRefOf, RefusesAnotherTypeOfTheSameSizeNamingBoth) {
  test::TempDir dir;
  const Source src = open_npy(numpy_file(dir, "<i4"));
  const std::string why = invalid_argument_of([&] { ArrayRef<float>::of(src); });
  EXPECT_NE(why.find("<i4"), std::string::npos) << why;
  EXPECT_NE(why.find("<f4"), std::string::npos) << why;
  EXPECT_EQ(ArrayRef<std::int32_t>::of(src)[0], 1);  // numpy's int of 1.5
}

TEST(ArrayRefOf, ChecksOnlyTheItemSizeOfTypesWithoutADtype) {
  test::TempDir dir;
  const Source src = open_npy(numpy_file(dir, "<u2"));
  struct Pair {
    std::uint8_t lo, hi;
  };
  EXPECT_EQ(ArrayRef<Pair>::of(src).size(), 4u);
  EXPECT_NE(invalid_argument_of([&] { ArrayRef<std::uint32_t>::of(src); }), "");
}

}  // namespace
}  // namespace mmc
