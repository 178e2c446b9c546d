#include "compiler/analysis/pattern_stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "compiler/analysis/parallel_rows.h"

namespace tessera::analysis {

namespace {

constexpr int64_t kMaxMatrixPairs = int64_t{1} << 28;
// Below this many pairs, evaluating every pair is cheaper than asking the interval analysis again.
constexpr int64_t kSmallRegion = 64;

// Evaluates a mask that reads no tensor, symbol, batch or head index at single (i, j) pairs.
class PairEvaluator {
 public:
  PairEvaluator(const ir::Pattern& pattern, int64_t N, int64_t M, const ClassifyOptions& options)
      : mask_(pattern.mask), N_(N), M_(M) {
    env_.set(ir::Var::N, N);
    env_.set(ir::Var::M, M);
    if (options.H) env_.set(ir::Var::Heads, *options.H);
    if (options.D) env_.set(ir::Var::D, *options.D);
  }

  bool allowed(int64_t i, int64_t j) {
    env_.set(ir::Var::I, i);
    env_.set(ir::Var::Q, i + M_ - N_);
    env_.set(ir::Var::J, j);
    env_.set(ir::Var::K, j);
    return ir::evaluate(mask_, env_).b;
  }

  int64_t count(const Tile& t) {
    int64_t n = 0;
    for (int64_t i = t.i0; i < t.i1; ++i) {
      for (int64_t j = t.j0; j < t.j1; ++j) n += allowed(i, j);
    }
    return n;
  }

  // Counts by halving the region while the intervals leave it undecided, so that point-by-point evaluation
  // is spent only near the mask's boundaries (the diagonals of strided, the summary columns of fixed, ...).
  int64_t count(const TileClassifier& classifier, const Tile& t) {
    int64_t rows = t.i1 - t.i0;
    int64_t cols = t.j1 - t.j0;
    switch (classifier.classify_by_intervals(t)) {
      case TileKind::Empty: return 0;
      case TileKind::Full: return rows * cols;
      case TileKind::Partial: break;
    }
    if (rows * cols <= kSmallRegion) return count(t);
    auto [first, second] = split_in_half(t);
    return count(classifier, first) + count(classifier, second);
  }

 private:
  ir::Expr mask_;
  int64_t N_, M_;
  ir::EvalEnv env_;
};

// Evaluable on its own, one point per pair.
bool pairwise_evaluable(const ir::Pattern& pattern, const ClassifyOptions& options) {
  Enumerability e = mask_enumerability(pattern, options);
  return e.possible && !e.reads_batch && !e.reads_head;
}

int64_t area(const Tile& t) { return (t.i1 - t.i0) * (t.j1 - t.j0); }

void check_matrix_size(int64_t N, int64_t M) {
  if (N < 0 || M < 0) throw std::invalid_argument(fmt::format("sequence lengths must be >= 0, got N={} M={}", N, M));
  if (N > 0 && M > kMaxMatrixPairs / N) {
    throw std::invalid_argument(
        fmt::format("a {} x {} mask matrix is too large (at most {} pairs)", N, M, kMaxMatrixPairs));
  }
}

char cell_char(TileKind kind, bool exact_partial) {
  switch (kind) {
    case TileKind::Empty: return ' ';
    case TileKind::Full: return '#';
    case TileKind::Partial: return exact_partial ? '+' : '?';
  }
  return '?';
}

// Fills a region of the matrix, halving it while the intervals leave it undecided.
void fill(MaskMatrix& matrix, const TileClassifier& classifier, PairEvaluator& evaluator, const Tile& t) {
  int64_t rows = t.i1 - t.i0;
  int64_t cols = t.j1 - t.j0;
  TileKind kind = classifier.classify_by_intervals(t);
  if (kind == TileKind::Empty) return;
  if (kind == TileKind::Partial && rows * cols > kSmallRegion) {
    auto [first, second] = split_in_half(t);
    fill(matrix, classifier, evaluator, first);
    fill(matrix, classifier, evaluator, second);
    return;
  }
  for (int64_t i = t.i0; i < t.i1; ++i) {
    for (int64_t j = t.j0; j < t.j1; ++j) {
      matrix.allowed[static_cast<size_t>(i * matrix.cols + j)] = kind == TileKind::Full || evaluator.allowed(i, j);
    }
  }
}

}  // namespace

PatternStats pattern_stats(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t block_q, int64_t block_k,
                           const ClassifyOptions& options, bool count_pairs) {
  PatternStats stats;
  stats.tiles = classify_tiles(pattern, N, M, block_q, block_k, options);  // validates the arguments
  if (N > 0 && M > INT64_MAX / N) throw std::invalid_argument(fmt::format("{} x {} pairs do not fit in 64 bits", N, M));
  stats.N = N;
  stats.M = M;
  stats.total_pairs = N * M;
  if (!count_pairs || !pairwise_evaluable(pattern, options)) return stats;
  TileClassifier classifier(pattern, N, M, options);
  std::atomic<int64_t> allowed{0};
  const int64_t threads = stats.tiles.rows * stats.tiles.cols >= kMinTilesForThreads ? analysis_threads() : 1;
  for_each_row_block(stats.tiles.rows, threads, [&](int64_t begin, int64_t end) {
    PairEvaluator evaluator(pattern, N, M, options);  // per block: it keeps its point's variables
    int64_t rows_allowed = 0;
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < stats.tiles.cols; ++c) {
        Tile t = stats.tiles.tile(r, c);
        switch (stats.tiles.at(r, c)) {
          case TileKind::Empty: break;
          case TileKind::Full: rows_allowed += area(t); break;
          case TileKind::Partial: rows_allowed += evaluator.count(classifier, t); break;
        }
      }
    }
    allowed += rows_allowed;
  });
  stats.allowed_pairs = allowed.load();
  if (stats.total_pairs > 0) stats.density = static_cast<double>(allowed) / static_cast<double>(stats.total_pairs);
  return stats;
}

