// Custom kernels over slices (include/mmc/slices.hpp): tasks of consecutive slices along an
// axis, read in place when they are slices along axis 0 of a native C-order mapping, else
// decoded into a buffer and gathered slice by slice.
#include "mmc/slices.hpp"

#include <algorithm>
#include <utility>

#include "reduce/plan.hpp"

namespace mmc::detail {
namespace {

// Swaps the bytes of n elements of `item` bytes each, in place.
void swap_bytes(std::byte* p, std::int64_t n, std::size_t item) {
  if (item < 2) return;
  for (std::int64_t i = 0; i < n; ++i, p += item) std::reverse(p, p + item);
}

bool native_c_order(const ArrayMeta& meta) {
  if (!meta.dtype.is_native()) return false;
  std::int64_t s = static_cast<std::int64_t>(meta.dtype.itemsize());
  for (std::size_t i = meta.shape.size(); i-- > 0;) {
    if (meta.shape[i] > 1 && meta.strides[i] != s) return false;
    s *= meta.shape[i];
  }
  return true;
}

// A box read in C order as [outer][count][inner bytes] (count along the slices' axis), laid out
// as `count` contiguous slices of outer * inner bytes each.
void gather_slices(const std::byte* box, std::int64_t outer, std::int64_t count, std::int64_t inner,
                   std::byte* slices) {
  const auto run = static_cast<std::size_t>(inner);
  for (std::int64_t j = 0; j < count; ++j) {
    std::byte* to = slices + j * outer * inner;
    for (std::int64_t o = 0; o < outer; ++o) {
      std::memcpy(to + o * inner, box + (o * count + j) * inner, run);
    }
  }
}

// Reverses a C-order box of `shape` (elements of `item` bytes) along `axis`, in place.
void reverse_axis(std::byte* box, const Shape& shape, std::size_t item, std::size_t axis) {
  std::int64_t outer = 1, inner = static_cast<std::int64_t>(item);
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i < axis) outer *= shape[i];
    if (i > axis) inner *= shape[i];
  }
  const std::int64_t n = shape[axis];
  for (std::int64_t o = 0; o < outer; ++o) {
    std::byte* run = box + o * n * inner;
    for (std::int64_t j = 0; j < n / 2; ++j) {
      std::swap_ranges(run + j * inner, run + (j + 1) * inner, run + (n - 1 - j) * inner);
    }
  }
}

// A thread's buffer of at least `bytes` (grown, never shrunk below what the last task needed).
std::byte* scratch(std::vector<std::byte>& buffer, std::uint64_t bytes) {
  if (buffer.size() < bytes) {
    buffer.clear();
    buffer.shrink_to_fit();
    buffer.resize(bytes);
  }
  return buffer.data();
}

}  // namespace

std::pair<Shape, int> slice_shape(const ArrayMeta& meta, int axis) {
  const int ndim = meta.ndim();
  if (ndim == 0) throw Error(ErrorCode::InvalidArgument, "map_slices: a 0-d array has no slices");
  if (axis < -ndim || axis >= ndim) {
    throw Error(ErrorCode::InvalidArgument, "map_slices: axis " + std::to_string(axis) +
                                                " is out of range for a " + std::to_string(ndim) +
                                                "-d array");
  }
  const int a = axis < 0 ? axis + ndim : axis;
  Shape shape = meta.shape;
  shape.erase(shape.begin() + a);
  return {shape, a};
}

