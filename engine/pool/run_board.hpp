// RunBoard: a page shared by a pool's dispatcher and its workers where each worker says which
// task it is running and which it finished last. Workers may then send results in batches
// (one message for many tiny tasks) and the dispatcher still knows, when a worker dies or must
// be killed, which task was running, which had finished and which had not started.
#pragma once

#include <sys/mman.h>
#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "mmc/error.hpp"

namespace mmc::detail {

struct RunSlot {
  std::atomic<pid_t> pid{0};               // 0: free
  std::atomic<std::uint64_t> running{0};   // task id being run, 0 between tasks
  std::atomic<std::uint64_t> finished{0};  // last task id finished
};
static_assert(std::atomic<pid_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Created by the parent before it forks anything, so every process of the pool maps the same
// page (MAP_SHARED | MAP_ANONYMOUS survives fork). Move-only.
class RunBoard {
 public:
  static constexpr std::size_t kSlots = 256;

  RunBoard() {
    void* p = mmap(nullptr, sizeof(RunSlot) * kSlots, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) raise_errno("mapping the pool's run board");
    slots_ = new (p) RunSlot[kSlots];
  }
  ~RunBoard() {
    if (slots_ != nullptr) munmap(slots_, sizeof(RunSlot) * kSlots);
  }
  RunBoard(const RunBoard&) = delete;
  RunBoard& operator=(const RunBoard&) = delete;

  // In a worker: takes a free slot for `pid`, or nullptr when all are taken (the worker then
  // answers every task on its own, and the dispatcher assumes the oldest task was running).
  RunSlot* claim(pid_t pid) noexcept {
    for (std::size_t i = 0; i < kSlots; ++i) {
      pid_t free = 0;
      if (slots_[i].pid.compare_exchange_strong(free, pid)) {
        slots_[i].running.store(0);
        slots_[i].finished.store(0);
        return &slots_[i];
      }
    }
    return nullptr;
  }
  // In the dispatcher: the slot of a worker, or nullptr.
  RunSlot* find(pid_t pid) const noexcept {
    for (std::size_t i = 0; i < kSlots; ++i) {
      if (slots_[i].pid.load() == pid) return &slots_[i];
    }
    return nullptr;
  }
  // In the dispatcher, once the worker is gone or let go: frees its slot.
  void release(pid_t pid) noexcept {
    if (RunSlot* slot = find(pid)) slot->pid.store(0);
  }

 private:
  RunSlot* slots_ = nullptr;
};

}  // namespace mmc::detail
