// run_pass: one pass of a reduction over the data, for any set of families at once. Each task
// reads (or decodes) its elements once and every slot folds them; the partials of a block's
// pieces are merged in piece order, so the result never depends on who ran which task.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <thread>

#include "mmc/error.hpp"
#include "reduce/context.hpp"
#include "reduce/read_ahead.hpp"

namespace mmc::detail {
namespace {

// Bytes of a group of units every slot folds in turn (half a typical L2).
constexpr std::int64_t kGroupBytes = 256 << 10;

std::size_t padded(std::size_t bytes) noexcept {
  return (bytes + kSlotAlign - 1) / kSlotAlign * kSlotAlign;
}

// A buffer aligned for any slot's partials.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(std::size_t size)
      : size_(size), words_((size + kSlotAlign - 1) / kSlotAlign) {}
  void assign(const std::byte* data, std::size_t size) {
    *this = AlignedBytes(size);
    if (size > 0) std::memcpy(this->data(), data, size);
  }
  std::byte* data() noexcept { return reinterpret_cast<std::byte*>(words_.data()); }
  std::size_t size() const noexcept { return size_; }
  void clear() noexcept { *this = AlignedBytes(); }

 private:
  struct alignas(kSlotAlign) Word {
    std::byte bytes[kSlotAlign];
  };
  std::size_t size_ = 0;
  std::vector<Word> words_;
};

// The indices of reduced[0] task `task` folds.
void reduced_range(const ReducePlan& plan, std::int64_t task, std::int64_t* r0, std::int64_t* r1) {
  *r0 = task % plan.pieces * plan.piece_len;
  *r1 = std::min(plan.reduced.front().extent, *r0 + plan.piece_len);
}

}  // namespace

bool reads_exact_spans(const Source& source) {
  const MappedFile& mapping = source.mapping();
  const ArrayMeta& meta = source.meta();
  const std::uint64_t folded = meta.size() > 0 ? meta.nbytes() : 0;
  if (folded * 2 < mapping.size()) return true;
  struct stat st;
  return mapping.descriptor() >= 0 && ::fstat(mapping.descriptor(), &st) == 0 &&
         mapping.size() * 2 < static_cast<std::uint64_t>(st.st_size);
}

