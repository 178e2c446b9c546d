// Split-KV on the CPU (CpuSchedule::kv_splits, tessera_cpu_driver::Problem::kv_splits): each work item's runs of
// key tiles divided into parts computed into private states and merged by log-sum-exp. The parts must cover every
// run once, and the merged result must be the reference's, NaN and empty rows included, on the JIT path as well.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "compiler/tuner/schedule_space.h"
#include "targets/cpu/attention_driver.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/cpu_schedule_space.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/scoped_resources.h"

namespace tessera {
namespace {

using test::instantiate;

struct KeyRun {
  int32_t first, count;
  bool full;
  bool operator==(const KeyRun&) const = default;
};

// The runs of one query tile of `t`, FULL first, in table order.
std::vector<KeyRun> tile_runs(const tessera_cpu_driver::ChunkTables& t, int32_t tile) {
  std::vector<KeyRun> runs;
  for (int kind = 0; kind < 2; ++kind) {
    const int32_t* table = kind == 0 ? t.full : t.partial;
    const int32_t slots = std::max(1, kind == 0 ? t.max_full : t.max_partial);
    const int32_t count = (kind == 0 ? t.full_counts : t.partial_counts)[tile];
    for (int32_t r = 0; r < count; ++r) {
      runs.push_back({table[2 * (tile * slots + r)], table[2 * (tile * slots + r) + 1], kind == 0});
    }
  }
  return runs;
}

// Every run of every tile lands in exactly one part; parts take consecutive keys (part s ends before part s + 1
// begins) and about equal numbers of them; a tile with fewer runs than parts leaves some parts empty.
TEST(CpuSplitKv, PartsHoldEveryRunOnceInKeyOrderAndBalanced) {
  // Three tiles: 7 runs of 64 keys alternating FULL and PARTIAL, one run, none.
  std::vector<int32_t> full = {0, 64, 128, 64, 256, 64, 384, 64, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  std::vector<int32_t> partial = {64, 64, 192, 64, 320, 64, 0, 0, 0, 0, 0, 0};
  std::vector<int32_t> full_counts = {4, 1, 0}, partial_counts = {3, 0, 0};
  const tessera_cpu_driver::ChunkTables tables{
      full.data(), partial.data(), full_counts.data(), partial_counts.data(), 4, 3, 3};
  for (int64_t parts : {1, 2, 3, 7, 9}) {
    SCOPED_TRACE(parts);
    const std::vector<tessera_cpu_driver::detail::OwnedTables> split =
        tessera_cpu_driver::detail::split_tables(tables, parts);
    ASSERT_EQ(split.size(), static_cast<size_t>(parts));
    for (int32_t tile = 0; tile < 3; ++tile) {
      std::vector<KeyRun> whole = tile_runs(tables, tile), joined;
      int32_t end_of_previous = -1;
      int64_t keys = 0, most = 0;
      for (const KeyRun& r : whole) keys += r.count;
      for (const auto& part : split) {
        std::vector<KeyRun> runs = tile_runs(part.view(), tile);
        int64_t part_keys = 0;
        for (const KeyRun& r : runs) {
          EXPECT_GT(r.first, end_of_previous) << "parts take consecutive keys";
          part_keys += r.count;
        }
        for (const KeyRun& r : runs) end_of_previous = std::max(end_of_previous, r.first);
        most = std::max(most, part_keys);
        joined.insert(joined.end(), runs.begin(), runs.end());
      }
      auto by_key = [](const KeyRun& x, const KeyRun& y) { return x.first < y.first; };
      std::sort(whole.begin(), whole.end(), by_key);
      std::sort(joined.begin(), joined.end(), by_key);
      EXPECT_EQ(joined, whole) << "tile " << tile;
      EXPECT_LE(most, keys / parts + 64) << "tile " << tile << ": parts within a run of equal";
    }
  }
}

// Split-KV against the float64 reference: decoding steps (one query and a few, N > M too: rows with no key are
// zeros), a prefill, GQA, a re-indexed plan (two components, each merging its parts), run-time segment ids, and
// splits beyond the runs a tile has.
TEST(CpuSplitKv, SplitKeysMatchReference) {
  struct Case {
    const char* expression;
    test::Shape shape;
  };
  const Case cases[] = {
      {"causal", {2, 4, 2, 1, 700, 32, 32}},
      {"causal & alibi", {1, 3, 3, 3, 500, 32, 48}},
      {"sliding_window(window=100)", {1, 2, 1, 5, 900, 32, 32}},
      {"causal & document", {2, 2, 2, 2, 400, 32, 32}},
      {"strided(stride=16) & alibi", {1, 2, 1, 600, 600, 32, 32}},
      {"causal", {1, 2, 2, 40, 20, 32, 32}},
  };
  for (const Case& c : cases) {
    for (int64_t splits : {2, 3, 16}) {
      SCOPED_TRACE(testing::Message() << c.expression << ", kv_splits=" << splits << ", N=" << c.shape.N);
      const ir::Pattern pattern = instantiate(c.expression);
      test::RandomProblem problem(pattern, c.shape, 21);
      cpu::CpuOptions options;
      options.schedule = cpu::few_query_schedule(options.schedule, c.shape.N);
      options.schedule.kv_splits = splits;
      const runtime::Tensor got = cpu::attention(pattern, problem.inputs, options);
      EXPECT_LE(test::max_abs_difference(got, reference::attention_f64(pattern, problem.inputs)), 2e-4);
    }
  }
}

// NaN reaches exactly the rows the reference makes NaN through the merge of parts: a NaN key spoils the rows
// that attend to it, whichever part holds it, and nothing else. The JIT path too (no disk cache), whose kernels
// keep their inputs per view and part.
TEST(CpuSplitKv, NanPassesThroughTheMergeOfParts) {
  for (const char* cache : {"disk", "jit"}) {
    std::optional<test::ScopedEnv> no_disk_cache;
    if (std::string(cache) == "jit") no_disk_cache.emplace("TESSERA_CPU_KERNEL_CACHE", "");
    const ir::Pattern pattern = instantiate("sliding_window(window=300)");
    // D differs between the two runs: kernels are kept per process, and the JIT's must be compiled here.
    const int64_t B = 1, H = 2, N = 2, M = 640, D = std::string(cache) == "jit" ? 24 : 40;
    std::mt19937_64 rng(5);
    runtime::Tensor q = test::random_tensor({B, H, N, D}, rng);
    runtime::Tensor k = test::random_tensor({B, H, M, D}, rng);
    runtime::Tensor v = test::random_tensor({B, H, M, D}, rng);
    k.data<float>()[(0 * M + 500) * D + 1] = std::numeric_limits<float>::quiet_NaN();  // head 0, both rows
    k.data<float>()[(1 * M + 339) * D + 1] = std::numeric_limits<float>::quiet_NaN();  // head 1, row 0 only
    targets::AttentionInputs inputs;
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    const std::vector<double> expected = reference::attention_f64(pattern, inputs);
    cpu::CpuOptions options;
    options.schedule = cpu::few_query_schedule(options.schedule, N);
    options.schedule.kv_splits = 4;
    const runtime::Tensor got = cpu::attention(pattern, inputs, options);
    int64_t nan_elements = 0;
    for (size_t e = 0; e < expected.size(); ++e) {
      const double g = got.data<float>()[e];
      ASSERT_EQ(std::isnan(g), std::isnan(expected[e])) << cache << ", element " << e;
      if (!std::isnan(g)) {
        EXPECT_LE(std::abs(g - expected[e]), 2e-4) << cache << ", element " << e;
      }
      nan_elements += std::isnan(g);
    }
    EXPECT_EQ(nan_elements, 3 * D) << cache;
  }
}

// The tuner searches key splits for decoding shapes only, from the schedule every entry point runs untuned there
// (few_query_schedule's one-row tile), which the space must hold as its default and as a valid point.
TEST(CpuSplitKv, TheTunerSearchesSplitsForDecodingFromTheFewQueryDefault) {
  const std::string target = cpu::halide_target_string();
  const ir::Pattern causal = instantiate("causal");
  ir::AttentionSizes step{.B = 1, .H = 1, .Hkv = 1, .N = 1, .M = 8192, .D = 64, .Dv = 64};
  const tuner::ScheduleSpace space = cpu::cpu_schedule_space(causal, step, target);
  const cpu::CpuSchedule defaults = cpu::to_cpu_schedule(space.defaults());
  EXPECT_EQ(cpu::describe(defaults), cpu::describe(cpu::few_query_schedule(cpu::default_schedule(target), 1)));
  EXPECT_EQ(defaults.block_q, 1);
  EXPECT_FALSE(space.invalid(space.defaults())) << "the default is a point of the space";
  bool split = false;
  for (const tuner::Schedule& point : space.valid_points()) {
    const cpu::CpuSchedule s = cpu::to_cpu_schedule(point);
    EXPECT_NO_THROW(cpu::validate_schedule(s));
    EXPECT_TRUE(s.vector_width >= 8 || s.block_q == s.vector_width) << cpu::describe(s);
    split = split || s.kv_splits > 1;
  }
  EXPECT_TRUE(split);
  step.N = step.M = 4096;
  for (const tuner::Schedule& point : cpu::cpu_schedule_space(causal, step, target).valid_points()) {
    EXPECT_EQ(cpu::to_cpu_schedule(point).kv_splits, 1) << "prefill shapes have query tiles to share";
  }
}

}  // namespace
}  // namespace tessera
