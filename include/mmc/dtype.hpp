// Element types: the numpy scalar types mmcompute reads and writes, with their byte order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace mmc {

// F16 is last so that the others keep the numbers files and pool messages hold. It is a
// storage type: read, written and converted as it is, widened to float64 to compute (see
// Float16).
enum class TypeId : std::uint8_t { Bool, I8, U8, I16, U16, I32, U32, I64, U64, F32, F64, F16 };
enum class TypeKind : std::uint8_t { Bool, Signed, Unsigned, Float };
enum class ByteOrder : std::uint8_t { Little, Big };

// The byte order of this machine.
constexpr ByteOrder native_byte_order() noexcept {
  return __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? ByteOrder::Little : ByteOrder::Big;
}

// Throws Error(InvalidArgument) saying a dtype was used without being set.
[[noreturn]] void throw_unset_dtype();

// A numpy-like dtype: element type plus byte order. Single-byte types are always Little.
class DType {
 public:
  // No type: what a dtype left unset holds (a RawSpec, ZarrSpec or ArrayMeta whose dtype the
  // caller did not fill). It stands for no type: is_set() is false, and every accessor below
  // but byte_order() throws Error(InvalidArgument) "dtype not set", so a forgotten dtype fails
  // where it is first used instead of reading the bytes as some type.
  constexpr DType() = default;
  constexpr DType(TypeId id, ByteOrder order = native_byte_order()) noexcept
      : id_(id), order_(size_of(id) == 1 ? ByteOrder::Little : order), set_(true) {}

  constexpr bool is_set() const noexcept { return set_; }
  // These throw Error(InvalidArgument) when !is_set().
  constexpr TypeId id() const { return checked().id_; }
  constexpr std::size_t itemsize() const { return size_of(id()); }
  TypeKind kind() const;
  // True when elements can be read with a plain load on this machine.
  constexpr bool is_native() const { return itemsize() == 1 || order_ == native_byte_order(); }
  // The same type in this machine's byte order.
  constexpr DType native() const { return DType(id(), native_byte_order()); }
  constexpr ByteOrder byte_order() const noexcept { return order_; }

  // "u8", "f32", "bool", ...: the short names the CLI uses (byte order not included); "unset"
  // for an unset dtype (for messages; it does not throw).
  std::string name() const;
  // numpy's array-protocol string: "<u2", ">f8", "|u1", "|b1".
  std::string numpy_descr() const;

  // Parses a CLI name ("u8", "uint8", "f32", "float32", "bool", optionally prefixed with
  // '<' '>' '=' '|' for byte order) or a numpy descr ("<u2"). Throws Error(InvalidArgument).
  static DType parse(std::string_view text);
  // Parses exactly a numpy descr as found in .npy headers and zarr metadata ("<f4", "|u1",
  // "|b1", ">i8"). Throws Error(InvalidArgument) naming the unsupported descr.
  static DType from_numpy_descr(std::string_view descr);

  // Two unset dtypes are equal; an unset one equals no type.
  friend constexpr bool operator==(DType a, DType b) noexcept {
    return a.set_ == b.set_ && (!a.set_ || (a.id_ == b.id_ && a.order_ == b.order_));
  }
  friend constexpr bool operator!=(DType a, DType b) noexcept { return !(a == b); }

  static constexpr std::size_t size_of(TypeId id) noexcept {
    switch (id) {
      case TypeId::Bool:
      case TypeId::I8:
      case TypeId::U8:
        return 1;
      case TypeId::I16:
      case TypeId::U16:
      case TypeId::F16:
        return 2;
      case TypeId::I32:
      case TypeId::U32:
      case TypeId::F32:
        return 4;
      case TypeId::I64:
      case TypeId::U64:
      case TypeId::F64:
        return 8;
    }
    return 0;
  }

 private:
  constexpr const DType& checked() const {
    if (!set_) throw_unset_dtype();
    return *this;
  }

  TypeId id_ = TypeId::Bool;  // meaningless unless set_
  ByteOrder order_ = ByteOrder::Little;
  bool set_ = false;
};

// An IEEE 754 binary16 value (numpy's float16) as its bits: the C++ type of TypeId::F16
// elements (ReduceResult::as<Float16>() of a float16 min or max). No arithmetic: mmcompute
// computes on float16 data in float64, where every float16 value is exact.
struct Float16 {
  std::uint16_t bits = 0;

  // The exact value (NaN keeps its sign and payload).
  double value() const noexcept;
  // value rounded to the nearest float16, ties to even, as numpy's astype(float16): infinity
  // past the largest finite value (65504) by half a step or more; NaN keeps its payload's top
  // bits (a quiet NaN when they are all zero).
  static Float16 from(double value) noexcept;

  friend constexpr bool operator==(Float16 a, Float16 b) noexcept { return a.bits == b.bits; }
  friend constexpr bool operator!=(Float16 a, Float16 b) noexcept { return a.bits != b.bits; }
};

// The TypeId of a C++ element type.
template <class T>
constexpr TypeId type_id_of();
template <>
constexpr TypeId type_id_of<bool>() {
  return TypeId::Bool;
}
template <>
constexpr TypeId type_id_of<std::int8_t>() {
  return TypeId::I8;
}
template <>
constexpr TypeId type_id_of<std::uint8_t>() {
  return TypeId::U8;
}
template <>
constexpr TypeId type_id_of<std::int16_t>() {
  return TypeId::I16;
}
template <>
constexpr TypeId type_id_of<std::uint16_t>() {
  return TypeId::U16;
}
template <>
constexpr TypeId type_id_of<std::int32_t>() {
  return TypeId::I32;
}
template <>
constexpr TypeId type_id_of<std::uint32_t>() {
  return TypeId::U32;
}
template <>
constexpr TypeId type_id_of<std::int64_t>() {
  return TypeId::I64;
}
template <>
constexpr TypeId type_id_of<std::uint64_t>() {
  return TypeId::U64;
}
template <>
constexpr TypeId type_id_of<float>() {
  return TypeId::F32;
}
template <>
constexpr TypeId type_id_of<double>() {
  return TypeId::F64;
}
template <>
constexpr TypeId type_id_of<Float16>() {
  return TypeId::F16;
}

// Throws Error(Internal): float16 reached code that computes on elements, which it never
// should (it is widened to float64 first).
[[noreturn]] void throw_float16_visited();

// Calls f(T{}) with the C++ type of id (bool for Bool), so per-type code is written once as a
// template and dispatched once per call. Computing types only: F16 throws Error(Internal)
// (callers handle float16 before, as float64 values).
template <class F>
decltype(auto) visit_type(TypeId id, F&& f) {
  switch (id) {
    case TypeId::Bool:
      return f(bool{});
    case TypeId::I8:
      return f(std::int8_t{});
    case TypeId::U8:
      return f(std::uint8_t{});
    case TypeId::I16:
      return f(std::int16_t{});
    case TypeId::U16:
      return f(std::uint16_t{});
    case TypeId::I32:
      return f(std::int32_t{});
    case TypeId::U32:
      return f(std::uint32_t{});
    case TypeId::I64:
      return f(std::int64_t{});
    case TypeId::U64:
      return f(std::uint64_t{});
    case TypeId::F32:
      return f(float{});
    case TypeId::F16:
      throw_float16_visited();
    case TypeId::F64:
      break;
  }
  return f(double{});
}

}  // namespace mmc
