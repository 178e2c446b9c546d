// The Halide CPU target against the float64 reference: every standard-library pattern and compositions, on
// shapes with N < M, N > M, ragged tiles, GQA and D in {16, 32, 64, 128}. float32 must agree to 2e-4.
#include "targets/cpu/cpu_attention.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "compiler/ir/printer.h"
#include "compiler/planner/sparsity_plan.h"
#include "compiler/sema/pattern_library.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"
#include "targets/cpu/attention_driver.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/execution_plan.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/expect_error.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/scoped_resources.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using test::instantiate;
using test::random_tensor;
using test::Shape;

// Runs both targets and returns the largest absolute difference.
double max_difference(const std::string& expression, const Shape& s, uint64_t seed, const cpu::CpuOptions& options = {},
                      const runtime::Tensor* given_segments = nullptr) {
  ir::Pattern pattern = instantiate(expression);
  test::RandomProblem problem(pattern, s, seed, {}, given_segments);
  std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
  runtime::Tensor got = cpu::attention(pattern, problem.inputs, options);
  EXPECT_EQ(got.shape(), (std::vector<int64_t>{s.B, s.H, s.N, s.Dv}));
  return test::max_abs_difference(got, expected);
}

// Checks that `got` is NaN exactly where `expected` is and within `tolerance` elsewhere (stopping at the first
// element that is not); returns the number of NaN elements.
int64_t nan_elements_matching(const runtime::Tensor& got, const std::vector<double>& expected, double tolerance) {
  int64_t nan_elements = 0;
  for (size_t e = 0; e < expected.size(); ++e) {
    const double g = got.data<float>()[e], x = expected[e];
    if (std::isnan(g) != std::isnan(x) || (!std::isnan(x) && !(std::abs(g - x) <= tolerance))) {
      ADD_FAILURE() << "element " << e << ": got " << g << ", reference " << x << ", tolerance " << tolerance;
      break;
    }
    nan_elements += std::isnan(x);
  }
  return nan_elements;
}

class CpuAttentionPatterns : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuAttentionPatterns, MatchesReference) {
  // N < M, ragged tiles (neither a multiple of 64), GQA.
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 32, 32}, 1), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CpuAttentionPatterns, ::testing::ValuesIn(test::standard_pattern_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// Decoding steps: one-row query tiles (their own schedule, vectorised across features, keys and value columns), as
// cpu::few_query_schedule picks them for one query, for every pattern; value widths that are and are not a multiple
// of the vector. (Tiles of a few lanes: KvCacheViewsReadOnlyTheirKeys.)
class CpuAttentionFewQueries : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuAttentionFewQueries, MatchesReference) {
  cpu::CpuOptions options;
  options.schedule = cpu::few_query_schedule(options.schedule, 1);
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 1, 150, 32, 32}, 3, options), 2e-4);
  EXPECT_LE(max_difference(GetParam(), Shape{1, 2, 1, 3, 90, 32, 20}, 4, options), 2e-4);
  options.schedule = cpu::few_query_schedule(cpu::CpuOptions{}.schedule, 2);
  EXPECT_LE(max_difference(GetParam(), Shape{1, 2, 1, 2, 90, 32, 32}, 5, options), 2e-4);
}

std::vector<std::string> few_query_cases() {
  std::vector<std::string> cases = test::standard_pattern_cases();
  for (const std::string& variant : test::variant_pattern_cases()) {
    if (variant.find("hardmax") == std::string::npos && variant.find("sample") == std::string::npos)
      cases.push_back(variant);  // hardmax and sample run in their own kernel
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CpuAttentionFewQueries, ::testing::ValuesIn(few_query_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// Other normalisers and weights (the CPU and the reference run them; the CUDA kernels do not yet).
class CpuAttentionVariants : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuAttentionVariants, MatchesReference) {
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 32, 32}, 1), 2e-4);
  EXPECT_LE(max_difference(GetParam(), Shape{1, 2, 1, 33, 20, 64, 48}, 2), 2e-4);  // N > M, MQA, Dv != D
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CpuAttentionVariants, ::testing::ValuesIn(test::variant_pattern_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// With Q = 0 every logit is 0: hardmax must pick each row's lowest allowed key, on the CPU as in the reference.
TEST(CpuAttention, HardmaxTiesGoToTheLowestAllowedKey) {
  // N < M (q = i + 130) and several 64-key tiles: each block of rows reads its own window of keys, starting past 0.
  // Query head h reads kv head h / 2.
  const Shape s{1, 4, 2, 200, 330, 16, 16};
  struct Case {
    const char* expression;
    std::function<int64_t(int64_t q)> first_key;  // -1: none
  };
  for (const Case& c :
       {Case{"causal & hardmax", [](int64_t) { return int64_t{0}; }},
        Case{"local(window=3) & hardmax", [](int64_t q) { return std::max<int64_t>(0, q - 2); }},
        Case{"sliding_window(window=5) & hardmax", [](int64_t q) { return std::max<int64_t>(0, q - 4); }},
        Case{"(causal - sliding_window(window=10)) & hardmax",
             [](int64_t q) { return q < 10 ? int64_t{-1} : int64_t{0}; }},
        Case{"(causal - sliding_window(window=150)) & hardmax",  // the first 20 rows see no key
             [](int64_t q) { return q < 150 ? int64_t{-1} : int64_t{0}; }},
        Case{"(sliding_window(window=90) - sliding_window(window=70)) & hardmax",
             [](int64_t q) { return std::max<int64_t>(0, q - 89); }}}) {
    SCOPED_TRACE(c.expression);
    ir::Pattern pattern = instantiate(c.expression);
    test::RandomProblem problem(pattern, s, 5);
    std::fill(problem.q.data<float>(), problem.q.data<float>() + problem.q.numel(), 0.0f);
    const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
    const runtime::Tensor got = cpu::attention(pattern, problem.inputs);
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.N; ++i) {
        const int64_t key = c.first_key(i + s.M - s.N);
        for (int64_t e = 0; e < s.Dv; ++e) {
          const size_t at = static_cast<size_t>((h * s.N + i) * s.Dv + e);
          const double want = key < 0 ? 0.0 : problem.v.data<float>()[(h / 2 * s.M + key) * s.Dv + e];
          ASSERT_EQ(expected[at], want) << "reference, row " << i;
          ASSERT_EQ(got.data<float>()[at], want) << "cpu, row " << i;
        }
      }
    }
  }
}

// sample draws each row's key from its softmax: with every query equal, 4 keys and 6000 rows (each its own
// hash), the keys' frequencies match the softmax probabilities within 4.5 standard deviations, on the CPU and
// in the reference alike, and a different seed draws differently.
// Additive scoring takes e^(2q) e^(2k) per pair while the projections stay within +-20, and an exp per pair
// beyond: projections scaled far past that (e^(2q) overflowing, e^(2k) underflowing, tanh saturated for most pairs
// but not all) must still match.
TEST(CpuAttention, AdditiveScoringWithLargeProjections) {
  for (const char* expression : {"causal & additive", "strided(stride=8) & additive & alibi"}) {
    SCOPED_TRACE(expression);
    ir::Pattern pattern = instantiate(expression);
    test::RandomProblem problem(pattern, Shape{1, 4, 2, 70, 90, 32, 16}, 3);
    for (const char* name : {"additive_wq", "additive_wk"}) {
      runtime::Tensor& w = problem.tables.at(name);
      for (int64_t e = 0; e < w.numel(); ++e) w.data<float>()[e] *= 40.0f;
    }
    const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
    EXPECT_LE(test::max_abs_difference(cpu::attention(pattern, problem.inputs), expected), 2e-4);
  }
}

