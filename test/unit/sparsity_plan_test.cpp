// The sparsity planner: every plan, checked by counting, computes each allowed pair exactly once and no other
// pair; re-indexing is chosen from the mask's structure, whatever the pattern is called.
#include "compiler/planner/sparsity_plan.h"

#include <gtest/gtest.h>

#include "compiler/analysis/pattern_stats.h"
#include "compiler/ir/evaluate.h"
#include "compiler/planner/allowed_pairs.h"
#include "compiler/sema/pattern_library.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera::planner {
namespace {

ir::Pattern instantiate(const std::string& expression, const std::string& spec = "") {
  static sema::PatternLibrary library;
  dsl::Diagnostics diags;
  if (!spec.empty()) {
    sema::PatternLibrary with_spec;
    with_spec.add_file(std::make_shared<dsl::SourceFile>("spec.attn", spec), diags);
    EXPECT_FALSE(diags.has_errors()) << diags.str();
    auto p = with_spec.instantiate(expression, diags);
    EXPECT_TRUE(p.has_value()) << diags.str();
    return *p;
  }
  auto p = library.instantiate(expression, diags);
  EXPECT_TRUE(p.has_value()) << diags.str();
  return *p;
}

ir::AttentionSizes sizes(int64_t N, int64_t M) {
  ir::AttentionSizes s;
  s.N = N;
  s.M = M;
  s.D = s.Dv = 4;
  return s;
}

// Counts, for every original pair, how many (component, view, local pair) compute it.
void expect_exact_cover(const ir::Pattern& pattern, int64_t N, int64_t M, const Plan& plan) {
  std::vector<int> covered(static_cast<size_t>(N * M), 0);
  for (const Component& c : plan.components) {
    for (const View& v : c.views) {
      ir::Pattern bound = bind_view(c, v, N, M);
      ir::PatternEvaluator local(bound, sizes(v.queries.count, v.keys.count), {}, 1.0);
      for (int64_t i = 0; i < v.queries.count; ++i) {
        for (int64_t j = 0; j < v.keys.count; ++j) {
          if (!local.allowed(0, 0, i, j)) continue;
          int64_t oi = v.queries.original(i);
          int64_t oj = v.keys.original(j);
          ASSERT_TRUE(oi >= 0 && oi < N && oj >= 0 && oj < M) << c.description;
          ++covered[static_cast<size_t>(oi * M + oj)];
        }
      }
    }
  }
  ir::PatternEvaluator original(pattern, sizes(N, M), {}, 1.0);
  int wrong = 0;
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < M; ++j) {
      int expected = original.allowed(0, 0, i, j) ? 1 : 0;
      if (covered[static_cast<size_t>(i * M + j)] != expected && ++wrong <= 5) {
        ADD_FAILURE() << pattern.name << " N=" << N << " M=" << M << " pair (" << i << ", " << j << ") computed "
                      << covered[static_cast<size_t>(i * M + j)] << " times, allowed " << expected;
      }
    }
  }
}

ComponentKind kind_of_last(const Plan& plan) { return plan.components.back().kind; }

TEST(SparsityPlan, StridedIsSplitIntoABandAndResidueClasses) {
  ir::Pattern p = instantiate("strided(stride=16)");
  Plan plan = plan_pattern(p, 512, 512, {.block_q = 32, .block_k = 32});
  ASSERT_EQ(plan.components.size(), 2u);
  EXPECT_EQ(plan.components[0].kind, ComponentKind::TileSparse);
  EXPECT_EQ(plan.components[1].kind, ComponentKind::ResidueClasses);
  EXPECT_EQ(plan.components[1].views.size(), 16u);
  expect_exact_cover(p, 512, 512, plan);
  // Far fewer pairs than the tile-sparse plan, whose tiles nearly all hold a stride-16 pair.
  Plan tiles_only = plan_pattern(p, 512, 512, {.block_q = 32, .block_k = 32, .allow_reindexing = false});
  EXPECT_LT(pairs_computed(plan, {.block_q = 32, .block_k = 32}) * 2,
            pairs_computed(tiles_only, {.block_q = 32, .block_k = 32}));
}

TEST(SparsityPlan, FixedIsSplitIntoBlocksAndSummaryColumns) {
  ir::Pattern p = instantiate("fixed(block=32, summary=4)");
  Plan plan = plan_pattern(p, 512, 512, {.block_q = 32, .block_k = 32});
  ASSERT_EQ(plan.components.size(), 2u);
  EXPECT_EQ(kind_of_last(plan), ComponentKind::ColumnSet);
  EXPECT_EQ(plan.components[1].views.size(), 1u);  // summary columns 28..31 of every block: one run
  expect_exact_cover(p, 512, 512, plan);
}

