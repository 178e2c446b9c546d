#include "compiler/cli/progress_bar.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tessera::cli {

namespace {
constexpr auto kQuietPeriod = std::chrono::milliseconds(500);  // nothing is drawn for work shorter than this
constexpr auto kRedrawPeriod = std::chrono::milliseconds(100);
constexpr int kBarWidth = 30;
}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total)
    : label_(std::move(label)),
      total_(std::max<int64_t>(1, total)),
      enabled_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (drawn_) {
    update(total_);
    std::fputc('\n', stderr);
  }
}

void ProgressBar::update(int64_t done) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - start_ < kQuietPeriod || (now - last_draw_ < kRedrawPeriod && done < total_)) return;
  last_draw_ = now;
  drawn_ = true;
  const double fraction = std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0);
  const int filled = static_cast<int>(fraction * kBarWidth);
  const double seconds = std::chrono::duration<double>(now - start_).count();
  std::fputs(fmt::format("\r{} [{}{}] {}/{} {:.1f}s", label_, std::string(static_cast<size_t>(filled), '#'),
                         std::string(static_cast<size_t>(kBarWidth - filled), '.'), done, total_, seconds)
                 .c_str(),
             stderr);
  std::fflush(stderr);
}

}  // namespace tessera::cli
