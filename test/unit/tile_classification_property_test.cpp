// Tile classification against brute force on thousands of random masks, matrices and tilings.
//
// Brute force evaluates the mask at every (i, j) with the reference interpreter; the standard masks are also
// checked against the hand-written C++ oracles of independent_attention.h, so that the IR built here is known
// to mean the prelude's patterns.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "compiler/analysis/pattern_stats.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"
#include "test/unit/independent_attention.h"
#include "test/unit/random_expressions.h"
#include "test/unit/standard_masks_ir.h"

namespace tessera::analysis {
namespace {

using ir::Expr;
using ir::Var;

struct Case {
  ir::Pattern pattern;
  oracle::MaskFn oracle;  // empty for random masks
};

std::vector<uint8_t> brute_force(const Expr& mask, int64_t N, int64_t M) {
  std::vector<uint8_t> allowed(static_cast<size_t>(N * M));
  ir::EvalEnv env;
  env.set(Var::N, N);
  env.set(Var::M, M);
  for (int64_t i = 0; i < N; ++i) {
    env.set(Var::I, i);
    env.set(Var::Q, i + M - N);
    for (int64_t j = 0; j < M; ++j) {
      env.set(Var::J, j);
      env.set(Var::K, j);
      allowed[static_cast<size_t>(i * M + j)] = ir::evaluate(mask, env).b;
    }
  }
  return allowed;
}

// The picture render_mask_ascii must draw with its default options, from the brute-force matrix.
std::string expected_picture(const std::vector<uint8_t>& truth, int64_t N, int64_t M) {
  std::string out;
  if (N <= 64 && M <= 64) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) out += truth[static_cast<size_t>(i * M + j)] ? '#' : '.';
      out += '\n';
    }
    return out;
  }
  int64_t rows = std::min<int64_t>(N, 32);
  int64_t cols = std::min<int64_t>(M, 64);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      int64_t allowed = 0, area = 0;
      for (int64_t i = r * N / rows; i < (r + 1) * N / rows; ++i) {
        for (int64_t j = c * M / cols; j < (c + 1) * M / cols; ++j) {
          allowed += truth[static_cast<size_t>(i * M + j)];
          ++area;
        }
      }
      out += allowed == 0 ? ' ' : allowed == area ? '#' : '+';
    }
    out += '\n';
  }
  return out;
}

Case standard_case(testing::ExprGenerator& gen) {
  namespace m = testing::mask_ir;
  switch (gen.pick(0, 7)) {
    case 0: return {testing::mask_pattern("causal", m::causal()), oracle::causal().mask};
    case 1: {
      int64_t w = gen.pick(1, 80);
      return {testing::mask_pattern("sliding_window", m::sliding_window(w)), oracle::sliding_window(w).mask};
    }
    case 2: {
      int64_t w = gen.pick(1, 80);
      return {testing::mask_pattern("local", m::local(w)), oracle::local(w).mask};
    }
    case 3: {
      int64_t s = gen.pick(1, 40);
      return {testing::mask_pattern("strided", m::strided(s)), oracle::strided(s).mask};
    }
    case 4: {
      // Often aligned with the tiles (block a multiple of 8, 16, 32).
      int64_t block = gen.chance(50) ? 8 * gen.pick(1, 8) : gen.pick(1, 70);
      int64_t summary = gen.pick(0, block);
      return {testing::mask_pattern("fixed", m::fixed(block, summary)), oracle::fixed(block, summary).mask};
    }
    case 5: {
      int64_t w = gen.pick(1, 10);
      int64_t dil = gen.pick(1, 8);
      return {testing::mask_pattern("dilated", m::dilated(w, dil)), oracle::dilated(w, dil).mask};
    }
    case 6: {
      int64_t width = gen.pick(1, 24), bh = gen.pick(1, 4), bw = gen.pick(1, 8), hh = gen.pick(0, 2),
              hw = gen.pick(0, 3);
      return {testing::mask_pattern("local2d", m::local2d(width, bh, bw, hh, hw)),
              oracle::local2d(width, bh, bw, hh, hw).mask};
    }
    default: {
      int64_t prefix = gen.pick(0, 120);
      return {testing::mask_pattern("prefix_lm", m::prefix_lm(prefix)), oracle::prefix_lm(prefix).mask};
    }
  }
}