TEST(CpuAttention, SampleDrawsKeysWithTheSoftmaxProbabilities) {
  const Shape s{1, 1, 1, 6000, 4, 16, 16};
  std::vector<double> logits(4);
  std::vector<int> chosen_cpu(4), chosen_reference(4);
  std::vector<std::vector<float>> first_rows;
  for (uint64_t seed : {3u, 4u}) {
    ir::Pattern pattern = instantiate("sample(seed=" + std::to_string(seed) + ")");
    test::RandomProblem problem(pattern, s, 9);
    float* q = problem.q.data<float>();
    for (int64_t i = 1; i < s.N; ++i) std::copy(q, q + s.D, q + i * s.D);
    const float* k = problem.k.data<float>();
    double top = -1e300;
    for (int64_t j = 0; j < 4; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < s.D; ++d) dot += double(q[d]) * double(k[j * s.D + d]);
      logits[static_cast<size_t>(j)] = dot / std::sqrt(double(s.D));
      top = std::max(top, logits[static_cast<size_t>(j)]);
    }
    const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
    const runtime::Tensor got = cpu::attention(pattern, problem.inputs);
    std::fill(chosen_cpu.begin(), chosen_cpu.end(), 0);
    std::fill(chosen_reference.begin(), chosen_reference.end(), 0);
    first_rows.emplace_back(got.data<float>(), got.data<float>() + 64 * s.Dv);
    const float* v = problem.v.data<float>();
    auto key_of = [&](auto row) {
      for (int64_t j = 0; j < 4; ++j) {
        if (static_cast<double>(row[0]) == static_cast<double>(v[j * s.Dv]) &&
            static_cast<double>(row[1]) == static_cast<double>(v[j * s.Dv + 1]))
          return j;
      }
      return int64_t{-1};
    };
    for (int64_t i = 0; i < s.N; ++i) {
      const int64_t c = key_of(got.data<float>() + i * s.Dv), r = key_of(expected.data() + i * s.Dv);
      ASSERT_GE(c, 0) << "row " << i << " is not a value row";
      ASSERT_EQ(c, r) << "row " << i;
      ++chosen_cpu[static_cast<size_t>(c)];
      ++chosen_reference[static_cast<size_t>(r)];
    }
    double z = 0;
    for (double l : logits) z += std::exp(l - top);
    for (size_t j = 0; j < 4; ++j) {
      const double p = std::exp(logits[j] - top) / z;
      const double sigma = std::sqrt(p * (1 - p) / double(s.N));
      EXPECT_NEAR(double(chosen_cpu[j]) / double(s.N), p, 4.5 * sigma + 1e-9) << "key " << j << " seed " << seed;
    }
  }
  EXPECT_NE(first_rows[0], first_rows[1]);
}

class CpuAttentionShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(CpuAttentionShapes, CausalAlibiAndStridedMatchReference) {
  EXPECT_LE(max_difference("causal & alibi", GetParam(), 2), 2e-4);
  EXPECT_LE(max_difference("strided(stride=8) - sliding_window(window=2)", GetParam(), 3), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CpuAttentionShapes,
                         ::testing::Values(Shape{1, 2, 2, 130, 130, 16, 16},   // N = M
                                           Shape{1, 4, 1, 100, 37, 64, 48},    // N > M: early rows empty; MQA
                                           Shape{2, 2, 2, 1, 200, 128, 128},   // one query (decoding)
                                           Shape{1, 3, 3, 65, 300, 64, 64}));  // chunks of several tiles

// Long enough that the planner re-indexes: residue classes (strided, dilated) and column sets (fixed) run in
// strided views and merge with the tile-sparse band by log-sum-exp.
struct ReindexedCase {
  const char* expression;
  Shape shape;
};

class CpuAttentionReindexed : public ::testing::TestWithParam<ReindexedCase> {};

TEST_P(CpuAttentionReindexed, MatchesReference) {
  const auto& [expression, shape] = GetParam();
  planner::Plan plan =
      planner::plan_pattern(instantiate(expression), shape.N, shape.M,
                            {.block_q = cpu::CpuSchedule{}.block_q, .block_k = cpu::CpuSchedule{}.block_k});
  ASSERT_FALSE(plan.components.empty());
  EXPECT_NE(plan.components.back().kind, planner::ComponentKind::TileSparse) << "the planner should re-index";
  EXPECT_LE(max_difference(expression, shape, 7), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Plans, CpuAttentionReindexed,
    ::testing::Values(ReindexedCase{"strided(stride=16)", Shape{1, 2, 1, 600, 600, 32, 32}},
                      ReindexedCase{"fixed(block=32, summary=4)", Shape{1, 2, 2, 333, 640, 16, 24}},
                      ReindexedCase{"dilated(window=6, dilation=24)", Shape{1, 2, 2, 640, 333, 16, 16}},
                      ReindexedCase{"strided(stride=20) & alibi", Shape{1, 2, 2, 333, 640, 16, 24}},
                      ReindexedCase{"fixed(block=32, summary=3) & softcap(cap=3)", Shape{1, 2, 1, 600, 600, 32, 32}},
                      // The last run of summary columns cut short by the end of the keys (1020, 1021 of 1020..1023):
                      // the kernel gathering a view's keys must stay inside K and V.
                      ReindexedCase{"fixed(block=32, summary=4)", Shape{1, 2, 1, 1022, 1022, 32, 32}}),
    [](const auto& info) { return "case" + std::to_string(info.index); });

TEST(CpuAttention, ScheduleParametersDoNotChangeResults) {
  cpu::CpuOptions options;
  options.schedule.block_q = 16;
  options.schedule.block_k = 32;
  options.schedule.chunk_k = 96;
  options.schedule.threads = 1;
  EXPECT_LE(max_difference("causal & softcap(cap=5)", Shape{1, 2, 2, 90, 120, 32, 32}, 4, options), 2e-4);
}

// Masks false at every pair that the tile intervals cannot prove empty (`X - X`) leave every row without a key:
// zeros, never NaN. Halide folded such masks into chunks that wrote NaN into some rows of 16- and 32-row tiles
// (found by test/fuzz/attention_differential.cpp).
// Halide 14 builds a two-lane float vector of two scalars as ramp(a, b - a, 2): with a = -inf (a masked score) the
// other lane is NaN. Masks on the query's parity are evaluated per row, so two-row tiles of two lanes gave rows of
// NaN (found by the differential check). Two queries now run in one-row tiles, and two lanes are refused.
TEST(CpuAttention, TwoQueriesWithMasksOnTheRowParity) {
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  ASSERT_TRUE(library.add_file(std::make_shared<dsl::SourceFile>(
                                   "parity.attn", "pattern even_rows_see_all {\n  mask: q % 2 == 0 || k == 0;\n}\n"),
                               diags))
      << diags.str();
  for (const char* expression : {"even_rows_see_all", "local2d(width=2, block_h=1, block_w=1, halo_h=3, halo_w=0)",
                                 "full - local2d(width=2, block_h=1, block_w=1, halo_h=3, halo_w=0)"}) {
    SCOPED_TRACE(expression);
    std::optional<ir::Pattern> pattern = library.instantiate(expression, diags);
    ASSERT_TRUE(pattern.has_value()) << diags.str();
    for (const Shape& shape : {Shape{2, 1, 1, 2, 2, 16, 16}, Shape{1, 2, 1, 2, 40, 16, 16}}) {
      test::RandomProblem problem(*pattern, shape, 3);
      cpu::CpuOptions options;
      options.schedule = cpu::few_query_schedule(options.schedule, shape.N);
      const std::vector<double> expected = reference::attention_f64(*pattern, problem.inputs);
      const runtime::Tensor got = cpu::attention(*pattern, problem.inputs, options);
      for (int64_t e = 0; e < got.numel(); ++e)
        ASSERT_NEAR(got.data<float>()[e], expected[static_cast<size_t>(e)], 2e-4) << "element " << e;
    }
    cpu::CpuOptions two_lanes;
    two_lanes.schedule.block_q = 2;
    two_lanes.schedule.vector_width = 2;
    test::RandomProblem problem(*pattern, Shape{1, 1, 1, 2, 2, 16, 16}, 3);
    EXPECT_THROW(cpu::attention(*pattern, problem.inputs, two_lanes), std::invalid_argument);
  }
}

TEST(CpuAttention, MasksFalseEverywhereGiveZeroRows) {
  for (const char* expression :
       {"causal - causal", "local(window=2) - local(window=2)",
        "((fixed(block=40, summary=0) | local(window=23)) & causal) - fixed(block=1, summary=1)"}) {
    for (int64_t block_q : {16, 32, 128}) {
      SCOPED_TRACE(fmt::format("{}, block_q {}", expression, block_q));
      cpu::CpuOptions options;
      options.schedule.block_q = block_q;
      ir::Pattern pattern = instantiate(expression);
      test::RandomProblem problem(pattern, Shape{1, 2, 1, 100, 100, 16, 16}, 7);
      const runtime::Tensor got = cpu::attention(pattern, problem.inputs, options);
      for (int64_t e = 0; e < got.numel(); ++e) ASSERT_EQ(got.data<float>()[e], 0.0f) << "element " << e;
    }
  }
}

// A component's kernel holds chunks no longer than its longest run of tiles: strided's band has runs of one 64-key
// tile, which 128-key chunks would compute twice over, and its residue classes (32 keys each at N=4096) runs shorter
// than a tile; causal keeps the schedule's chunks.
TEST(CpuAttention, ChunksAreNoLongerThanTheLongestRun) {
  cpu::CpuSchedule sched;
  sched.block_q = 64;
  sched.block_k = 64;
  sched.chunk_k = 128;
  sched.vector_width = 8;
  sched.min_block_q = 64;
  const ir::AttentionSizes sz{.B = 1, .H = 1, .Hkv = 1, .N = 4096, .M = 4096, .D = 64, .Dv = 64};
  for (const char* expression : {"causal", "strided(stride=128)", "sliding_window(window=1000)"}) {
    const cpu::ExecutionPlan execution = cpu::make_execution_plan(instantiate(expression), sz, sched, {});
    ASSERT_EQ(execution.tiling.size(), execution.plan.components.size()) << expression;
    for (size_t c = 0; c < execution.tiling.size(); ++c) {
      const int64_t chunk = execution.tiling[c].chunk_k;
      int64_t longest = 0;
      for (const cpu::ViewTables& t : execution.tables[c]) {
        for (size_t n = 1; n < t.full.size(); n += 2) longest = std::max<int64_t>(longest, t.full[n]);
        for (size_t n = 1; n < t.partial.size(); n += 2) longest = std::max<int64_t>(longest, t.partial[n]);
      }
      EXPECT_GE(chunk, longest) << expression << " component " << c;
      EXPECT_LE(chunk, sched.chunk_k) << expression << " component " << c;
      EXPECT_EQ(chunk % sched.vector_width, 0) << expression << " component " << c;
      if (std::string(expression) == "causal") {
        EXPECT_EQ(chunk, 128);
      } else if (std::string(expression).starts_with("strided")) {
        EXPECT_EQ(chunk, c == 0 ? 64 : 32) << c;
      }
    }
  }
  // One query: the context's runs grow step by step, and the kernel keeps its chunks rather than recompiling.
  const ir::AttentionSizes step{.B = 1, .H = 1, .Hkv = 1, .N = 1, .M = 40, .D = 64, .Dv = 64};
  EXPECT_EQ(cpu::make_execution_plan(instantiate("causal"), step, sched, {}).tiling.at(0).chunk_k, 128);
  EXPECT_EQ(cpu::chunk_keys_for_runs(0, sched), 64);
  EXPECT_EQ(cpu::chunk_keys_for_runs(65, sched), 128);
  EXPECT_EQ(cpu::chunk_keys_for_runs(20, sched), 24) << "views shorter than a tile: their keys, in whole vectors";
  sched.block_k = 24;
  sched.chunk_k = 96;
  EXPECT_EQ(cpu::chunk_keys_for_runs(30, sched), 48);
  EXPECT_EQ(cpu::chunk_keys_for_runs(50, sched), 96);
  sched.block_k = 4;
  EXPECT_EQ(cpu::chunk_keys_for_runs(3, sched), 8) << "a multiple of the vector width";
}

// A component's tile halves (its rows down to min_block_q, its keys down to 16) while the cost model says that
// saves a twentieth: strided's band (q - k < 128 spans block_q + 128 keys per tile) takes 64-row tiles, its
// residue classes (32 x 32 causal views at N=4096) 32-row tiles whatever min_block_q, as those still hold a whole
// view; dilated(32, 4)'s residue classes, bands 32 keys wide, take 32 x 32 tiles; dense causal keeps 128 (a
// halving saves 1.5% of its pairs), and so does a decoding step.
TEST(CpuAttention, ComponentsNarrowTheirTilesWhereTheCostModelSaysThatPays) {
  cpu::CpuSchedule sched;  // block_q 128, min_block_q 16, block_k 64, chunk_k 64
  sched.vector_width = 16;
  const ir::AttentionSizes sz{.B = 1, .H = 1, .Hkv = 1, .N = 4096, .M = 4096, .D = 64, .Dv = 64};
  const cpu::ExecutionPlan causal = cpu::make_execution_plan(instantiate("causal"), sz, sched, {});
  ASSERT_EQ(causal.tiling.size(), 1u);
  EXPECT_EQ(causal.tiling[0].block_q, 128);
  EXPECT_EQ(causal.tables[0][0].tile_rows, 4096 / 128);
  // A band of 256 keys: 64-row tiles compute (256 + 64) / (256 + 128) of what 128-row tiles do.
  EXPECT_EQ(cpu::make_execution_plan(instantiate("sliding_window(window=256)"), sz, sched, {}).tiling.at(0).block_q,
            64);
  const cpu::ExecutionPlan strided = cpu::make_execution_plan(instantiate("strided(stride=128)"), sz, sched, {});
  ASSERT_EQ(strided.tiling.size(), 2u);
  ASSERT_EQ(strided.plan.components[1].views.size(), 128u);
  for (size_t c = 0; c < 2; ++c) {
    const int64_t block_q = c == 0 ? 64 : 32;
    EXPECT_EQ(strided.tiling[c].block_q, block_q) << "component " << c;
    const int64_t queries = strided.plan.components[c].views[0].queries.count;
    EXPECT_EQ(strided.tables[c][0].tile_rows, (queries + block_q - 1) / block_q)
        << "tables classified with the narrower tile";
  }
  EXPECT_EQ(strided.plan.components[1].views[0].queries.count, 32);
  EXPECT_EQ(strided.tiling[0].block_k, 64) << "the band's runs are as long with narrower keys";
  const cpu::ExecutionPlan dilated =
      cpu::make_execution_plan(instantiate("dilated(window=32, dilation=4)"), sz, sched, {});
  ASSERT_EQ(dilated.tiling.size(), 1u);
  EXPECT_EQ(dilated.tiling[0].block_q, 32);
  EXPECT_EQ(dilated.tiling[0].block_k, 32);
  EXPECT_EQ(dilated.tables[0][0].tile_rows, 1024 / 32);
  EXPECT_EQ(dilated.tables[0][0].partial[1], 32) << "runs start and end on 32-key tiles";
  sched.min_block_q = 64;
  EXPECT_EQ(cpu::make_execution_plan(instantiate("dilated(window=32, dilation=4)"), sz, sched, {}).tiling.at(0).block_q,
            64);
  sched.min_block_q = 128;
  const cpu::ExecutionPlan bounded = cpu::make_execution_plan(instantiate("strided(stride=128)"), sz, sched, {});
  EXPECT_EQ(bounded.tiling.at(0).block_q, 128) << "min_block_q bounds the narrowing";
  EXPECT_EQ(bounded.tiling.at(1).block_q, 32) << "but not of tiles that still hold a whole view";
  const ir::AttentionSizes longer{.B = 1, .H = 1, .Hkv = 1, .N = 16384, .M = 16384, .D = 64, .Dv = 64};
  EXPECT_EQ(cpu::make_execution_plan(instantiate("strided(stride=128)"), longer, sched, {}).tiling.at(1).block_q, 128)
      << "residue classes of 128 queries keep min_block_q";
  sched.min_block_q = 16;
  const ir::AttentionSizes step{.B = 1, .H = 1, .Hkv = 1, .N = 1, .M = 4096, .D = 64, .Dv = 64};
  EXPECT_EQ(cpu::make_execution_plan(instantiate("sliding_window(window=64)"), step, sched, {}).tiling.at(0).block_q,
            128);
}

// Components with different query tiles (and the driver's work items cut by each) give the reference's result.
TEST(CpuAttention, NarrowedComponentTilesMatchReference) {
  cpu::CpuOptions options;
  options.schedule = cpu::parse_schedule("block_q=64,min_block_q=16,vector_width=8,block_k=16,chunk_k=64");
  for (const char* expression :
       {"strided(stride=24)", "sliding_window(window=20) & alibi", "fixed(block=32, summary=4)"}) {
    EXPECT_LE(max_difference(expression, Shape{2, 2, 1, 400, 400, 32, 32}, 11, options), 2e-4) << expression;
  }
  // Residue classes shorter than a tile (15 or 16 queries and keys each): 16-row tiles and 16-key chunks with the
  // default schedule, its 64-key tiles and 64-row minimum notwithstanding.
  const ir::AttentionSizes sz{.B = 1, .H = 2, .Hkv = 1, .N = 1000, .M = 1000, .D = 32, .Dv = 32};
  const cpu::ExecutionPlan plan = cpu::make_execution_plan(instantiate("strided(stride=64)"), sz, {}, {});
  ASSERT_EQ(plan.tiling.size(), 2u);
  EXPECT_EQ(plan.tiling[1].block_q, 16);
  EXPECT_EQ(plan.tiling[1].chunk_k, 16);
  EXPECT_LE(max_difference("strided(stride=64)", Shape{1, 2, 1, 1000, 1000, 32, 32}, 12), 2e-4);
}

// A call packs the keys of a strided view (a residue class) that its own tiles' runs cover, not the whole view's:
// from the first run's start to the last run's end. Calls of one query tile each, in classes of 250 queries and
// keys, must still give the reference's result, with the band's lower edge (dilated) and causal's upper one.
TEST(CpuAttention, CallsOfPartOfAStridedViewReadTheKeysOfTheirRuns) {
  // Tile 0: FULL [32, 48), PARTIAL [48, 64) and [16, 32); tile 1: PARTIAL [100, 104); tile 2: no run.
  std::vector<int32_t> full = {32, 16, 0, 0, 0, 0}, partial = {48, 16, 16, 16, 100, 4, 0, 0, 0, 0, 0, 0};
  std::vector<int32_t> full_counts = {1, 0, 0}, partial_counts = {2, 1, 0};
  const tessera_cpu_driver::ChunkTables tables{
      full.data(), partial.data(), full_counts.data(), partial_counts.data(), 1, 2, 3};
  using Range = std::pair<int32_t, int32_t>;
  auto keys = [&](int64_t first_tile, int64_t end_tile) {
    const tessera_cpu_driver::detail::ItemWork w =
        tessera_cpu_driver::detail::item_work(tables, first_tile, end_tile, 16);
    return Range{w.keys_begin, w.keys_end};
  };
  EXPECT_EQ(keys(0, 1), (Range{16, 64}));
  EXPECT_EQ(keys(0, 2), (Range{16, 104}));
  EXPECT_EQ(keys(1, 5), (Range{100, 104}));
  EXPECT_EQ(keys(2, 3), (Range{0, 1})) << "a call reads one key at least";
  EXPECT_EQ(tessera_cpu_driver::detail::item_work(tables, 0, 3, 16).cost, 3 * 16 + 48 + 4) << "tiles' rows and keys";

  cpu::CpuOptions options;
  options.schedule = cpu::parse_schedule("block_q=16,min_block_q=16,vector_width=8,block_k=16,chunk_k=32,grain=1");
  for (const char* expression : {"dilated(window=8, dilation=4)", "strided(stride=4) & causal"}) {
    const planner::Plan plan =
        planner::plan_pattern(instantiate(expression), 1000, 1000, {.block_q = 16, .block_k = 16});
    ASSERT_FALSE(plan.components.empty());
    EXPECT_NE(plan.components.back().kind, planner::ComponentKind::TileSparse) << expression;
    EXPECT_LE(max_difference(expression, Shape{1, 2, 1, 1000, 1000, 32, 32}, 13, options), 2e-4) << expression;
    cpu::CpuOptions bf16 = options;
    bf16.storage = cpu::StorageType::BFloat16;
    EXPECT_LE(max_difference(expression, Shape{1, 2, 1, 1000, 1000, 32, 32}, 14, bf16), 3e-2) << expression;
  }
}

// Column-block plans (local2d): a view of runs of query columns is packed into dense rows for its calls, and
// its state scattered back; one column per view is addressed in place. Both against the reference, in f32 and
// bf16, with GQA, queries at the end of the keys, and split keys.
TEST(CpuAttention, ColumnBlockViewsMatchReference) {
  cpu::CpuOptions options;
  options.schedule = cpu::parse_schedule("block_q=64,min_block_q=64,block_k=64,chunk_k=64");
  struct Case {
    const char* expression;
    Shape shape;
    int64_t query_group;
  };
  const Case cases[] = {
      {"local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)", Shape{2, 2, 1, 1024, 1024, 32, 32}, 8},
      {"local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)", Shape{1, 3, 3, 1024, 2048, 16, 24}, 8},
      // A last image row cut short: views end at different lengths, some mid-run.
      {"local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)", Shape{1, 2, 1, 1000, 1000, 32, 32}, 8},
      {"local2d(width=32, block_h=64, block_w=1, halo_h=0, halo_w=0)", Shape{1, 2, 2, 2048, 2048, 32, 32}, 1},
  };
  uint64_t seed = 40;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << c.expression << " N=" << c.shape.N << " M=" << c.shape.M);
    const planner::Plan plan =
        planner::plan_pattern(instantiate(c.expression), c.shape.N, c.shape.M, {.block_q = 64, .block_k = 64});
    ASSERT_EQ(plan.components.size(), 1u);
    EXPECT_EQ(plan.components[0].kind, planner::ComponentKind::ColumnBlocks);
    EXPECT_EQ(plan.components[0].query_group, c.query_group);
    EXPECT_LE(max_difference(c.expression, c.shape, ++seed, options), 2e-4);
    cpu::CpuOptions bf16 = options;
    bf16.storage = cpu::StorageType::BFloat16;
    EXPECT_LE(max_difference(c.expression, c.shape, ++seed, bf16), 3e-2);
    cpu::CpuOptions split = options;
    split.schedule.kv_splits = 2;
    EXPECT_LE(max_difference(c.expression, c.shape, ++seed, split), 2e-4) << "split keys";
  }
}