TEST(SparsityPlan, UserWrittenMasksGetTheSameKindOfPlan) {
  ir::Pattern strided_like = instantiate("mine", "pattern mine { mask: k <= q && ((q - k) % 64 == 0 || q - k < 32); }");
  Plan a = plan_pattern(strided_like, 1024, 1024, {.block_q = 64, .block_k = 64});
  EXPECT_EQ(kind_of_last(a), ComponentKind::ResidueClasses);
  expect_exact_cover(strided_like, 1024, 1024, a);

  ir::Pattern other_columns = instantiate("cols", "pattern cols { mask: k <= q && (k / 64 == q / 64 || k % 64 < 3); }");
  Plan b = plan_pattern(other_columns, 1024, 1024, {.block_q = 64, .block_k = 64});
  EXPECT_EQ(kind_of_last(b), ComponentKind::ColumnSet);
  expect_exact_cover(other_columns, 1024, 1024, b);

  // A residue with an offset, written the other way round.
  ir::Pattern offset = instantiate("off", "pattern off { mask: k <= q && (k - q + 5) % 32 == 0; }");
  Plan c = plan_pattern(offset, 700, 900, {.block_q = 64, .block_k = 64});
  EXPECT_EQ(kind_of_last(c), ComponentKind::ResidueClasses);
  expect_exact_cover(offset, 700, 900, c);
}

// Image Transformer blocks: a raster-order query tile spans whole image rows, so every key column of the rows it
// reaches; a view of one run of query columns needs only the key columns that run reaches (its block's columns
// and the halo), which the planner proves from the mask.
TEST(SparsityPlan, Local2dIsSplitIntoColumnBlocks) {
  ir::Pattern p = instantiate("local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)");
  const PlanOptions tiles{.block_q = 64, .block_k = 64};
  Plan plan = plan_pattern(p, 2048, 2048, tiles);
  ASSERT_EQ(plan.components.size(), 1u);
  const Component& blocks = plan.components[0];
  EXPECT_EQ(blocks.kind, ComponentKind::ColumnBlocks) << blocks.description;
  EXPECT_EQ(blocks.query_stride, 64);
  EXPECT_EQ(blocks.query_group, 8);  // one block's columns
  EXPECT_EQ(blocks.key_group, 24);   // the block's columns and 8 on each side
  ASSERT_EQ(blocks.views.size(), 8u);
  EXPECT_EQ(blocks.views[0].keys.origin, 0) << "the first block's halo lies outside the image: shifted in";
  EXPECT_EQ(blocks.views[3].keys.origin, 16);
  EXPECT_EQ(blocks.views[7].keys.origin, 40) << "the last block's halo likewise";
  EXPECT_EQ(disjoint_waves(blocks).size(), 1u) << "column blocks never share a query row";
  expect_exact_cover(p, 2048, 2048, plan);
  Plan tiles_only = plan_pattern(p, 2048, 2048, {.block_q = 64, .block_k = 64, .allow_reindexing = false});
  EXPECT_LE(pairs_computed(plan, tiles) * 2, pairs_computed(tiles_only, tiles));
  // Queries at the end of the keys, a whole number of rows after the first key: the same columns.
  Plan later = plan_pattern(p, 1024, 2048, tiles);
  EXPECT_EQ(kind_of_last(later), ComponentKind::ColumnBlocks);
  expect_exact_cover(p, 1024, 2048, later);
}

