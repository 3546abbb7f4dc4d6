// Parsing and naming of dtypes.
#include "mmc/dtype.hpp"

#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "mmc/error.hpp"

namespace mmc {
namespace {

struct TypeName {
  TypeId id;
  const char* short_name;  // CLI name
  const char* long_name;   // numpy name
  char kind;               // numpy kind character
};

constexpr std::array<TypeName, 12> kNames{{
    {TypeId::Bool, "bool", "bool", 'b'},
    {TypeId::I8, "i8", "int8", 'i'},
    {TypeId::U8, "u8", "uint8", 'u'},
    {TypeId::I16, "i16", "int16", 'i'},
    {TypeId::U16, "u16", "uint16", 'u'},
    {TypeId::I32, "i32", "int32", 'i'},
    {TypeId::U32, "u32", "uint32", 'u'},
    {TypeId::I64, "i64", "int64", 'i'},
    {TypeId::U64, "u64", "uint64", 'u'},
    {TypeId::F32, "f32", "float32", 'f'},
    {TypeId::F64, "f64", "float64", 'f'},
    {TypeId::F16, "f16", "float16", 'f'},
}};

const TypeName& entry(TypeId id) {
  for (const auto& n : kNames) {
    if (n.id == id) return n;
  }
  throw Error(ErrorCode::Internal, "unknown TypeId");
}

// Maps numpy's kind character and item size to a TypeId; false when numpy has no such type
// that mmcompute supports.
bool from_kind_size(char kind, int size, TypeId* out) {
  for (const auto& n : kNames) {
    if (n.kind == kind && static_cast<int>(DType::size_of(n.id)) == size) {
      *out = n.id;
      return true;
    }
  }
  return false;
}

std::string unsupported(std::string_view text) {
  return "unsupported dtype '" + std::string(text) +
         "' (expected one of bool i8 u8 i16 u16 i32 u32 i64 u64 f16 f32 f64, optionally prefixed "
         "with < or > for byte order)";
}

}  // namespace

void throw_unset_dtype() {
  throw Error(ErrorCode::InvalidArgument,
              "dtype not set: give the array's element type (u8, i16, f32, ...); an unset dtype "
              "stands for no type");
}

void throw_float16_visited() {
  throw Error(ErrorCode::Internal,
              "float16 reached code that computes on its elements: it is widened to float64 "
              "first");
}

double Float16::value() const noexcept {
  const bool negative = (bits & 0x8000u) != 0;
  const unsigned exponent = (bits >> 10) & 0x1fu;
  const unsigned fraction = bits & 0x3ffu;
  double magnitude;
  if (exponent == 0x1f) {
    if (fraction == 0) {
      magnitude = std::numeric_limits<double>::infinity();
    } else {
      // The payload moves to the top of float64's fraction, so from() gives the bits back.
      const std::uint64_t nan = 0x7ff0000000000000ull | (std::uint64_t{fraction} << 42);
      std::memcpy(&magnitude, &nan, sizeof magnitude);
    }
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(fraction), -24);  // subnormal (or zero)
  } else {
    magnitude = std::ldexp(static_cast<double>(fraction | 0x400u), static_cast<int>(exponent) - 25);
  }
  return negative ? -magnitude : magnitude;
}

Float16 Float16::from(double value) noexcept {
  std::uint64_t wide;
  std::memcpy(&wide, &value, sizeof wide);
  const auto sign = static_cast<std::uint16_t>((wide >> 48) & 0x8000u);
  const double a = std::fabs(value);
  if (std::isnan(a)) {
    auto payload = static_cast<std::uint16_t>((wide >> 42) & 0x3ffu);
    if (payload == 0) payload = 0x200;
    return Float16{static_cast<std::uint16_t>(sign | 0x7c00u | payload)};
  }
  // 65520 is halfway from 65504, the largest finite value, to 65536: ties go to the even
  // significand, which is 65536, so infinity.
  if (a >= 65520.0) return Float16{static_cast<std::uint16_t>(sign | 0x7c00u)};
  // Below 2^-14, steps of 2^-24 (subnormals); a count of 1024 is the smallest normal's bits.
  // nearbyint rounds ties to even (the default rounding mode); the scalings are exact.
  if (a < 0x1p-14) {
    return Float16{static_cast<std::uint16_t>(
        sign | static_cast<unsigned>(std::nearbyint(std::ldexp(a, 24))))};
  }
  int exponent = std::ilogb(a);  // -14 .. 15
  auto significand = static_cast<unsigned>(std::nearbyint(std::ldexp(a, 10 - exponent)));
  if (significand == 0x800u) {  // rounded up to the next power of two
    significand = 0x400u;
    ++exponent;
  }
  return Float16{static_cast<std::uint16_t>(sign | static_cast<unsigned>(exponent + 15) << 10 |
                                            (significand & 0x3ffu))};
}

