#include "targets/cpu/tile_cost.h"

#include <gtest/gtest.h>

namespace tessera::cpu {
namespace {

double per_pair(int64_t block_q, int64_t chunk_k, bool partial, int64_t vector_width = 16) {
  const TileShape tile{block_q, chunk_k, vector_width};
  const double pairs = static_cast<double>(block_q * chunk_k);
  return (partial ? chunks_ns(0, 1, tile, 64, 64) : chunks_ns(1, 0, tile, 64, 64)) / pairs;
}

// What the execution plan trades against fewer pairs when it narrows a component's tile: a pair costs more in a
// narrower tile (rows share fewer key loads, a chunk's merge and set-up spread over fewer pairs), more again under
// the mask, and a chunk's cost grows with its pairs.
TEST(TileCost, NarrowerTilesCostMorePerPairAndTheMaskCostsExtra) {
  for (const bool partial : {false, true}) {
    EXPECT_LT(per_pair(128, 64, partial), per_pair(64, 64, partial));
    EXPECT_LT(per_pair(64, 64, partial), per_pair(32, 64, partial));
    EXPECT_LT(per_pair(32, 64, partial), per_pair(16, 64, partial));
    EXPECT_LT(per_pair(64, 64, partial), per_pair(64, 32, partial));
  }
  for (const int64_t rows : {16, 32, 64, 128}) {
    EXPECT_GT(per_pair(rows, 64, true), 1.2 * per_pair(rows, 64, false)) << rows;
  }
  // The ratios the model was fitted to (dilated(32, 4)'s PARTIAL chunks): 32 x 32 at 1.1-1.5x the cost per pair of
  // 64 x 64, 16 x 16 at 1.5-2x.
  const double base = per_pair(64, 64, true);
  EXPECT_GT(per_pair(32, 32, true) / base, 1.1);
  EXPECT_LT(per_pair(32, 32, true) / base, 1.5);
  EXPECT_GT(per_pair(16, 16, true) / base, 1.5);
  EXPECT_LT(per_pair(16, 16, true) / base, 2.0);
  // Work adds up: twice the chunks, twice the cost; wider heads cost more.
  const TileShape tile{64, 64, 16};
  EXPECT_DOUBLE_EQ(chunks_ns(6, 4, tile, 64, 64), 2 * chunks_ns(3, 2, tile, 64, 64));
  EXPECT_GT(chunks_ns(1, 0, tile, 128, 128), 1.8 * chunks_ns(1, 0, tile, 64, 64));
  EXPECT_EQ(chunks_ns(0, 0, tile, 64, 64), 0.0);
}

}  // namespace
}  // namespace tessera::cpu