Case random_case(testing::ExprGenerator& gen) {
  return {testing::mask_pattern("random", gen.make(ir::Type::Bool, static_cast<int>(gen.pick(1, 5)))), {}};
}

// Mostly small matrices (fast brute force), sometimes up to 300.
int64_t random_length(testing::ExprGenerator& gen) {
  if (gen.chance(15)) return gen.pick(100, 300);
  return gen.pick(1, 90);
}

TEST(TileClassificationProperty, AgreesWithBruteForce) {
  testing::GeneratorConfig config;
  config.int_vars = {Var::Q, Var::K, Var::I, Var::J, Var::N, Var::M};
  config.floats = false;
  config.bitwise = false;
  config.extreme_constants = false;
  config.small_constant = 40;
  testing::ExprGenerator gen(99, config);
  int exact_checks = 0, decided_by_class = 0, tiles_checked = 0;
  for (int n = 0; n < 5000; ++n) {
    Case cs = gen.chance(40) ? standard_case(gen) : random_case(gen);
    int64_t N = random_length(gen);
    int64_t M = gen.chance(30) ? N : random_length(gen);
    int64_t bq = gen.pick(1, 64);
    int64_t bk = gen.chance(30) ? bq : gen.pick(1, 64);
    ClassifyOptions options;
    const int64_t limits[] = {0, 16, 4096};
    options.enumerate_limit = limits[gen.pick(0, 2)];
    options.split_budget = gen.chance(50) ? 0 : 64;

    std::vector<uint8_t> truth = brute_force(cs.pattern.mask, N, M);
    if (cs.oracle) {
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < M; ++j) {
          ASSERT_EQ(truth[static_cast<size_t>(i * M + j)], cs.oracle(0, 0, i, j, i + M - N, j) ? 1 : 0)
              << cs.pattern.name << " IR disagrees with the oracle at " << i << "," << j;
        }
      }
    }
    TileMap map = classify_tiles(cs.pattern, N, M, bq, bk, options);
    ASSERT_EQ(map.rows, (N + bq - 1) / bq);
    ASSERT_EQ(map.cols, (M + bk - 1) / bk);
    ASSERT_EQ(map.empty + map.full + map.partial, map.rows * map.cols);
    ASSERT_EQ(static_cast<int64_t>(map.kinds.size()), map.rows * map.cols);
    int64_t allowed_total = 0;
    for (int64_t r = 0; r < map.rows; ++r) {
      for (int64_t c = 0; c < map.cols; ++c) {
        Tile t = map.tile(r, c);
        ASSERT_TRUE(t.i0 < t.i1 && t.i1 <= N && t.j0 < t.j1 && t.j1 <= M);
        int64_t allowed = 0;
        for (int64_t i = t.i0; i < t.i1; ++i) {
          for (int64_t j = t.j0; j < t.j1; ++j) allowed += truth[static_cast<size_t>(i * M + j)];
        }
        allowed_total += allowed;
        int64_t area = (t.i1 - t.i0) * (t.j1 - t.j0);
        TileKind kind = map.at(r, c);
        std::string where = cs.pattern.name + " mask " + ir::to_string(cs.pattern.mask) + " N=" + std::to_string(N) +
                            " M=" + std::to_string(M) + " tile rows [" + std::to_string(t.i0) + "," +
                            std::to_string(t.i1) + ") cols [" + std::to_string(t.j0) + "," + std::to_string(t.j1) +
                            ") allowed " + std::to_string(allowed) + "/" + std::to_string(area);
        if (kind == TileKind::Empty) {
          ASSERT_EQ(allowed, 0) << where;
        }
        if (kind == TileKind::Full) {
          ASSERT_EQ(allowed, area) << where;
        }
        if (kind != TileKind::Partial) ++decided_by_class;
        if (area <= options.enumerate_limit) {
          // Enumeration applied: the class is exact.
          ++exact_checks;
          if (kind == TileKind::Partial) {
            ASSERT_TRUE(allowed > 0 && allowed < area) << where;
          }
        }
        ++tiles_checked;
      }
    }
    // The statistics count the same pairs.
    if (n % 5 == 0) {
      PatternStats stats = pattern_stats(cs.pattern, N, M, bq, bk, options);
      ASSERT_TRUE(stats.allowed_pairs.has_value());
      ASSERT_EQ(*stats.allowed_pairs, allowed_total) << ir::to_string(cs.pattern.mask);
      MaskMatrix matrix = mask_matrix(cs.pattern, N, M, options);
      ASSERT_EQ(matrix.allowed, truth) << ir::to_string(cs.pattern.mask) << " N=" << N << " M=" << M;
      ASSERT_EQ(render_mask_ascii(cs.pattern, N, M), expected_picture(truth, N, M)) << ir::to_string(cs.pattern.mask);
    }
  }
  EXPECT_GT(exact_checks, 10000);
  EXPECT_GT(decided_by_class, tiles_checked / 4);
}