// Tiles of a mask over run-time segment ids are classified per call from the ids each tile holds: with many
// short documents most tiles are EMPTY or FULL, and the kernels must skip and unmask exactly the right ones.
TEST(CpuAttention, DocumentTilesClassifiedFromSegmentIds) {
  cpu::CpuOptions options;
  options.schedule.block_q = 16;
  options.schedule.block_k = 16;
  options.schedule.chunk_k = 32;
  const Shape shape{2, 2, 1, 300, 420, 32, 32};
  std::mt19937_64 rng(12);
  runtime::Tensor sorted(runtime::DType::Int32, {shape.B, shape.M});
  runtime::Tensor shuffled(runtime::DType::Int32, {shape.B, shape.M});
  for (int64_t b = 0; b < shape.B; ++b) {
    int32_t id = 0;
    for (int64_t m = 0; m < shape.M; ++m) {
      if (rng() % 37 == 0) ++id;  // documents of random lengths, some longer than a tile
      sorted.data<int32_t>()[b * shape.M + m] = id;
      shuffled.data<int32_t>()[b * shape.M + m] = static_cast<int32_t>(rng() % 3);
    }
  }
  for (const char* expression : {"document", "causal & document", "document & sliding_window(window=40)"}) {
    SCOPED_TRACE(expression);
    EXPECT_LE(max_difference(expression, shape, 13, options, &sorted), 2e-4);
    EXPECT_LE(max_difference(expression, shape, 14, options, &shuffled), 2e-4);
  }
}

