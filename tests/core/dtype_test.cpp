// Tests of mmc/dtype.hpp: names, numpy descrs, byte order and dispatch.
#include "mmc/dtype.hpp"

#include <gtest/gtest.h>

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
}

TEST(DType, RejectsUnknownNamesWithInvalidArgument) {
  for (const char* bad : {"", "u7", "float16", "<f2", "c8", "complex64", "u", "<", "U10", "O",
                          "uint8 ", " u8", "u8x"}) {
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
  for (const char* bad :
       {"|O", "<U10", "<c8", "<f2", "|u2", "u1", "<u", "<u16", "", "|V8", "<M8", "xf4", "<f4 "}) {
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
    const auto [id, size] = visit_type(t.id, [](auto v) {
      using T = decltype(v);
      return std::pair<TypeId, std::size_t>(type_id_of<T>(), sizeof(T));
    });
    EXPECT_EQ(id, t.id) << t.short_name;
    EXPECT_EQ(size, t.itemsize) << t.short_name;
  }
}

}  // namespace
}  // namespace mmc
