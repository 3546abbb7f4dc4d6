// Tests of mmc/dtype.hpp: names, numpy descrs, byte order and dispatch; Float16 against
// Eigen's half (an independent binary16 implementation) over every bit pattern.
#include "mmc/dtype.hpp"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/error.hpp"

namespace mmc {
namespace {

struct NamedType {
  TypeId id;
  const char* short_name;
  const char* long_name;
  std::size_t itemsize;
  TypeKind kind;
  const char* little_descr;
  const char* big_descr;
};

const std::vector<NamedType>& all_types() {
  static const std::vector<NamedType> types{
      {TypeId::Bool, "bool", "bool", 1, TypeKind::Bool, "|b1", "|b1"},
      {TypeId::I8, "i8", "int8", 1, TypeKind::Signed, "|i1", "|i1"},
      {TypeId::U8, "u8", "uint8", 1, TypeKind::Unsigned, "|u1", "|u1"},
      {TypeId::I16, "i16", "int16", 2, TypeKind::Signed, "<i2", ">i2"},
      {TypeId::U16, "u16", "uint16", 2, TypeKind::Unsigned, "<u2", ">u2"},
      {TypeId::I32, "i32", "int32", 4, TypeKind::Signed, "<i4", ">i4"},
      {TypeId::U32, "u32", "uint32", 4, TypeKind::Unsigned, "<u4", ">u4"},
      {TypeId::I64, "i64", "int64", 8, TypeKind::Signed, "<i8", ">i8"},
      {TypeId::U64, "u64", "uint64", 8, TypeKind::Unsigned, "<u8", ">u8"},
      {TypeId::F32, "f32", "float32", 4, TypeKind::Float, "<f4", ">f4"},
      {TypeId::F64, "f64", "float64", 8, TypeKind::Float, "<f8", ">f8"},
      {TypeId::F16, "f16", "float16", 2, TypeKind::Float, "<f2", ">f2"},
  };
  return types;
}

TEST(DType, ReportsItemsizeKindAndNameOfEveryType) {
  for (const auto& t : all_types()) {
    const DType d(t.id);
    EXPECT_EQ(d.id(), t.id);
    EXPECT_EQ(d.itemsize(), t.itemsize) << t.short_name;
    EXPECT_EQ(DType::size_of(t.id), t.itemsize) << t.short_name;
    EXPECT_EQ(d.kind(), t.kind) << t.short_name;
    EXPECT_EQ(d.name(), t.short_name);
  }
}

TEST(DType, ParsesShortAndLongNamesInNativeOrder) {
  for (const auto& t : all_types()) {
    EXPECT_EQ(DType::parse(t.short_name), DType(t.id)) << t.short_name;
    EXPECT_EQ(DType::parse(t.long_name), DType(t.id)) << t.long_name;
    EXPECT_EQ(DType::parse(t.short_name).byte_order(),
              t.itemsize == 1 ? ByteOrder::Little : native_byte_order());
  }
}

TEST(DType, ParsesByteOrderPrefixes) {
  EXPECT_EQ(DType::parse(">u16"), DType(TypeId::U16, ByteOrder::Big));
  EXPECT_EQ(DType::parse("<f64"), DType(TypeId::F64, ByteOrder::Little));
  EXPECT_EQ(DType::parse("=i32"), DType(TypeId::I32));
  EXPECT_EQ(DType::parse(">float32").byte_order(), ByteOrder::Big);
  EXPECT_EQ(DType::parse("|u1"), DType(TypeId::U8));
}

TEST(DType, PrefixedKindDigitIsNumpysMeaningNotTheCliName) {
  // "u8" is the CLI's uint8, but "<u8" is numpy's uint64.
  EXPECT_EQ(DType::parse("u8"), DType(TypeId::U8));
  EXPECT_EQ(DType::parse("<u8"), DType(TypeId::U64, ByteOrder::Little));
  EXPECT_EQ(DType::parse(">i8"), DType(TypeId::I64, ByteOrder::Big));
  EXPECT_EQ(DType::parse("i8"), DType(TypeId::I8));
}

TEST(DType, ParsesNumpyDescrsAndCharacterCodes) {
  EXPECT_EQ(DType::parse("<u2"), DType(TypeId::U16, ByteOrder::Little));
  EXPECT_EQ(DType::parse(">i4"), DType(TypeId::I32, ByteOrder::Big));
  EXPECT_EQ(DType::parse("<f8"), DType(TypeId::F64, ByteOrder::Little));
  EXPECT_EQ(DType::parse("|b1"), DType(TypeId::Bool));
  EXPECT_EQ(DType::parse("?"), DType(TypeId::Bool));
  EXPECT_EQ(DType::parse("f4"), DType(TypeId::F32));
  EXPECT_EQ(DType::parse("<f2"), DType(TypeId::F16, ByteOrder::Little));
  EXPECT_EQ(DType::parse(">f2"), DType(TypeId::F16, ByteOrder::Big));
  EXPECT_EQ(DType::parse(">f16"), DType(TypeId::F16, ByteOrder::Big));
  EXPECT_EQ(DType::from_numpy_descr(">f2"), DType(TypeId::F16, ByteOrder::Big));
}

TEST(DType, RejectsUnknownNamesWithInvalidArgument) {
  for (const char* bad : {"", "u7", "bfloat16", "float128", "f128", "<f3", "c8", "complex64", "u",
                          "<", "U10", "O", "uint8 ", " u8", "u8x"}) {
    try {
      DType::parse(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()), "") << bad;
    }
  }
}

TEST(DType, WritesNumpyDescrWithByteOrder) {
  for (const auto& t : all_types()) {
    EXPECT_EQ(DType(t.id, ByteOrder::Little).numpy_descr(), t.little_descr);
    EXPECT_EQ(DType(t.id, ByteOrder::Big).numpy_descr(), t.big_descr);
  }
}

TEST(DType, ReadsBackEveryDescrItWrites) {
  for (const auto& t : all_types()) {
    for (const ByteOrder order : {ByteOrder::Little, ByteOrder::Big}) {
      const DType d(t.id, order);
      EXPECT_EQ(DType::from_numpy_descr(d.numpy_descr()), d) << d.numpy_descr();
    }
  }
}

TEST(DType, FromNumpyDescrRejectsWhatNumpyCannotMeanHere) {
  for (const char* bad : {"|O", "<U10", "<c8", "|f2", "<f16", "<f3", "|u2", "u1", "<u", "<u16", "",
                          "|V8", "<M8", "xf4", "<f4 "}) {
    try {
      DType::from_numpy_descr(bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument) << bad;
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos)
          << "message does not name the descr: " << e.what();
    }
  }
}