void run_slice_tasks(
    const AnyArray& array, const SliceOptions& options,
    const std::function<void(std::int64_t, std::int64_t, const std::byte*, Bytes&)>& block,
    const std::function<void(std::int64_t, std::int64_t, ByteView)>& on_result) {
  const ArrayMeta& meta = array.meta();
  const int axis = slice_shape(meta, options.axis).second;
  const std::int64_t n = meta.shape[static_cast<std::size_t>(axis)];
  const std::size_t item = meta.dtype.itemsize();
  // Bytes of a slice, and of the axes before (outer, in elements) and after (inner, in bytes)
  // the slices' axis; checked, as the shape came from a file.
  std::uint64_t outer_u = 1, inner_u = item;
  for (int i = 0; i < meta.ndim(); ++i) {
    const auto e = static_cast<std::uint64_t>(meta.shape[static_cast<std::size_t>(i)]);
    if (i < axis) outer_u = checked_mul(outer_u, e, "slice size");
    if (i > axis) inner_u = checked_mul(inner_u, e, "slice size");
  }
  const auto slice_bytes = static_cast<std::int64_t>(checked_mul(outer_u, inner_u, "slice size"));
  const auto outer = static_cast<std::int64_t>(outer_u);
  const auto inner = static_cast<std::int64_t>(inner_u);
  const std::int64_t slice_size = slice_bytes / static_cast<std::int64_t>(item);
  if (options.task_bytes < 0) {
    throw Error(ErrorCode::InvalidArgument, "task_bytes must be 0 (default) or positive");
  }
  const std::int64_t task_bytes = options.task_bytes > 0 ? options.task_bytes : kTaskBytes;
  std::int64_t per_task =
      std::max<std::int64_t>(1, task_bytes / std::max<std::int64_t>(slice_bytes, 1));
  if (const ChunkedArray* c = array.chunked()) {
    // Whole chunks along the axis per task, so each chunk is decoded once, when a chunk's
    // extent along the axis stays within four times the task size.
    const std::int64_t c0 = c->chunk_shape().at(static_cast<std::size_t>(axis));
    if (per_task >= c0) {
      per_task -= per_task % c0;
    } else if (c0 * slice_bytes <= 4 * task_bytes) {
      per_task = c0;
    }
  }
  const std::int64_t n_tasks = n == 0 ? 0 : (n + per_task - 1) / per_task;
  if (n_tasks == 0) return;

  const Source* dense = array.dense();
  // A view taken with negative steps holds those axes ascending (select.hpp): each task reads
  // its box in that order and reverses it.
  const std::vector<int>& reversed = array.reversed_axes();
  const bool axis_reversed = std::find(reversed.begin(), reversed.end(), axis) != reversed.end();
  // In place only along the outermost axis that is not 1, and when the elements are aligned
  // for their type (a raw file at an odd offset is not).
  const bool in_place = dense != nullptr && outer == 1 && reversed.empty() &&
                        native_c_order(meta) &&
                        reinterpret_cast<std::uintptr_t>(dense->data()) % item == 0;
  if (in_place) dense->mapping().advise(Access::Sequential);
  const int workers = in_place ? resolve(options.pool).n_jobs : 1;
  const auto first_of = [per_task](std::size_t task) {
    return static_cast<std::int64_t>(task) * per_task;
  };
  TaskSet call;
  call.n_tasks = static_cast<std::size_t>(n_tasks);
  call.run = [&](std::size_t task, ByteView, Bytes& result) {
    const std::int64_t first = first_of(task);
    const std::int64_t count = std::min(per_task, n - first);
    const auto length = static_cast<std::uint64_t>(count * slice_bytes);
    if (in_place) {
      const auto offset = static_cast<std::uint64_t>(first * slice_bytes);
      // The kernel's read-ahead of the tasks that follow starts now (each worker asks for the
      // next ones, so a cold file's reading overlaps the work), then this task's pages.
      if (length > 0) {
        dense->mapping().will_need(offset + length, length * static_cast<std::uint64_t>(workers));
        dense->mapping().populate(offset, length);
      }
      block(first, count, dense->data() + offset, result);
      if (length > 0) dense->mapping().dont_need(offset, length);
      return;
    }
    thread_local std::vector<std::byte> boxed, gathered;
    Box box;
    box.start.assign(meta.shape.size(), 0);
    box.count = meta.shape;
    box.start[static_cast<std::size_t>(axis)] = axis_reversed ? n - first - count : first;
    box.count[static_cast<std::size_t>(axis)] = count;
    std::byte* slices = scratch(boxed, length);
    array.read_box(box, slices);
    for (const int r : reversed) reverse_axis(slices, box.count, item, static_cast<std::size_t>(r));
    if (outer > 1) {
      std::byte* to = scratch(gathered, length);
      gather_slices(slices, outer, count, inner, to);
      slices = to;
    }
    if (!meta.dtype.is_native()) swap_bytes(slices, count * slice_size, item);
    block(first, count, slices, result);
  };
  call.on_result = [&](std::size_t task, ByteView r) {
    const std::int64_t first = first_of(task);
    on_result(first, std::min(per_task, n - first), r);
  };
  call.on_progress = options.progress;
  if (options.run_call) {
    options.run_call(options.pool, call);
  } else {
    run_tasks(options.pool, call);
  }
}

std::vector<std::byte> run_slice_blocks(
    const AnyArray& array, std::size_t result_bytes, const SliceOptions& options,
    const std::function<void(std::int64_t, std::int64_t, const std::byte*, std::byte*)>& block) {
  const ArrayMeta& meta = array.meta();
  const std::int64_t n =
      meta.shape.at(static_cast<std::size_t>(slice_shape(meta, options.axis).second));
  std::vector<std::byte> out(static_cast<std::size_t>(n) * result_bytes);
  run_slice_tasks(
      array, options,
      [&](std::int64_t first, std::int64_t count, const std::byte* slices, Bytes& result) {
        result.resize(static_cast<std::size_t>(count) * result_bytes);
        block(first, count, slices, result.data());
      },
      [&](std::int64_t first, std::int64_t count, ByteView r) {
        if (r.size != static_cast<std::size_t>(count) * result_bytes) {
          throw Error(ErrorCode::Internal, "map_slices: slices " + std::to_string(first) +
                                               "..: result of " + std::to_string(r.size) +
                                               " bytes");
        }
        if (r.size > 0) {
          std::memcpy(out.data() + static_cast<std::size_t>(first) * result_bytes, r.data, r.size);
        }
      });
  return out;
}

}  // namespace mmc::detail