// A mask over run-time tensors is tiled once, from the mask alone, and classified per call with those tiles: given
// a plan's tiling, make_execution_plan keeps it and classifies as it would have, and refuses another plan's.
TEST(CpuAttention, AGivenTilingIsKeptAndClassifiedAsChosen) {
  const ir::AttentionSizes sz{.B = 1, .H = 1, .Hkv = 1, .N = 1024, .M = 1024, .D = 64, .Dv = 64};
  const cpu::CpuSchedule sched;
  for (const char* expression : {"dilated(window=32, dilation=4)", "strided(stride=64)", "causal & document"}) {
    SCOPED_TRACE(expression);
    const ir::Pattern pattern = instantiate(expression);
    const cpu::ExecutionPlan chosen = cpu::make_execution_plan(pattern, sz, sched, {});
    const cpu::ExecutionPlan given = cpu::make_execution_plan(chosen.plan, sz, sched, {}, chosen.tiling);
    ASSERT_EQ(given.tiling.size(), chosen.tiling.size());
    for (size_t c = 0; c < chosen.tiling.size(); ++c) {
      EXPECT_EQ(given.tiling[c].block_q, chosen.tiling[c].block_q);
      EXPECT_EQ(given.tiling[c].block_k, chosen.tiling[c].block_k);
      EXPECT_EQ(given.tiling[c].chunk_k, chosen.tiling[c].chunk_k);
      ASSERT_EQ(given.tables[c].size(), chosen.tables[c].size());
      for (size_t v = 0; v < chosen.tables[c].size(); ++v) {
        EXPECT_EQ(given.tables[c][v].full, chosen.tables[c][v].full);
        EXPECT_EQ(given.tables[c][v].partial, chosen.tables[c][v].partial);
      }
    }
    std::vector<cpu::ComponentTiling> wrong = chosen.tiling;
    wrong.push_back(wrong.front());
    EXPECT_THROW(cpu::make_execution_plan(chosen.plan, sz, sched, {}, wrong), std::logic_error);
  }
}

// NaN and Inf propagate as in the reference: through the pairs that are allowed, never through masked ones
// (a masked key contributes nothing, not 0 * NaN), and a NaN query spoils only its own row.
TEST(CpuAttention, NanAndInfPropagateOnlyThroughAllowedPairs) {
  // softcap: its tanh is computed through exp, which maps NaN to a number unless NaN is passed on by itself.
  for (const char* expression :
       {"causal", "sliding_window(window=20) | strided(stride=16)", "causal & document", "causal & softcap(cap=2.5)"}) {
    SCOPED_TRACE(expression);
    ir::Pattern pattern = instantiate(expression);
    const int64_t B = 1, H = 2, N = 300, M = 300, D = 16;
    std::mt19937_64 rng(15);
    runtime::Tensor q = random_tensor({B, H, N, D}, rng);
    runtime::Tensor k = random_tensor({B, H, M, D}, rng);
    runtime::Tensor v = random_tensor({B, H, M, D}, rng);
    runtime::Tensor segments(runtime::DType::Int32, {B, M});
    for (int64_t m = 0; m < M; ++m) segments.data<int32_t>()[m] = static_cast<int32_t>(m / 50);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    for (int64_t h = 0; h < H; ++h) {
      v.data<float>()[(h * M + 290) * D + 3] = nan;  // a late key: masked for most rows
      v.data<float>()[(h * M + 170) * D + 5] = inf;
      k.data<float>()[(h * M + 250) * D + 1] = nan;
      q.data<float>()[(h * N + 7) * D + 2] = nan;  // row 7 of each head is NaN everywhere it attends
    }
    targets::AttentionInputs inputs;
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    if (pattern.input("segments")) inputs.tensors["segments"] = &segments;
    std::vector<double> expected = reference::attention_f64(pattern, inputs);
    runtime::Tensor got = cpu::attention(pattern, inputs);
    int64_t nan_rows = 0, finite_rows = 0;
    for (size_t e = 0; e < expected.size(); ++e) {
      const double g = got.data<float>()[e], x = expected[e];
      ASSERT_EQ(std::isnan(g), std::isnan(x)) << "element " << e << ": got " << g << ", reference " << x;
      if (!std::isnan(x)) {
        ASSERT_EQ(std::isinf(g), std::isinf(x)) << "element " << e;
        if (std::isfinite(x)) {
          EXPECT_LE(std::abs(g - x), 2e-4) << "element " << e;
        }
      }
      (std::isnan(x) ? nan_rows : finite_rows) += 1;
    }
    EXPECT_GT(nan_rows, 0);
    EXPECT_GT(finite_rows, nan_rows);
  }
}

