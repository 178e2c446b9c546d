// The CPU kernels' schedule space as the backend declares it to the tuner (compiler/tuner/): tile sizes, chunk
// length, vector width and the planner's re-indexing choice, with the constraints the kernels need and an
// analytic cost model computed from the execution plan each point would run (pairs per tile kind, chunk merges,
// kernel calls, load balance). The tuner knows nothing of these names; this file is the only place that does.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "compiler/tuner/schedule_space.h"
#include "compiler/tuner/tune_cache.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/execution_plan.h"

namespace tessera::cpu {

// The space for `pattern` at sizes `sz` on the Halide target `halide_target` (its features decide the vector
// widths). The defaults are CpuSchedule's.
tuner::ScheduleSpace cpu_schedule_space(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                        const std::string& halide_target);

// A tuner point as a CpuSchedule: the named fields replaced in `base`. Throws std::invalid_argument for a name
// the CPU schedule does not have (a cache written by a newer Tessera is refused by its version first).
CpuSchedule to_cpu_schedule(const tuner::Schedule& point, CpuSchedule base = host_default_schedule());
tuner::Schedule to_tuner_schedule(const CpuSchedule& schedule);  // every tunable field (not threads)

// The key under which the tuning cache holds the schedule of `pattern` at `sz` with `storage` on this machine.
tuner::TuneKey cpu_tune_key(const ir::Pattern& pattern, const ir::AttentionSizes& sz, StorageType storage);

// An estimate of a schedule's run time in nanoseconds, used only to rank points: the work of every chunk the
// execution plan would visit (a whole query tile by a whole chunk: the kernels' loops run over their component's
// chunk length, chunk_k or its longest run where shorter, whatever each run's length, with the mask's cost on
// PARTIAL chunks), the merge per chunk and query row, a fixed cost per kernel call, all spread over the threads
// with the imbalance of the query tiles. Plans are memoised by their tile sizes, so ranking a whole space plans
// each tiling once.
class CpuCostModel {
 public:
  CpuCostModel(ir::Pattern pattern, ir::AttentionSizes sz, int64_t threads);
  double operator()(const tuner::Schedule& point) const;
  // What `point` runs: its schedule with each plan component's chunk length (which may be shorter than chunk_k,
  // see ExecutionPlan::chunk_keys) in place of chunk_k. For ScheduleSpace::kernel_identity.
  std::string kernel_identity(const tuner::Schedule& point) const;

 private:
  struct PlanWork {
    double chunks_ns = 0;  // per head, every component's chunks in its own tile (tile_cost.h)
    double calls = 0, tile_rows = 0;
    std::vector<ComponentTiling> tiling;  // per component
  };
  const PlanWork& work(const CpuSchedule& schedule) const;

  ir::Pattern pattern_;
  ir::AttentionSizes sz_;
  int64_t threads_;
  mutable std::mutex mutex_;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>, PlanWork> plans_;
  // The planner's plans by (block_q, block_k, reindex): what the points sharing them do not plan again.
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, planner::Plan> planner_plans_;
};

}  // namespace tessera::cpu
