#include "runtime/parallel_rows.h"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera::runtime {

namespace {

// How long an idle worker polls for the next call before it sleeps.
constexpr auto kSpinMicroseconds = std::chrono::microseconds(50);

// One call's ranges: range t of `count` is body(rows * t / count, rows * (t + 1) / count).
struct Job {
  const std::function<void(int64_t, int64_t)>* body = nullptr;
  int64_t rows = 0, count = 0;
  std::vector<std::exception_ptr>* failures = nullptr;

  void run(int64_t t) const {
    try {
      (*body)(rows * t / count, rows * (t + 1) / count);
    } catch (...) {
      (*failures)[static_cast<size_t>(t)] = std::current_exception();
    }
  }
};

thread_local bool inside_body = false;

// A child of fork() has none of the pool's threads: a call there waiting for them would never return.
std::atomic<bool> forked_child{false};

// Workers 1..n-1 of a call take ranges 1..count-1 (worker w takes range w); the caller takes range 0.
class Pool {
 public:
  // Never destroyed (see pool()), so the workers never stop.
  explicit Pool(int64_t workers) {
    pthread_atfork(nullptr, nullptr, [] { forked_child.store(true); });
    for (int64_t w = 1; w <= workers; ++w) threads_.emplace_back([this, w] { work(w); });
  }
  int64_t workers() const { return static_cast<int64_t>(threads_.size()); }

  // Runs `job` (count - 1 <= workers() of its ranges on the workers); false if another call holds the pool.
  bool try_run(const Job& job) {
    std::unique_lock busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard lock(mutex_);
      job_ = job;
      pending_.store(job.count - 1);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    inside_body = true;
    job.run(0);
    inside_body = false;
    while (pending_.load() > 0) std::this_thread::yield();
    return true;
  }

 private:
  void work(int64_t w) {
    uint64_t seen = 0;
    for (;;) {
      // Poll for a new generation, then sleep until one comes.
      const auto spin_until = std::chrono::steady_clock::now() + kSpinMicroseconds;
      while (generation_.load() == seen && std::chrono::steady_clock::now() < spin_until) {
      }
      Job job;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        seen = generation_.load();
        job = job_;
      }
      if (w < job.count) {
        inside_body = true;
        job.run(w);
        inside_body = false;
        pending_.fetch_sub(1);
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_;  // held by the call running on the pool
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> pending_{0};
  Job job_;
};

// Deliberately never destroyed: at exit the workers are still blocked on its condition variable, and a forked
// child that exits normally would otherwise join threads that exist only in its parent.
Pool& pool() {
  static Pool* const p =
      std::make_unique<Pool>(std::max<int64_t>(1, std::thread::hardware_concurrency()) - 1).release();
  return *p;
}

}  // namespace

void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& body, int64_t threads,
                   int64_t min_rows_per_thread) {
  if (rows <= 0) return;
  const int64_t cores = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t count = std::clamp<int64_t>(rows / std::max<int64_t>(1, min_rows_per_thread), 1, cores);
  if (count == 1 || inside_body) {
    body(0, rows);
    return;
  }
  std::vector<std::exception_ptr> failures(static_cast<size_t>(count));
  const Job job{&body, rows, count, &failures};
  if (forked_child.load() || count - 1 > pool().workers() || !pool().try_run(job)) {
    // More threads than the pool keeps, or the pool is busy with another caller's call: threads of its own.
    std::vector<std::thread> workers;
    for (int64_t t = 1; t < count; ++t) workers.emplace_back([&job, t] { job.run(t); });
    job.run(0);
    for (std::thread& w : workers) w.join();
  }
  for (const std::exception_ptr& f : failures) {
    if (f) std::rethrow_exception(f);
  }
}

}  // namespace tessera::runtime
