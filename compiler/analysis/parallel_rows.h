// Rows of a tile map are classified, and their allowed pairs counted, independently of each other. A long
// sequence's map has many (65536 positions in 64-row tiles: 1024 rows of 1024 tiles), and the interval analysis
// and point evaluation behind each are interpreted, so a first call spent seconds there on one thread; the rows
// are spread over the machine's threads instead.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera::analysis {

// Below this many tiles a map is classified on the calling thread: starting threads would cost more than the rows.
inline constexpr int64_t kMinTilesForThreads = 4096;

// The threads for analysing one map: the hardware's, at most 8 (a map's rows are few enough that more would
// mostly wait on each other's starts).
inline int64_t analysis_threads() {
  return std::clamp<int64_t>(static_cast<int64_t>(std::thread::hardware_concurrency()), 1, 8);
}

// Calls body(begin, end) for consecutive blocks of rows covering [0, rows) exactly once, on up to `threads` threads
// (this one included), which take blocks from a shared counter so that rows of uneven cost (a band's edges) even
// out. The first exception a call throws stops the handing out of blocks and is rethrown here.
template <typename Body>
void for_each_row_block(int64_t rows, int64_t threads, Body&& body) {
  constexpr int64_t kBlock = 8;
  const int64_t blocks = (rows + kBlock - 1) / kBlock;
  const int64_t workers = std::max<int64_t>(1, std::min(threads, blocks));
  if (workers == 1) {
    if (rows > 0) body(int64_t{0}, rows);
    return;
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      for (int64_t b = next++; b < blocks && !failed.load(); b = next++) {
        body(b * kBlock, std::min(rows, (b + 1) * kBlock));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      failed = true;
    }
  };
  std::vector<std::jthread> helpers;
  helpers.reserve(static_cast<size_t>(workers - 1));
  for (int64_t t = 1; t < workers; ++t) helpers.emplace_back(work);
  work();
  helpers.clear();  // joins
  if (error) std::rethrow_exception(error);
}

}  // namespace tessera::analysis
