// Reductions over axes of a source: sum, mean, min, max, var, std, count, their nan forms,
// any/all, norm, argmin/argmax and histogram.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/pool.hpp"
#include "mmc/source.hpp"

namespace mmc {
class AnyArray;
class ChunkedArray;
class Pool;
}  // namespace mmc

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
  ArgMax,     // index of the first extreme element, C order over the reduced axes
  Histogram,  // counts in equal-width bins (ReduceOptions::bins, range), as np.histogram
  // Exact order statistics of the float64-cast elements, float64 results: np.median, and
  // np.percentile at ReduceOptions::q (numpy's default linear method; result shape
  // (len(q), *kept)); a NaN in a slice makes its result NaN, as numpy's. The nan forms leave
  // NaN out (NaN for a slice of NaN only).
  Median,
  NanMedian,
  Percentile,
  NanPercentile,
};

// "sum", "mean", "min", "max", "var", "std", "count", "nansum", "nanmean", "nanmin",
// "nanmax", "nanvar", "nanstd", "any", "all", "norm", "argmin", "argmax", "histogram",
// "median", "nanmedian", "percentile", "nanpercentile".
// Throws Error(InvalidArgument).
ReduceOp parse_reduce_op(const std::string& text);
// "mean,std,min,max": a list of those names, none twice. Throws Error(InvalidArgument).
std::vector<ReduceOp> parse_reduce_ops(const std::string& text);
const char* to_string(ReduceOp op) noexcept;

// The dtype of op's result for an input dtype (native byte order): (nan)sum → int64/uint64
// for integers and bool, float64 for floats; (nan)mean/var/std and norm → float64;
// (nan)min/max → the input type; count, argmin, argmax, histogram → int64; any/all → bool;
// (nan)median and (nan)percentile → float64.
DType result_dtype(ReduceOp op, DType input);

// Input bytes a reduction task reads when ReduceOptions::task_bytes is 0: large enough to
// amortize dispatch (~10 µs) against the scan (~1 ms at memory speed), small enough to balance
// 2..64 workers. Part of a result's identity (float sums are blocked by it), so the cache keys
// on it.
inline constexpr std::int64_t kDefaultTaskBytes = std::int64_t{8} << 20;

// A nodata value (ReduceOptions::nodata): none, or an integer or a float, kept exact so that
// every value of every dtype can be named (2^63 - 1 of int64, 2^64 - 1 of uint64).
using NoData = std::variant<std::monostate, std::int64_t, std::uint64_t, double>;

// "-9999", "18446744073709551615", "-3.5e38", "inf": an integer when the text is one (exact),
// else a float. Throws Error(InvalidArgument) for other text and for NaN (NaN never equals
// NaN: leave NaN out with the nan ops).
NoData parse_nodata(const std::string& text);
// The value as text ("" for none).
std::string format_nodata(const NoData& nodata);

