// What the CPU driver needs besides the data: the sparsity plan of a pattern for one problem size and, per
// view, its chunk tables (runs of FULL and PARTIAL key tiles per query tile), in the driver's plain-data form.
// The JIT path builds and caches them per call shape; `tessera compile` bakes them into a library.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compiler/analysis/tile_classification.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/cpu/attention_driver.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

// One view's chunk tables, owned (see tessera_cpu_driver::ChunkTables for the layout).
struct ViewTables {
  std::vector<int32_t> full, partial;                // [tile_rows][max(1, max_*)][2]
  std::vector<int32_t> full_counts, partial_counts;  // [tile_rows]
  int32_t max_full = 0, max_partial = 0, tile_rows = 0;
  int64_t longest_run = 0;  // keys in the longest run

  tessera_cpu_driver::ChunkTables driver_tables() const;
};

// The chunks a component's kernel runs over all its views, by kind: each run of tiles is one chunk.
struct ChunkCounts {
  int64_t full = 0, partial = 0;
};
ChunkCounts chunk_counts(const std::vector<ViewTables>& views);

// Splits a classified tile map into chunk tables: runs of consecutive tiles of one kind, at most
// tiles_per_chunk tiles long.
ViewTables chunk_tables(const analysis::TileMap& tiles, int64_t M, int64_t tiles_per_chunk);

// The narrowest key tile a component takes of its own accord (the schedule's block_k may be narrower).
inline constexpr int64_t kMinBlockK = 16;

// The tiles one component's kernel is compiled for. Each component starts from the schedule's tile and halves its
// query rows (down to min_block_q, or further while a tile still holds a whole view), with or without its keys
// (down to kMinBlockK), one halving at a time, while the cheaper halving lowers the cost model's estimate
// (tile_cost.h) by a twentieth: fewer pairs computed, each at a higher price in a narrower tile. A narrow band
// (strided's `q - k < 128` part) spans block_q + its width in keys per query tile, so 64-row tiles compute 3/4 of what
// 128-row tiles do, and sliding_window(256)'s 5/6 (1.15x faster at N=4096 and 16384); dilated(32, 4)'s residue classes,
// bands 32 keys wide, take 32 x 32 tiles (1.5x faster than 64 x 64 at N=4096); a dense causal component keeps its
// tile, which halving would save ~1% of pairs.
struct ComponentTiling {
  int64_t block_q = 0;  // queries per tile
  int64_t block_k = 0;  // keys per tile: the granularity of its runs
  // Keys per chunk: the schedule's chunk_k, or fewer where no run of tiles is that long (fewer than block_k where
  // the views hold fewer keys than a tile). The kernels loop over
  // whole chunks, so a 64-key run in a 128-key chunk computes twice its pairs: sparse components (strided's band
  // and residue classes) have only short runs. Components with one row of query tiles (decoding steps) keep
  // the schedule's tiles and chunk_k.
  int64_t chunk_k = 0;
};

struct ExecutionPlan {
  planner::Plan plan;
  std::vector<std::vector<ViewTables>> tables;  // [component][view], classified with that component's tiling
  std::vector<ComponentTiling> tiling;          // [component]
};

// Keys per chunk for runs of at most `longest_run` keys: block_k times a power of two, at most chunk_k, and a
// multiple of the vector width (a few kernel variants per schedule, not one per run length).
int64_t chunk_keys_for_runs(int64_t longest_run, const CpuSchedule& sched);

// The planner's options for `sched`: its tiles (for the pairs each candidate plan would compute) and whether it may
// re-index.
planner::PlanOptions planner_options(const CpuSchedule& sched);

// Plans `pattern` for sizes `sz` and classifies every tile of every view with its component's tiling.
ExecutionPlan make_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify);
// The same for `plan`, made by planner::plan_pattern with planner_options(sched): planning costs most of the
// time, and schedules that differ only in chunks or vectors share it (the tuner's cost model ranks hundreds).
ExecutionPlan make_execution_plan(planner::Plan plan, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify);

// The same with each component's tiles given (one per component of `plan`), not chosen: how a mask that reads
// run-time tensors is classified per call, with the tiles of its plan from the mask alone (cached_execution_plan
// without load bounds), so that its kernels do not change with the values. Its views' tiles can then only turn
// from PARTIAL to EMPTY or FULL, and no run outgrows the chunks the tiling's kernels loop over.
ExecutionPlan make_execution_plan(planner::Plan plan, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify, const std::vector<ComponentTiling>& tiling);

// The same, cached by (pattern, sizes, tiles): planning costs more than a small attention call. The cache holds a
// bounded number of plans (decoding asks for one per context length).
std::shared_ptr<const ExecutionPlan> cached_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                           const CpuSchedule& sched,
                                                           const analysis::ClassifyOptions& classify);
// The plan one call runs: the cached plan or, for a mask over run-time tensors (`classify.load_bounds` set from the
// call's tensors), that plan's tiles classified with the tensors' values (tiles between segments that cannot meet
// turn EMPTY). The cached part is planned without load bounds, whatever `classify` holds.
std::shared_ptr<const ExecutionPlan> call_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                         const CpuSchedule& sched,
                                                         const analysis::ClassifyOptions& classify);

// The (query, key) pairs the kernels of `execution` compute per (batch, head): each run of tiles a whole query tile
// by a whole chunk of its component, whatever the mask keeps of it (for a mask over run-time tensors, tiled from
// the mask alone, an upper bound; call_execution_plan's is exact). What the cost model prices and `tessera bench`
// reports beside the allowed pairs.
int64_t kernel_pairs(const ExecutionPlan& execution);
int64_t kernel_pairs(const ExecutionPlan& execution, size_t component);  // of one component

// The kernel key of component c of `execution` (the kernel reads every run-time tensor the pattern declares).
AttentionPipelineKey component_kernel_key(const ExecutionPlan& execution, size_t c, const ir::Pattern& pattern,
                                          const ir::AttentionSizes& sz, const CpuSchedule& schedule,
                                          StorageType storage, const std::string& target, bool guard_values);

// The driver's view of a plan: component c uses kernel c. `tensor_shapes` gives the shape of every run-time
// tensor the pattern declares (their dimension names are symbols the kernels may read).
std::vector<tessera_cpu_driver::ComponentPlan> driver_components(
    const ExecutionPlan& execution, const ir::Pattern& pattern, const ir::AttentionSizes& sz,
    const std::map<std::string, std::vector<int64_t>>& tensor_shapes);

}  // namespace tessera::cpu
