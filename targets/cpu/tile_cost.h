// What a CPU kernel's chunks cost, by the tile they are computed in: one estimate that both the tuner's cost model
// (cpu_schedule_space.h), which ranks whole schedules, and the execution plan (execution_plan.h), which picks each
// component's tile within a schedule, price work with, so that the two cannot disagree on which tile is cheaper.
#pragma once

#include <cstdint>

namespace tessera::cpu {

// A kernel's tile: query rows, the keys its chunks loop over (whatever each run's length), its vector lanes.
struct TileShape {
  int64_t block_q = 0, chunk_k = 0, vector_width = 16;
};

// Estimated nanoseconds, on one thread, of computing `full_chunks` FULL and `partial_chunks` PARTIAL chunks of
// `tile` (D: the head dimension of Q and K, Dv: of V): the two small matrix products of every (row, key) pair of
// each chunk, with the mask on PARTIAL ones, plus each chunk's merge into every row's state and its loop set-up.
// Narrow tiles cost more per pair: a key feature loaded into a register feeds fewer query-row vectors, and the
// merge and set-up are spread over fewer pairs. Fitted on a 2-core AVX-512 VM; only comparisons are meaningful.
double chunks_ns(double full_chunks, double partial_chunks, const TileShape& tile, int64_t D, int64_t Dv);

}  // namespace tessera::cpu
