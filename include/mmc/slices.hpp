// Custom kernels: your own function over every slice (image) of an array, run by the same
// pool, transport and chunk-aware reading as the built-in reductions.
//
//   const mmc::AnyArray cube = mmc::open_array("cube.h5:/images");
//   std::vector<double> p99 = mmc::map_slices<std::uint8_t, double>(
//       cube, [](const mmc::SliceView<std::uint8_t>& s) { return percentile(s.data, s.size(), 99);
//       });
//
// With Eigen, <mmc/eigen.hpp> maps a slice as a matrix or an array without copying.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmc/array.hpp"
#include "mmc/dtype.hpp"
#include "mmc/error.hpp"
#include "mmc/open.hpp"
#include "mmc/pool.hpp"

namespace mmc {

// One slice of an array along SliceOptions::axis (a[index, ...] for axis 0): C-order, native
// byte order, contiguous.
template <class T>
struct SliceView {
  const T* data = nullptr;
  std::int64_t index = 0;  // position along the axis
  Shape shape;             // the array's shape without the axis (empty for a 1-d array)

  std::int64_t size() const noexcept {
    std::int64_t n = 1;
    for (std::int64_t e : shape) n *= e;
    return n;
  }
  // Rows and columns when the slice is seen as a matrix: the last axis is the columns.
  std::int64_t cols() const noexcept { return shape.empty() ? 1 : shape.back(); }
  std::int64_t rows() const noexcept { return cols() == 0 ? 0 : size() / cols(); }
};

struct SliceOptions {
  PoolOptions pool;
  // The axis the slices are taken along (negative counts from the end): axis 0 gives a[i, ...],
  // axis 1 gives a[:, i, ...]. Slices along axis 0 of a native C-order dense array are read in
  // place; others are gathered into a buffer per task.
  int axis = 0;
  // Bytes of input per task (consecutive slices; one slice at least). 0: about 8 MiB.
  std::int64_t task_bytes = 0;
  ProgressCallback progress;  // caller's thread, after each task
  // Runs the call's tasks; empty: run_tasks(pool, call). Whatever runs them must hand every
  // task's result to call.on_result on this process (MPI codes use mmc::mpi::map_slices).
  std::function<CallStats(const PoolOptions&, const TaskSet&)> run_call;
};

namespace detail {

// Runs block(first, count, slices, result) over consecutive slices of `array` along
// options.axis in the pool, a task per block. `slices` holds `count` slices, each contiguous in
// C order and native byte order: the mapping itself for axis 0 of a native C-order dense source
// (zero copy), else a per-task buffer filled from the array (chunks decoded once per task, bytes
// swapped, Fortran order and other axes gathered). The block appends what it likes to `result`;
// on_result(first, count, result) gets it on the caller's thread, in completion order.
// Throws Error(InvalidArgument) for a 0-d array or an axis out of range.
void run_slice_tasks(
    const AnyArray& array, const SliceOptions& options,
    const std::function<void(std::int64_t first, std::int64_t count, const std::byte* slices,
                             Bytes& result)>& block,
    const std::function<void(std::int64_t first, std::int64_t count, ByteView result)>& on_result);

// The array's shape without the slices' axis, and that axis (options.axis normalized).
// Throws as run_slice_tasks.
std::pair<Shape, int> slice_shape(const ArrayMeta& meta, int axis);

// run_slice_tasks with result_bytes per slice: `results` has room for count * result_bytes;
// the returned vector holds every slice's result bytes in order.
std::vector<std::byte> run_slice_blocks(
    const AnyArray& array, std::size_t result_bytes, const SliceOptions& options,
    const std::function<void(std::int64_t first, std::int64_t count, const std::byte* slices,
                             std::byte* results)>& block);

}  // namespace detail

// Calls fn(SliceView<T>) for every slice of `array` along options.axis (a[i, ...] by default)
// and returns the results in slice order (R trivially copyable: it crosses process boundaries as
// bytes). T must be the array's element type (byte order aside). fn runs in the pool's workers:
// with the process backend, in forked processes, so it must not rely on changing the caller's
// memory; its exceptions fail the call (mmc::Error keeps its code; others become
// ErrorCode::TaskFailed), naming the task. Throws Error(InvalidArgument) for a 0-d array, an axis
// out of range or a T that is not the array's element type.
template <class T, class R, class Fn>
std::vector<R> map_slices(const AnyArray& array, Fn&& fn, const SliceOptions& options = {}) {
  static_assert(std::is_trivially_copyable_v<R>, "map_slices results must be trivially copyable");
  const ArrayMeta& meta = array.meta();
  if (meta.dtype.id() != type_id_of<T>()) {
    throw Error(ErrorCode::InvalidArgument,
                "map_slices: the array holds " + meta.dtype.name() +
                    " elements, not those of the kernel's element type " +
                    DType(type_id_of<T>()).name());
  }
  const Shape slice_shape = detail::slice_shape(meta, options.axis).first;
  std::int64_t slice_size = 1;
  for (std::int64_t e : slice_shape) slice_size *= e;
  const std::vector<std::byte> bytes = detail::run_slice_blocks(
      array, sizeof(R), options,
      [&](std::int64_t first, std::int64_t count, const std::byte* slices, std::byte* results) {
        SliceView<T> view;
        view.shape = slice_shape;
        for (std::int64_t k = 0; k < count; ++k) {
          view.data = reinterpret_cast<const T*>(slices) + k * slice_size;
          view.index = first + k;
          const R r = fn(static_cast<const SliceView<T>&>(view));
          std::memcpy(results + static_cast<std::size_t>(k) * sizeof(R), &r, sizeof(R));
        }
      });
  std::vector<R> out(bytes.size() / sizeof(R));
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace mmc
