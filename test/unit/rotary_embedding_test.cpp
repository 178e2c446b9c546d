// Rotary position embeddings as the runtime applies them, against the rotation written out by hand and against
// the property that makes them positional: a rotated query and key have a dot product that depends on their
// positions only through the difference.
#include "runtime/model/rotary_embedding.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace tessera::runtime {
namespace {

TEST(RotaryEmbedding, RotatesHalvesByPositionTimesInverseFrequency) {
  // Head dim 6, rotary dims 4 (partial: features 4 and 5 pass unchanged), positions 3 and 4, base 100.
  RotaryTable table;
  table.prepare({100.0, 4}, 3, 2);
  std::vector<float> rows = {1, 2, 3, 4, 5, 6, -1, 0.5f, 2, -3, 7, 8};
  apply_rotary(rows.data(), 1, 6, table);
  for (int t = 0; t < 2; ++t) {
    const double p = 3 + t;
    const std::vector<double> x =
        t == 0 ? std::vector<double>{1, 2, 3, 4, 5, 6} : std::vector<double>{-1, 0.5, 2, -3, 7, 8};
    // Pair c of the half split: (x[c], x[c + 2]), angle p / 100^(2c / 4).
    const double a0 = p, a1 = p / 10.0;
    const std::vector<double> want = {x[0] * std::cos(a0) - x[2] * std::sin(a0),
                                      x[1] * std::cos(a1) - x[3] * std::sin(a1),
                                      x[2] * std::cos(a0) + x[0] * std::sin(a0),
                                      x[3] * std::cos(a1) + x[1] * std::sin(a1),
                                      x[4],
                                      x[5]};
    for (int c = 0; c < 6; ++c) EXPECT_NEAR(rows[static_cast<size_t>(t * 6 + c)], want[static_cast<size_t>(c)], 1e-6);
  }
}

TEST(RotaryEmbedding, DotProductsDependOnlyOnThePositionDifference) {
  constexpr int64_t D = 16;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  std::vector<float> q(D), k(D);
  for (int64_t c = 0; c < D; ++c) {
    q[static_cast<size_t>(c)] = normal(rng);
    k[static_cast<size_t>(c)] = normal(rng);
  }
  // The same q and k at every position 0..39, then dot(q at i, k at j) for pairs with the same i - j.
  constexpr int64_t positions = 40;
  std::vector<float> qs, ks;
  for (int64_t p = 0; p < positions; ++p) {
    qs.insert(qs.end(), q.begin(), q.end());
    ks.insert(ks.end(), k.begin(), k.end());
  }
  RotaryTable table;
  table.prepare({10000.0, D}, 0, positions);
  apply_rotary(qs.data(), 1, D, table);
  apply_rotary(ks.data(), 1, D, table);
  auto dot = [&](int64_t i, int64_t j) {
    double s = 0;
    for (int64_t c = 0; c < D; ++c)
      s += double(qs[static_cast<size_t>(i * D + c)]) * ks[static_cast<size_t>(j * D + c)];
    return s;
  };
  for (int64_t shift : {0, 1, 7, 25}) {
    for (int64_t j = 0; j + shift < positions; j += 3) EXPECT_NEAR(dot(j + shift, j), dot(shift, 0), 2e-5) << shift;
  }
  // ... and does depend on it.
  EXPECT_GT(std::fabs(dot(1, 0) - dot(0, 0)), 1e-3);
}

TEST(RotaryEmbedding, TableFollowsThePositionsAsked) {
  RotaryTable table;
  table.prepare({10000.0, 8}, 0, 5);
  const float at3 = table.cos()[3 * 4 + 1];
  table.prepare({10000.0, 8}, 3, 1);  // a decoding step at position 3
  EXPECT_EQ(table.first(), 3);
  EXPECT_EQ(table.count(), 1);
  EXPECT_EQ(table.cos()[1], at3);
  EXPECT_THROW(table.prepare({10000.0, 7}, 0, 1), std::invalid_argument);
}

}  // namespace
}  // namespace tessera::runtime
