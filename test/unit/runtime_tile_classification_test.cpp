// Tile classification from one call's run-time tensor contents (the load_bounds hook), checked against brute-force
// evaluation of the prelude's document masks with the same tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "compiler/analysis/interval.h"
#include "compiler/analysis/tensor_value_bounds.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/sema/pattern_library.h"

namespace tessera::analysis {
namespace {

using ir::Var;

ir::Pattern prelude_pattern(const std::string& expression) {
  static const sema::PatternLibrary library;
  dsl::Diagnostics diags;
  std::optional<ir::Pattern> p = library.instantiate(expression, diags);
  if (!p) throw std::logic_error("cannot instantiate " + expression + ": " + diags.str());
  return *p;
}

// ---- the hook inside the interval analysis ----

ir::Expr load(const char* tensor, ir::ElemType type, std::vector<ir::Expr> index) {
  return ir::load(tensor, type, std::move(index));
}

TEST(RuntimeLoadBounds, HookSeesTheIndexRangesAndBoundsTheLoad) {
  ir::Expr seg_q = load("segments", ir::ElemType::Int32, {ir::var(Var::Batch), ir::var(Var::Q)});
  ir::Expr shifted = load("segments", ir::ElemType::Int32,
                          {ir::var(Var::Batch), ir::binary(ir::BinaryOp::Add, ir::var(Var::K), ir::int_imm(3))});
  std::vector<std::vector<IntInterval>> seen;
  VarRanges r;
  r[Var::Batch] = IntInterval::range(0, 1);
  r[Var::Q] = IntInterval::range(10, 20);
  r[Var::K] = IntInterval::range(4, 6);
  r.load_bounds = [&](const std::string& tensor, const std::vector<IntInterval>& box) -> std::optional<Interval> {
    EXPECT_EQ(tensor, "segments");
    seen.push_back(box);
    return Interval::of(IntInterval::range(box[1].lo, box[1].hi));  // "segments[b, x] == x"
  };
  EXPECT_EQ(int_bounds(seg_q, r), IntInterval::range(10, 20));
  EXPECT_EQ(int_bounds(shifted, r), IntInterval::range(7, 9));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (std::vector<IntInterval>{IntInterval::range(0, 1), IntInterval::range(10, 20)}));
  EXPECT_EQ(seen[1], (std::vector<IntInterval>{IntInterval::range(0, 1), IntInterval::range(7, 9)}));
  // Disjoint value ranges compare always-false; equal single values always-true.
  EXPECT_TRUE(bool_bounds(ir::binary(ir::BinaryOp::Eq, seg_q, shifted), r).always_false());
  EXPECT_TRUE(bool_bounds(ir::binary(ir::BinaryOp::Ne, seg_q, shifted), r).always_true());
  r[Var::Q] = IntInterval::single(8);
  r[Var::K] = IntInterval::single(5);
  EXPECT_TRUE(bool_bounds(ir::binary(ir::BinaryOp::Eq, seg_q, shifted), r).always_true());
  EXPECT_TRUE(bool_bounds(ir::binary(ir::BinaryOp::Le, seg_q, shifted), r).always_true());
}

TEST(RuntimeLoadBounds, UnknownWrongTypedOrWideAnswersFallBackToTheElementType) {
  ir::Expr ints = load("t", ir::ElemType::Int32, {ir::var(Var::Q)});
  ir::Expr floats = load("t", ir::ElemType::Float32, {ir::var(Var::Q)});
  const IntInterval int32_range{INT32_MIN, INT32_MAX};
  VarRanges r;
  EXPECT_EQ(int_bounds(ints, r), int32_range);  // no hook
  r.load_bounds = [](const std::string&, const std::vector<IntInterval>&) { return std::optional<Interval>(); };
  EXPECT_EQ(int_bounds(ints, r), int32_range);
  EXPECT_TRUE(bounds(floats, r).f.maybe_nan);
  r.load_bounds = [](const std::string&, const std::vector<IntInterval>&) {
    return std::optional<Interval>(Interval::of(FloatInterval{1.0, 2.0, false}));
  };
  EXPECT_EQ(int_bounds(ints, r), int32_range);  // a Float answer for an int load is ignored
  Interval f = bounds(floats, r);
  EXPECT_EQ(f.f.lo, 1.0);
  EXPECT_EQ(f.f.hi, 2.0);
  EXPECT_FALSE(f.f.maybe_nan);
  r.load_bounds = [](const std::string&, const std::vector<IntInterval>&) {
    return std::optional<Interval>(Interval::of(IntInterval::range(-5, int64_t{1} << 40)));
  };
  EXPECT_EQ(int_bounds(ints, r), IntInterval::range(-5, INT32_MAX));  // cut to int32
  r.load_bounds = [](const std::string&, const std::vector<IntInterval>&) {
    return std::optional<Interval>(Interval::of(IntInterval::range(int64_t{1} << 40, int64_t{1} << 41)));
  };
  EXPECT_THROW(int_bounds(ints, r), std::logic_error);  // no int32 can lie there: a broken hook
}

// ---- tile classification with segment ids ----

struct Segments {
  int64_t B = 1, M = 0;
  std::vector<int32_t> ids;  // B x M
  int32_t at(int64_t b, int64_t k) const { return ids[static_cast<size_t>(b * M + k)]; }
  ir::TensorView view() const { return {ir::ElemType::Int32, {B, M}, ids.data()}; }
};

// Sorted document ids with random document lengths (the same documents in every batch, or each its own), or
// arbitrary ids from a few values.
Segments random_segments(std::mt19937_64& rng, int64_t B, int64_t M, bool sorted) {
  Segments s{B, M, std::vector<int32_t>(static_cast<size_t>(B * M))};
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  bool same_documents = pick(0, 1) == 0;
  int64_t mean_length = pick(1, std::max<int64_t>(1, M / 2));
  for (int64_t b = 0; b < B; ++b) {
    if (sorted && same_documents && b > 0) {
      std::copy_n(s.ids.begin(), M, s.ids.begin() + b * M);
      continue;
    }
    int32_t id = static_cast<int32_t>(pick(-2, 3));
    int64_t left = 0;  // positions left in the current document
    for (int64_t k = 0; k < M; ++k) {
      if (!sorted) {
        s.ids[static_cast<size_t>(b * M + k)] = static_cast<int32_t>(pick(-1, 2));
        continue;
      }
      if (left == 0) {
        if (k > 0) id += static_cast<int32_t>(pick(1, 2));
        left = pick(1, 2 * mean_length);
      }
      s.ids[static_cast<size_t>(b * M + k)] = id;
      --left;
    }
  }
  return s;
}

// How many (b, i, j) of a tile the mask allows, from 2D prefix sums of the brute-force matrix summed over batches.
class AllowedCounts {
 public:
  AllowedCounts(const ir::Pattern& pattern, const Segments& seg, int64_t N)
      : M_(seg.M), prefix_(static_cast<size_t>((N + 1) * (seg.M + 1))) {
    ir::AttentionSizes sizes;
    sizes.B = seg.B;
    sizes.N = N;
    sizes.M = seg.M;
    sizes.D = sizes.Dv = 1;
    ir::PatternEvaluator evaluator(pattern, sizes, {{"segments", seg.view()}}, 1.0);
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M_; ++j) {
        int64_t allowed = 0;
        for (int64_t b = 0; b < seg.B; ++b) allowed += evaluator.allowed(b, 0, i, j);
        at(i + 1, j + 1) = allowed + at(i, j + 1) + at(i + 1, j) - at(i, j);
      }
    }
  }
  int64_t in(const Tile& t) const { return at(t.i1, t.j1) - at(t.i0, t.j1) - at(t.i1, t.j0) + at(t.i0, t.j0); }

 private:
  int64_t& at(int64_t i, int64_t j) { return prefix_[static_cast<size_t>(i * (M_ + 1) + j)]; }
  int64_t at(int64_t i, int64_t j) const { return prefix_[static_cast<size_t>(i * (M_ + 1) + j)]; }
  int64_t M_;
  std::vector<int64_t> prefix_;
};