// With intervals alone, the standard position masks still get the tiles a kernel cares about: every tile that
// lies entirely inside or entirely outside causal / sliding-window / local / prefix-lm masks, and fixed with
// blocks aligned to the tiles.
TEST(TileClassificationProperty, IntervalsAloneAreExactForPositionMasks) {
  testing::ExprGenerator gen(7, testing::GeneratorConfig{});
  namespace m = testing::mask_ir;
  ClassifyOptions intervals_only;
  intervals_only.enumerate_limit = 0;
  intervals_only.split_budget = 0;
  for (int n = 0; n < 400; ++n) {
    int64_t bq = 8 * gen.pick(1, 8);
    int64_t bk = gen.chance(50) ? bq : 8 * gen.pick(1, 8);
    Expr mask;
    switch (gen.pick(0, 4)) {
      case 0: mask = m::causal(); break;
      case 1: mask = m::sliding_window(gen.pick(1, 200)); break;
      case 2: mask = m::local(gen.pick(1, 200)); break;
      case 3: mask = m::prefix_lm(gen.pick(0, 200)); break;
      default: {
        // Blocks aligned with both tilings (a multiple of both tile sizes), summary 0: exactly the diagonal blocks.
        int64_t block = std::lcm(bq, bk) * gen.pick(1, 2);
        mask = m::fixed(block, 0);
        break;
      }
    }
    ir::Pattern p = testing::mask_pattern("position", mask);
    int64_t N = random_length(gen);
    int64_t M = gen.chance(50) ? N : random_length(gen);
    std::vector<uint8_t> truth = brute_force(mask, N, M);
    TileMap map = classify_tiles(p, N, M, bq, bk, intervals_only);
    for (int64_t r = 0; r < map.rows; ++r) {
      for (int64_t c = 0; c < map.cols; ++c) {
        Tile t = map.tile(r, c);
        int64_t allowed = 0;
        for (int64_t i = t.i0; i < t.i1; ++i) {
          for (int64_t j = t.j0; j < t.j1; ++j) allowed += truth[static_cast<size_t>(i * M + j)];
        }
        int64_t area = (t.i1 - t.i0) * (t.j1 - t.j0);
        TileKind expected = allowed == 0 ? TileKind::Empty : allowed == area ? TileKind::Full : TileKind::Partial;
        ASSERT_EQ(map.at(r, c), expected) << ir::to_string(mask) << " N=" << N << " M=" << M << " tile " << r << ","
                                          << c << " of " << bq << "x" << bk;
      }
    }
  }
}

}  // namespace
}  // namespace tessera::analysis
