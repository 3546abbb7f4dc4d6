// Custom kernels over slices (include/mmc/slices.hpp): tasks of consecutive slices along axis 0,
// read in place when the array is a native C-order mapping, else decoded into a buffer.
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

}  // namespace

std::vector<std::byte> run_slice_blocks(
    const AnyArray& array, std::size_t result_bytes, const SliceOptions& options,
    const std::function<void(std::int64_t, std::int64_t, const std::byte*, std::byte*)>& block) {
  const ArrayMeta& meta = array.meta();
  const std::int64_t n = meta.shape.at(0);
  const std::size_t item = meta.dtype.itemsize();
  std::uint64_t slice_bytes_u = item;
  for (std::size_t i = 1; i < meta.shape.size(); ++i) {
    slice_bytes_u =
        checked_mul(slice_bytes_u, static_cast<std::uint64_t>(meta.shape[i]), "slice size");
  }
  const auto slice_bytes = static_cast<std::int64_t>(slice_bytes_u);
  const std::int64_t slice_size = slice_bytes / static_cast<std::int64_t>(item);
  if (options.task_bytes < 0) {
    throw Error(ErrorCode::InvalidArgument, "task_bytes must be 0 (default) or positive");
  }
  const std::int64_t task_bytes = options.task_bytes > 0 ? options.task_bytes : kTaskBytes;
  std::int64_t per_task =
      std::max<std::int64_t>(1, task_bytes / std::max<std::int64_t>(slice_bytes, 1));
  if (const ChunkedArray* c = array.chunked()) {
    // Whole chunk rows per task, so each chunk is decoded once, when a chunk row stays within
    // four times the task size.
    const std::int64_t c0 = c->chunk_shape().at(0);
    if (per_task >= c0) {
      per_task -= per_task % c0;
    } else if (c0 * slice_bytes <= 4 * task_bytes) {
      per_task = c0;
    }
  }
  const std::int64_t n_tasks = n == 0 ? 0 : (n + per_task - 1) / per_task;
  std::vector<std::byte> out(static_cast<std::size_t>(n) * result_bytes);
  if (n_tasks == 0) return out;

  const Source* dense = array.dense();
  // In place only when the elements are aligned for T (a raw file at an odd offset is not).
  const bool in_place = dense != nullptr && native_c_order(meta) &&
                        reinterpret_cast<std::uintptr_t>(dense->data()) % item == 0;
  if (in_place) dense->mapping().advise(Access::Sequential);
  TaskSet call;
  call.n_tasks = static_cast<std::size_t>(n_tasks);
  call.run = [&](std::size_t task, ByteView, Bytes& result) {
    const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
    const std::int64_t count = std::min(per_task, n - first);
    result.resize(static_cast<std::size_t>(count) * result_bytes);
    const auto offset = static_cast<std::uint64_t>(first * slice_bytes);
    const auto length = static_cast<std::uint64_t>(count * slice_bytes);
    if (in_place) {
      if (length > 0) dense->mapping().populate(offset, length);
      block(first, count, dense->data() + offset, result.data());
      if (length > 0) dense->mapping().dont_need(offset, length);
      return;
    }
    thread_local std::vector<std::byte> buffer;
    if (buffer.size() < length) {
      buffer.clear();
      buffer.shrink_to_fit();
      buffer.resize(length);
    }
    Box box;
    box.start.assign(meta.shape.size(), 0);
    box.count = meta.shape;
    box.start[0] = first;
    box.count[0] = count;
    array.read_box(box, buffer.data());
    if (!meta.dtype.is_native()) swap_bytes(buffer.data(), count * slice_size, item);
    block(first, count, buffer.data(), result.data());
  };
  call.on_result = [&](std::size_t task, ByteView r) {
    const std::int64_t first = static_cast<std::int64_t>(task) * per_task;
    const std::int64_t count = std::min(per_task, n - first);
    if (r.size != static_cast<std::size_t>(count) * result_bytes) {
      throw Error(ErrorCode::Internal, "map_slices task " + std::to_string(task) + ": result of " +
                                           std::to_string(r.size) + " bytes");
    }
    if (r.size > 0) {
      std::memcpy(out.data() + static_cast<std::size_t>(first) * result_bytes, r.data, r.size);
    }
  };
  call.on_progress = options.progress;
  if (options.run_call) {
    options.run_call(options.pool, call);
  } else {
    run_tasks(options.pool, call);
  }
  return out;
}

}  // namespace mmc::detail