// The ids a tile's query positions and key positions hold, over every batch.
struct IdRanges {
  int32_t q_lo = INT32_MAX, q_hi = INT32_MIN, k_lo = INT32_MAX, k_hi = INT32_MIN;
};
IdRanges id_ranges(const Segments& seg, int64_t N, const Tile& t) {
  IdRanges r;
  for (int64_t b = 0; b < seg.B; ++b) {
    for (int64_t i = t.i0; i < t.i1; ++i) {
      int32_t id = seg.at(b, i + seg.M - N);
      r.q_lo = std::min(r.q_lo, id);
      r.q_hi = std::max(r.q_hi, id);
    }
    for (int64_t j = t.j0; j < t.j1; ++j) {
      r.k_lo = std::min(r.k_lo, seg.at(b, j));
      r.k_hi = std::max(r.k_hi, seg.at(b, j));
    }
  }
  return r;
}

struct Totals {
  int64_t empty = 0, full = 0, partial = 0;
  int64_t empty_by_documents = 0;  // Empty tiles the causal part alone does not explain
};

void check_random_case(std::mt19937_64& rng, const ir::Pattern& pattern, bool causal, Totals& totals) {
  auto pick = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  int64_t B = pick(1, 3);
  int64_t M = pick(1, 120);
  int64_t N = pick(0, 1) ? M : pick(1, M);
  bool sorted = pick(0, 2) != 0;
  Segments seg = random_segments(rng, B, M, sorted);
  int64_t block_q = pick(1, 40);
  int64_t block_k = pick(1, 40);

  ClassifyOptions options;
  options.B = B;
  options.load_bounds = make_load_bounds(std::map<std::string, ir::TensorView>{{"segments", seg.view()}});
  TileMap map = classify_tiles(pattern, N, M, block_q, block_k, options);
  AllowedCounts allowed(pattern, seg, N);
  int64_t offset = M - N;

  for (int64_t r = 0; r < map.rows; ++r) {
    for (int64_t c = 0; c < map.cols; ++c) {
      Tile t = map.tile(r, c);
      TileKind kind = map.at(r, c);
      int64_t count = allowed.in(t);
      int64_t points = B * (t.i1 - t.i0) * (t.j1 - t.j0);
      SCOPED_TRACE(::testing::Message() << pattern.name << " B=" << B << " N=" << N << " M=" << M
                                        << " sorted=" << sorted << " tile [" << t.i0 << ", " << t.i1 << ") x [" << t.j0
                                        << ", " << t.j1 << ") " << tile_kind_name(kind));
      // Soundness for these contents, at every batch.
      if (kind == TileKind::Empty) {
        EXPECT_EQ(count, 0);
      }
      if (kind == TileKind::Full) {
        EXPECT_EQ(count, points);
      }
      // Precision: what the segment bounds decide on their own.
      IdRanges ids = id_ranges(seg, N, t);
      bool causal_empty = causal && t.j0 > t.i1 - 1 + offset;
      bool causal_full = !causal || t.j1 - 1 <= t.i0 + offset;
      bool disjoint = ids.q_hi < ids.k_lo || ids.k_hi < ids.q_lo;
      bool one_document = ids.q_lo == ids.q_hi && ids.k_lo == ids.k_hi && ids.q_lo == ids.k_lo;
      if (disjoint || causal_empty) {
        EXPECT_EQ(kind, TileKind::Empty);
      }
      if (one_document && causal_full) {
        EXPECT_EQ(kind, TileKind::Full);
      }
      (kind == TileKind::Empty ? totals.empty : kind == TileKind::Full ? totals.full : totals.partial) += 1;
      if (kind == TileKind::Empty && !causal_empty) ++totals.empty_by_documents;
    }
  }
}

