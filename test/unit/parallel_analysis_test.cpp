// Maps large enough to be analysed on several threads (compiler/analysis/parallel_rows.h) give what one thread
// gives: every tile classified as the classifier decides it alone, allowed pairs counted as brute force counts
// them; and the row blocks behind them cover every row exactly once and pass exceptions on.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

#include "compiler/analysis/parallel_rows.h"
#include "compiler/analysis/pattern_stats.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "test/unit/standard_masks_ir.h"

namespace tessera::analysis {
namespace {

namespace m = testing::mask_ir;

TEST(ParallelAnalysis, RowBlocksCoverEveryRowOnce) {
  for (int64_t rows : {0, 1, 7, 8, 9, 63, 1000}) {
    for (int64_t threads : {1, 2, 3, 8}) {
      std::vector<std::atomic<int>> visits(static_cast<size_t>(rows));
      for_each_row_block(rows, threads, [&](int64_t begin, int64_t end) {
        ASSERT_LE(0, begin);
        ASSERT_LT(begin, end);
        ASSERT_LE(end, rows);
        for (int64_t r = begin; r < end; ++r) ++visits[static_cast<size_t>(r)];
      });
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(visits[static_cast<size_t>(r)].load(), 1) << "row " << r << " of " << rows << ", " << threads;
      }
    }
  }
}

TEST(ParallelAnalysis, AnExceptionInABlockReachesTheCaller) {
  for (int64_t threads : {1, 2, 4}) {
    EXPECT_THROW(for_each_row_block(4096, threads,
                                    [&](int64_t begin, int64_t end) {
                                      if (begin <= 64 && 64 < end) throw std::runtime_error("row 64");
                                    }),
                 std::runtime_error)
        << threads << " threads";
  }
}

// Patterns whose maps have partial tiles of every kind of difficulty: diagonals (strided), columns (fixed),
// both at once with a ragged edge.
std::vector<ir::Pattern> large_map_patterns() {
  return {testing::mask_pattern("strided", m::strided(96)), testing::mask_pattern("fixed", m::fixed(80, 6)),
          testing::mask_pattern("sliding_or_strided", m::any(m::sliding_window(40), m::strided(70)))};
}

TEST(ParallelAnalysis, LargeMapsClassifyEveryTileAsTheClassifierAloneDoes) {
  const int64_t N = 3000, M = 4100, block_q = 32, block_k = 24;  // ragged last row and column of tiles
  for (const ir::Pattern& pattern : large_map_patterns()) {
    const TileMap map = classify_tiles(pattern, N, M, block_q, block_k);
    ASSERT_GE(map.rows * map.cols, kMinTilesForThreads) << "the map must be large enough to use threads";
    const TileClassifier alone(pattern, N, M, ClassifyOptions{});
    int64_t mismatches = 0, empty = 0, full = 0, partial = 0;
    for (int64_t r = 0; r < map.rows; ++r) {
      for (int64_t c = 0; c < map.cols; ++c) {
        const TileKind kind = map.at(r, c);
        mismatches += kind != alone.classify(map.tile(r, c));
        (kind == TileKind::Empty ? empty : kind == TileKind::Full ? full : partial) += 1;
      }
    }
    EXPECT_EQ(mismatches, 0) << pattern.name;
    EXPECT_EQ(map.empty, empty) << pattern.name;
    EXPECT_EQ(map.full, full) << pattern.name;
    EXPECT_EQ(map.partial, partial) << pattern.name;
    EXPECT_GT(partial, 0) << pattern.name;
  }
}

TEST(ParallelAnalysis, LargeMapsCountAllowedPairsAsBruteForceDoes) {
  const int64_t N = 2000, M = 2300, block_q = 16, block_k = 16;
  for (const ir::Pattern& pattern : large_map_patterns()) {
    const PatternStats stats = pattern_stats(pattern, N, M, block_q, block_k);
    ASSERT_GE(stats.tiles.rows * stats.tiles.cols, kMinTilesForThreads);
    int64_t allowed = 0;
    ir::EvalEnv env;
    env.set(ir::Var::N, N);
    env.set(ir::Var::M, M);
    for (int64_t i = 0; i < N; ++i) {
      env.set(ir::Var::I, i);
      env.set(ir::Var::Q, i + M - N);
      for (int64_t j = 0; j < M; ++j) {
        env.set(ir::Var::J, j);
        env.set(ir::Var::K, j);
        allowed += ir::evaluate(pattern.mask, env).b;
      }
    }
    EXPECT_EQ(stats.allowed_pairs, allowed) << pattern.name;
  }
}

}  // namespace
}  // namespace tessera::analysis
