// How much of the attention matrix a pattern keeps: exact counts, tile counts, and pictures of the mask
// (the ASCII one `tessera show` prints and the 0/1 matrix behind its PNG).
//
// Counting and pictures evaluate the mask point by point, skipping the tiles the interval analysis already
// proves Empty or Full. A mask that reads run-time tensors (or an index or size not given in the options)
// cannot be evaluated on its own; the functions say so instead of guessing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"

namespace tessera::analysis {

struct PatternStats {
  int64_t N = 0, M = 0;
  int64_t total_pairs = 0;               // N * M
  std::optional<int64_t> allowed_pairs;  // exact; nullopt when the mask cannot be evaluated on its own or
                                         // depends on the batch or head index
  std::optional<double> density;         // allowed / total; nullopt when unknown or total is 0
  TileMap tiles;                         // classified in block_q x block_k tiles
};

// Statistics of `pattern` on an N x M matrix (queries x keys). Throws std::invalid_argument for bad sizes.
// count_pairs false leaves allowed_pairs and density unset: counting is what costs (see
// planner/allowed_pairs.h for a faster count of re-indexable masks).
PatternStats pattern_stats(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q = 64, int64_t block_k = 64,
                           const ClassifyOptions& options = {}, bool count_pairs = true);

struct AsciiOptions {
  // Matrices up to this many rows and columns are drawn one character per pair: '#' allowed, '.' not.
  int64_t full_resolution_limit = 64;
  // Larger ones are drawn in at most max_rows x max_cols cells: ' ' none allowed, '#' all allowed, '+' some.
  int64_t max_rows = 32;
  int64_t max_cols = 64;
  // Cells (and pairs) that cannot be decided exactly, because the mask reads run-time tensors or unknown
  // indices, or a cell is larger than classify.enumerate_limit points, are drawn as '?'.
  ClassifyOptions classify = {.enumerate_limit = int64_t{1} << 20};
};

// The picture of the mask, one line per row of pairs or cells, each ending in '\n'; "" for an empty matrix.
std::string render_mask_ascii(const ir::Pattern& pattern, int64_t N, int64_t M, const AsciiOptions& options = {});

// A rows x cols matrix of 0/1 (1: the pair is allowed), row-major.
struct MaskMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> allowed;

  uint8_t at(int64_t row, int64_t col) const { return allowed[static_cast<size_t>(row * cols + col)]; }
};

// The full-resolution N x M mask. Throws std::invalid_argument when the mask cannot be evaluated on its own
// (it reads a run-time tensor, a symbol, or the batch or head index: use the evaluator overload) or when the
// matrix has more than 2^28 pairs.
MaskMatrix mask_matrix(const ir::Pattern& pattern, int64_t N, int64_t M, const ClassifyOptions& options = {});
// The mask of batch b and head h as bound by `evaluator` (which holds the sizes and run-time tensors).
// Throws ir::EvalError for a failing evaluation, std::invalid_argument for b or h out of range.
MaskMatrix mask_matrix(const ir::PatternEvaluator& evaluator, int64_t b, int64_t h);

}  // namespace tessera::analysis