TEST(RuntimeTileClassification, DocumentTilesMatchBruteForceForTheGivenSegments) {
  ir::Pattern document = prelude_pattern("document");
  std::mt19937_64 rng(21);
  Totals totals;
  for (int trial = 0; trial < 150; ++trial) check_random_case(rng, document, false, totals);
  // The segment ids decided tiles both ways (without them every document tile is Partial).
  EXPECT_GT(totals.empty_by_documents, 200);
  EXPECT_GT(totals.full, 50);
  EXPECT_GT(totals.partial, 0);
}

TEST(RuntimeTileClassification, CausalDocumentTilesMatchBruteForceForTheGivenSegments) {
  ir::Pattern causal_document = prelude_pattern("causal & document");
  std::mt19937_64 rng(22);
  Totals totals;
  for (int trial = 0; trial < 150; ++trial) check_random_case(rng, causal_document, true, totals);
  EXPECT_GT(totals.empty_by_documents, 200);  // across-document tiles below the diagonal are skipped
  EXPECT_GT(totals.full, 50);
  EXPECT_GT(totals.partial, 0);
}

TEST(RuntimeTileClassification, TwoDocumentsOfFourTiles) {
  // Documents [0, 8) and [8, 16) in both batches; 4 x 4 tiles.
  Segments seg{2, 16, {}};
  for (int64_t b = 0; b < 2; ++b) {
    for (int32_t k = 0; k < 16; ++k) seg.ids.push_back(k < 8 ? 5 : 9);
  }
  ClassifyOptions options;
  options.B = 2;
  options.load_bounds = make_load_bounds(std::map<std::string, ir::TensorView>{{"segments", seg.view()}});
  using K = TileKind;
  TileMap document = classify_tiles(prelude_pattern("document"), 16, 16, 4, 4, options);
  EXPECT_EQ(document.kinds, (std::vector<K>{K::Full, K::Full, K::Empty, K::Empty,  //
                                            K::Full, K::Full, K::Empty, K::Empty,  //
                                            K::Empty, K::Empty, K::Full, K::Full,  //
                                            K::Empty, K::Empty, K::Full, K::Full}));
  TileMap causal = classify_tiles(prelude_pattern("causal & document"), 16, 16, 4, 4, options);
  EXPECT_EQ(causal.kinds, (std::vector<K>{K::Partial, K::Empty, K::Empty, K::Empty,  //
                                          K::Full, K::Partial, K::Empty, K::Empty,   //
                                          K::Empty, K::Empty, K::Partial, K::Empty,  //
                                          K::Empty, K::Empty, K::Full, K::Partial}));
  // Without the contents nothing about the documents is known.
  ClassifyOptions blind;
  blind.B = 2;
  TileMap unknown = classify_tiles(prelude_pattern("document"), 16, 16, 4, 4, blind);
  EXPECT_EQ(unknown.partial, 16);
  // Batch 1 starting its second document one position later makes the tiles around that boundary mixed.
  seg.ids[16 + 8] = 5;
  options.load_bounds = make_load_bounds(std::map<std::string, ir::TensorView>{{"segments", seg.view()}});
  TileMap shifted = classify_tiles(prelude_pattern("document"), 16, 16, 4, 4, options);
  EXPECT_EQ(shifted.at(2, 2), K::Partial);
  EXPECT_EQ(shifted.at(2, 1), K::Partial);
  EXPECT_EQ(shifted.at(3, 3), K::Full);
  EXPECT_EQ(shifted.at(0, 3), K::Empty);
}

