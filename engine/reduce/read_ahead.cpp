// The cold-cube read-ahead (see read_ahead.hpp).
#include "reduce/read_ahead.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace mmc::detail {
namespace {

// True when sampled pages of [first, last) of the mapping (one per 4 MiB, and the last) are in
// the page cache; mincore answers for file pages whether or not this process has them mapped.
// The parent shares the cores with the workers, so it samples sparsely: a span found cold is
// queued whole, and the kernel skips its cached pages quickly.
bool looks_cached(const MappedFile& mapping, std::int64_t first, std::int64_t last) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::int64_t kSample = std::int64_t{4} << 20;
  for (std::int64_t at = first;; at = std::min(at + kSample, last - 1)) {
    const auto address = reinterpret_cast<std::uintptr_t>(mapping.data() + at) & ~(page - 1);
    unsigned char in_core = 0;
    if (::mincore(reinterpret_cast<void*>(address), 1, &in_core) != 0) return true;  // no answer
    if ((in_core & 1) == 0) return false;
    if (at == last - 1) return true;
  }
}

}  // namespace

bool read_ahead_enabled() noexcept {
  const char* v = std::getenv("MMC_READ_AHEAD");
  return v == nullptr || std::string_view(v) != "0";
}

ReadAhead::ReadAhead(const MappedFile& mapping, const ReducePlan& plan, std::int64_t max_span,
                     std::int64_t window) noexcept
    : mapping_(mapping), plan_(plan), max_span_(max_span) {
  if (plan.n_tasks() < 2 || mapping.data() == nullptr) return;
  std::int64_t first, last;
  plan.task_span(0, &first, &last);
  if (last <= first || last - first > max_span) return;
  // A view that skips elements: its tasks read their units' spans themselves (run_pass).
  if (last - first > 2 * plan.task_bytes_folded(0)) return;
  window_tasks_ = std::max<std::int64_t>(1, window / (last - first));
  advance(window_tasks_);
}

void ReadAhead::finished() noexcept {
  if (window_tasks_ == 0) return;
  ++finished_;
  advance(finished_ + window_tasks_);
}

void ReadAhead::advance(std::int64_t limit) noexcept {
  for (const std::int64_t end = std::min(limit, plan_.n_tasks()); next_ < end; ++next_) {
    std::int64_t first, last;
    plan_.task_span(next_, &first, &last);
    if (last <= first || last - first > max_span_) continue;
    if (looks_cached(mapping_, first, last)) continue;
    // Queues the reads and returns: pages under I/O are already in the page cache, so a
    // worker that reaches them waits for them instead of reading them again.
    mapping_.will_need(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last - first));
    ++spans_read_;
  }
}

}  // namespace mmc::detail
