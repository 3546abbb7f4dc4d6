// The cold-cube read-ahead (see read_ahead.hpp).
#include "reduce/read_ahead.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <system_error>

namespace mmc::detail {
namespace {

// True when sampled pages of [first, last) of the mapping (one per MiB, and the last) are in the
// page cache; mincore answers for file pages whether or not this process has them mapped.
bool looks_cached(const MappedFile& mapping, std::int64_t first, std::int64_t last) {
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  constexpr std::int64_t kSample = std::int64_t{1} << 20;
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
                     std::int64_t window)
    : mapping_(mapping), plan_(plan), max_span_(max_span) {
  if (plan.n_tasks() < 2 || mapping.data() == nullptr) return;
  std::int64_t first, last;
  plan.task_span(0, &first, &last);
  if (last <= first || last - first > max_span) return;
  window_tasks_ = std::max<std::int64_t>(1, window / (last - first));
  try {
    thread_ = std::thread([this] { run(); });
  } catch (const std::system_error&) {
    // No thread to spare (a process or thread limit): the workers read for themselves.
  }
}

ReadAhead::~ReadAhead() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReadAhead::finished() noexcept {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    ++finished_;
  }
  cv_.notify_all();
}

std::int64_t ReadAhead::spans_read() const noexcept {
  const std::lock_guard<std::mutex> lock(mutex_);
  return spans_read_;
}

void ReadAhead::run() noexcept {
  const std::int64_t n = plan_.n_tasks();
  for (std::int64_t t = 0; t < n; ++t) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || t < finished_ + window_tasks_; });
      if (stop_) return;
    }
    std::int64_t first, last;
    plan_.task_span(t, &first, &last);
    if (last <= first || last - first > max_span_) continue;
    if (looks_cached(mapping_, first, last)) continue;
    // Queues the reads and returns: pages under I/O are already in the page cache, so a
    // worker that reaches them waits for them instead of reading them again.
    mapping_.will_need(static_cast<std::uint64_t>(first), static_cast<std::uint64_t>(last - first));
    const std::lock_guard<std::mutex> lock(mutex_);
    ++spans_read_;
  }
}

}  // namespace mmc::detail