struct ReduceOptions {
  ReduceOp op = ReduceOp::Mean;
  // Several ops over one read of the data (reduce_each); when not empty, `op` is not used. No
  // op may be listed twice.
  std::vector<ReduceOp> ops;
  // Axes to reduce, numpy style (negatives count from the end). Empty with axes_given false:
  // every axis but 0 (one value per slice; a 1-d array reduces to a scalar).
  std::vector<int> axes;
  bool axes_given = false;
  int ddof = 0;  // var/std divide by n - ddof
  // histogram: `bins` equal-width bins over [range_lo, range_hi] when range_given, else over
  // [min, max] of the whole array (an extra pass over it; every output then shares the same
  // bins, and a NaN or an infinity in the data is an error, as in numpy). Each output's counts
  // are those of np.histogram(elements, bins, range=(lo, hi)) with lo, hi Python floats (with
  // the data's range: numpy scalars of the array's dtype): the last bin is closed on the
  // right, elements outside the range and NaN are not counted, and bin membership is
  // computed in numpy's arithmetic (float32 for float32 data), edge cases included. bool data
  // counts as 0 and 1 (numpy refuses a bool histogram without a range).
  std::int64_t bins = 10;
  bool range_given = false;
  double range_lo = 0;
  double range_hi = 0;
  // percentile and nanpercentile: the percentiles, each in [0, 100] (np.percentile's q); the
  // result's first axis. Every other op ignores it.
  //
  // How the quantile ops run: each element's bits become an unsigned key in numpy's sort order
  // (NaN last) and a pass counts, per output, the keys under one digit. 1- and 2-byte types
  // take one pass (a table of 256 or 65,536 counts per output); 4-byte types two passes and
  // 8-byte types four, each counting the next 16 bits of the elements whose higher bits equal
  // the prefix the pass before found for each rank asked (one table per rank: 2 for a median,
  // 2 per q). Memory: tables of 8 × (1 + 2^16) bytes per output of the tasks in flight, and 24
  // bytes per output and rank between passes.
  std::vector<double> q;
  // Elements left out of every op, as numpy's masked arrays leave them out (np.ma) or as the
  // nan ops leave NaN out: those equal to `nodata` (numpy's ==, the value cast to the array's
  // dtype: -0.0 equals 0.0; an integer dtype refuses a value it cannot hold), and those where
  // `mask` is true. The mask is a dense bool array broadcastable against the reduced array
  // (numpy's rules: one image's shape for a whole cube, or the whole shape); with a view
  // (select.hpp), against the view. A slice with nothing left gives what the nan ops give for a
  // slice of NaN only: sum 0, mean/var/std/median/percentile NaN, count 0, min/max NaN for
  // floats and, for integers, the nodata value (0 without one), argmin/argmax -1, any false, all
  // true, histogram zeros. The histogram's range from the data is that of the elements kept
  // ([0, 1] for none, as numpy's for an empty array).
  NoData nodata;
  std::shared_ptr<const Source> mask;
  // Input bytes per task; 0 picks kDefaultTaskBytes (8 MiB). A tuning and testing knob: it
  // changes how float sums are blocked (so their last bits), never the dependence on n_jobs.
  std::int64_t task_bytes = 0;
  PoolOptions pool;
  ProgressCallback progress;  // optional, caller's thread
};

// A reduction's answer: a dense C-order array in native byte order.
struct ReduceResult {
  DType dtype;
  // The kept axes, in order (then the bins for a histogram; after len(q) for a percentile);
  // empty for a scalar.
  Shape shape;
  Bytes data;
  CallStats stats;
  // A histogram's bins + 1 edges, np.histogram's bin_edges: float32 for float32 data, float64
  // otherwise (edges_dtype); empty for other ops.
  DType edges_dtype;
  Bytes edges;

  std::int64_t size() const noexcept;
  // The elements as T. Throws Error(InvalidArgument) naming both types unless T is dtype's
  // C++ type (double for mean/var/std/norm and float sums, std::int64_t for count, argmin,
  // argmax and histogram counts, bool for any/all, the input's type for min/max).
  template <class T>
  const T* as() const {
    check_element_type(type_id_of<std::remove_cv_t<T>>(), sizeof(T));
    return reinterpret_cast<const T*>(data.data());
  }

 private:
  void check_element_type(TypeId asked, std::size_t asked_size) const;
};

// Parses "1,2" or "-1" into axes. Throws Error(InvalidArgument).
std::vector<int> parse_axes(const std::string& text);

// Normalizes axes for an ndim-d array: negatives wrapped, sorted, checked unique and in range.
// Throws Error(InvalidArgument) naming the bad axis.
std::vector<int> normalize_axes(const std::vector<int>& axes, bool axes_given, int ndim);

// The shape of reduce()'s result: the kept axes, then (bins,) for a histogram. Throws
// Error(InvalidArgument) for bad axes.
Shape result_shape(const ArrayMeta& meta, const ReduceOptions& options);

// The instruction set the reduction kernels of this process use: "portable", "avx2" or
// "avx512", the best this CPU runs; the environment variable MMC_ISA (same names) can lower it,
// never raise it. Fixed at the first reduction.
const char* kernel_isa() noexcept;