CallStats run_pass(const Context& ctx, const ReducePlan& plan,
                   const std::vector<const PassSlot*>& slots, const ProgressCallback& progress) {
  const Input& input = ctx.input;
  const ReduceOptions& options = ctx.options;
  const int delay_ms = ctx.delay_ms;
  const std::int64_t populate_limit = 4 * std::max(options.task_bytes, detail::kTaskBytes);
  const bool exact_spans = input.dense != nullptr && reads_exact_spans(*input.dense);

  // Task t's result: each slot's section in turn, padded.
  auto result_bytes = [&slots](std::int64_t t) {
    std::size_t total = 0;
    for (const PassSlot* slot : slots) total += padded(slot->task_bytes(t));
    return total;
  };
  // Runs every slot over the same elements at `data` (the task's, or reduced[0] in [rb, re)).
  // Several slots over a whole task of strategy A take it in groups of units of about
  // kGroupBytes (at least one unit), each group folded by every slot while it is in cache
  // (units are independent: the same partials). Measured on per-image mean, std, min and max
  // of a 2 GiB u8 cube, warm, 2 workers: 0.197 s against 0.249 slot after slot over the task
  // (one op alone: 0.125). Strategy B's units are strided line segments: measured no gain.
  auto fold = [&slots, &plan](std::int64_t t, const std::byte* data, std::byte* out,
                              std::int64_t rb, std::int64_t re, bool part, bool init) {
    const std::int64_t u0 = t / plan.pieces * plan.units_per_task;
    const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task);
    std::int64_t first = 0, last = 0;
    plan.task_span(t, &first, &last);
    const std::int64_t unit_bytes = u1 > u0 ? (last - first) / (u1 - u0) : 0;
    if (!part && plan.inner_reduced && slots.size() > 1 && u1 - u0 > 1 && unit_bytes > 0) {
      const std::int64_t group = std::max<std::int64_t>(1, kGroupBytes / unit_bytes);
      std::int64_t outputs_before = 0;
      for (std::int64_t ua = u0; ua < u1; ua += group) {
        const std::int64_t ub = std::min(u1, ua + group);
        std::byte* at = out;
        for (const PassSlot* slot : slots) {
          slot->run_units(t, data, at, ua, ub, outputs_before);
          at += padded(slot->task_bytes(t));
        }
        for (std::int64_t u = ua; u < ub; ++u) outputs_before += plan.unit_outputs(u);
      }
      return;
    }
    for (const PassSlot* slot : slots) {
      if (part) {
        slot->run_part(t, data, out, rb, re, init);
      } else {
        slot->run(t, data, out);
      }
      out += padded(slot->task_bytes(t));
    }
  };
  // Folds task t into out (result_bytes(t) bytes, aligned).
  auto run_task = [&](std::int64_t t, std::byte* out) {
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    if (input.chunked != nullptr) {
      // An empty array has nothing to read (its runs are empty): a placeholder origin.
      static constexpr std::byte kNothing{};
      if (input.meta.size() == 0) return fold(t, &kNothing, out, 0, 0, false, true);
      // Decode the task's box at its dense offsets, in slabs of whole chunk rows along
      // reduced[0] when the plan allows, so memory stays at one slab.
      const std::int64_t step = slab_step(plan, input.meta, input.chunked->chunk_shape());
      if (step == 0) {
        return fold(t, materialize_box(*input.chunked, task_box(plan, input.meta, t)), out, 0, 0,
                    false, true);
      }
      std::int64_t r0, r1;
      reduced_range(plan, t, &r0, &r1);
      for (std::int64_t rb = r0; rb < r1;) {
        const std::int64_t re = std::min(r1, (rb / step + 1) * step);
        const Box box = task_box(plan, input.meta, t, rb, re);
        fold(t, materialize_box(*input.chunked, box), out, rb, re, true, rb == r0);
        rb = re;
      }
      return;
    }
    const MappedFile& mapping = input.dense->mapping();
    std::int64_t first, last;
    plan.task_span(t, &first, &last);
    // A view that skips elements (select.hpp) spans more than it folds: its units' own spans
    // are read instead, when they are dense, and the rest is left to faults (the mapping is
    // advised MADV_RANDOM then, so no fault reads around itself).
    if (last - first > 2 * plan.task_bytes_folded(t)) {
      const std::int64_t u0 = t / plan.pieces * plan.units_per_task;
      const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task);
      auto each_dense_unit = [&](auto&& f) {
        for (std::int64_t u = u0; u < u1; ++u) {
          std::int64_t a, b;
          plan.unit_span(t, u, &a, &b);
          if (b > a && b - a <= 2 * plan.unit_bytes_folded(t, u)) {
            f(static_cast<std::uint64_t>(a), static_cast<std::uint64_t>(b - a));
          }
        }
      };
      each_dense_unit([&](std::uint64_t a, std::uint64_t n) { mapping.will_need(a, n); });
      each_dense_unit([&](std::uint64_t a, std::uint64_t n) { mapping.populate(a, n); });
      fold(t, input.dense->data(), out, 0, 0, false, true);
      each_dense_unit([&](std::uint64_t a, std::uint64_t n) { mapping.dont_need(a, n); });
      return;
    }
    const bool dense = last > first && last - first <= populate_limit;
    // Fault the task's pages in one call rather than one fault per 64 KiB. (An explicit
    // MADV_WILLNEED look-ahead was measured to cost more on a warm cache than it saved on a
    // cold one, where MADV_SEQUENTIAL read-ahead already streams.)
    if (dense) {
      if (exact_spans) {
        mapping.will_need(static_cast<std::uint64_t>(first),
                          static_cast<std::uint64_t>(last - first));
      }
      mapping.populate(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last - first));
    }
    fold(t, input.dense->data(), out, 0, 0, false, true);
    // Unmap what was read (the page cache keeps it), so resident memory stays flat however
    // large the cube.
    if (dense) {
      mapping.dont_need(static_cast<std::uint64_t>(first),
                        static_cast<std::uint64_t>(last - first));
    }
  };

  if (ctx.worker != nullptr) {
    // One buffer for the range, sized once. Every task's result is a multiple of kSlotAlign
    // bytes, so each starts aligned as the buffer is (the caller copies a misaligned one).
    const auto first = static_cast<std::int64_t>(ctx.worker->first);
    const auto end = first + static_cast<std::int64_t>(ctx.worker->count);
    Bytes& out = *ctx.worker->out;
    const std::size_t base = out.size();
    std::size_t total = 0;
    for (std::int64_t t = first; t < end; ++t) total += result_bytes(t);
    out.resize(base + total);
    std::size_t at = base;
    for (std::int64_t t = first; t < end; ++t) {
      run_task(t, out.data() + at);
      at += result_bytes(t);
    }
    return {};
  }

  // A cold cube streams from disk in task order ahead of the workers (read_ahead.hpp). Not
  // under run_call (MPI): a rank's share of the tasks is not known here.
  std::optional<ReadAhead> read_ahead;
  if (input.dense != nullptr && !ctx.runner.run_call && read_ahead_enabled() && !exact_spans) {
    read_ahead.emplace(input.dense->mapping(), plan, populate_limit, kReadAheadWindow);
  }

  TaskSet call;
  call.n_tasks = static_cast<std::size_t>(plan.n_tasks());
  call.run = [&](std::size_t task, ByteView, Bytes& result) {
    const auto t = static_cast<std::int64_t>(task);
    result.resize(result_bytes(t));
    run_task(t, result.data());
  };

  // Outputs of task t (every slot has as many).
  auto outputs_of = [&slots](std::int64_t t) {
    return static_cast<std::int64_t>(slots.front()->task_bytes(t) / slots.front()->output_bytes());
  };
  // Hands the outputs of a block to the slots from its merged partials (aligned).
  auto emit = [&](std::int64_t block, const std::byte* parts) {
    const std::int64_t u0 = block * plan.units_per_task;
    const std::int64_t u1 = std::min(plan.units, u0 + plan.units_per_task);
    const std::int64_t step = plan.unit_out_step();
    const std::int64_t task = block * plan.pieces;
    for (const PassSlot* slot : slots) {
      const std::byte* at = parts;
      for (std::int64_t u = u0; u < u1; ++u) {
        const std::int64_t base = plan.unit_out_index(u);
        const std::int64_t n = plan.unit_outputs(u);
        for (std::int64_t j = 0; j < n; ++j) {
          slot->emit(base + j * step, at);
          at += slot->output_bytes();
        }
      }
      parts += padded(slot->task_bytes(task));
    }
  };

  // Pieces of a block arrive in any order; they are merged in piece order once all are here.
  std::vector<AlignedBytes> pending(plan.pieces > 1 ? call.n_tasks : 0);
  std::vector<std::int64_t> arrived(plan.pieces > 1 ? static_cast<std::size_t>(plan.blocks()) : 0);
  call.on_result = [&](std::size_t task, ByteView bytes) {
    if (read_ahead) read_ahead->finished();
    const auto t = static_cast<std::int64_t>(task);
    const std::size_t expected = result_bytes(t);
    if (bytes.size != expected) {
      throw Error(ErrorCode::Internal, "task " + std::to_string(task) + ": result of " +
                                           std::to_string(bytes.size) + " bytes, expected " +
                                           std::to_string(expected));
    }
    const std::int64_t block = t / plan.pieces;
    if (plan.pieces == 1) {
      // Read in place when the transport left the partials aligned (a pool's result buffer);
      // copied otherwise.
      if (reinterpret_cast<std::uintptr_t>(bytes.data) % kSlotAlign == 0) {
        emit(block, bytes.data);
        return;
      }
      AlignedBytes parts;
      parts.assign(bytes.data, bytes.size);
      emit(block, parts.data());
      return;
    }
    pending[task].assign(bytes.data, bytes.size);
    if (++arrived[static_cast<std::size_t>(block)] < plan.pieces) return;
    AlignedBytes& acc = pending[static_cast<std::size_t>(block * plan.pieces)];
    const std::int64_t outputs = outputs_of(t);
    for (std::int64_t p = 1; p < plan.pieces; ++p) {
      AlignedBytes& piece = pending[static_cast<std::size_t>(block * plan.pieces + p)];
      std::size_t at = 0;
      for (const PassSlot* slot : slots) {
        slot->merge(acc.data() + at, piece.data() + at, outputs);
        at += padded(slot->task_bytes(t));
      }
      piece.clear();
    }
    emit(block, acc.data());
    acc.clear();
  };
  call.on_progress = progress;
  if (ctx.route != nullptr) {
    // A range's partials are its tasks' results one after the other.
    const RangeFn on_range = [&](std::size_t first, std::size_t count, ByteView bytes) {
      std::size_t at = 0;
      for (std::size_t task = first; task < first + count; ++task) {
        const std::size_t size = result_bytes(static_cast<std::int64_t>(task));
        if (size > bytes.size - at) break;
        call.on_result(task, {bytes.data + at, size});
        at += size;
      }
      if (at != bytes.size) {
        throw Error(ErrorCode::Internal, "tasks " + std::to_string(first) + ".." +
                                             std::to_string(first + count) + ": results of " +
                                             std::to_string(bytes.size) + " bytes, expected " +
                                             std::to_string(at));
      }
    };
    return ctx.route->run(ctx.phase, ctx.histogram, ctx.refine, call.n_tasks, result_bytes(0),
                          on_range,
                          progress);
  }
  return ctx.runner.run_call ? ctx.runner.run_call(options.pool, call)
                             : run_tasks(options.pool, call);
}

}  // namespace mmc::detail
