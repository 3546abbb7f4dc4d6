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

// Cancelling a task queued at a worker: the dispatcher writes its id into a free `skip` entry
// (and counts it in `skips`) and then reads `running`/`finished`; the worker writes `running`
// and then reads `skips` and the entries. All of these are sequentially consistent, so either
// the worker sees the mark and never starts the task, or the dispatcher sees it started (and
// kills the worker) or finished (and lets its result come).
struct RunSlot {
  static constexpr std::size_t kSkips = 64;  // >= the most tasks ever queued at one worker

  std::atomic<pid_t> pid{0};                     // 0: free
  std::atomic<std::uint64_t> running{0};         // task id being run, 0 between tasks
  std::atomic<std::uint64_t> finished{0};        // last task id finished
  std::atomic<std::uint64_t> skips{0};           // entries of `skip` in use
  std::atomic<std::uint64_t> skip[kSkips] = {};  // ids of queued tasks not to run; 0: free
  static constexpr std::uint64_t kSkipped = std::uint64_t{1} << 63;  // in an entry: id skipped

  // In the worker: announces task `id`; false (and the task counts as finished) when the
  // dispatcher cancelled it before it started.
  bool begin(std::uint64_t id) noexcept {
    running.store(id);
    if (skips.load() != 0) {
      for (auto& entry : skip) {
        if (entry.load() == id) {
          entry.store(id | kSkipped);  // so a dead worker's board still tells what it skipped
          end(id);
          return false;
        }
      }
    }
    return true;
  }
  void end(std::uint64_t id) noexcept {
    finished.store(id);
    running.store(0);
  }
  // In the dispatcher: marks `id` not to be run; the entry's index, or -1 when none is free.
  int mark_skip(std::uint64_t id) noexcept {
    for (std::size_t i = 0; i < kSkips; ++i) {
      if (skip[i].load() == 0) {
        skip[i].store(id);
        skips.fetch_add(1);
        return static_cast<int>(i);
      }
    }
    return -1;
  }
  // In the dispatcher, once the worker is dead: whether it skipped the task marked in `entry`.
  bool skipped(int entry, std::uint64_t id) const noexcept {
    return skip[entry].load() == (id | kSkipped);
  }
  // In the dispatcher, once the marked task left the worker's queue.
  void clear_skip(int entry) noexcept {
    skip[entry].store(0);
    skips.fetch_sub(1);
  }
};
static_assert(std::atomic<pid_t>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

// Created by the parent before it forks anything, so every process of the pool maps the same
// page (MAP_SHARED | MAP_ANONYMOUS survives fork). Move-only.
class RunBoard {
 public:
  static constexpr std::size_t kSlots = 256;

  RunBoard() {
    void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_errno("mapping the pool's run board");
    slots_ = new (p) RunSlot[kSlots];
    failed_claims_ = new (slots_ + kSlots) std::atomic<std::uint64_t>(0);
  }
  ~RunBoard() {
    if (slots_ != nullptr) munmap(slots_, kBytes);
  }
  RunBoard(const RunBoard&) = delete;
  RunBoard& operator=(const RunBoard&) = delete;

  // In a worker: takes a free slot for `pid`, or nullptr when all are taken (the worker then
  // answers every task on its own, and the dispatcher assumes the oldest task was running).
  RunSlot* claim(pid_t pid) noexcept {
    for (std::size_t i = 0; i < kSlots; ++i) {
      pid_t free = 0;
      if (slots_[i].pid.compare_exchange_strong(free, pid)) {
        return &slots_[i];
      }
    }
    failed_claims_->fetch_add(1);
    return nullptr;
  }
  // In the dispatcher: true while every worker got a slot, so a dead worker without one died
  // before it claimed it, before it read any task.
  bool every_claim_succeeded() const noexcept { return failed_claims_->load() == 0; }
  // In the dispatcher: the slot of a worker, or nullptr.
  RunSlot* find(pid_t pid) const noexcept {
    for (std::size_t i = 0; i < kSlots; ++i) {
      if (slots_[i].pid.load() == pid) return &slots_[i];
    }
    return nullptr;
  }
  // In the dispatcher, once the worker is gone or let go: frees its slot, cleared for the next
  // worker (cleared here, not in claim(), so a mark made just after a claim is never wiped).
  void release(pid_t pid) noexcept {
    RunSlot* slot = find(pid);
    if (slot == nullptr) return;
    slot->running.store(0);
    slot->finished.store(0);
    for (auto& entry : slot->skip) entry.store(0);
    slot->skips.store(0);
    slot->pid.store(0);
  }

 private:
  // The slots, then the count of claims that found none free (RunSlot's alignment suits it).
  static constexpr std::size_t kBytes =
      sizeof(RunSlot) * kSlots + sizeof(std::atomic<std::uint64_t>);
  RunSlot* slots_ = nullptr;
  std::atomic<std::uint64_t>* failed_claims_ = nullptr;
};

}  // namespace mmc::detail