TEST(DType, OneByteTypesAreAlwaysLittleAndNative) {
  for (const TypeId id : {TypeId::Bool, TypeId::I8, TypeId::U8}) {
    const DType d(id, ByteOrder::Big);
    EXPECT_EQ(d.byte_order(), ByteOrder::Little);
    EXPECT_TRUE(d.is_native());
    EXPECT_EQ(d, DType(id, ByteOrder::Little));
  }
}

TEST(DType, NativeFlipsOnlyForeignByteOrder) {
  const ByteOrder foreign =
      native_byte_order() == ByteOrder::Little ? ByteOrder::Big : ByteOrder::Little;
  const DType f(TypeId::F64, foreign);
  EXPECT_FALSE(f.is_native());
  EXPECT_TRUE(f.native().is_native());
  EXPECT_EQ(f.native().id(), TypeId::F64);
  EXPECT_NE(f, f.native());
  EXPECT_TRUE(DType(TypeId::U32).is_native());
}

// A default DType used to mean u8, so a spec whose dtype was forgotten read its bytes as u8.
TEST(DType, DefaultIsUnsetAndEveryUseOfItThrows) {
  const DType unset;
  EXPECT_FALSE(unset.is_set());
  EXPECT_TRUE(DType(TypeId::U8).is_set());
  EXPECT_NE(unset, DType(TypeId::U8));
  EXPECT_NE(unset, DType(TypeId::Bool));
  EXPECT_EQ(unset, DType());
  EXPECT_EQ(unset.name(), "unset");
  auto expect_unset_error = [](auto use) {
    try {
      use();
      ADD_FAILURE() << "an unset dtype was used without an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("dtype not set"), std::string::npos) << e.what();
    }
  };
  expect_unset_error([&] { static_cast<void>(unset.id()); });
  expect_unset_error([&] { static_cast<void>(unset.itemsize()); });
  expect_unset_error([&] { static_cast<void>(unset.kind()); });
  expect_unset_error([&] { static_cast<void>(unset.is_native()); });
  expect_unset_error([&] { static_cast<void>(unset.native()); });
  expect_unset_error([&] { static_cast<void>(unset.numpy_descr()); });
  expect_unset_error([&] { static_cast<void>(ArrayMeta::contiguous(unset, {2, 3})); });
  ArrayMeta meta;
  meta.shape = {4};
  expect_unset_error([&] { static_cast<void>(meta.nbytes()); });
}

TEST(DType, VisitTypeCallsWithTheMatchingCppType) {
  EXPECT_EQ(type_id_of<std::uint16_t>(), TypeId::U16);
  EXPECT_EQ(type_id_of<bool>(), TypeId::Bool);
  EXPECT_EQ(type_id_of<double>(), TypeId::F64);
  for (const auto& t : all_types()) {
    if (t.id == TypeId::F16) continue;  // a storage type (next test)
    const auto [id, size] = visit_type(t.id, [](auto v) {
      using T = decltype(v);
      return std::pair<TypeId, std::size_t>(type_id_of<T>(), sizeof(T));
    });
    EXPECT_EQ(id, t.id) << t.short_name;
    EXPECT_EQ(size, t.itemsize) << t.short_name;
  }
}

