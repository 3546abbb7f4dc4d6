// The CLI's progress bar on stderr: done/total tasks, throughput and ETA, throttled.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "mmc/pool.hpp"

namespace mmc::cli {

// Draws "\r[####      ] 512/2048 tasks  6.1 GB/s  ETA 0.3s" on stderr, at most 10 times a second
// (and always for the last task). `total_bytes` is the data the whole run touches; the rate
// assumes it is spread evenly over tasks. A disabled bar prints nothing. Not thread-safe: call
// it from the thread that runs the pool (mmc's progress callbacks arrive there).
class ProgressBar {
 public:
  ProgressBar(bool enabled, std::uint64_t total_bytes);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Takes any of mmc's progress callbacks' reports (its rate and ETA use its own clock).
  void update(const Progress& progress);
  // Ends the bar's line with a newline if anything was drawn. Idempotent.
  void finish();

 private:
  void draw(std::size_t done, std::size_t total, double elapsed);

  bool enabled_;
  std::uint64_t total_bytes_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
  std::size_t last_width_ = 0;
};

}  // namespace mmc::cli
