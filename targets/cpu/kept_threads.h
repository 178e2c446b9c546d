// Threads kept between calls, one set per process, for every parallel step of Tessera's CPU work: the attention
// driver's kernel calls (attention_driver.h) and the model runtime's row-wise steps (runtime/parallel_rows.h).
//
// Starting and joining a thread per call cost 55-120 us on the 2-core VM: as much as a decoding step's whole
// attention over a few hundred keys, and it made splitting such a step's keys (kv_splits) a loss. Two pools, one
// per caller, would leave two sets of polling threads competing for the same cores. Idle workers poll for the next
// call for kSpinMicroseconds, then sleep: a decoding step runs hundreds of steps of a few microseconds each, and
// waking a halted core of a VM costs tens of microseconds, but a longer poll would take the cores from the work
// that follows on other threads.
//
// Self-contained (the C++ standard library and POSIX threads), as attention_driver.h is: `tessera compile` copies
// both into every library it writes.
#pragma once

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tessera_cpu_driver::kept_threads {

constexpr auto kSpinMicroseconds = std::chrono::microseconds(50);

namespace detail {

// One call: task(t) for t in [0, count).
struct Job {
  const std::function<void(int64_t)>* task = nullptr;
  int64_t count = 0;
};

inline thread_local bool inside_task = false;

// A child of fork() has none of the pool's threads: a call there waiting for them would never return.
inline std::atomic<bool> forked_child{false};

// Workers 1..n of a call take tasks 1..count-1 (worker w takes task w); the caller takes task 0.
class Pool {
 public:
  // Never destroyed (see pool()), so the workers never stop.
  explicit Pool(int64_t workers) {
    pthread_atfork(nullptr, nullptr, [] { forked_child.store(true); });
    for (int64_t w = 1; w <= workers; ++w) threads_.emplace_back([this, w] { work(w); });
  }
  int64_t workers() const { return static_cast<int64_t>(threads_.size()); }

  // Runs `job` (count - 1 <= workers() of its tasks on the workers); false if another call holds the pool.
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
    inside_task = true;
    (*job.task)(0);
    inside_task = false;
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
        inside_task = true;
        (*job.task)(w);
        inside_task = false;
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
inline Pool& pool() {
  static Pool* const p =
      std::make_unique<Pool>(std::max<int64_t>(1, std::thread::hardware_concurrency()) - 1).release();
  return *p;
}

}  // namespace detail

// Calls task(t) for every t in [0, count): t = 0 on the calling thread, the others on kept workers; returns when
// all have returned. Tasks must not throw (callers catch inside them). Safe from several threads at once (a call
// that finds the workers busy starts threads of its own, as does one needing more workers than there are), from
// inside a task (which runs the tasks one after another on its own thread) and in a child of fork() (which starts
// its own threads: the kept ones stayed in the parent).
inline void run(int64_t count, const std::function<void(int64_t)>& task) {
  if (count <= 1 || detail::inside_task) {
    for (int64_t t = 0; t < count; ++t) task(t);
    return;
  }
  const detail::Job job{&task, count};
  if (detail::forked_child.load() || count - 1 > detail::pool().workers() || !detail::pool().try_run(job)) {
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < count; ++t) threads.emplace_back([&task, t] { task(t); });
    task(0);
    for (std::thread& thread : threads) thread.join();
  }
}

}  // namespace tessera_cpu_driver::kept_threads