// NaN passes on wherever the reference's does in the kernels that tested for it with Halide's is_nan, undefined
// without strict_float (found by test/fuzz/attention_differential.cpp): the single-row kernels of a decoding step
// dropped a NaN key, hardmax over a union lost it, and an allowed +inf logit (-1 * -inf) gave a row of zeros where
// the reference's softmax gives NaN (exp(inf - inf)).
TEST(CpuAttention, NanKeysAndInfiniteLogitsInEveryKernel) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  struct Case {
    const char* expression;
    int64_t N;
    bool infinite_logit;
  };
  for (const Case& c : {Case{"full", 1, false}, Case{"causal", 1, false}, Case{"full", 1, true}, Case{"full", 5, true},
                        Case{"(dilated(window=4, dilation=1) | local(window=2)) & hardmax", 16, false},
                        Case{"(full - strided(stride=2)) & hardmax", 16, false}}) {
    SCOPED_TRACE(fmt::format("{}, N = {}{}", c.expression, c.N, c.infinite_logit ? ", +inf logit" : ""));
    ir::Pattern pattern = instantiate(c.expression);
    const int64_t N = c.N, M = 16, D = 16;
    std::mt19937_64 rng(21);
    runtime::Tensor q = random_tensor({1, 1, N, D}, rng);
    runtime::Tensor k = random_tensor({1, 1, M, D}, rng);
    runtime::Tensor v = random_tensor({1, 1, M, D}, rng);
    if (c.infinite_logit) {
      for (int64_t i = 0; i < N; ++i) q.data<float>()[i * D] = -1.0f;
      k.data<float>()[3 * D] = -inf;  // key 3: every query's logit is +inf
    } else {
      k.data<float>()[10 * D + 3] = nan;
    }
    targets::AttentionInputs inputs;
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    cpu::CpuOptions options;
    options.schedule = cpu::few_query_schedule(options.schedule, N);  // as eval and the model runtime run them
    const std::vector<double> expected = reference::attention_f64(pattern, inputs);
    const runtime::Tensor got = cpu::attention(pattern, inputs, options);
    EXPECT_GT(nan_elements_matching(got, expected, 2e-4), 0);
  }
}

// Halide's exp and log map NaN to numbers (exp(NaN) = 0, log(NaN) = 89.1); the kernels' exp and log pass it on:
// additive scoring (softmax and hardmax) and a pattern's own exp and log keep a NaN key's rows NaN.
TEST(CpuAttention, ExpAndLogPassNanKeysOn) {
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  ASSERT_TRUE(library.add_file(
      std::make_shared<dsl::SourceFile>("softplus.attn", "pattern softplus_score {\n  score: log(exp(s) + 1.0);\n}\n"),
      diags))
      << diags.str();
  for (const char* expression : {"causal & additive", "causal & additive & hardmax", "causal & softplus_score"}) {
    SCOPED_TRACE(expression);
    std::optional<ir::Pattern> pattern = library.instantiate(expression, diags);
    ASSERT_TRUE(pattern.has_value()) << diags.str();
    test::RandomProblem problem(*pattern, Shape{1, 1, 1, 16, 16, 16, 16}, 9);
    problem.k.data<float>()[10 * 16 + 3] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<double> expected = reference::attention_f64(*pattern, problem.inputs);
    const runtime::Tensor got = cpu::attention(*pattern, problem.inputs);
    EXPECT_GT(nan_elements_matching(got, expected, 2e-4), 0);
  }
}

// bf16 kernels whose P.V runs as vdpbf16ps pass NaN on as the float32 ones do: a NaN query spoils its own row,
// a NaN key every row that attends to it, and nothing else (V is finite: non-finite values take the guarded P.V).
TEST(CpuAttention, Bf16NanPropagatesOnlyThroughAllowedPairs) {
  const ir::Pattern pattern = instantiate("causal");
  const int64_t B = 1, H = 2, N = 300, M = 300, D = 32;
  std::mt19937_64 rng(16);
  runtime::Tensor q = random_tensor({B, H, N, D}, rng);
  runtime::Tensor k = random_tensor({B, H, M, D}, rng);
  runtime::Tensor v = random_tensor({B, H, M, D}, rng);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t h = 0; h < H; ++h) {
    k.data<float>()[(h * M + 250) * D + 1] = nan;
    q.data<float>()[(h * N + 7) * D + 2] = nan;
  }
  targets::AttentionInputs inputs{&q, &k, &v, {}, std::nullopt};
  cpu::CpuOptions options;
  options.storage = cpu::StorageType::BFloat16;
  const std::vector<double> expected = reference::attention_f64(pattern, inputs);
  const runtime::Tensor got = cpu::attention(pattern, inputs, options);
  int64_t nan_rows = 0;
  for (size_t e = 0; e < expected.size(); ++e) {
    ASSERT_EQ(std::isnan(got.data<float>()[e]), std::isnan(expected[e])) << "element " << e;
    nan_rows += std::isnan(expected[e]) ? 1 : 0;
  }
  EXPECT_EQ(nan_rows, H * (1 + (N - 250)) * D);  // row 7, and rows 250.. that attend to key 250
}

// Decoding over a KV cache: the kernels read the first `keys` rows per head where they lie; the rows past them
// (room to grow, NaN here) are never read. Patterns the fused kernels do not run take a dense copy. A NaN value at
// a key masked for some rows still reaches only the rows that see it.
TEST(CpuAttention, KvCacheViewsReadOnlyTheirKeys) {
  const Shape s{2, 4, 2, 3, 70, 32, 32};
  constexpr int64_t kCapacity = 128;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const char* expression :
       {"causal", "causal & document", "causal & alibi & softcap(cap=5)",
        "strided(stride=4) | sliding_window(window=3)", "causal & hardmax", "causal & bilinear"}) {
    // A NaN value compiles the guarded kernels: checked on two plans, a dense and a re-indexed one.
    const bool guarded_too = std::string(expression) == "causal" || std::string(expression).starts_with("strided");
    for (bool nan_value : {false, true}) {
      if (nan_value && !guarded_too) continue;
      SCOPED_TRACE(testing::Message() << expression << (nan_value ? ", NaN value" : ""));
      const ir::Pattern pattern = instantiate(expression);
      test::RandomProblem problem(pattern, s, 31);
      if (nan_value) problem.v.data<float>()[(1 * s.M + 69) * s.Dv + 4] = nan;  // head 1, the last key
      auto cache_of = [&](const runtime::Tensor& dense) {
        runtime::Tensor cache(runtime::DType::Float32, {s.B, s.Hkv, kCapacity, s.D});
        std::fill(cache.data<float>(), cache.data<float>() + cache.numel(), nan);
        for (int64_t head = 0; head < s.B * s.Hkv; ++head)
          std::copy_n(dense.data<float>() + head * s.M * s.D, s.M * s.D, cache.data<float>() + head * kCapacity * s.D);
        return cache;
      };
      const runtime::Tensor k_cache = cache_of(problem.k), v_cache = cache_of(problem.v);
      targets::AttentionInputs inputs = problem.inputs;
      inputs.k = &k_cache;
      inputs.v = &v_cache;
      const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
      cpu::CpuOptions options;
      options.schedule = cpu::few_query_schedule(options.schedule, s.N);
      runtime::Tensor got(runtime::DType::Float32, {s.B, s.H, s.N, s.Dv});
      cpu::attention_over_cache_into(pattern, inputs, s.M, got, options);
      EXPECT_EQ(nan_elements_matching(got, expected, 2e-4) > 0, nan_value);
    }
  }
  const ir::Pattern causal = instantiate("causal");
  test::RandomProblem problem(causal, s, 32);
  runtime::Tensor out(runtime::DType::Float32, {s.B, s.H, s.N, s.Dv});
  EXPECT_THROW(cpu::attention_over_cache_into(causal, problem.inputs, s.M + 1, out), runtime::TensorError);
}

