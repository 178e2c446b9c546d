// Tile classification: which (query block x key block) tiles of the attention matrix a mask leaves empty,
// keeps whole, or cuts through. Kernels skip Empty tiles and drop the mask test on Full ones.
//
// Soundness contract: Empty means no (i, j) pair of the tile is allowed at any batch, head or run-time input;
// Full means every pair is allowed at all of them. With ClassifyOptions::load_bounds set, "any run-time input"
// narrows to the tensor contents the hook describes: the map then holds for those contents only (one call's
// inputs), every batch and head. Partial is the safe answer ("may be mixed"); it is exact (both kinds present)
// whenever the tile could be enumerated (see ClassifyOptions::enumerate_limit).
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "compiler/analysis/interval.h"
#include "compiler/ir/pattern.h"

namespace tessera::analysis {

enum class TileKind : uint8_t { Empty, Full, Partial };
const char* tile_kind_name(TileKind kind);  // "empty", "full", "partial"

struct ClassifyOptions {
  // Batch and head counts when known: b then ranges over [0, B-1], h over [0, H-1], H is fixed. When unknown,
  // b and h range over [0, +inf) and H over [1, +inf), and a mask reading them is never enumerated.
  std::optional<int64_t> B;
  std::optional<int64_t> H;
  // The head dimension when known (unknown: [1, +inf), and a mask reading D is never enumerated).
  std::optional<int64_t> D;
  // A tile the interval analysis cannot decide is enumerated point by point with ir::evaluate when it has at
  // most this many points (pairs, times the batches and heads the mask reads) and the mask reads no run-time
  // tensor and no unbound value; otherwise it is Partial.
  int64_t enumerate_limit = 4096;
  // How many sub-tiles an undecided tile that is too large to enumerate may be split into for the interval
  // analysis (proving it Empty, Full, or certainly mixed). 0 disables splitting.
  int64_t split_budget = 64;
  // Bounds of run-time tensor values over boxes of indices (see VarRanges::load_bounds), e.g. from
  // make_load_bounds (tensor_value_bounds.h) over one call's inputs. The hook sees a load's indices as ranges in
  // the mask's own coordinates (q = i + M - N), with b over [0, B-1]: give B, or b is unbounded and a provider
  // answers nothing for it. Masks that read tensors are still never enumerated. Large maps call it from several
  // threads at once (parallel_rows.h): it must not change shared state.
  LoadBounds load_bounds;
};

// Whether a mask can be decided point by point with ir::evaluate under `options` (it reads no run-time tensor,
// no symbol, no s or scale, and only the sizes and indices the options make known), and how many evaluations
// one (i, j) pair takes: the batches times the heads it reads.
struct Enumerability {
  bool possible = false;
  int64_t points_per_pair = 0;
  bool reads_batch = false;  // b
  bool reads_head = false;   // h
};
Enumerability mask_enumerability(const ir::Pattern& pattern, const ClassifyOptions& options = {});

// A tile: query rows [i0, i1) x key columns [j0, j1).
struct Tile {
  int64_t i0 = 0, i1 = 0;
  int64_t j0 = 0, j1 = 0;
};

// Halves a tile across its longer side (rows on a tie): the refinement step of every recursive walk below.
std::pair<Tile, Tile> split_in_half(const Tile& t);

// A mask specialised to one N x M matrix (N, M and the known sizes folded in, q and k expressed through i and
// j), reusable for any number of its tiles. Throws std::invalid_argument for N or M < 0 (or beyond 2^40),
// B/H/D given but < 1, or a pattern without a bool mask.
class TileClassifier {
 public:
  TileClassifier(const ir::Pattern& pattern, int64_t N, int64_t M, const ClassifyOptions& options = {});

  // The full procedure: intervals, then enumeration or splitting (see ClassifyOptions). Throws
  // std::invalid_argument for an empty tile or one outside the matrix.
  TileKind classify(const Tile& tile) const;
  // Intervals only: cheap, sound, Partial when undecided.
  TileKind classify_by_intervals(const Tile& tile) const;

 private:
  void check_tile(const Tile& t) const;
  TileKind by_bounds(const Tile& t) const;
  TileKind by_splitting(const Tile& t, int64_t& budget) const;
  bool enumerable(const Tile& t) const;
  int64_t points_per_pair() const;
  TileKind by_enumeration(const Tile& t) const;

  ClassifyOptions options_;
  int64_t N_, M_;
  ir::Expr original_;     // the mask as written: the semantics enumeration evaluates
  ir::Expr specialised_;  // the mask the interval analysis sees
  bool unevaluable_ = false;
  bool reads_batch_ = false;
  bool reads_head_ = false;
  VarRanges ranges_;
};

// Classifies one tile of the N x M attention matrix. Throws std::invalid_argument for N or M < 0, an empty
// tile or a tile outside the matrix, or B/H/D given but < 1.
TileKind classify_tile(const ir::Pattern& pattern, int64_t N, int64_t M, const Tile& tile,
                       const ClassifyOptions& options = {});

struct TileMap {
  int64_t rows = 0, cols = 0;  // ceil(N / block_q) x ceil(M / block_k); the last row/column may be ragged
  int64_t block_q = 0, block_k = 0;
  int64_t N = 0, M = 0;
  std::vector<TileKind> kinds;  // row-major, rows * cols
  int64_t empty = 0, full = 0, partial = 0;

  TileKind at(int64_t row, int64_t col) const { return kinds[static_cast<size_t>(row * cols + col)]; }
  Tile tile(int64_t row, int64_t col) const;  // the index ranges of one tile (clipped at N and M)
};

// Classifies every tile of the N x M matrix in blocks of block_q queries x block_k keys. Throws
// std::invalid_argument for N or M < 0 or a block size < 1.
TileMap classify_tiles(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q, int64_t block_k,
                       const ClassifyOptions& options = {});
// The same, refining `coarse`, a map of the same matrix in tiles that these subdivide (its tile sizes multiples of
// block_q and block_k): tiles inside an EMPTY or FULL coarse tile take its kind, and only those inside PARTIAL
// ones are classified (how a plan tries narrower tiles for a component without classifying its empty space
// again). Throws std::invalid_argument where the tiles do not subdivide `coarse`'s.
TileMap classify_tiles(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q, int64_t block_k,
                       const ClassifyOptions& options, const TileMap* coarse);

}  // namespace tessera::analysis
