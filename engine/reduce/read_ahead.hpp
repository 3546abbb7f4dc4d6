// Reads a cold cube from disk as one stream, ahead of the workers.
//
// Tasks of a dense plan are handed out in order and each worker faults its own task's pages in,
// so with two workers the disk sees two interleaved streams, which this (virtual) disk serves
// slower than one. ReadAhead queues the tasks' byte spans with MADV_WILLNEED in task order, a
// bounded window past the last finished task: reads are submitted in file order from one place,
// and a worker reaching pages under I/O waits for them instead of reading them again. It runs
// on the caller's thread (the pool calls on_result there), starting before the workers are
// forked and moving on with each result: MADV_WILLNEED only queues reads, and a helper thread
// alive across the pool's fork() could hold a lock a child then needs. Nothing is mapped into
// the caller. Spans already cached (a warm cube) are only sampled with mincore, one page per
// MiB, and left alone. Measured on a 2 GiB u8 cube, cold, 4-5 runs each, medians: 1 worker
// ~1.9 s against ~3.5-4.7 s without it, 2 workers ~2.0 s against ~2.2-2.7 s
// (MMC_READ_AHEAD=0 turns it off).
#pragma once

#include <cstdint>

#include "mmc/mapped_file.hpp"
#include "reduce/plan.hpp"

namespace mmc::detail {

// Bytes of tasks read ahead of the last finished one: 16 tasks of the default size.
inline constexpr std::int64_t kReadAheadWindow = std::int64_t{128} << 20;

// False when the environment sets MMC_READ_AHEAD=0 (to measure without it).
bool read_ahead_enabled() noexcept;

class ReadAhead {
 public:
  // Active when the plan's first task spans at most max_span bytes (the same test that makes
  // a task populate its span: plans whose tasks read across the file, such as the reduce over
  // axis 0 of a big cube, have nothing to stream); tasks wider than that are skipped. `window`
  // is how many bytes of tasks past the last finished one are read ahead; the first window is
  // queued here.
  ReadAhead(const MappedFile& mapping, const ReducePlan& plan, std::int64_t max_span,
            std::int64_t window) noexcept;
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // A task's result arrived: the window moves on. Call from one thread at a time.
  void finished() noexcept;
  // Spans found missing from the page cache and queued for reading.
  std::int64_t spans_read() const noexcept { return spans_read_; }

 private:
  void advance(std::int64_t limit) noexcept;

  const MappedFile& mapping_;
  const ReducePlan& plan_;
  std::int64_t max_span_;
  std::int64_t window_tasks_ = 0;  // 0: inactive
  std::int64_t next_ = 0;          // the next task to look at
  std::int64_t finished_ = 0;
  std::int64_t spans_read_ = 0;
};

}  // namespace mmc::detail
