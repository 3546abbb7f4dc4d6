// The thread and serial backends of mmc::Pool: the same encoded batches as the process
// backend, run in this process (so a call behaves the same on every backend).
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/interrupt.hpp"
#include "pool/pool_core.hpp"

namespace mmc::detail {
namespace {

using Clock = std::chrono::steady_clock;

struct LocalJob {
  std::uint64_t id = 0;
  BatchRequest request;
};

// Runs a batch here and fills its outcome; a malformed batch fails as a whole.
BatchOutcome run_here(const BatchRequest& request) {
  BatchOutcome outcome;
  const auto start = Clock::now();
  try {
    run_batch({request.payload.data(), request.payload.size()}, request.fds, outcome.results,
              outcome.fds);
  } catch (...) {
    outcome.failed = true;
    current_failure(&outcome.code, &outcome.message);
    outcome.message = task_range(request.first_task, request.n_items) + ": " + outcome.message;
    outcome.results.clear();
    outcome.fds = MessageFds();
  }
  outcome.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return outcome;
}

BatchOutcome failed(ErrorCode code, const std::string& message) {
  BatchOutcome outcome;
  outcome.failed = true;
  outcome.code = code;
  outcome.message = message;
  return outcome;
}

// Runs a pool's initializer; its failure, if any, as the error that breaks the pool.
std::optional<Error> run_initializer(const std::function<void()>& initializer,
                                     const std::string& what) {
  try {
    initializer();
  } catch (...) {
    ErrorCode code;
    std::string message;
    current_failure(&code, &message);
    return Error(code, what + ": " + message);
  }
  return std::nullopt;
}

class ThreadCore final : public PoolCore {
 public:
  explicit ThreadCore(const CoreOptions& options) : options_(options) {
    for (int i = 0; i < options_.n_jobs; ++i) threads_.emplace_back([this] { work(); });
  }
  ~ThreadCore() override {
    std::deque<LocalJob> left;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
      left.swap(queue_);
    }
    ready_.notify_all();
    for (auto& job : left) {
      auto outcome = failed(ErrorCode::Cancelled, "the pool was destroyed before the task ran");
      job.request.on_done(outcome);
    }
    // A running task cannot be stopped: joining waits for it.
    for (auto& thread : threads_) thread.join();
  }

  std::uint64_t submit(BatchRequest request) override {
    throw_if_interrupted();
    std::uint64_t id;
    {
      std::lock_guard lock(mutex_);
      if (broken_) throw *broken_;
      id = ++last_id_;
      queue_.push_back({id, std::move(request)});
    }
    ready_.notify_one();
    return id;
  }

  void cancel(std::uint64_t id, ErrorCode code, const std::string& why) override {
    std::function<void(BatchOutcome&)> on_done;
    {
      std::lock_guard lock(mutex_);
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->id == id) {
          on_done = std::move(it->request.on_done);
          queue_.erase(it);
          break;
        }
      }
      if (!on_done) {
        // Running: report now, drop its result later (a thread cannot be killed).
        auto it = running_.find(id);
        if (it == running_.end() || !it->second) return;
        on_done = std::move(it->second);
        it->second = nullptr;
      }
    }
    auto outcome =
        failed(code, why + " (a thread cannot be stopped: it runs on, its result dropped)");
    on_done(outcome);
  }

 private:
  void work() {
    bool initialized = false;
    for (;;) {
      LocalJob job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (stop_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
        if (broken_) {
          lock.unlock();
          auto outcome = failed(broken_->code(), broken_->what());
          job.request.on_done(outcome);
          continue;
        }
        running_[job.id] = std::move(job.request.on_done);
      }
      BatchOutcome outcome;
      if (!initialized && options_.initializer) {
        initialized = true;
        std::optional<Error> failure = run_initializer(
            options_.initializer, "the pool's initializer failed in a worker thread");
        if (failure) {
          std::lock_guard lock(mutex_);
          broken_ = std::move(failure);
        }
      }
      initialized = true;
      std::optional<Error> broken;
      {
        std::lock_guard lock(mutex_);
        broken = broken_;
      }
      if (broken) {
        outcome = failed(broken->code(), broken->what());
      } else {
        outcome = run_here(job.request);
      }
      std::function<void(BatchOutcome&)> on_done;
      {
        std::lock_guard lock(mutex_);
        auto it = running_.find(job.id);
        on_done = std::move(it->second);
        running_.erase(it);
      }
      if (on_done) on_done(outcome);
    }
  }

  CoreOptions options_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<LocalJob> queue_;
  std::unordered_map<std::uint64_t, std::function<void(BatchOutcome&)>> running_;
  std::optional<Error> broken_;
  std::uint64_t last_id_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: started after everything above exists
};

// Runs each batch inside submit(), on the caller's thread.
class SerialCore final : public PoolCore {
 public:
  explicit SerialCore(const CoreOptions& options) : options_(options) {}

  std::uint64_t submit(BatchRequest request) override {
    throw_if_interrupted();
    std::uint64_t id;
    {
      std::lock_guard lock(mutex_);
      id = ++last_id_;
      if (!initialized_ && options_.initializer) {
        initialized_ = true;
        broken_ = run_initializer(options_.initializer, "the pool's initializer failed");
      }
      initialized_ = true;
      if (broken_) throw *broken_;
    }
    BatchOutcome outcome = run_here(request);
    request.on_done(outcome);
    return id;
  }

  void cancel(std::uint64_t, ErrorCode, const std::string&) override {}  // always done

 private:
  CoreOptions options_;
  std::mutex mutex_;
  bool initialized_ = false;
  std::optional<Error> broken_;
  std::uint64_t last_id_ = 0;
};

}  // namespace

std::shared_ptr<PoolCore> make_thread_core(const CoreOptions& options) {
  return std::make_shared<ThreadCore>(options);
}

std::shared_ptr<PoolCore> make_serial_core(const CoreOptions& options) {
  return std::make_shared<SerialCore>(options);
}

}  // namespace mmc::detail