// A bf16 KV cache (bf16 attention storage: the model runtime rounds rows once, as it appends them) is read the same
// way: the fused kernels read its first `keys` rows in place (past them: NaN bits, never read); hardmax and
// bilinear scoring take a dense copy of those rows. Results are those of the reference on the rounded inputs,
// within what rounding the probabilities to bf16 may move (2^-8 max|V|). float32 storage refuses a bf16 cache.
TEST(CpuAttention, Bf16KvCacheViewsReadOnlyTheirKeys) {
  const Shape s{2, 4, 2, 3, 70, 32, 32};
  constexpr int64_t kCapacity = 128;
  for (const char* expression : {"causal", "causal & document", "strided(stride=4) | sliding_window(window=3)",
                                 "causal & hardmax", "causal & bilinear"}) {
    for (bool nan_value : {false, true}) {
      if (nan_value && std::string(expression) != "causal") continue;
      SCOPED_TRACE(testing::Message() << expression << (nan_value ? ", NaN value" : ""));
      const ir::Pattern pattern = instantiate(expression);
      test::RandomProblem problem(pattern, s, 33, [](const runtime::Tensor& t) {
        return runtime::bfloat16_to_float32(runtime::to_bfloat16(t));
      });
      if (nan_value) problem.v.data<float>()[(1 * s.M + 69) * s.Dv + 4] = std::numeric_limits<float>::quiet_NaN();
      auto cache_of = [&](const runtime::Tensor& dense) {
        const runtime::Tensor bits = runtime::to_bfloat16(dense);
        runtime::Tensor cache(runtime::DType::BFloat16, {s.B, s.Hkv, kCapacity, s.D});
        std::fill(cache.data<uint16_t>(), cache.data<uint16_t>() + cache.numel(), uint16_t{0x7fc0});  // NaN
        for (int64_t head = 0; head < s.B * s.Hkv; ++head)
          std::copy_n(bits.data<uint16_t>() + head * s.M * s.D, s.M * s.D,
                      cache.data<uint16_t>() + head * kCapacity * s.D);
        return cache;
      };
      const runtime::Tensor k_cache = cache_of(problem.k), v_cache = cache_of(problem.v);
      const runtime::Tensor q = runtime::to_bfloat16(problem.q);
      targets::AttentionInputs inputs = problem.inputs;
      inputs.q = &q;
      inputs.k = &k_cache;
      inputs.v = &v_cache;
      const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
      double max_v = 0;
      for (int64_t e = 0; e < problem.v.numel(); ++e) {
        if (std::isfinite(problem.v.data<float>()[e]))
          max_v = std::max(max_v, std::abs(double{problem.v.data<float>()[e]}));
      }
      cpu::CpuOptions options;
      options.storage = cpu::StorageType::BFloat16;
      options.schedule = cpu::few_query_schedule(options.schedule, s.N);
      runtime::Tensor got(runtime::DType::Float32, {s.B, s.H, s.N, s.Dv});
      cpu::attention_over_cache_into(pattern, inputs, s.M, got, options);
      EXPECT_EQ(nan_elements_matching(got, expected, 2e-4 + std::ldexp(max_v, -8)) > 0, nan_value);
      if (std::string(expression) == "causal" && !nan_value) {
        EXPECT_THROW(cpu::attention_over_cache_into(pattern, inputs, s.M, got, {}), runtime::TensorError)
            << "float32 storage refuses a bf16 cache";
      }
    }
  }
}

// Few queries (decoding steps) get query tiles of their size: scalar for one query, one vector of up to 4 lanes,
// else at most 16 rows; a call with a full tile of queries keeps the schedule.
TEST(CpuAttention, FewQuerySchedulesShrinkTheQueryTile) {
  const cpu::CpuSchedule base;
  EXPECT_EQ(cpu::few_query_schedule(base, 1).block_q, 1);
  EXPECT_EQ(cpu::few_query_schedule(base, 1).vector_width, 1);
  EXPECT_EQ(cpu::few_query_schedule(base, 2).block_q, 1);
  EXPECT_EQ(cpu::few_query_schedule(base, 2).vector_width, 1);
  EXPECT_EQ(cpu::few_query_schedule(base, 3).block_q, 4);
  EXPECT_EQ(cpu::few_query_schedule(base, 3).vector_width, 4);
  EXPECT_EQ(cpu::few_query_schedule(base, 9).block_q, 16);
  EXPECT_EQ(cpu::few_query_schedule(base, 9).vector_width, 16);
  EXPECT_EQ(cpu::describe(cpu::few_query_schedule(base, 128)), cpu::describe(base));
  for (int64_t n : {1, 2, 3, 5, 16}) EXPECT_NO_THROW(cpu::validate_schedule(cpu::few_query_schedule(base, n))) << n;
}

TEST(CpuAttention, BFloat16StorageStaysWithinItsPrecision) {
  cpu::CpuOptions options;
  options.storage = cpu::StorageType::BFloat16;
  // bf16 keeps 8 significant bits: inputs are rounded by up to 2^-9 relative, outputs of O(1) move ~1e-2.
  double diff = max_difference("causal", Shape{1, 2, 2, 64, 64, 64, 64}, 5, options);
  EXPECT_LE(diff, 3e-2);
  EXPECT_GT(diff, 2e-4);  // the rounding really happened
}