TEST(SparsityPlan, ColumnBlocksComeFromTheMaskNotItsName) {
  // Axial attention along image columns: one column per view, its own key column.
  ir::Pattern axial = instantiate("axial", "pattern axial { mask: k <= q && k % 32 == q % 32; }");
  Plan a = plan_pattern(axial, 1024, 1024, {.block_q = 32, .block_k = 32});
  ASSERT_EQ(kind_of_last(a), ComponentKind::ColumnBlocks);
  EXPECT_EQ(a.components[0].query_group, 1);
  EXPECT_EQ(a.components[0].key_group, 1);
  EXPECT_EQ(a.components[0].views.size(), 32u);
  expect_exact_cover(axial, 1024, 1024, a);
  // Blocks of 4 columns reaching the next block only, written with different arithmetic.
  ir::Pattern next = instantiate("next", R"(pattern next {
    let cq = q - q / 48 * 48;
    mask: abs(k - q) < 480 && k % 48 / 4 >= cq / 4 && k % 48 / 4 <= cq / 4 + 1;
  })");
  Plan b = plan_pattern(next, 960, 960, {.block_q = 32, .block_k = 32});
  ASSERT_EQ(kind_of_last(b), ComponentKind::ColumnBlocks);
  EXPECT_EQ(b.components[0].query_group, 4);
  EXPECT_EQ(b.components[0].key_group, 8);
  expect_exact_cover(next, 960, 960, b);
  // Every key column reachable from every query column: nothing to split.
  ir::Pattern wide = instantiate("local2d(width=16, block_h=4, block_w=8, halo_h=4, halo_w=8)");
  for (const Component& c : plan_pattern(wide, 512, 512, {.block_q = 32, .block_k = 32}).components) {
    EXPECT_NE(c.kind, ComponentKind::ColumnBlocks);
  }
}

TEST(SparsityPlan, EveryPlanCoversEachAllowedPairExactlyOnce) {
  const std::vector<std::string> patterns = {"causal",
                                             "strided(stride=8)",
                                             "strided(stride=7)",
                                             "fixed(block=16, summary=2)",
                                             "dilated(window=5, dilation=9)",
                                             "sliding_window(window=20) | strided(stride=12)",
                                             "causal - strided(stride=10)",
                                             "fixed(block=8, summary=8)",
                                             "local2d(width=16, block_h=4, block_w=4, halo_h=2, halo_w=2)",
                                             "local2d(width=12, block_h=2, block_w=3, halo_h=1, halo_w=2)",
                                             "strided(stride=9) & alibi"};
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{100, 100}, {37, 150}, {150, 37}, {1, 64}, {257, 300}};
  for (const auto& text : patterns) {
    ir::Pattern p = instantiate(text);
    for (auto [N, M] : shapes) {
      for (int64_t bq : {16, 64}) {
        Plan plan = plan_pattern(p, N, M, {.block_q = bq, .block_k = 16});
        expect_exact_cover(p, N, M, plan);
      }
    }
  }
}

// Counting through the plan (view by view) gives pattern_stats' count of the whole mask, for every pattern whose
// mask can be counted on its own, on square, wide and tall shapes.
TEST(SparsityPlan, CountingThroughThePlanMatchesCountingTheWholeMask) {
  std::vector<std::string> patterns = test::standard_pattern_cases();
  patterns.insert(patterns.end(), {"strided(stride=7)", "causal - strided(stride=10)", "fixed(block=8, summary=8)"});
  const analysis::ClassifyOptions options{.H = 2, .D = 4};
  int64_t reindexed = 0;
  for (const std::string& text : patterns) {
    const ir::Pattern p = instantiate(text);
    for (auto [N, M] : std::vector<std::pair<int64_t, int64_t>>{{300, 300}, {37, 450}, {450, 37}, {1, 500}}) {
      SCOPED_TRACE(testing::Message() << text << " N=" << N << " M=" << M);
      const std::optional<int64_t> whole = analysis::pattern_stats(p, N, M, 64, 64, options).allowed_pairs;
      EXPECT_EQ(count_allowed_pairs(p, N, M, options), whole);
      const Plan plan = plan_pattern(p, N, M, {.block_q = 16, .block_k = 16});
      EXPECT_EQ(count_allowed_pairs(plan, p, options), whole) << "any plan";
      reindexed += plan.components.size() > 1;
    }
  }
  EXPECT_GT(reindexed, 10) << "re-indexed plans were counted";
}

TEST(SparsityPlan, ViewsOfOneWaveSelectDisjointRows) {
  ir::Pattern p = instantiate("strided(stride=8)");
  Plan plan = plan_pattern(p, 256, 256, {.block_q = 32, .block_k = 32});
  const Component& residue = plan.components.back();
  auto waves = disjoint_waves(residue);
  EXPECT_EQ(waves.size(), 1u);  // the 8 classes never share a query row
  Plan fixed = plan_pattern(instantiate("fixed(block=16, summary=3)"), 256, 256, {.block_q = 32, .block_k = 32});
  EXPECT_EQ(disjoint_waves(fixed.components.back()).size(), 1u);  // one run of summary columns: one view
}

}  // namespace
}  // namespace tessera::planner
