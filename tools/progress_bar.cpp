// The CLI's progress bar.
#include "progress_bar.hpp"

#include <unistd.h>

#include <cstdio>

namespace mmc::cli {
namespace {

constexpr int kBarWidth = 30;
constexpr std::chrono::milliseconds kMinInterval{100};  // at most 10 redraws a second

void write_stderr(const std::string& text) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // a closed stderr only loses the bar
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

}  // namespace

ProgressBar::ProgressBar(bool enabled, std::uint64_t total_bytes)
    : enabled_(enabled),
      total_bytes_(total_bytes),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - kMinInterval) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(const Progress& progress) {
  if (!enabled_) return;
  const std::size_t done = progress.done, total = progress.total;
  const auto now = std::chrono::steady_clock::now();
  if (done < total && now - last_draw_ < kMinInterval) return;
  last_draw_ = now;
  draw(done, total, std::chrono::duration<double>(now - start_).count());
}

void ProgressBar::draw(std::size_t done, std::size_t total, double elapsed) {
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(fraction * kBarWidth);
  std::string line = "\r[";
  line.append(static_cast<std::size_t>(filled), '#');
  line.append(static_cast<std::size_t>(kBarWidth - filled), ' ');
  char buf[128];
  std::snprintf(buf, sizeof buf, "] %zu/%zu tasks", done, total);
  line += buf;
  if (elapsed > 0 && done > 0) {
    const double bytes = fraction * static_cast<double>(total_bytes_);
    std::snprintf(buf, sizeof buf, "  %.1f GB/s  ETA %.1fs", bytes / elapsed / 1e9,
                  elapsed * static_cast<double>(total - done) / static_cast<double>(done));
    line += buf;
  }
  const std::size_t width = line.size();
  if (width < last_width_) line.append(last_width_ - width, ' ');  // wipe a longer old line
  last_width_ = width;
  write_stderr(line);
  drawn_ = true;
}

void ProgressBar::finish() {
  if (!drawn_) return;
  drawn_ = false;
  write_stderr("\n");
}

}  // namespace mmc::cli
