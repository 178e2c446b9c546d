#include "compiler/analysis/tile_classification.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "compiler/analysis/pattern_stats.h"
#include "test/unit/standard_masks_ir.h"

namespace tessera::analysis {
namespace {

using namespace testing::mask_ir;
using ir::BinaryOp;
using testing::mask_pattern;

ClassifyOptions intervals_only() {
  ClassifyOptions o;
  o.enumerate_limit = 0;
  o.split_budget = 0;
  return o;
}

TEST(TileClassification, CausalIsExactFromIntervalsAlone) {
  TileMap map = classify_tiles(mask_pattern("causal", causal()), 256, 256, 64, 64, intervals_only());
  ASSERT_EQ(map.rows, 4);
  ASSERT_EQ(map.cols, 4);
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 4; ++c) {
      TileKind expected = r == c ? TileKind::Partial : (r > c ? TileKind::Full : TileKind::Empty);
      EXPECT_EQ(map.at(r, c), expected) << r << "," << c;
    }
  }
  EXPECT_EQ(map.empty, 6);
  EXPECT_EQ(map.full, 6);
  EXPECT_EQ(map.partial, 4);
}

TEST(TileClassification, QueriesSitAtTheEndOfTheKeys) {
  // N = 64 queries over M = 128 keys: query row i sits at position q = i + 64.
  TileMap map = classify_tiles(mask_pattern("causal", causal()), 64, 128, 64, 64, intervals_only());
  EXPECT_EQ(map.at(0, 0), TileKind::Full);
  EXPECT_EQ(map.at(0, 1), TileKind::Partial);
}

TEST(TileClassification, SlidingWindowAndFixedBlocksAreExact) {
  TileMap w64 = classify_tiles(mask_pattern("sw", sliding_window(64)), 512, 512, 64, 64, intervals_only());
  EXPECT_EQ(w64.full, 0);
  EXPECT_EQ(w64.partial, 15);
  EXPECT_EQ(w64.empty, 49);
  TileMap w128 = classify_tiles(mask_pattern("sw", sliding_window(128)), 512, 512, 64, 64, intervals_only());
  EXPECT_EQ(w128.full, 7);  // one block below the diagonal: 1 <= q - k <= 127
  EXPECT_EQ(w128.partial, 14);
  EXPECT_EQ(w128.empty, 43);
  TileMap local128 = classify_tiles(mask_pattern("local", local(128)), 512, 512, 64, 64, intervals_only());
  EXPECT_EQ(local128.full, 8 + 7 + 7);  // |q - k| <= 127 within one block of the diagonal
  EXPECT_EQ(local128.partial, 6 + 6);
  // fixed(block=128, summary=0): the query's own 128-block, causally. Tile (2c+1, 2c) is Full.
  TileMap fixed128 = classify_tiles(mask_pattern("fixed", fixed(128, 0)), 512, 512, 64, 64, intervals_only());
  EXPECT_EQ(fixed128.full, 4);
  EXPECT_EQ(fixed128.partial, 8);
  EXPECT_EQ(fixed128.empty, 52);
  EXPECT_EQ(fixed128.at(3, 2), TileKind::Full);
  EXPECT_EQ(fixed128.at(4, 3), TileKind::Empty);
  // prefix_lm(100): above the diagonal, keys below 100 are allowed.
  TileMap prefix = classify_tiles(mask_pattern("prefix", prefix_lm(100)), 256, 256, 64, 64, intervals_only());
  EXPECT_EQ(prefix.at(0, 1), TileKind::Partial);
  EXPECT_EQ(prefix.at(2, 1), TileKind::Full);
  EXPECT_EQ(prefix.at(0, 2), TileKind::Empty);
}

TEST(TileClassification, EnumerationAndSplittingDecideWhatIntervalsCannot) {
  // d < 5 || d > 4 is always true, but intervals see two independent unknowns (and the simplifier, which folds
  // d < 5 || d >= 5, does not compare constants).
  ir::Expr tautology = any(op(BinaryOp::Lt, d(), c(5)), op(BinaryOp::Gt, d(), c(4)));
  ir::Pattern p = mask_pattern("tautology", tautology);
  Tile tile{0, 16, 0, 16};
  EXPECT_EQ(classify_tile(p, 64, 64, tile, intervals_only()), TileKind::Partial);
  EXPECT_EQ(classify_tile(p, 64, 64, tile), TileKind::Full);  // enumerated
  ClassifyOptions split_only = intervals_only();
  split_only.split_budget = 1000;
  EXPECT_EQ(classify_tile(p, 64, 64, tile, split_only), TileKind::Full);
  // A mixed tile is Partial either way.
  EXPECT_EQ(classify_tile(mask_pattern("strided", strided(8)), 64, 64, Tile{16, 32, 0, 16}), TileKind::Partial);
}