TypeKind DType::kind() const {
  switch (id()) {
    case TypeId::Bool:
      return TypeKind::Bool;
    case TypeId::I8:
    case TypeId::I16:
    case TypeId::I32:
    case TypeId::I64:
      return TypeKind::Signed;
    case TypeId::U8:
    case TypeId::U16:
    case TypeId::U32:
    case TypeId::U64:
      return TypeKind::Unsigned;
    case TypeId::F16:
    case TypeId::F32:
    case TypeId::F64:
      return TypeKind::Float;
  }
  return TypeKind::Unsigned;
}

std::string DType::name() const { return set_ ? entry(id_).short_name : "unset"; }

std::string DType::numpy_descr() const {
  const TypeName& n = entry(id());
  std::string out;
  out += itemsize() == 1 ? '|' : (order_ == ByteOrder::Little ? '<' : '>');
  out += n.kind;
  out += std::to_string(itemsize());
  return out;
}

DType DType::from_numpy_descr(std::string_view descr) {
  if (descr.size() < 3) throw Error(ErrorCode::InvalidArgument, unsupported(descr));
  const char order_char = descr[0];
  ByteOrder order;
  if (order_char == '<') {
    order = ByteOrder::Little;
  } else if (order_char == '>') {
    order = ByteOrder::Big;
  } else if (order_char == '|' || order_char == '=') {
    order = native_byte_order();
  } else {
    throw Error(ErrorCode::InvalidArgument, unsupported(descr));
  }
  const char kind = descr[1];
  const std::string_view digits = descr.substr(2);
  if (digits.size() != 1 || digits[0] < '1' || digits[0] > '8') {
    throw Error(ErrorCode::InvalidArgument, unsupported(descr));
  }
  TypeId id;
  if (!from_kind_size(kind, digits[0] - '0', &id)) {
    throw Error(ErrorCode::InvalidArgument, unsupported(descr));
  }
  // '|' is only meaningful for one-byte types; numpy never writes "|u2".
  if (order_char == '|' && DType::size_of(id) != 1) {
    throw Error(ErrorCode::InvalidArgument, unsupported(descr));
  }
  return DType(id, order);
}

DType DType::parse(std::string_view text) {
  if (text.empty()) throw Error(ErrorCode::InvalidArgument, "empty dtype");
  ByteOrder order = native_byte_order();
  std::string_view body = text;
  if (text[0] == '<' || text[0] == '>' || text[0] == '=' || text[0] == '|') {
    order = text[0] == '<' ? ByteOrder::Little
                           : (text[0] == '>' ? ByteOrder::Big : native_byte_order());
    body = text.substr(1);
  }
  const bool prefixed = body.size() != text.size();
  // With a byte-order prefix the text is numpy's: "<u8" is uint64, not the CLI's "u8".
  if (prefixed && body.size() == 2 && body[1] >= '1' && body[1] <= '8') {
    TypeId id;
    if (from_kind_size(body[0], body[1] - '0', &id)) return DType(id, order);
  }
  for (const auto& n : kNames) {
    if (body == n.short_name || body == n.long_name) return DType(n.id, order);
  }
  if (body == "?" || body == "b1") return DType(TypeId::Bool, order);
  if (body.size() == 2 && body[1] >= '1' && body[1] <= '8') {
    TypeId id;
    if (from_kind_size(body[0], body[1] - '0', &id)) return DType(id, order);
  }
  throw Error(ErrorCode::InvalidArgument, unsupported(text));
}

}  // namespace mmc
