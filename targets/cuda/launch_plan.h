// The host side of a CUDA attention call: the sparsity planner's components (shared with the CPU target), each
// view's tiles classified with the kernel's tile sizes, and the per-launch tables the kernel walks (views,
// blocks, key-tile lists, output slots). Plain data, testable without a GPU: a test walks the tables and checks
// that every allowed pair is computed exactly once.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/cuda/kernel/attention_params.cuh"

namespace tessera::cuda {

// How the CUDA kernels run: explicit values with per-architecture defaults (cuda_schedule.h declares them to the
// tuner).
struct CudaSchedule {
  int64_t block_m = 0;  // queries per block (16 per warp); 0: the default for the head dimension
  int64_t block_n = 0;  // keys per tile; 0: the default for the head dimension
  int64_t stages = 0;   // K/V tiles in flight (cp.async pipeline depth, 2 to 4); 0: 2
  int64_t reindex = 1;  // 1: the planner may re-index (any planner::ComponentKind); 0: tile-sparse only
  // Key splits per query tile (each split a block writing its own slot, merged by log-sum-exp): 0 chooses from
  // the grid size, so decoding (few query tiles, many keys) still fills the GPU.
  int64_t kv_splits = 0;
};

// `schedule` with its zero fields replaced by the defaults for head dimensions D and Dv: 128 x 64 tiles up to 128,
// 64 x 32 above (shared memory). Throws std::invalid_argument for tile sizes the kernel template rejects (multiples
// of 16 from 16 to 128) or a negative split count.
// With `wgmma` (the sm_90a kernel) query tiles must be whole warpgroups: 64 or 128.
CudaSchedule resolve_schedule(const CudaSchedule& schedule, int64_t head_dim, int64_t value_dim, bool wgmma = false);

// "block_m=128,block_n=64,reindex=1,kv_splits=0"
std::string describe(const CudaSchedule& schedule);

struct ComponentLaunch {
  std::vector<tessera_cuda::ViewDesc> views;
  std::vector<tessera_cuda::BlockDesc> blocks;
  std::vector<int32_t> tiles;          // key-tile entries (tessera_cuda::tile_entry), per block contiguous
  std::vector<std::string> symbols;    // the kernel's symbols in PatternArgs::symbols order (sorted)
  std::vector<int32_t> symbol_values;  // their values (the view origins are set per view by the kernel)
  int32_t query_origin_symbol = -1, key_origin_symbol = -1;
  int64_t splits = 1;
};

struct LaunchPlan {
  planner::Plan plan;
  std::vector<ComponentLaunch> components;  // one per planner component, same order
  int32_t slots = 1;                        // output slots; 1: blocks write the output directly
  int64_t block_m = 0, block_n = 0;
};

struct LaunchOptions {
  CudaSchedule schedule;
  analysis::ClassifyOptions classify;
  int64_t multiprocessors = 132;  // the GPU's SM count: what kv_splits = 0 aims to fill
};

// Plans `pattern` for sizes `sz`. `tensor_shapes` gives the shape of every run-time tensor the pattern declares
// (their dimension names are symbols the kernels may read). Throws std::runtime_error subclasses for sizes the
// kernel's 32-bit indices cannot address.
LaunchPlan make_launch_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                            const std::map<std::string, std::vector<int64_t>>& tensor_shapes,
                            const LaunchOptions& options);

// Every (query row, key column) pair of the original matrix that a launch computes, with whether the kernel
// evaluates the mask there: what the kernels' tile walk visits, for tests. Pairs are (i, j, masked).
struct VisitedPair {
  int64_t i = 0, j = 0;
  bool masked = false;
  int32_t slot = 0;
};
std::vector<VisitedPair> visited_pairs(const LaunchPlan& plan, size_t component);

}  // namespace tessera::cuda
