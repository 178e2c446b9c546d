// runtime::parallel_rows: every row exactly once, whatever the split; exceptions reach the caller; calls from a
// body, from several threads at once (which share the kept worker threads, with the attention driver) and from a
// forked child (which has none of them) complete with the same guarantees.
#include "runtime/parallel_rows.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <thread>
#include <vector>

#include "targets/cpu/cpu_attention.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"

namespace tessera::runtime {
namespace {

// Counts how often each row was visited by one call.
std::vector<int> visits(int64_t rows, int64_t threads, int64_t min_rows) {
  std::vector<std::atomic<int>> counts(static_cast<size_t>(rows));
  parallel_rows(
      rows,
      [&](int64_t begin, int64_t end) {
        EXPECT_LE(0, begin);
        EXPECT_LE(begin, end);
        EXPECT_LE(end, rows);
        for (int64_t r = begin; r < end; ++r) counts[static_cast<size_t>(r)].fetch_add(1);
      },
      threads, min_rows);
  std::vector<int> result;
  for (const auto& c : counts) result.push_back(c.load());
  return result;
}

TEST(ParallelRows, EveryRowExactlyOnce) {
  for (int64_t rows : {1, 2, 3, 63, 64, 65, 1000, 4097}) {
    for (int64_t threads : {0, 1, 2, 3, 8}) {
      for (int64_t min_rows : {1, 4, 64}) {
        SCOPED_TRACE(testing::Message() << rows << " rows, " << threads << " threads, min " << min_rows);
        EXPECT_EQ(visits(rows, threads, min_rows), std::vector<int>(static_cast<size_t>(rows), 1));
      }
    }
  }
  EXPECT_TRUE(visits(0, 2, 1).empty());
}

TEST(ParallelRows, RethrowsAnExceptionFromAnyRange) {
  for (int repeat = 0; repeat < 20; ++repeat) {
    EXPECT_THROW(parallel_rows(
                     100,
                     [](int64_t begin, int64_t) {
                       if (begin > 0) throw std::runtime_error("late range");
                     },
                     2, 1),
                 std::runtime_error);
  }
  // The kept threads still work afterwards.
  EXPECT_EQ(visits(100, 2, 1), std::vector<int>(100, 1));
}

TEST(ParallelRows, NestedAndConcurrentCallsComplete) {
  std::atomic<int64_t> total{0};
  auto nested = [&] {
    parallel_rows(
        8,
        [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            parallel_rows(
                16, [&](int64_t b, int64_t e) { total.fetch_add(e - b); }, 2, 1);
          }
        },
        2, 1);
  };
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c) {
    callers.emplace_back([&] {
      for (int repeat = 0; repeat < 50; ++repeat) nested();
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(total.load(), 4 * 50 * 8 * 16);
}

// The attention driver's kernel calls take the same kept threads (targets/cpu/kept_threads.h): attention running
// on one thread while row steps run on another, each finding the workers busy at times, computes the reference's
// result and every row once.
TEST(ParallelRows, AttentionCallsAndRowStepsShareTheKeptThreads) {
  const ir::Pattern pattern = test::instantiate("causal & alibi");
  test::RandomProblem problem(pattern, test::Shape{1, 3, 1, 5, 700, 32, 32}, 4);
  const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
  std::atomic<bool> attention_done{false};
  std::thread attention([&] {
    cpu::CpuOptions options;
    options.schedule = cpu::few_query_schedule(options.schedule, 5);
    options.schedule.kv_splits = 2;
    for (int repeat = 0; repeat < 40; ++repeat) {
      EXPECT_LE(test::max_abs_difference(cpu::attention(pattern, problem.inputs, options), expected), 2e-4);
    }
    attention_done = true;
  });
  int calls = 0;
  while (!attention_done.load() || calls < 40) {
    for (int v : visits(1000, 2, 1)) ASSERT_EQ(v, 1);
    ++calls;
  }
  attention.join();
}

TEST(ParallelRows, WorksInAForkedChild) {
  EXPECT_EQ(visits(100, 2, 1), std::vector<int>(100, 1));  // the kept threads exist in this process now
  std::fflush(nullptr);  // or the child's exit would write the parent's buffered output again
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << "fork failed";
  if (pid == 0) {
    // The child has none of those threads; it reports through its exit status.
    std::atomic<int64_t> total{0};
    parallel_rows(
        100, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); }, 2, 1);
    // A normal exit: static destructors run in the child too.
    std::exit(total.load() == 100 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace tessera::runtime
