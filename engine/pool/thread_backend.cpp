// The thread backend: n threads take tasks from a queue the caller fills; results come back
// through a second queue so on_result and on_progress run on the caller's thread.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "core/interrupt.hpp"
#include "pool/backends.hpp"

namespace mmc::detail {
namespace {

struct Item {
  std::size_t task = 0;
  Bytes bytes;
};

class ThreadPool {
 public:
  ThreadPool(const Call& call, int n_threads) : call_(call) {
    threads_.reserve(static_cast<std::size_t>(n_threads));
    try {
      for (int i = 0; i < n_threads; ++i) threads_.emplace_back([this] { work(); });
    } catch (...) {
      stop_and_join();
      throw;
    }
  }
  ~ThreadPool() { stop_and_join(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  void submit(Item item) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(item));
    }
    work_ready_.notify_one();
  }

  // Waits (at most `timeout`, so the caller can look at the interrupt flag) for results.
  // Throws the first task failure.
  std::deque<Item> take_results(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    results_ready_.wait_for(lock, timeout, [this] { return failure_ || !results_.empty(); });
    if (failure_) {
      const auto [task, failure] = *failure_;
      lock.unlock();
      raise_task_failure(task, failure);
    }
    return std::exchange(results_, {});
  }

 private:
  void work() {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(mutex_);
        work_ready_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (stop_) return;
        item = std::move(tasks_.front());
        tasks_.pop_front();
      }
      Item result{item.task, Bytes()};
      try {
        call_.run(item.task, {item.bytes.data(), item.bytes.size()}, result.bytes);
      } catch (...) {
        TaskFailure failure = current_task_failure();
        {
          std::lock_guard lock(mutex_);
          if (!failure_) failure_.emplace(item.task, std::move(failure));
          stop_ = true;  // the first error stops dispatch; others finish their current task
        }
        work_ready_.notify_all();
        results_ready_.notify_all();
        return;
      }
      {
        std::lock_guard lock(mutex_);
        results_.push_back(std::move(result));
      }
      results_ready_.notify_one();
    }
  }

  void stop_and_join() noexcept {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_ready_.notify_all();
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    threads_.clear();
  }

  const Call& call_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable results_ready_;
  std::deque<Item> tasks_;
  std::deque<Item> results_;
  std::optional<std::pair<std::size_t, TaskFailure>> failure_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

CallStats run_threads(const Call& call, int n_workers) {
  const int n_threads =
      static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(n_workers), call.n_tasks));
  const std::size_t max_queued = kTasksInFlightPerWorker * static_cast<std::size_t>(n_threads);
  ThreadPool pool(call, n_threads);
  CallStats stats;
  stats.workers = n_threads;
  std::size_t next = 0;
  std::size_t done = 0;
  // The interrupt flag is looked at between tasks and at least this often while waiting.
  constexpr std::chrono::milliseconds kInterruptCheck{50};
  while (done < call.n_tasks) {
    throw_if_interrupted();
    while (next < call.n_tasks && next - done < max_queued) {
      pool.submit({next, call.make_arg ? call.make_arg(next) : Bytes()});
      ++next;
    }
    for (Item& result : pool.take_results(kInterruptCheck)) {
      if (call.on_result) call.on_result(result.task, {result.bytes.data(), result.bytes.size()});
      ++done;
      stats.tasks = done;
      if (call.on_progress) call.on_progress(done, call.n_tasks);
    }
  }
  return stats;
}

}  // namespace mmc::detail
