// Reduction ops and axes: names, result dtypes, parsing and validation.
#include <algorithm>
#include <charconv>

#include "mmc/error.hpp"
#include "mmc/reduce.hpp"

namespace mmc {
namespace {

// The C++ type ReduceResult::as<T> wants for a dtype.
const char* cxx_name(TypeId id) {
  switch (id) {
    case TypeId::Bool:
      return "bool";
    case TypeId::I8:
      return "std::int8_t";
    case TypeId::U8:
      return "std::uint8_t";
    case TypeId::I16:
      return "std::int16_t";
    case TypeId::U16:
      return "std::uint16_t";
    case TypeId::I32:
      return "std::int32_t";
    case TypeId::U32:
      return "std::uint32_t";
    case TypeId::I64:
      return "std::int64_t";
    case TypeId::U64:
      return "std::uint64_t";
    case TypeId::F32:
      return "float";
    case TypeId::F64:
      return "double";
    case TypeId::F16:
      return "mmc::Float16";
  }
  return "?";
}

struct OpName {
  ReduceOp op;
  const char* name;
};
constexpr OpName kOps[] = {
    {ReduceOp::Sum, "sum"},
    {ReduceOp::Mean, "mean"},
    {ReduceOp::Min, "min"},
    {ReduceOp::Max, "max"},
    {ReduceOp::Var, "var"},
    {ReduceOp::Std, "std"},
    {ReduceOp::Count, "count"},
    {ReduceOp::NanSum, "nansum"},
    {ReduceOp::NanMean, "nanmean"},
    {ReduceOp::NanMin, "nanmin"},
    {ReduceOp::NanMax, "nanmax"},
    {ReduceOp::NanVar, "nanvar"},
    {ReduceOp::NanStd, "nanstd"},
    {ReduceOp::Any, "any"},
    {ReduceOp::All, "all"},
    {ReduceOp::Norm, "norm"},
    {ReduceOp::ArgMin, "argmin"},
    {ReduceOp::ArgMax, "argmax"},
    {ReduceOp::Histogram, "histogram"},
    {ReduceOp::Median, "median"},
    {ReduceOp::NanMedian, "nanmedian"},
    {ReduceOp::Percentile, "percentile"},
    {ReduceOp::NanPercentile, "nanpercentile"},
};

}  // namespace

ReduceOp parse_reduce_op(const std::string& text) {
  for (const auto& o : kOps) {
    if (text == o.name) return o.op;
  }
  std::string names;
  for (const auto& o : kOps) names += std::string(names.empty() ? "" : ", ") + o.name;
  throw Error(ErrorCode::InvalidArgument,
              "unknown op '" + text + "' (expected one of " + names + ")");
}

std::vector<ReduceOp> parse_reduce_ops(const std::string& text) {
  std::vector<ReduceOp> ops;
  std::size_t at = 0;
  while (true) {
    const std::size_t comma = text.find(',', at);
    const std::string name = text.substr(at, comma == std::string::npos ? comma : comma - at);
    if (name.empty()) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad op list '" + text + "': an empty name (write e.g. mean,std,min,max)");
    }
    const ReduceOp op = parse_reduce_op(name);
    if (std::find(ops.begin(), ops.end(), op) != ops.end()) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad op list '" + text + "': " + name + " is listed twice");
    }
    ops.push_back(op);
    if (comma == std::string::npos) return ops;
    at = comma + 1;
  }
}

const char* to_string(ReduceOp op) noexcept {
  for (const auto& o : kOps) {
    if (o.op == op) return o.name;
  }
  return "?";
}

DType result_dtype(ReduceOp op, DType input) {
  switch (op) {
    case ReduceOp::Sum:
    case ReduceOp::NanSum:
      switch (input.kind()) {
        case TypeKind::Float:
          return DType(TypeId::F64);
        case TypeKind::Unsigned:
          return DType(TypeId::U64);
        case TypeKind::Signed:
        case TypeKind::Bool:
          return DType(TypeId::I64);
      }
      break;
    case ReduceOp::Mean:
    case ReduceOp::Var:
    case ReduceOp::Std:
    case ReduceOp::NanMean:
    case ReduceOp::NanVar:
    case ReduceOp::NanStd:
    case ReduceOp::Norm:
    case ReduceOp::Median:
    case ReduceOp::NanMedian:
    case ReduceOp::Percentile:
    case ReduceOp::NanPercentile:
      return DType(TypeId::F64);
    case ReduceOp::Min:
    case ReduceOp::Max:
    case ReduceOp::NanMin:
    case ReduceOp::NanMax:
      return input.native();
    case ReduceOp::Count:
    case ReduceOp::ArgMin:
    case ReduceOp::ArgMax:
    case ReduceOp::Histogram:
      return DType(TypeId::I64);
    case ReduceOp::Any:
    case ReduceOp::All:
      return DType(TypeId::Bool);
  }
  return DType(TypeId::F64);
}

std::int64_t ReduceResult::size() const noexcept {
  std::int64_t n = 1;
  for (auto e : shape) n *= e;
  return n;
}

void ReduceResult::check_element_type(TypeId asked, std::size_t asked_size) const {
  if (asked == dtype.id() && asked_size == dtype.itemsize()) return;
  throw_error(ErrorCode::InvalidArgument, "ReduceResult::as<T>: the result holds " + dtype.name() +
                                              " elements, T is " + DType(asked).name() +
                                              ": ask for the result's dtype (as<" +
                                              cxx_name(dtype.id()) + ">())");
}

std::vector<int> parse_axes(const std::string& text) {
  std::vector<int> axes;
  std::size_t pos = 0;
  while (true) {
    std::size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const char* first = text.data() + pos;
    const char* last = text.data() + end;
    int v = 0;
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (first == last || ec != std::errc() || ptr != last) {
      throw Error(ErrorCode::InvalidArgument,
                  "bad axis list '" + text + "' (expected integers like 1,2 or -1)");
    }
    axes.push_back(v);
    if (end == text.size()) break;
    pos = end + 1;
  }
  return axes;
}

std::vector<int> normalize_axes(const std::vector<int>& axes, bool axes_given, int ndim) {
  std::vector<int> out;
  if (!axes_given) {
    // One value per slice along axis 0; a 1-d array reduces to a scalar.
    for (int a = ndim == 1 ? 0 : 1; a < ndim; ++a) out.push_back(a);
    return out;
  }
  for (int a : axes) {
    if (a < -ndim || a >= ndim) {
      throw Error(ErrorCode::InvalidArgument, "axis " + std::to_string(a) +
                                                  " is out of bounds for an array of dimension " +
                                                  std::to_string(ndim));
    }
    out.push_back(a < 0 ? a + ndim : a);
  }
  std::sort(out.begin(), out.end());
  if (std::adjacent_find(out.begin(), out.end()) != out.end()) {
    throw Error(ErrorCode::InvalidArgument, "duplicate axis in axis list");
  }
  return out;
}

}  // namespace mmc
