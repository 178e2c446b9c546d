#include "targets/cpu/tile_cost.h"

#include <algorithm>
#include <cmath>

namespace tessera::cpu {

double chunks_ns(double full_chunks, double partial_chunks, const TileShape& tile, int64_t D, int64_t Dv) {
  // Orders of magnitude measured on a 2-core AVX-512 VM. The Q.K and P.V loops reach ~50 flops/ns per thread at 16
  // lanes (30 at 8) with 4 row vectors per register tile; fewer row vectors reload each key for fewer rows (1
  // vector: about half the rate). Exp, max and sums over the score buffer add ~25% per pair, the mask ~30% more on
  // PARTIAL chunks. A score buffer (query tile x chunk) beyond L1 costs bandwidth. A chunk costs a merge per row
  // (~3 flops per value column plus an exp) and a fixed loop set-up. This prices a pair of a PARTIAL 32 x 64 or
  // 32 x 32 chunk at 1.2x one of a 64 x 64 chunk, and of a 16 x 16 chunk at 1.7x; per pair of dilated(32, 4) at
  // N=4096 in those tiles, measured: 1.2x, 1.4x and 1.6x.
  const double lanes_rate = tile.vector_width >= 16 ? 50.0 : 30.0;
  const int64_t lanes = std::max<int64_t>(1, tile.vector_width);
  const double row_vectors = static_cast<double>(std::clamp<int64_t>(tile.block_q / lanes, 1, 4));
  const double flops_per_ns = lanes_rate * (row_vectors / (row_vectors + 1.0)) / 0.8;
  const double buffer_kib = static_cast<double>(tile.block_q * tile.chunk_k * 4) / 1024.0;
  const double spill = 1.0 + 0.15 * std::max(0.0, std::log2(buffer_kib / 32.0));
  const double pair_ns = 2.0 * static_cast<double>(D + Dv) / flops_per_ns * 1.25 * spill;
  const double merge_ns = (3.0 * static_cast<double>(Dv) + 40.0) / lanes_rate;
  const double rows = static_cast<double>(tile.block_q);
  const double chunk_pairs = rows * static_cast<double>(tile.chunk_k);
  const double per_chunk = merge_ns * rows + 200.0;
  return pair_ns * chunk_pairs * (full_chunks + 1.3 * partial_chunks) + per_chunk * (full_chunks + partial_chunks);
}

}  // namespace tessera::cpu