TEST(TileClassification, HeadsAreEnumeratedOnlyWhenKnown) {
  ir::Expr h = ir::var(ir::Var::Head);
  ir::Expr even_head_or_causal = any(op(BinaryOp::Eq, op(BinaryOp::Mod, h, c(2)), c(0)), causal());
  ir::Pattern p = mask_pattern("heads", even_head_or_causal);
  ClassifyOptions with_heads;
  with_heads.H = 1;  // only head 0: always true
  EXPECT_EQ(classify_tile(p, 64, 64, Tile{0, 8, 32, 40}, with_heads), TileKind::Full);
  with_heads.H = 2;  // head 1 is causal: above the diagonal it differs
  EXPECT_EQ(classify_tile(p, 64, 64, Tile{0, 8, 32, 40}, with_heads), TileKind::Partial);
  EXPECT_EQ(classify_tile(p, 64, 64, Tile{40, 48, 0, 8}, with_heads), TileKind::Full);
  // Unknown H: h ranges over [0, +inf), h % 2 is unknown; below the diagonal it is still Full.
  EXPECT_EQ(classify_tile(p, 64, 64, Tile{0, 8, 32, 40}), TileKind::Partial);
  EXPECT_EQ(classify_tile(p, 64, 64, Tile{40, 48, 0, 8}), TileKind::Full);
  ir::Pattern within = mask_pattern("h<H", op(BinaryOp::Lt, h, ir::var(ir::Var::Heads)));
  ClassifyOptions four;
  four.H = 4;
  EXPECT_EQ(classify_tiles(within, 64, 64, 16, 16, four).full, 16);
}

TEST(TileClassification, TensorMasksAreNeverGuessed) {
  ir::Expr seg_q = ir::load("segments", ir::ElemType::Int32, {ir::var(ir::Var::Batch), q()});
  ir::Expr seg_k = ir::load("segments", ir::ElemType::Int32, {ir::var(ir::Var::Batch), k()});
  ir::Pattern document = mask_pattern("document", all(causal(), op(BinaryOp::Eq, seg_q, seg_k)));
  TileMap map = classify_tiles(document, 128, 128, 32, 32);
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t c = 0; c < 4; ++c) EXPECT_EQ(map.at(r, c), r < c ? TileKind::Empty : TileKind::Partial);
  }
  EXPECT_FALSE(mask_enumerability(document).possible);
  EXPECT_TRUE(mask_enumerability(mask_pattern("causal", causal())).possible);
}

// Refining a map of coarser tiles classifies only what lies under its PARTIAL tiles: the result must equal
// classifying the finer tiles from scratch, on ragged matrices and for every way of subdividing.
TEST(TileClassification, RefiningACoarserMapEqualsClassifyingAfresh) {
  const std::vector<std::pair<std::string, ir::Expr>> masks = {{"causal", causal()},
                                                               {"strided", strided(24)},
                                                               {"fixed", fixed(40, 6)},
                                                               {"dilated", dilated(8, 3)},
                                                               {"local2d", local2d(20, 4, 4, 2, 3)},
                                                               {"prefix", prefix_lm(50)},
                                                               {"window", sliding_window(33)}};
  for (const auto& [name, mask] : masks) {
    const ir::Pattern p = mask_pattern(name, mask);
    for (const auto& [N, M] : {std::pair<int64_t, int64_t>{300, 300}, {130, 250}, {257, 64}}) {
      for (const ClassifyOptions& options : {ClassifyOptions{}, intervals_only()}) {
        const TileMap coarse = classify_tiles(p, N, M, 64, 32, options);
        for (const auto& [bq, bk] : {std::pair<int64_t, int64_t>{32, 32}, {64, 16}, {16, 8}, {64, 32}}) {
          SCOPED_TRACE(fmt::format("{} N={} M={} {}x{}", name, N, M, bq, bk));
          const TileMap fresh = classify_tiles(p, N, M, bq, bk, options);
          const TileMap refined = classify_tiles(p, N, M, bq, bk, options, &coarse);
          EXPECT_EQ(refined.rows, fresh.rows);
          EXPECT_EQ(refined.cols, fresh.cols);
          EXPECT_EQ(refined.kinds, fresh.kinds);
          EXPECT_EQ(refined.partial, fresh.partial);
        }
      }
    }
  }
  const ir::Pattern p = mask_pattern("causal", causal());
  const TileMap coarse = classify_tiles(p, 100, 100, 64, 32);
  EXPECT_THROW(classify_tiles(p, 100, 100, 48, 32, {}, &coarse), std::invalid_argument) << "48 does not divide 64";
  EXPECT_THROW(classify_tiles(p, 100, 100, 64, 64, {}, &coarse), std::invalid_argument) << "wider than the map's";
  EXPECT_THROW(classify_tiles(p, 100, 90, 32, 32, {}, &coarse), std::invalid_argument) << "another matrix";
}