TEST(DType, VisitTypeRefusesFloat16AsAnInternalError) {
  EXPECT_EQ(type_id_of<Float16>(), TypeId::F16);
  bool called = false;
  try {
    visit_type(TypeId::F16, [&](auto) { called = true; });
    ADD_FAILURE() << "visit_type accepted float16";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Internal);
    EXPECT_NE(std::string(e.what()).find("float16"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(called);
}

// ---- Float16 ----

std::uint64_t bits_of(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

double from_bits(std::uint64_t b) {
  double d;
  std::memcpy(&d, &b, sizeof d);
  return d;
}

// Eigen's conversion of a binary16 bit pattern to float (exact for every value).
float eigen_value(std::uint16_t bits) {
  return static_cast<float>(Eigen::half(Eigen::half_impl::raw_uint16_to_half(bits)));
}

// Eigen's float -> binary16, rounded to nearest even.
std::uint16_t eigen_round(float f) {
  return Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(f));
}

TEST(Float16, ValueOfEveryBitPatternIsEigensHalf) {
  int nans = 0, infinities = 0, zeros = 0;
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const double got = Float16{bits}.value();
    const float want = eigen_value(bits);
    SCOPED_TRACE(::testing::Message() << "bits 0x" << std::hex << b);
    ASSERT_EQ(std::signbit(got), std::signbit(want));
    if (std::isnan(want)) {
      ++nans;
      ASSERT_TRUE(std::isnan(got));
      // The payload sits at the top of the fraction in both (Eigen's float, compared as bits:
      // widening a signalling NaN to double would quiet it).
      std::uint32_t fbits;
      std::memcpy(&fbits, &want, sizeof fbits);
      ASSERT_EQ((bits_of(got) >> 42) & 0x3ffu, (fbits >> 13) & 0x3ffu);
      ASSERT_EQ((bits_of(got) >> 42) & 0x3ffu, b & 0x3ffu);
      ASSERT_EQ(bits_of(got) & ((std::uint64_t{1} << 42) - 1), 0u);
    } else {
      ASSERT_EQ(got, static_cast<double>(want));
      infinities += std::isinf(got) ? 1 : 0;
      zeros += got == 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(nans, 2 * 1023);
  EXPECT_EQ(infinities, 2);
  EXPECT_EQ(zeros, 2);
  EXPECT_EQ(Float16{0x3c00}.value(), 1.0);
  EXPECT_EQ(Float16{0x7bff}.value(), 65504.0);
  EXPECT_EQ(Float16{0x0001}.value(), std::ldexp(1.0, -24));
  EXPECT_EQ(Float16{0x03ff}.value(), 1023 * std::ldexp(1.0, -24));
  EXPECT_EQ(Float16{0x0400}.value(), std::ldexp(1.0, -14));
  EXPECT_EQ(Float16{0xc000}.value(), -2.0);
  EXPECT_EQ(Float16{0x3555}.value(), 0.333251953125);
}

TEST(Float16, FromGivesBackEveryBitPatternIncludingNaNPayloads) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    ASSERT_EQ(Float16::from(Float16{bits}.value()).bits, bits) << "bits 0x" << std::hex << b;
  }
}

TEST(Float16, FromRoundsMidpointsToEvenAndNeighboursOfMidpointsToTheNearer) {
  // Every pair of adjacent finite magnitudes, k and k + 1 (0x7bff + 1 is infinity), both signs.
  for (std::uint32_t k = 0; k < 0x7c00; ++k) {
    const double lo = Float16{static_cast<std::uint16_t>(k)}.value();
    const double hi =
        k + 1 == 0x7c00 ? 65536.0 : Float16{static_cast<std::uint16_t>(k + 1)}.value();
    const double mid = (lo + hi) / 2;  // exact: 12 significant bits
    ASSERT_EQ(mid - lo, hi - mid);
    const auto even = static_cast<std::uint16_t>(k % 2 == 0 ? k : k + 1);
    const double above = std::nextafter(mid, std::numeric_limits<double>::infinity());
    const double below = std::nextafter(mid, -std::numeric_limits<double>::infinity());
    SCOPED_TRACE(::testing::Message() << "between 0x" << std::hex << k << " and 0x" << k + 1);
    ASSERT_EQ(Float16::from(mid).bits, even);
    ASSERT_EQ(Float16::from(above).bits, k + 1);
    ASSERT_EQ(Float16::from(below).bits, k);
    ASSERT_EQ(Float16::from(-mid).bits, 0x8000u | even);
    ASSERT_EQ(Float16::from(-above).bits, 0x8000u | (k + 1));
    ASSERT_EQ(Float16::from(-below).bits, 0x8000u | k);
    // Eigen agrees where float holds the value (midpoints, and the floats beside them).
    const auto fmid = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(fmid), mid);
    ASSERT_EQ(eigen_round(fmid), even);
    ASSERT_EQ(Float16::from(std::nextafter(fmid, 1e30f)).bits,
              eigen_round(std::nextafter(fmid, 1e30f)));
    ASSERT_EQ(Float16::from(std::nextafter(fmid, -1e30f)).bits,
              eigen_round(std::nextafter(fmid, -1e30f)));
  }
}

