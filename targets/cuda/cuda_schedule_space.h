// The CUDA kernels' schedule space as the backend declares it to the tuner (compiler/tuner/): tile sizes (whose
// query tile fixes the warp count: 16 rows a warp), pipeline stages, the planner's re-indexing choice and the
// key splits of decoding, with the constraints the kernel template and the device impose, and an analytic cost
// model over the launch plan each point would run. Candidates are timed only on a GPU.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <tuple>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "compiler/tuner/schedule_space.h"
#include "compiler/tuner/tune_cache.h"
#include "targets/cuda/kernel_source.h"
#include "targets/cuda/launch_plan.h"

namespace tessera::cuda {

struct CudaDeviceLimits {
  bool wgmma = false;                 // sm_90a: query tiles are whole warpgroups
  int64_t shared_bytes = 227 * 1024;  // dynamic shared memory a block may use
  int64_t multiprocessors = 132;
};

// The space for `pattern` at sizes `sz` on a device with `limits`; defaults are resolve_schedule's.
tuner::ScheduleSpace cuda_schedule_space(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                         const CudaDeviceLimits& limits);

CudaSchedule to_cuda_schedule(const tuner::Schedule& point, CudaSchedule base = {});
tuner::Schedule to_tuner_schedule(const CudaSchedule& schedule);

// The cache key of `pattern` at `sz` with `element` on the device called `device` (architecture and name).
tuner::TuneKey cuda_tune_key(const ir::Pattern& pattern, const ir::AttentionSizes& sz, Element element,
                             const std::string& device);

// An estimate of a schedule's run time in nanoseconds, to rank points: the tiles every block visits (each a
// block_m x block_n x (D + Dv) product at the tensor cores' rate, PARTIAL ones paying for the mask), spread over
// the multiprocessors in whole waves, with the pipeline's exposed latency per tile shrinking with more stages.
class CudaCostModel {
 public:
  CudaCostModel(ir::Pattern pattern, ir::AttentionSizes sz, CudaDeviceLimits limits);
  double operator()(const tuner::Schedule& point) const;

 private:
  struct PlanWork {
    double blocks = 0, full_tiles = 0, partial_tiles = 0, longest_block = 0;
  };
  const PlanWork& work(const CudaSchedule& schedule) const;

  ir::Pattern pattern_;
  ir::AttentionSizes sz_;
  CudaDeviceLimits limits_;
  mutable std::mutex mutex_;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, PlanWork> plans_;
};

}  // namespace tessera::cuda
