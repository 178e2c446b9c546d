// Tile classification by interval analysis, refined by splitting and, for small tiles, exact enumeration.
//
// Before the interval analysis the mask is specialised to the matrix: N, M (and H, D when known) become
// constants, and q, k are rewritten in terms of i, j (q = i + (M - N), k = j), so that a mask mixing q and i
// sees one variable per axis and the simplifier can cancel offsets (q - i folds to M - N). Loads keep their
// place, indices rewritten alike, so a load_bounds hook still sees them in the mask's own coordinates.
#include "compiler/analysis/tile_classification.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "compiler/analysis/interval.h"
#include "compiler/analysis/parallel_rows.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/simplify.h"

namespace tessera::analysis {

std::pair<Tile, Tile> split_in_half(const Tile& t) {
  Tile first = t;
  Tile second = t;
  if (t.i1 - t.i0 >= t.j1 - t.j0) {
    first.i1 = second.i0 = t.i0 + (t.i1 - t.i0) / 2;
  } else {
    first.j1 = second.j0 = t.j0 + (t.j1 - t.j0) / 2;
  }
  return {first, second};
}

namespace {

using ir::Expr;
using ir::Kind;
using ir::Var;

// What a mask needs in order to be evaluated point by point.
struct Reads {
  bool unevaluable = false;  // tensors, symbols, s / scale, or a size we do not know
  bool b = false;            // reads the batch index
  bool h = false;            // reads the head index
};

void collect_reads(const Expr& e, const ClassifyOptions& o, Reads& reads) {
  switch (e->kind) {
    case Kind::Load:
    case Kind::DotQ:
    case Kind::Symbol: reads.unevaluable = true; break;
    case Kind::Var:
      switch (e->var) {
        case Var::Score:
        case Var::Scale: reads.unevaluable = true; break;
        case Var::D: reads.unevaluable |= !o.D.has_value(); break;
        case Var::Heads: reads.unevaluable |= !o.H.has_value(); break;
        case Var::Batch:
          reads.b = true;
          reads.unevaluable |= !o.B.has_value();
          break;
        case Var::Head:
          reads.h = true;
          reads.unevaluable |= !o.H.has_value();
          break;
        default: break;
      }
      break;
    default: break;
  }
  for (const auto& operand : e->operands) collect_reads(operand, o, reads);
}

// a * b for positive a, b, capped at INT64_MAX (B and H are caller-given and may be absurd).
int64_t saturating_product(int64_t a, int64_t b) {
  __extension__ __int128 p = static_cast<__int128>(a) * b;
  return p > INT64_MAX ? INT64_MAX : static_cast<int64_t>(p);
}

constexpr int64_t kMaxLength = int64_t{1} << 40;
constexpr int64_t kMaxTiles = int64_t{1} << 26;

void check_options(int64_t N, int64_t M, const ClassifyOptions& o) {
  if (N < 0 || M < 0) throw std::invalid_argument(fmt::format("sequence lengths must be >= 0, got N={} M={}", N, M));
  // Far beyond any real sequence, and small enough that position arithmetic cannot overflow.
  if (N > kMaxLength || M > kMaxLength) {
    throw std::invalid_argument(fmt::format("sequence lengths must be <= {}, got N={} M={}", kMaxLength, N, M));
  }
  if ((o.B && *o.B < 1) || (o.H && *o.H < 1) || (o.D && *o.D < 1)) {
    throw std::invalid_argument("tile classification: B, H and D must be >= 1 when given");
  }
  if (o.enumerate_limit < 0 || o.split_budget < 0) {
    throw std::invalid_argument("tile classification: enumerate_limit and split_budget must be >= 0");
  }
}

}  // namespace

TileClassifier::TileClassifier(const ir::Pattern& pattern, int64_t N, int64_t M, const ClassifyOptions& options)
    : options_(options), N_(N), M_(M) {
  check_options(N, M, options);
  if (!pattern.mask || pattern.mask->type != ir::Type::Bool) {
    throw std::invalid_argument(fmt::format("pattern '{}' has no bool mask", pattern.name));
  }
  original_ = pattern.mask;
  Reads reads;
  collect_reads(original_, options, reads);
  unevaluable_ = reads.unevaluable;
  reads_batch_ = reads.b;
  reads_head_ = reads.h;

  Expr e = ir::substitute(original_, Var::Q, ir::binary(ir::BinaryOp::Add, ir::var(Var::I), ir::int_imm(M - N)));
  e = ir::substitute(e, Var::K, ir::var(Var::J));
  e = ir::substitute(e, Var::N, ir::int_imm(N));
  e = ir::substitute(e, Var::M, ir::int_imm(M));
  if (options.H) e = ir::substitute(e, Var::Heads, ir::int_imm(*options.H));
  if (options.D) e = ir::substitute(e, Var::D, ir::int_imm(*options.D));
  specialised_ = ir::simplify(e);

  ranges_.load_bounds = options.load_bounds;
  ranges_[Var::N] = IntInterval::single(N);
  ranges_[Var::M] = IntInterval::single(M);
  ranges_[Var::Batch] = options.B ? IntInterval::range(0, *options.B - 1) : IntInterval{0, IntInterval::kPosInf};
  ranges_[Var::Head] = options.H ? IntInterval::range(0, *options.H - 1) : IntInterval{0, IntInterval::kPosInf};
  ranges_[Var::Heads] = options.H ? IntInterval::single(*options.H) : IntInterval{1, IntInterval::kPosInf};
  ranges_[Var::D] = options.D ? IntInterval::single(*options.D) : IntInterval{1, IntInterval::kPosInf};
}

void TileClassifier::check_tile(const Tile& t) const {
  if (!(0 <= t.i0 && t.i0 < t.i1 && t.i1 <= N_ && 0 <= t.j0 && t.j0 < t.j1 && t.j1 <= M_)) {
    throw std::invalid_argument(
        fmt::format("tile [{}, {}) x [{}, {}) is empty or outside the {} x {} matrix", t.i0, t.i1, t.j0, t.j1, N_, M_));
  }
}

TileKind TileClassifier::classify(const Tile& t) const {
  check_tile(t);
  TileKind by_intervals = by_bounds(t);
  if (by_intervals != TileKind::Partial) return by_intervals;
  if (enumerable(t)) return by_enumeration(t);
  int64_t budget = options_.split_budget;
  return by_splitting(t, budget);
}

TileKind TileClassifier::classify_by_intervals(const Tile& t) const {
  check_tile(t);
  return by_bounds(t);
}

TileKind TileClassifier::by_bounds(const Tile& t) const {
  VarRanges r = ranges_;
  r[Var::I] = IntInterval::range(t.i0, t.i1 - 1);
  r[Var::J] = IntInterval::range(t.j0, t.j1 - 1);
  r[Var::Q] = IntInterval::range(t.i0 + M_ - N_, t.i1 - 1 + M_ - N_);
  r[Var::K] = r[Var::J];
  BoolInterval v = bool_bounds(specialised_, r);
  if (v.always_false()) return TileKind::Empty;
  if (v.always_true()) return TileKind::Full;
  return TileKind::Partial;
}

// Interval analysis of halves: a tile whose parts are all Empty (Full) is Empty (Full); one with an Empty and
// a Full part is certainly mixed.
TileKind TileClassifier::by_splitting(const Tile& t, int64_t& budget) const {
  int64_t rows = t.i1 - t.i0;
  int64_t cols = t.j1 - t.j0;
  if (budget < 2 || (rows == 1 && cols == 1)) return TileKind::Partial;
  budget -= 2;
  auto [first, second] = split_in_half(t);
  TileKind a = by_bounds(first);
  TileKind b = by_bounds(second);
  if (a == TileKind::Partial) a = by_splitting(first, budget);
  if (a == TileKind::Partial) return TileKind::Partial;
  if (b == TileKind::Partial) b = by_splitting(second, budget);
  return a == b ? a : TileKind::Partial;
}

int64_t TileClassifier::points_per_pair() const {
  return saturating_product(reads_batch_ ? *options_.B : 1, reads_head_ ? *options_.H : 1);
}

bool TileClassifier::enumerable(const Tile& t) const {
  if (unevaluable_) return false;
  __extension__ __int128 pairs = static_cast<__int128>(t.i1 - t.i0) * (t.j1 - t.j0);  // < 2^80
  if (pairs > options_.enumerate_limit) return false;
  return pairs * points_per_pair() <= options_.enumerate_limit;
}

TileKind TileClassifier::by_enumeration(const Tile& t) const {
  ir::EvalEnv env;
  env.set(Var::N, N_);
  env.set(Var::M, M_);
  if (options_.H) env.set(Var::Heads, *options_.H);
  if (options_.D) env.set(Var::D, *options_.D);
  bool seen_allowed = false;
  bool seen_masked = false;
  int64_t batches = reads_batch_ ? *options_.B : 1;
  int64_t heads = reads_head_ ? *options_.H : 1;
  for (int64_t b = 0; b < batches; ++b) {
    env.set(Var::Batch, b);
    for (int64_t h = 0; h < heads; ++h) {
      env.set(Var::Head, h);
      for (int64_t i = t.i0; i < t.i1; ++i) {
        env.set(Var::I, i);
        env.set(Var::Q, i + M_ - N_);
        for (int64_t j = t.j0; j < t.j1; ++j) {
          env.set(Var::J, j);
          env.set(Var::K, j);
          (ir::evaluate(original_, env).b ? seen_allowed : seen_masked) = true;
          if (seen_allowed && seen_masked) return TileKind::Partial;
        }
      }
    }
  }
  return seen_allowed ? TileKind::Full : TileKind::Empty;
}

Enumerability mask_enumerability(const ir::Pattern& pattern, const ClassifyOptions& options) {
  if (!pattern.mask) throw std::invalid_argument(fmt::format("pattern '{}' has no mask", pattern.name));
  Reads reads;
  collect_reads(pattern.mask, options, reads);
  if (reads.unevaluable) return {false, 0, reads.b, reads.h};
  return {true, saturating_product(reads.b ? *options.B : 1, reads.h ? *options.H : 1), reads.b, reads.h};
}

const char* tile_kind_name(TileKind kind) {
  switch (kind) {
    case TileKind::Empty: return "empty";
    case TileKind::Full: return "full";
    case TileKind::Partial: return "partial";
  }
  return "?";
}

Tile TileMap::tile(int64_t row, int64_t col) const {
  return {row * block_q, std::min(N, (row + 1) * block_q), col * block_k, std::min(M, (col + 1) * block_k)};
}

TileKind classify_tile(const ir::Pattern& pattern, int64_t N, int64_t M, const Tile& tile,
                       const ClassifyOptions& options) {
  return TileClassifier(pattern, N, M, options).classify(tile);
}

TileMap classify_tiles(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q, int64_t block_k,
                       const ClassifyOptions& options) {
  return classify_tiles(pattern, N, M, block_q, block_k, options, nullptr);
}

TileMap classify_tiles(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q, int64_t block_k,
                       const ClassifyOptions& options, const TileMap* coarse) {
  check_options(N, M, options);
  if (block_q < 1 || block_k < 1) {
    throw std::invalid_argument(fmt::format("tile sizes must be >= 1, got {} x {}", block_q, block_k));
  }
  if (coarse != nullptr &&
      (coarse->N != N || coarse->M != M || coarse->block_q % block_q != 0 || coarse->block_k % block_k != 0)) {
    throw std::invalid_argument(fmt::format("{} x {} tiles do not subdivide the {} x {} tiles of a {} x {} map",
                                            block_q, block_k, coarse->block_q, coarse->block_k, coarse->N, coarse->M));
  }
  int64_t rows = N == 0 ? 0 : (N - 1) / block_q + 1;  // ceil without overflow for huge blocks
  int64_t cols = M == 0 ? 0 : (M - 1) / block_k + 1;
  if (rows > 0 && cols > kMaxTiles / rows) {
    throw std::invalid_argument(
        fmt::format("{} x {} tiles of a {} x {} matrix are too many (at most {})", block_q, block_k, N, M, kMaxTiles));
  }
  TileClassifier mask(pattern, N, M, options);
  TileMap map;
  map.rows = rows;
  map.cols = cols;
  map.block_q = block_q;
  map.block_k = block_k;
  map.N = N;
  map.M = M;
  map.kinds.assign(static_cast<size_t>(map.rows * map.cols), TileKind::Partial);
  // A run of a row's tiles whose union the intervals decide is decided for each tile in it (a tile's bounds lie
  // within its union's): a banded mask's rows cost a few evaluations per band edge, not one per tile.
  auto classify_run = [&](auto& self, int64_t r, int64_t c0, int64_t c1) -> void {
    TileKind* kinds = &map.kinds[static_cast<size_t>(r * map.cols)];
    if (c1 - c0 == 1) {
      kinds[c0] = mask.classify(map.tile(r, c0));
      return;
    }
    const Tile first = map.tile(r, c0), last = map.tile(r, c1 - 1);
    const TileKind run = mask.classify_by_intervals(Tile{first.i0, first.i1, first.j0, last.j1});
    if (run != TileKind::Partial) {
      std::fill(kinds + c0, kinds + c1, run);
      return;
    }
    const int64_t middle = c0 + (c1 - c0) / 2;
    self(self, r, c0, middle);
    self(self, r, middle, c1);
  };
  auto classify_row = [&](int64_t r) {
    if (map.cols == 0) return;
    if (coarse == nullptr) {
      classify_run(classify_run, r, 0, map.cols);
      return;
    }
    // A tile inside a coarse tile the coarse map decided is decided alike; only runs under PARTIAL ones are walked.
    const int64_t row_ratio = coarse->block_q / block_q, col_ratio = coarse->block_k / block_k;
    for (int64_t c = 0; c < map.cols;) {
      const TileKind parent = coarse->at(r / row_ratio, c / col_ratio);
      int64_t end = std::min(map.cols, (c / col_ratio + 1) * col_ratio);
      while (end < map.cols && coarse->at(r / row_ratio, end / col_ratio) == parent) {
        end = std::min(map.cols, end + col_ratio);
      }
      if (parent == TileKind::Partial) {
        classify_run(classify_run, r, c, end);
      } else {
        std::fill(map.kinds.begin() + r * map.cols + c, map.kinds.begin() + r * map.cols + end, parent);
      }
      c = end;
    }
  };
  // Each row writes only its own tiles.
  const int64_t threads = map.rows * map.cols >= kMinTilesForThreads ? analysis_threads() : 1;
  for_each_row_block(map.rows, threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) classify_row(r);
  });
  for (TileKind kind : map.kinds) {
    (kind == TileKind::Empty ? map.empty : kind == TileKind::Full ? map.full : map.partial) += 1;
  }
  return map;
}

}  // namespace tessera::analysis
