#include "runtime/parallel_rows.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

namespace tessera::runtime {

void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& body, int64_t threads,
                   int64_t min_rows_per_thread) {
  if (rows <= 0) return;
  const int64_t cores = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t count = std::clamp<int64_t>(rows / std::max<int64_t>(1, min_rows_per_thread), 1, cores);
  if (count == 1) {
    body(0, rows);
    return;
  }
  std::vector<std::exception_ptr> failures(static_cast<size_t>(count));
  auto range = [&](int64_t t) {
    try {
      body(rows * t / count, rows * (t + 1) / count);
    } catch (...) {
      failures[static_cast<size_t>(t)] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  for (int64_t t = 1; t < count; ++t) workers.emplace_back(range, t);
  range(0);
  for (std::thread& w : workers) w.join();
  for (const std::exception_ptr& f : failures) {
    if (f) std::rethrow_exception(f);
  }
}

}  // namespace tessera::runtime