// bf16 Q.K runs as vdpbf16ps on a target with avx512_sapphirerapids (compiled here, not run: any host), and that
// kernel moves no 16-bit element with vmovw (AVX512-FP16, which Zen 4 lacks: SIGILL there). Without the feature,
// or for float32 storage, the kernel keeps float32 FMAs.
TEST(CpuAttention, Bf16QueryKeyProductsCompileToVdpbf16ps) {
  const ir::Pattern pattern = instantiate("causal");
  cpu::AttentionPipelineKey key{ir::to_string(pattern), 64, 64};
  key.schedule = cpu::CpuSchedule{};  // AVX-512's: 16 lanes
  key.storage = cpu::StorageType::BFloat16;
  const std::string avx512 = "x86-64-linux-avx512_cannonlake-avx512_skylake-avx2-avx-f16c-fma-sse41";
  const std::string with_bf16 =
      "x86-64-linux-avx512-avx512_sapphirerapids-avx512_cannonlake-avx512_skylake-avx2-avx-"
      "f16c-fma-sse41";
  auto assembly = [&](const cpu::AttentionPipelineKey& k) {
    const test::TempDir dir;
    const std::string path = (dir.path() / "kernel.s").string();
    std::shared_ptr<cpu::AttentionPipeline> p = cpu::build_attention_pipeline(pattern, k);
    p->pipeline.compile_to_assembly(path, cpu::kernel_arguments(*p), "kernel", Halide::Target(k.target));
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  key.target = with_bf16;
  ASSERT_TRUE(cpu::bf16_dot_applies(key, pattern));
  const std::string dot = assembly(key);
  EXPECT_NE(dot.find("vdpbf16ps"), std::string::npos);
  EXPECT_EQ(dot.find("vmovw"), std::string::npos);
  // A residue class's view steps over keys: they are packed as bf16 rows first, by whole vectors.
  cpu::AttentionPipelineKey strided = key;
  strided.key_stride = 4;
  ASSERT_TRUE(cpu::bf16_dot_applies(strided, pattern));
  const std::string packed = assembly(strided);
  EXPECT_NE(packed.find("vdpbf16ps"), std::string::npos);
  EXPECT_EQ(packed.find("vmovw"), std::string::npos);
  key.target = avx512;
  EXPECT_FALSE(cpu::bf16_dot_applies(key, pattern));
  EXPECT_EQ(assembly(key).find("vdpbf16ps"), std::string::npos);
  key.target = with_bf16;
  key.storage = cpu::StorageType::Float32;
  EXPECT_FALSE(cpu::bf16_dot_applies(key, pattern));
}

// bf16 storage is exact storage of the rounded values with float32 arithmetic, except that P.V rounds each
// probability to bf16 first (as FlashAttention's bf16 kernels do) where it runs as vdpbf16ps. Against the reference
// run on inputs rounded to bf16 (independently, via long double), the kernels must agree to the float32 tolerance
// plus what rounding P can move an output: each probability by at most 2^-8 of itself (8 significant bits), with
// the row sums in float32, so an output, a weighted mean of V's rows, by at most 2^-8 max|V|. On plans with
// re-indexed views, run-time tensors and GQA alike.
TEST(CpuAttention, BFloat16StorageComputesOnTheRoundedInputs) {
  auto round_to_bf16 = [](const runtime::Tensor& t) {
    runtime::Tensor r = t.clone();
    for (int64_t e = 0; e < r.numel(); ++e) {
      const long double x = r.data<float>()[e];
      if (x == 0 || !std::isfinite(static_cast<double>(x))) continue;
      int exponent = 0;
      std::frexp(static_cast<double>(x), &exponent);               // |x| in [2^(exponent-1), 2^exponent)
      const long double quantum = std::ldexp(1.0L, exponent - 8);  // 8 significant bits
      r.data<float>()[e] = static_cast<float>(std::nearbyint(x / quantum) * quantum);  // ties to even
    }
    return r;
  };
  struct Case {
    const char* expression;
    Shape shape;
  };
  for (const Case& c : {Case{"causal & alibi", Shape{2, 4, 2, 100, 130, 32, 32}},
                        Case{"strided(stride=16)", Shape{1, 2, 1, 600, 600, 32, 32}},
                        Case{"fixed(block=32, summary=3) & softcap(cap=3)", Shape{1, 2, 2, 333, 640, 16, 24}},
                        Case{"causal & document", Shape{2, 2, 1, 200, 200, 64, 64}},
                        Case{"causal & relative", Shape{1, 2, 2, 90, 90, 32, 16}},
                        Case{"sliding_window(window=20) & alibi & hardmax", Shape{1, 2, 1, 70, 90, 32, 32}}}) {
    SCOPED_TRACE(c.expression);
    const Shape& s = c.shape;
    ir::Pattern pattern = instantiate(c.expression);
    std::mt19937_64 rng(21);
    runtime::Tensor q = random_tensor({s.B, s.H, s.N, s.D}, rng);
    runtime::Tensor k = random_tensor({s.B, s.Hkv, s.M, s.D}, rng);
    runtime::Tensor v = random_tensor({s.B, s.Hkv, s.M, s.Dv}, rng);
    runtime::Tensor rel = random_tensor({s.H, 9, s.D}, rng, 0.5f);
    runtime::Tensor segments(runtime::DType::Int32, {s.B, s.M});
    for (int64_t e = 0; e < segments.numel(); ++e) segments.data<int32_t>()[e] = static_cast<int32_t>(e % s.M / 70);
    runtime::Tensor qr = round_to_bf16(q), kr = round_to_bf16(k), vr = round_to_bf16(v);
    targets::AttentionInputs inputs{&q, &k, &v, {}, std::nullopt};
    targets::AttentionInputs rounded{&qr, &kr, &vr, {}, std::nullopt};
    for (auto* in : {&inputs, &rounded}) {
      if (pattern.input("segments")) in->tensors["segments"] = &segments;
      if (pattern.input("rel")) in->tensors["rel"] = &rel;
    }
    cpu::CpuOptions options;
    options.storage = cpu::StorageType::BFloat16;
    const std::vector<double> expected = reference::attention_f64(pattern, rounded);
    const runtime::Tensor got = cpu::attention(pattern, inputs, options);
    double worst = 0, max_v = 0;
    for (size_t e = 0; e < expected.size(); ++e) {
      worst = std::max(worst, std::abs(got.data<float>()[e] - expected[e]));
      if (std::isnan(got.data<float>()[e])) worst = std::numeric_limits<double>::infinity();
    }
    for (int64_t e = 0; e < vr.numel(); ++e) max_v = std::max(max_v, std::abs(double{vr.data<float>()[e]}));
    EXPECT_LE(worst, 2e-4 + std::ldexp(max_v, -8));
  }
}

// Q, K and V given as bf16 tensors are read as they are: the same outputs as float32 inputs holding the same
// values, on the fused kernels, the hardmax kernel and (widened exactly) the scorings that project Q or K first.
TEST(CpuAttention, Bf16TensorsComputeAsTheirFloat32Values) {
  for (const char* expression : {"causal & alibi", "fixed(block=32, summary=3)", "causal & hardmax",
                                 "causal & bilinear", "causal & additive", "causal & document"}) {
    SCOPED_TRACE(expression);
    const ir::Pattern pattern = instantiate(expression);
    test::RandomProblem problem(pattern, Shape{2, 4, 2, 90, 110, 32, 16}, 23);
    cpu::CpuOptions options;
    options.storage = cpu::StorageType::BFloat16;
    const targets::ConvertedOperands bf16(problem.inputs, runtime::to_bfloat16);
    const targets::ConvertedOperands float32(bf16.inputs, runtime::bfloat16_to_float32);
    const runtime::Tensor from_float32 = cpu::attention(pattern, float32.inputs, options);
    const runtime::Tensor got = cpu::attention(pattern, bf16.inputs, options);
    ASSERT_EQ(got.shape(), from_float32.shape());
    for (int64_t e = 0; e < got.numel(); ++e) ASSERT_EQ(got.data<float>()[e], from_float32.data<float>()[e]) << e;
  }
}

TEST(CpuAttention, Bf16TensorsNeedBf16StorageAndOneElementType) {
  const ir::Pattern pattern = instantiate("causal");
  test::RandomProblem problem(pattern, Shape{1, 2, 2, 16, 16, 8, 8}, 3);
  const targets::ConvertedOperands bf16(problem.inputs, runtime::to_bfloat16);
  test::expect_error<runtime::TensorError>([&] { cpu::attention(pattern, bf16.inputs); }, {"need bf16 storage"});
  targets::AttentionInputs mixed = problem.inputs;
  mixed.k = &bf16.k;
  cpu::CpuOptions options;
  options.storage = cpu::StorageType::BFloat16;
  test::expect_error<runtime::TensorError>([&] { cpu::attention(pattern, mixed, options); }, {"one element type"});
  test::expect_error<runtime::TensorError>([&] { reference::attention(pattern, bf16.inputs); }, {"must be float32"});
}

TEST(CpuAttention, BadInputIsReportedNotComputed) {
  ir::Pattern pattern = instantiate("causal & document");
  std::mt19937_64 rng(6);
  runtime::Tensor q = random_tensor({1, 2, 8, 16}, rng);
  runtime::Tensor k = random_tensor({1, 2, 8, 16}, rng);
  runtime::Tensor v = random_tensor({1, 2, 8, 16}, rng);
  targets::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  EXPECT_THROW(cpu::attention(pattern, inputs), ir::EvalError);  // segments missing
  runtime::Tensor k_bad = random_tensor({1, 2, 8, 8}, rng);
  inputs.k = &k_bad;
  EXPECT_THROW(cpu::attention(instantiate("causal"), inputs), runtime::TensorError);
}

}  // namespace
}  // namespace tessera
