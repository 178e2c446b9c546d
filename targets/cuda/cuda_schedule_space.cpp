#include "targets/cuda/cuda_schedule_space.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "compiler/ir/printer.h"
#include "targets/common/attention_problem.h"

namespace tessera::cuda {
namespace {

struct Field {
  const char* name;
  int64_t CudaSchedule::*member;
};
constexpr Field kFields[] = {{"block_m", &CudaSchedule::block_m},
                             {"block_n", &CudaSchedule::block_n},
                             {"stages", &CudaSchedule::stages},
                             {"reindex", &CudaSchedule::reindex},
                             {"kv_splits", &CudaSchedule::kv_splits}};

}  // namespace

tuner::ScheduleSpace cuda_schedule_space(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                         const CudaDeviceLimits& limits) {
  const CudaSchedule defaults = resolve_schedule({}, sz.D, sz.Dv, limits.wgmma);
  tuner::ScheduleSpace space;
  space.target = "cuda";
  std::vector<int64_t> block_m = limits.wgmma ? std::vector<int64_t>{128, 64} : std::vector<int64_t>{128, 64, 32};
  space.parameters.push_back({"block_m", block_m, defaults.block_m, "queries per block (16 per warp)"});
  space.parameters.push_back({"block_n", {64, 32, 128}, defaults.block_n, "keys per tile"});
  space.parameters.push_back({"stages", {2, 3, 4}, defaults.stages, "K/V tiles in flight (cp.async pipeline)"});
  // Re-indexing is a choice only where the planner would re-index.
  if (planner::plan_pattern(pattern, sz.N, sz.M, {.block_q = defaults.block_m, .block_k = defaults.block_n})
          .components.back()
          .kind != planner::ComponentKind::TileSparse) {
    space.parameters.push_back({"reindex", {1, 0}, 1, "1: residue classes / column sets re-indexed; 0: tile-sparse"});
  }
  // Key splits matter when the query tiles alone leave multiprocessors idle (decoding).
  const int64_t query_tiles = (sz.N + defaults.block_m - 1) / defaults.block_m * sz.B * sz.H;
  if (query_tiles < limits.multiprocessors) {
    space.parameters.push_back({"kv_splits", {0, 1, 2, 4, 8, 16}, 0, "key splits per query tile (0: from the grid)"});
  }
  const ir::AttentionSizes dims = sz;
  space.invalid = [dims, limits](const tuner::Schedule& point) -> std::optional<std::string> {
    const CudaSchedule s = to_cuda_schedule(point);
    const int64_t shared = kernel_shared_bytes(kernel_config(dims, s));
    if (shared > limits.shared_bytes)
      return fmt::format("needs {} bytes of shared memory, the device has {}", shared, limits.shared_bytes);
    if (limits.wgmma && s.block_m % 64 != 0) return "the sm_90a kernel's query tile is whole warpgroups";
    // Wide heads: 128 value columns of accumulators per thread already; a 128-key tile's scores spill.
    if (std::max(dims.D, dims.Dv) > 128 && s.block_n > 64) return "key tile too wide for the registers";
    return std::nullopt;
  };
  return space;
}

CudaSchedule to_cuda_schedule(const tuner::Schedule& point, CudaSchedule base) {
  for (const auto& [name, value] : point) {
    const Field* field = nullptr;
    for (const Field& f : kFields) {
      if (name == f.name) field = &f;
    }
    if (!field) throw std::invalid_argument(fmt::format("the CUDA schedule has no parameter '{}'", name));
    base.*(field->member) = value;
  }
  return base;
}

tuner::Schedule to_tuner_schedule(const CudaSchedule& schedule) {
  tuner::Schedule point;
  for (const Field& f : kFields) point[f.name] = schedule.*f.member;
  return point;
}

tuner::TuneKey cuda_tune_key(const ir::Pattern& pattern, const ir::AttentionSizes& sz, Element element,
                             const std::string& device) {
  tuner::TuneKey key;
  key.kernel = "attention";
  key.problem = tuner::hash_text(ir::to_string(pattern));
  key.bucket = targets::attention_tune_bucket(sz);
  key.dtype = element_name(element);
  key.target = "cuda:" + device;
  return key;
}

CudaCostModel::CudaCostModel(ir::Pattern pattern, ir::AttentionSizes sz, CudaDeviceLimits limits)
    : pattern_(std::move(pattern)), sz_(sz), limits_(limits) {}

const CudaCostModel::PlanWork& CudaCostModel::work(const CudaSchedule& s) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto key = std::make_tuple(s.block_m, s.block_n, s.reindex, s.kv_splits);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second;
  LaunchOptions options;
  options.schedule = s;
  options.multiprocessors = limits_.multiprocessors;
  options.classify.B = sz_.B;
  options.classify.H = sz_.H;
  options.classify.D = sz_.D;
  const LaunchPlan plan = make_launch_plan(pattern_, sz_, {}, options);
  PlanWork w;
  for (const ComponentLaunch& component : plan.components) {
    for (const tessera_cuda::BlockDesc& block : component.blocks) {
      w.blocks += 1;
      double tiles = 0;
      for (int32_t t = block.tile_begin; t < block.tile_end; ++t) {
        tiles += 1;
        (tessera_cuda::entry_masked(component.tiles[static_cast<size_t>(t)]) ? w.partial_tiles : w.full_tiles) += 1;
      }
      w.longest_block = std::max(w.longest_block, tiles);
    }
  }
  return plans_.emplace(key, w).first->second;
}

double CudaCostModel::operator()(const tuner::Schedule& point) const {
  const CudaSchedule s = resolve_schedule(to_cuda_schedule(point), sz_.D, sz_.Dv, limits_.wgmma);
  const PlanWork& w = work(s);
  // Orders of magnitude for an H100-class part (no GPU has measured them yet; only the ranking matters): about
  // 1000 dense bf16 TFLOP/s over 132 multiprocessors is ~7500 flops/ns each with wgmma, about half with mma.sync;
  // the softmax adds per-element work and the mask ~30% more on PARTIAL tiles; each tile has a load latency the
  // pipeline hides better with more stages; each wave a fixed launch-and-epilogue cost.
  const double flops_per_ns = limits_.wgmma ? 7500.0 : 3500.0;
  const double tile_flops = 2.0 * static_cast<double>(s.block_m * s.block_n * (sz_.D + sz_.Dv));
  const double tile_ns = tile_flops / flops_per_ns + 0.05 * static_cast<double>(s.block_m * s.block_n) / 32.0;
  const double exposed_latency_ns = 600.0 / static_cast<double>(s.stages);
  const double per_block = static_cast<double>(sz_.B * sz_.H);
  const double work_ns = per_block * (w.full_tiles * (tile_ns + exposed_latency_ns) +
                                      w.partial_tiles * (1.3 * tile_ns + exposed_latency_ns));
  // Blocks resident per multiprocessor, from shared memory; whole waves.
  const double resident = std::max<int64_t>(1, limits_.shared_bytes / kernel_shared_bytes(kernel_config(sz_, s)));
  const double slots = static_cast<double>(limits_.multiprocessors) * resident;
  const double blocks = w.blocks * per_block;
  const double waves = std::ceil(blocks / slots);
  const double block_ns = blocks > 0 ? work_ns / blocks : 0.0;
  const double longest_ns = w.longest_block * (tile_ns + exposed_latency_ns);
  // Whole waves of average blocks (a multiprocessor shares its tensor cores among its resident blocks), never
  // less than the longest block.
  return std::max(waves * block_ns * resident, longest_ns) + 2000.0 * waves;
}

}  // namespace tessera::cuda
