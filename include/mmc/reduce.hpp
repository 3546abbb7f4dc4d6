// Reductions over axes of a source: sum, mean, min, max, var, std, count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/pool.hpp"
#include "mmc/source.hpp"

namespace mmc {

enum class ReduceOp : std::uint8_t {
  Sum,
  Mean,
  Min,
  Max,
  Var,
  Std,
  Count,
  NanSum,
  NanMean,
  NanMin,
  NanMax,
  NanVar,
  NanStd,  // NaN elements ignored, as numpy's nan*
  Any,
  All,   // truth is x != 0 (NaN is true)
  Norm,  // L2 norm: sqrt of the sum of squares
  ArgMin,
  ArgMax,  // index of the first extreme element, C order over the reduced axes
};

// "sum", "mean", "min", "max", "var", "std", "count", "nansum", "nanmean", "nanmin",
// "nanmax", "nanvar", "nanstd", "any", "all", "norm", "argmin", "argmax".
// Throws Error(InvalidArgument).
ReduceOp parse_reduce_op(const std::string& text);
const char* to_string(ReduceOp op) noexcept;

// The dtype of op's result for an input dtype (native byte order): (nan)sum → int64/uint64
// for integers and bool, float64 for floats; (nan)mean/var/std and norm → float64;
// (nan)min/max → the input type; count, argmin, argmax → int64; any/all → bool.
DType result_dtype(ReduceOp op, DType input);

struct ReduceOptions {
  ReduceOp op = ReduceOp::Mean;
  // Axes to reduce, numpy style (negatives count from the end). Empty with axes_given false:
  // every axis but 0 (one value per slice; a 1-d array reduces to a scalar).
  std::vector<int> axes;
  bool axes_given = false;
  int ddof = 0;  // var/std divide by n - ddof
  // Input bytes per task; 0 picks the default (8 MiB). A tuning and testing knob: it changes
  // how float sums are blocked (so their last bits), never the dependence on n_jobs.
  std::int64_t task_bytes = 0;
  PoolOptions pool;
  ProgressFn progress;  // optional, caller's thread
};

// A reduction's answer: a dense C-order array in native byte order.
struct ReduceResult {
  DType dtype;
  Shape shape;  // the kept axes, in order; empty for a scalar
  Bytes data;
  CallStats stats;

  std::int64_t size() const noexcept;
  template <class T>
  const T* as() const noexcept {
    return reinterpret_cast<const T*>(data.data());
  }
};

// Parses "1,2" or "-1" into axes. Throws Error(InvalidArgument).
std::vector<int> parse_axes(const std::string& text);

// Normalizes axes for an ndim-d array: negatives wrapped, sorted, checked unique and in range.
// Throws Error(InvalidArgument) naming the bad axis.
std::vector<int> normalize_axes(const std::vector<int>& axes, bool axes_given, int ndim);

// Reduces `source` over options' axes. The result is bitwise identical for any n_jobs,
// backend and max_nbytes: the work is split by the array's geometry alone and partials are
// merged in a fixed order. Integer sums are exact (wrapping like numpy past 64 bits); floats
// are summed in double with pairwise blocks; min/max/argmin/argmax propagate NaN like numpy;
// count counts elements that are not NaN. min, max, their nan forms, argmin and argmax of an
// empty axis throw Error(InvalidArgument), as numpy raises. Throws what run_tasks throws, and
// Error(InvalidArgument) for bad axes or options.
ReduceResult reduce(const Source& source, const ReduceOptions& options);

}  // namespace mmc
