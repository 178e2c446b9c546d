// A one-line progress bar on stderr for long commands (`tessera run`, `generate`): drawn only when stderr is a
// terminal, so logs and pipes stay clean, and only once the work has taken a moment (short runs print nothing).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tessera::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total);
  ~ProgressBar();  // finishes the line if anything was drawn
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(int64_t done);

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

}  // namespace tessera::cli
