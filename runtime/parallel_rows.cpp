#include "runtime/parallel_rows.h"

#include <algorithm>
#include <exception>
#include <thread>
#include <vector>

#include "targets/cpu/kept_threads.h"

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
  // Range t of `count` is body(rows * t / count, rows * (t + 1) / count); its exception is kept for after all.
  std::vector<std::exception_ptr> failures(static_cast<size_t>(count));
  tessera_cpu_driver::kept_threads::run(count, [&](int64_t t) {
    try {
      body(rows * t / count, rows * (t + 1) / count);
    } catch (...) {
      failures[static_cast<size_t>(t)] = std::current_exception();
    }
  });
  for (const std::exception_ptr& f : failures) {
    if (f) std::rethrow_exception(f);
  }
}

}  // namespace tessera::runtime