std::string render_mask_ascii(const ir::Pattern& pattern, int64_t N, int64_t M, const AsciiOptions& options) {
  if (options.full_resolution_limit < 0 || options.max_rows < 1 || options.max_cols < 1) {
    throw std::invalid_argument("ASCII rendering needs full_resolution_limit >= 0 and max_rows, max_cols >= 1");
  }
  if (N < 0 || M < 0) throw std::invalid_argument(fmt::format("sequence lengths must be >= 0, got N={} M={}", N, M));
  if (N == 0 || M == 0) return "";
  std::string out;
  if (N <= options.full_resolution_limit && M <= options.full_resolution_limit) {
    // One character per pair; a pair the analysis cannot decide on its own is '?'.
    bool evaluable = pairwise_evaluable(pattern, options.classify);
    TileMap map;
    if (!evaluable) map = classify_tiles(pattern, N, M, 1, 1, options.classify);
    PairEvaluator evaluator(pattern, N, M, options.classify);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) {
        if (evaluable) {
          out += evaluator.allowed(i, j) ? '#' : '.';
        } else {
          TileKind kind = map.at(i, j);
          out += kind == TileKind::Full ? '#' : kind == TileKind::Empty ? '.' : '?';
        }
      }
      out += '\n';
    }
    return out;
  }
  int64_t rows = std::min(N, options.max_rows);
  int64_t cols = std::min(M, options.max_cols);
  Enumerability enumerability = mask_enumerability(pattern, options.classify);
  TileClassifier classifier(pattern, N, M, options.classify);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      // Cell boundaries split N and M as evenly as possible; every cell holds at least one pair.
      Tile cell{r * N / rows, (r + 1) * N / rows, c * M / cols, (c + 1) * M / cols};
      TileKind kind = classifier.classify(cell);
      // A Partial answer is exact when the cell could be enumerated; otherwise it only means "undecided".
      __extension__ __int128 pairs = static_cast<__int128>(cell.i1 - cell.i0) * (cell.j1 - cell.j0);  // < 2^80
      int64_t limit = options.classify.enumerate_limit;
      bool exact = enumerability.possible && pairs <= limit && pairs * enumerability.points_per_pair <= limit;
      out += cell_char(kind, exact);
    }
    out += '\n';
  }
  return out;
}

MaskMatrix mask_matrix(const ir::Pattern& pattern, int64_t N, int64_t M, const ClassifyOptions& options) {
  check_matrix_size(N, M);
  if (!pairwise_evaluable(pattern, options)) {
    throw std::invalid_argument(fmt::format(
        "the mask of '{}' reads run-time tensors, parameters without values, or the batch or head index; it "
        "cannot be drawn without them",
        pattern.name));
  }
  MaskMatrix matrix{N, M, std::vector<uint8_t>(static_cast<size_t>(N * M), 0)};
  if (N == 0 || M == 0) return matrix;
  TileClassifier classifier(pattern, N, M, options);
  PairEvaluator evaluator(pattern, N, M, options);
  fill(matrix, classifier, evaluator, Tile{0, N, 0, M});
  return matrix;
}

MaskMatrix mask_matrix(const ir::PatternEvaluator& evaluator, int64_t b, int64_t h) {
  const ir::AttentionSizes& sizes = evaluator.sizes();
  if (b < 0 || b >= sizes.B || h < 0 || h >= sizes.H) {
    throw std::invalid_argument(fmt::format("batch {} / head {} is out of range (B={}, H={})", b, h, sizes.B, sizes.H));
  }
  check_matrix_size(sizes.N, sizes.M);
  MaskMatrix matrix{sizes.N, sizes.M, std::vector<uint8_t>(static_cast<size_t>(sizes.N * sizes.M), 0)};
  for (int64_t i = 0; i < sizes.N; ++i) {
    for (int64_t j = 0; j < sizes.M; ++j) {
      matrix.allowed[static_cast<size_t>(i * sizes.M + j)] = evaluator.allowed(b, h, i, j);
    }
  }
  return matrix;
}

}  // namespace tessera::analysis