TEST(TileClassification, RaggedTilesAndBadInput) {
  TileMap map = classify_tiles(mask_pattern("causal", causal()), 100, 70, 64, 32);
  EXPECT_EQ(map.rows, 2);
  EXPECT_EQ(map.cols, 3);
  Tile last = map.tile(1, 2);
  EXPECT_EQ(last.i0, 64);
  EXPECT_EQ(last.i1, 100);
  EXPECT_EQ(last.j0, 64);
  EXPECT_EQ(last.j1, 70);
  EXPECT_EQ(map.empty + map.full + map.partial, map.rows * map.cols);
  TileMap none = classify_tiles(mask_pattern("causal", causal()), 0, 70, 64, 32);
  EXPECT_EQ(none.rows, 0);
  EXPECT_TRUE(none.kinds.empty());
  ir::Pattern p = mask_pattern("causal", causal());
  EXPECT_THROW(classify_tiles(p, -1, 70, 64, 32), std::invalid_argument);
  EXPECT_THROW(classify_tiles(p, 10, 70, 0, 32), std::invalid_argument);
  EXPECT_THROW(classify_tile(p, 10, 10, Tile{5, 5, 0, 1}), std::invalid_argument);
  EXPECT_THROW(classify_tile(p, 10, 10, Tile{0, 11, 0, 1}), std::invalid_argument);
  ClassifyOptions bad;
  bad.H = 0;
  EXPECT_THROW(classify_tiles(p, 10, 10, 4, 4, bad), std::invalid_argument);
  EXPECT_THROW(classify_tiles(p, int64_t{1} << 40, int64_t{1} << 40, 1, 1), std::invalid_argument);
}

TEST(PatternStats, CountsAllowedPairsExactly) {
  PatternStats causal_stats = pattern_stats(mask_pattern("causal", causal()), 100, 100, 16, 16);
  ASSERT_TRUE(causal_stats.allowed_pairs.has_value());
  EXPECT_EQ(*causal_stats.allowed_pairs, 100 * 101 / 2);
  EXPECT_EQ(causal_stats.total_pairs, 10000);
  EXPECT_DOUBLE_EQ(*causal_stats.density, 5050.0 / 10000.0);
  EXPECT_EQ(causal_stats.tiles.rows, 7);
  // N < M: row i sees keys 0..i + M - N.
  PatternStats offset = pattern_stats(mask_pattern("causal", causal()), 10, 30, 4, 4);
  EXPECT_EQ(*offset.allowed_pairs, 21 + 22 + 23 + 24 + 25 + 26 + 27 + 28 + 29 + 30);
  // sliding_window(8) on 64 x 64: rows 0..6 see i + 1 keys, the rest 8.
  PatternStats window = pattern_stats(mask_pattern("sw", sliding_window(8)), 64, 64, 16, 16);
  EXPECT_EQ(*window.allowed_pairs, (1 + 2 + 3 + 4 + 5 + 6 + 7) + 57 * 8);
  ir::Expr seg = ir::load("segments", ir::ElemType::Int32, {ir::var(ir::Var::Batch), q()});
  PatternStats unknown = pattern_stats(mask_pattern("doc", op(BinaryOp::Eq, seg, seg)), 64, 64);
  EXPECT_FALSE(unknown.allowed_pairs.has_value());
  EXPECT_FALSE(unknown.density.has_value());
}

TEST(PatternStats, RendersAsciiPictures) {
  EXPECT_EQ(render_mask_ascii(mask_pattern("causal", causal()), 3, 4),
            "##..\n"
            "###.\n"
            "####\n");
  // 128 x 128 causal in 32 x 64 cells of 4 x 2 pairs: cell (r, c) covers rows 4r..4r+3, columns 2c..2c+1.
  std::string big = render_mask_ascii(mask_pattern("causal", causal()), 128, 128);
  ASSERT_EQ(big.size(), 32u * 65u);
  for (int r = 0; r < 32; ++r) {
    for (int c = 0; c < 64; ++c) {
      char expected = 2 * c + 1 <= 4 * r ? '#' : (2 * c > 4 * r + 3 ? ' ' : '+');
      ASSERT_EQ(big[static_cast<size_t>(r * 65 + c)], expected) << r << "," << c;
    }
    ASSERT_EQ(big[static_cast<size_t>(r * 65 + 64)], '\n');
  }
  ir::Expr seg = ir::load("segments", ir::ElemType::Int32, {ir::var(ir::Var::Batch), q()});
  ir::Pattern doc = mask_pattern("doc", all(causal(), op(BinaryOp::Eq, seg, seg)));
  EXPECT_EQ(render_mask_ascii(doc, 2, 2), "?.\n??\n");
  EXPECT_EQ(render_mask_ascii(mask_pattern("causal", causal()), 0, 5), "");
}

TEST(PatternStats, MaskMatrixMatchesTheMask) {
  MaskMatrix m = mask_matrix(mask_pattern("sw", sliding_window(5)), 150, 200);
  ASSERT_EQ(m.rows, 150);
  ASSERT_EQ(m.cols, 200);
  for (int64_t i = 0; i < 150; ++i) {
    for (int64_t j = 0; j < 200; ++j) {
      int64_t d = i + 50 - j;
      ASSERT_EQ(m.at(i, j), d >= 0 && d < 5 ? 1 : 0) << i << "," << j;
    }
  }
  ir::Expr seg = ir::load("segments", ir::ElemType::Int32, {ir::var(ir::Var::Batch), q()});
  EXPECT_THROW(mask_matrix(mask_pattern("doc", op(BinaryOp::Eq, seg, seg)), 4, 4), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::analysis
