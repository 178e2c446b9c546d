// The runtime's GEMMs (runtime::linear) as a tuning problem: the space of blockings at one shape, the tuning
// cache's key for it, and the cost model that ranks the space. `tessera tune --model` searches it for every
// distinct GEMM shape of a model; the model runtime looks the winners up (TunedSchedules::gemm_blocking).
#pragma once

#include <cstdint>
#include <string>

#include "compiler/tuner/schedule_space.h"
#include "compiler/tuner/tune_cache.h"
#include "runtime/linear.h"

namespace tessera::cpu {

struct GemmShape {
  int64_t rows = 0, in = 0, out = 0;  // x [rows, in] times a weight [out, in]
};

// "384 rows x 384 -> 1536"
std::string describe(const GemmShape& shape);

// Blocks of rows and of output features (0: the whole extent, as the default splits them). A block as large as
// its extent (the default's) and blockings that leave a thread without a block are pruned; the smallest blocks
// offered are 32 rows and 64 features.
tuner::ScheduleSpace gemm_schedule_space(const GemmShape& shape, int64_t threads);

// Kernel "gemm", problem "", bucket {rows, in, out} (bucketed), f32, this CPU's target string.
tuner::TuneKey gemm_tune_key(const GemmShape& shape);

runtime::GemmBlocking to_gemm_blocking(const tuner::Schedule& schedule);

// Rough milliseconds of a blocking: the busiest thread's blocks, each its flops at a fraction of the FMA peak
// plus the packing of its slices of x and of the weight (OpenBLAS copies both into its own layout per call).
class GemmCostModel {
 public:
  GemmCostModel(GemmShape shape, int64_t threads);
  double operator()(const tuner::Schedule& schedule) const;

 private:
  GemmShape shape_;
  int64_t threads_;
};

}  // namespace tessera::cpu