TEST(Float16, FromOverflowsToInfinityFromHalfAStepPast65504) {
  EXPECT_EQ(Float16::from(65504.0).bits, 0x7bff);
  EXPECT_EQ(Float16::from(65519.99).bits, 0x7bff);
  EXPECT_EQ(Float16::from(std::nextafter(65520.0, 0.0)).bits, 0x7bff);
  EXPECT_EQ(Float16::from(65520.0).bits, 0x7c00);
  EXPECT_EQ(Float16::from(-65520.0).bits, 0xfc00);
  EXPECT_EQ(Float16::from(1e300).bits, 0x7c00);
  EXPECT_EQ(Float16::from(std::numeric_limits<double>::max()).bits, 0x7c00);
  EXPECT_EQ(Float16::from(std::numeric_limits<double>::infinity()).bits, 0x7c00);
  EXPECT_EQ(Float16::from(-std::numeric_limits<double>::infinity()).bits, 0xfc00);
}

TEST(Float16, FromRoundsAtTheSubnormalBoundaries) {
  const double tiny = std::ldexp(1.0, -24);  // the smallest subnormal, 0x0001
  EXPECT_EQ(Float16::from(tiny).bits, 0x0001);
  EXPECT_EQ(Float16::from(tiny / 2).bits, 0x0000);  // a tie: to even, zero
  EXPECT_EQ(Float16::from(std::nextafter(tiny / 2, 1.0)).bits, 0x0001);
  EXPECT_EQ(Float16::from(-tiny / 2).bits, 0x8000);
  EXPECT_EQ(Float16::from(1.5 * tiny).bits, 0x0002);     // tie between 1 and 2: even
  EXPECT_EQ(Float16::from(2.5 * tiny).bits, 0x0002);     // tie between 2 and 3: even
  EXPECT_EQ(Float16::from(1023 * tiny).bits, 0x03ff);    // the largest subnormal
  EXPECT_EQ(Float16::from(1023.5 * tiny).bits, 0x0400);  // tie: 0x400 is even
  EXPECT_EQ(Float16::from(std::nextafter(1023.5 * tiny, 0.0)).bits, 0x03ff);
  EXPECT_EQ(Float16::from(std::ldexp(1.0, -14)).bits, 0x0400);  // the smallest normal
  EXPECT_EQ(Float16::from(std::numeric_limits<double>::denorm_min()).bits, 0x0000);
  EXPECT_EQ(Float16::from(-std::numeric_limits<double>::denorm_min()).bits, 0x8000);
  EXPECT_EQ(Float16::from(1e-8).bits, 0x0000);
  EXPECT_EQ(Float16::from(6e-8).bits, 0x0001);
}

TEST(Float16, FromKeepsZeroSignsAndNaNPayloadTopBits) {
  EXPECT_EQ(Float16::from(0.0).bits, 0x0000);
  EXPECT_EQ(Float16::from(-0.0).bits, 0x8000);
  EXPECT_EQ(Float16::from(std::numeric_limits<double>::quiet_NaN()).bits, 0x7e00);
  EXPECT_EQ(Float16::from(-std::numeric_limits<double>::quiet_NaN()).bits, 0xfe00);
  // A signalling NaN whose payload's top 10 bits are 0x100 keeps them (numpy: 0x7d00).
  EXPECT_EQ(Float16::from(from_bits(0x7ff4000000000000ull)).bits, 0x7d00);
  EXPECT_EQ(Float16::from(from_bits(0xfffc000000000000ull)).bits, 0xff00);
  // Payload bits below the top 10 are dropped; with none left the result is a quiet NaN (the
  // documented choice; numpy 1.24 gives 0x7c01 there, also a NaN).
  EXPECT_EQ(Float16::from(from_bits(0x7ff0000000000001ull)).bits, 0x7e00);
  EXPECT_EQ(Float16::from(from_bits(0x7ff8000000000123ull)).bits, 0x7e00);
  EXPECT_EQ(Float16::from(from_bits(0x7ff0040000000000ull)).bits, 0x7c01);
}

}  // namespace
}  // namespace mmc
