#include "compiler/cli/allowed_pairs.h"

#include "compiler/analysis/tensor_value_bounds.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/simplify.h"
#include "compiler/planner/allowed_pairs.h"

namespace tessera::cli {

namespace {

// The mask with b, h and H fixed, so the analysis can count it exactly like a pattern of one head.
ir::Pattern for_batch_and_head(const ir::Pattern& pattern, int64_t b, int64_t h, int64_t H) {
  ir::Pattern one = pattern;
  ir::Expr mask = ir::substitute(pattern.mask, ir::Var::Batch, ir::int_imm(b));
  mask = ir::substitute(mask, ir::Var::Head, ir::int_imm(h));
  mask = ir::substitute(mask, ir::Var::Heads, ir::int_imm(H));
  one.mask = ir::simplify(mask);
  return one;
}

}  // namespace

int64_t count_allowed_pairs(const ir::Pattern& pattern, const ir::AttentionSizes& sizes,
                            const targets::AttentionInputs& inputs) {
  if (!pattern.has_mask()) return sizes.B * sizes.H * sizes.N * sizes.M;
  if (!ir::uses_tensors(pattern.mask)) {
    bool reads_b = ir::uses_var(pattern.mask, ir::Var::Batch);
    bool reads_h = ir::uses_var(pattern.mask, ir::Var::Head);
    analysis::ClassifyOptions options;
    options.B = sizes.B;
    options.H = sizes.H;
    options.D = sizes.D;
    int64_t total = 0;
    bool exact = true;
    for (int64_t b = 0; exact && b < (reads_b ? sizes.B : 1); ++b) {
      for (int64_t h = 0; exact && h < (reads_h ? sizes.H : 1); ++h) {
        const std::optional<int64_t> allowed =
            planner::count_allowed_pairs(for_batch_and_head(pattern, b, h, sizes.H), sizes.N, sizes.M, options);
        if (allowed) {
          total += *allowed;
        } else {
          exact = false;
        }
      }
    }
    if (exact) return total * (reads_b ? 1 : sizes.B) * (reads_h ? 1 : sizes.H);
  }
  // Counted in place rather than through analysis::mask_matrix, which would materialise N x M bytes per head, and
  // pair by pair only in the tiles the tensors' values leave undecided: a tile the intervals prove EMPTY or FULL
  // for every batch and head (causal & document at N=16384: all but the diagonal's and the documents' edges) is
  // counted whole. Evaluating all N x M pairs there took 14 s of a bench whose kernel takes 0.8 s.
  targets::RuntimeTensorViews views = targets::runtime_tensor_views(pattern, inputs);
  ir::PatternEvaluator evaluator(pattern, sizes, views.views, targets::attention_scale(pattern, inputs, sizes));
  analysis::ClassifyOptions options;
  options.B = sizes.B;
  options.H = sizes.H;
  options.D = sizes.D;
  options.load_bounds = analysis::make_load_bounds(views.views);
  // 64 x 64 tiles, wider where that would be more than 2^24 of them (the classifier takes at most 2^26).
  int64_t tile = 64;
  while (((sizes.N + tile - 1) / tile) * ((sizes.M + tile - 1) / tile) > (int64_t{1} << 24)) tile *= 2;
  const analysis::TileMap map = analysis::classify_tiles(pattern, sizes.N, sizes.M, tile, tile, options);
  // Heads share a count unless the mask reads h (document reads only b): count one and multiply.
  const bool reads_h = ir::uses_var(pattern.mask, ir::Var::Head);
  const int64_t heads = reads_h ? sizes.H : 1;
  int64_t total = 0;
  for (int64_t r = 0; r < map.rows; ++r) {
    for (int64_t c = 0; c < map.cols; ++c) {
      const analysis::Tile t = map.tile(r, c);
      switch (map.at(r, c)) {
        case analysis::TileKind::Empty: break;
        case analysis::TileKind::Full: total += (t.i1 - t.i0) * (t.j1 - t.j0) * sizes.B * heads; break;
        case analysis::TileKind::Partial:
          for (int64_t b = 0; b < sizes.B; ++b) {
            for (int64_t h = 0; h < heads; ++h) {
              for (int64_t i = t.i0; i < t.i1; ++i) {
                for (int64_t j = t.j0; j < t.j1; ++j) total += evaluator.allowed(b, h, i, j);
              }
            }
          }
          break;
      }
    }
  }
  return total * (reads_h ? 1 : sizes.H);
}

}  // namespace tessera::cli
