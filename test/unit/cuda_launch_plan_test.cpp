// The CUDA target's tile walk, on the host: the blocks of every launch, the key tiles each visits and the slots
// they write must compute every allowed pair exactly once (FULL tiles hold only allowed pairs; PARTIAL ones
// evaluate the mask), and no two blocks may write the same row of the same slot.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "compiler/ir/evaluate.h"
#include "runtime/tensor.h"
#include "targets/cuda/launch_plan.h"
#include "test/unit/prelude_patterns.h"

namespace tessera {
namespace {

struct Case {
  std::string expression;
  int64_t N, M, block_m, block_n, kv_splits;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.expression << " N=" << c.N << " M=" << c.M << " tiles " << c.block_m << "x" << c.block_n
      << " splits=" << c.kv_splits;
}

class CudaTileWalk : public ::testing::TestWithParam<Case> {};

TEST_P(CudaTileWalk, EveryAllowedPairExactlyOnce) {
  const Case& c = GetParam();
  const ir::Pattern pattern = test::instantiate(c.expression);
  ir::AttentionSizes sz;
  sz.B = 2;
  sz.H = 2;
  sz.Hkv = 1;
  sz.N = c.N;
  sz.M = c.M;
  sz.D = 64;
  sz.Dv = 64;
  runtime::Tensor segments(runtime::DType::Int32, {sz.B, sz.M});
  for (int64_t b = 0; b < sz.B; ++b)
    for (int64_t m = 0; m < sz.M; ++m)
      segments.data<int32_t>()[b * sz.M + m] = static_cast<int32_t>((m * 3) / sz.M + b);
  std::map<std::string, ir::TensorView> views;
  std::map<std::string, std::vector<int64_t>> shapes;
  if (pattern.input("segments")) {
    views["segments"] = {ir::ElemType::Int32, segments.shape(), segments.data<int32_t>()};
    shapes["segments"] = segments.shape();
  }
  cuda::LaunchOptions options;
  options.schedule.block_m = c.block_m;
  options.schedule.block_n = c.block_n;
  options.schedule.kv_splits = c.kv_splits;
  options.multiprocessors = 16;
  options.classify.B = sz.B;
  options.classify.H = sz.H;
  const cuda::LaunchPlan plan = cuda::make_launch_plan(pattern, sz, shapes, options);
  ASSERT_EQ(plan.components.size(), plan.plan.components.size());

  const ir::PatternEvaluator whole(pattern, sz, views, 1.0);
  for (int64_t b = 0; b < sz.B; ++b) {
    std::vector<int> computed(static_cast<size_t>(sz.N * sz.M), 0);
    for (size_t component = 0; component < plan.components.size(); ++component) {
      const ir::PatternEvaluator part(plan.plan.components[component].original, sz, views, 1.0);
      for (const cuda::VisitedPair& pair : cuda::visited_pairs(plan, component)) {
        const bool allowed = part.allowed(b, 0, pair.i, pair.j);
        if (!pair.masked) {
          ASSERT_TRUE(allowed) << "a FULL tile holds the disallowed pair (" << pair.i << ", " << pair.j
                               << ") of component " << component;
        }
        if (allowed) ++computed[static_cast<size_t>(pair.i * sz.M + pair.j)];
      }
    }
    for (int64_t i = 0; i < sz.N; ++i) {
      for (int64_t j = 0; j < sz.M; ++j) {
        ASSERT_EQ(computed[static_cast<size_t>(i * sz.M + j)], whole.allowed(b, 0, i, j) ? 1 : 0)
            << "pair (" << i << ", " << j << ") batch " << b;
      }
    }
  }

  // Hardmax breaks ties towards the lowest key: one block walks a row's keys in increasing order, unpermuted,
  // whatever split count was asked for.
  if (pattern.normalizer == ir::Normalizer::Hardmax) {
    ASSERT_EQ(plan.slots, 1);
    for (const cuda::ComponentLaunch& component : plan.components) {
      for (const tessera_cuda::ViewDesc& view : component.views) {
        EXPECT_EQ(view.keys.origin, 0);
        EXPECT_EQ(view.keys.stride, 1);
        EXPECT_EQ(view.keys.group, 1);
      }
      for (const tessera_cuda::BlockDesc& block : component.blocks) {
        for (int32_t t = block.tile_begin + 1; t < block.tile_end; ++t) {
          ASSERT_LT(tessera_cuda::entry_key_tile(component.tiles.at(static_cast<size_t>(t) - 1)),
                    tessera_cuda::entry_key_tile(component.tiles.at(static_cast<size_t>(t))));
        }
      }
    }
  }

  // One writer per (slot, row); slots in range.
  std::set<std::pair<int32_t, int64_t>> written;
  for (const cuda::ComponentLaunch& component : plan.components) {
    for (const tessera_cuda::BlockDesc& block : component.blocks) {
      ASSERT_GE(block.slot, 0);
      ASSERT_LT(block.slot, plan.slots);
      const tessera_cuda::ViewDesc& view = component.views.at(static_cast<size_t>(block.view));
      for (int64_t x = block.query_tile * plan.block_m;
           x < std::min<int64_t>((block.query_tile + 1) * plan.block_m, view.queries.count); ++x) {
        const int64_t row = tessera_cuda::original_index(view.queries, static_cast<int32_t>(x));
        ASSERT_TRUE(written.emplace(block.slot, row).second) << "row " << row << " of slot " << block.slot;
      }
    }
  }
}

const Case kCases[] = {
    {"full", 77, 150, 64, 64, 0},
    {"causal", 200, 200, 64, 32, 0},
    {"causal", 1, 300, 64, 32, 0},  // decoding: the keys are split across blocks
    {"causal", 5, 300, 16, 16, 4},
    {"sliding_window(window=19)", 150, 150, 32, 16, 0},
    {"strided(stride=8)", 256, 256, 16, 16, 0},
    {"strided(stride=8)", 77, 150, 16, 16, 2},
    {"fixed(block=16, summary=3)", 150, 150, 16, 16, 0},
    {"dilated(window=6, dilation=3)", 120, 120, 16, 16, 0},
    {"local2d(width=12, block_h=3, block_w=4, halo_h=2, halo_w=1)", 144, 144, 32, 16, 0},
    // Column blocks: views of runs of 8 query columns (see ColumnBlockViewsOfRunsOfColumns)
    {"local2d(width=32, block_h=4, block_w=8, halo_h=4, halo_w=8)", 512, 512, 32, 32, 0},
    {"local2d(width=32, block_h=4, block_w=8, halo_h=4, halo_w=8)", 256, 512, 32, 32, 2},
    {"causal & document", 150, 150, 32, 32, 0},
    {"sliding_window(window=5) | strided(stride=16)", 200, 200, 16, 16, 0},
    {"causal - prefix_lm(prefix=40)", 100, 100, 32, 32, 0},
    {"causal & hardmax", 5, 300, 16, 16, 4},
    {"strided(stride=8) & hardmax", 256, 256, 16, 16, 0},
    {"fixed(block=16, summary=3) & sample(seed=1)", 150, 150, 16, 16, 2},
};

TEST(CudaLaunchPlan, ColumnBlockViewsOfRunsOfColumns) {
  ir::AttentionSizes sz;
  sz.N = sz.M = 512;
  sz.D = sz.Dv = 64;
  cuda::LaunchOptions options;
  options.schedule.block_m = options.schedule.block_n = 32;
  const cuda::LaunchPlan plan = cuda::make_launch_plan(
      test::instantiate("local2d(width=32, block_h=4, block_w=8, halo_h=4, halo_w=8)"), sz, {}, options);
  ASSERT_EQ(plan.plan.components.size(), 1u);
  EXPECT_EQ(plan.plan.components[0].kind, planner::ComponentKind::ColumnBlocks);
  EXPECT_EQ(plan.plan.components[0].query_group, 8);
}

INSTANTIATE_TEST_SUITE_P(Patterns, CudaTileWalk, ::testing::ValuesIn(kCases), [](const auto& info) {
  std::string name;
  for (char ch : info.param.expression) name += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return name + "_" + std::to_string(info.index);
});

}  // namespace
}  // namespace tessera