// Reduces `source` over options' axes (options.op, or the one op of options.ops; several ops
// are reduce_each's). The result is bitwise identical for any n_jobs,
// backend and max_nbytes: the work is split by the array's geometry alone and partials are
// merged in a fixed order. Integer sums are exact (wrapping like numpy past 64 bits); floats
// are summed in double with pairwise blocks; min/max/argmin/argmax propagate NaN like numpy;
// count counts elements that are not NaN; histogram as described at ReduceOptions::bins. min,
// max, their nan forms, argmin and argmax of an empty axis throw Error(InvalidArgument), as
// numpy raises. Throws what run_tasks throws, and Error(InvalidArgument) for bad axes or
// options (bins < 1, a range that is not finite or has lo > hi, a histogram without a range of
// data holding NaN or infinity).
ReduceResult reduce(const Source& source, const ReduceOptions& options);

// Several ops in one read of the data: one result per op of options.ops (in that order), each
// bitwise what reduce() gives for that op alone. The data is read once (a chunked array's chunks
// decoded once) and every op folds each task's elements while they are in cache; ops that share
// their arithmetic share it (sum with mean, var with std, min with max). argmin/argmax, whose
// plan keeps the reduced axes' C-order index, take a pass of their own when that plan differs
// from the others' (reduced axes that are not contiguous in both memory and index order); a
// histogram without a range reads the whole array once more first, as alone. With options.ops
// empty, the one result of options.op. Throws as reduce() does, and Error(InvalidArgument) for
// an op listed twice.
std::vector<ReduceResult> reduce_each(const Source& source, const ReduceOptions& options);
std::vector<ReduceResult> reduce_each(const ChunkedArray& array, const ReduceOptions& options);
std::vector<ReduceResult> reduce_each(const AnyArray& array, const ReduceOptions& options);
std::vector<ReduceResult> reduce_each(const AnyArray& array, const ReduceOptions& options,
                                      Pool& pool);

// Reduces a chunked array (zarr, chunked HDF5) with the plan of the same array stored dense
// (meta()'s strides): each task decodes the chunks its box touches into a private buffer, and
// tasks follow the chunk grid so that no chunk is decoded twice when a chunk row fits a task's
// memory bound (see docs/ARCHITECTURE.md). The result is bitwise what reduce() gives on a
// .npy file of the same values, dtype and order, whatever the chunking and compressor. Forked
// workers open HDF5 files themselves. Throws as reduce() does, and what decoding throws.
ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options);

// Either of the above, for an array opened by open_array().
ReduceResult reduce(const AnyArray& array, const ReduceOptions& options);

// The same reductions on a warm mmc::Pool (parallel.hpp): its workers, forked once when the
// pool was made, run the tasks, so a program that reduces many arrays pays the fork once. The
// result is bitwise that of reduce(array, options). options.pool is not
// used: the pool's backend and n_jobs are. Batches carry only ranges of task indices and a
// small description of the array, which a worker of a process pool opens the first time it runs
// one of the call's tasks and keeps for the rest: a mapped file (raw, .npy, contiguous HDF5)
// travels as the caller's open descriptor (SCM_RIGHTS), so a file renamed over or removed since
// the caller opened it is still the one read; a chunked array travels by its name and must open
// with the same dtype, shape and chunks. The array the caller opened is the truth: a
// copy-on-write mapping, and a chunked array a worker cannot open as the very same one, run on
// the caller's thread instead (same result; ReduceResult::stats.tasks_in_caller counts those
// tasks), never on other bytes; so do chunked HDF5 arrays when the pool was made while the
// caller had HDF5 files open (libhdf5's state does not survive the fork server). Throws what
// reduce(array, options) throws; a worker that dies fails the call with
// Error(WorkerLost) and the pool replaces it (it stays usable). Not reentrant from a task of the
// same pool. Thread-safe as the pool is: calls from several threads share its workers.
ReduceResult reduce(const Source& source, const ReduceOptions& options, Pool& pool);
ReduceResult reduce(const ChunkedArray& array, const ReduceOptions& options, Pool& pool);
ReduceResult reduce(const AnyArray& array, const ReduceOptions& options, Pool& pool);

}  // namespace mmc