TEST(RuntimeTileClassification, HookSeesQueryPositionsNotRowIndices) {
  // N < M: query row i sits at position q = i + M - N, which is what segments[b, q] reads.
  ir::Pattern document = prelude_pattern("document");
  std::vector<std::vector<IntInterval>> seen;
  ClassifyOptions options;
  options.B = 3;
  options.load_bounds = [&](const std::string& tensor, const std::vector<IntInterval>& box) -> std::optional<Interval> {
    EXPECT_EQ(tensor, "segments");
    seen.push_back(box);
    return std::nullopt;
  };
  TileClassifier classifier(document, 10, 50, options);
  EXPECT_EQ(classifier.classify_by_intervals(Tile{2, 6, 30, 35}), TileKind::Partial);
  IntInterval batches = IntInterval::range(0, 2);
  std::vector<IntInterval> queries = {batches, IntInterval::range(42, 45)};
  std::vector<IntInterval> keys = {batches, IntInterval::range(30, 34)};
  EXPECT_NE(std::find(seen.begin(), seen.end(), queries), seen.end());
  EXPECT_NE(std::find(seen.begin(), seen.end(), keys), seen.end());
  for (const auto& box : seen) EXPECT_TRUE(box == queries || box == keys);
}

}  // namespace
}  // namespace tessera::analysis
