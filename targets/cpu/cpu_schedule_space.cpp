#include "targets/cpu/cpu_schedule_space.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <thread>

#include "compiler/ir/printer.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/common/attention_problem.h"
#include "targets/cpu/execution_plan.h"
#include "targets/cpu/tile_cost.h"

namespace tessera::cpu {

namespace {

// The fields the tuner may set, with their candidate values. Query tiles below 16 rows leave vector lanes idle;
// key tiles are the classification grain (smaller tiles skip more of a sparse mask but make more chunks); chunks
// bound the score buffer (a query tile by a chunk must stay in L1/L2).
const std::vector<int64_t> kBlockQ = {16, 32, 64, 128, 256};
const std::vector<int64_t> kBlockK = {16, 32, 64, 128};
const std::vector<int64_t> kChunkK = {64, 128, 256, 512};

bool reindexing_possible(const ir::Pattern& pattern, const ir::AttentionSizes& sz) {
  if (!pattern.has_mask()) return false;
  planner::Plan plan = planner::plan_pattern(pattern, sz.N, sz.M);
  return std::any_of(plan.components.begin(), plan.components.end(),
                     [](const planner::Component& c) { return c.kind != planner::ComponentKind::TileSparse; });
}

}  // namespace

tuner::ScheduleSpace cpu_schedule_space(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                        const std::string& halide_target) {
  // Fewer queries than a tile (decoding): the default is few_query_schedule's tile of the queries there are, what
  // every entry point runs untuned, and for up to 4 queries a tile without vectors across rows (vector_width = rows).
  const CpuSchedule defaults = few_query_schedule(default_schedule(halide_target), sz.N);
  auto with_default = [](std::vector<int64_t> values, int64_t value) {
    if (std::find(values.begin(), values.end(), value) == values.end()) values.insert(values.begin(), value);
    return values;
  };
  tuner::ScheduleSpace space;
  space.target = "cpu";
  space.parameters.push_back(
      {"block_q", with_default(kBlockQ, defaults.block_q), defaults.block_q, "queries per tile"});
  // How far a plan component's query tile may shrink below block_q (execution_plan.h). The components narrow by
  // tile_cost.h's estimate, which is rough: a floor is a refinement, measured (128: never below the default tile).
  // Listed here so that the tuner prints schedules in describe()'s order.
  space.parameters.push_back({"min_block_q", with_default({16, 32, 64, 128}, defaults.min_block_q),
                              defaults.min_block_q, "narrowest query tile a plan component may take", true});
  space.parameters.push_back({"block_k", kBlockK, defaults.block_k, "keys per tile (classification grain)"});
  space.parameters.push_back({"chunk_k", kChunkK, defaults.chunk_k, "keys per chunk of consecutive tiles"});
  // 8 lanes (AVX2 registers) is a candidate on AVX-512 too: on CPUs that split 512-bit operations it can win.
  const bool avx512 = halide_target.find("avx512") != std::string::npos;
  space.parameters.push_back(
      {"vector_width",
       with_default(avx512 ? std::vector<int64_t>{16, 8} : std::vector<int64_t>{8}, defaults.vector_width),
       defaults.vector_width, "float lanes per vector (rows per tile below 8: a few queries)"});
  space.parameters.push_back({"reindex",
                              reindexing_possible(pattern, sz) ? std::vector<int64_t>{1, 0} : std::vector<int64_t>{1},
                              defaults.reindex, "1: residue classes and column sets re-indexed; 0: tile-sparse"});
  // Code generation the cost model cannot rank: register tiles (a tile's columns are the largest divisor of the
  // chunk or of Dv that fits, so 24 accumulators over 4 row vectors make a 4x4 tile on a 128-key chunk; 32
  // accumulators may spill) and the parallel grain. The search refines them by measurement around its winner.
  // Without AVX-512 there are 16 vector registers, not 32: smaller tiles (default_schedule).
  space.parameters.push_back({"row_vectors", avx512 ? std::vector<int64_t>{4, 2, 1} : std::vector<int64_t>{2, 4, 1},
                              defaults.row_vectors, "row vectors per register tile", true});
  space.parameters.push_back({"qk_tile", avx512 ? std::vector<int64_t>{24, 32} : std::vector<int64_t>{12, 8, 24},
                              defaults.qk_tile, "Q.K accumulators per register tile", true});
  space.parameters.push_back({"pv_tile", avx512 ? std::vector<int64_t>{16, 8, 32} : std::vector<int64_t>{8, 12, 16},
                              defaults.pv_tile, "P.V accumulators per register tile", true});
  space.parameters.push_back({"grain", {4, 1, 16}, defaults.grain, "query tiles per kernel call, at most", true});
  // Split-KV for decoding (a few query rows against many keys), where (batch, head) items may not fill the threads.
  // Longer query blocks have query tiles enough to share.
  space.parameters.push_back({"kv_splits",
                              sz.N <= kMaxSplitKvQueries ? std::vector<int64_t>{1, 2, 4} : std::vector<int64_t>{1},
                              defaults.kv_splits, "parts each work item's keys are split into (decoding)"});
  const int64_t rows = std::max<int64_t>(sz.N, 1);
  space.invalid = [rows](const tuner::Schedule& point) -> std::optional<std::string> {
    CpuSchedule s = to_cpu_schedule(point);
    if (s.chunk_k % s.block_k != 0) return "chunk_k is not a multiple of block_k";
    if (s.chunk_k % s.vector_width != 0) return "chunk_k is not a multiple of vector_width";
    if (s.block_q % s.vector_width != 0) return "block_q is not a multiple of vector_width";
    if (s.vector_width < 8 && s.block_q != s.vector_width) return "narrow vectors are for tiles of that many rows";
    // A query tile of more than twice the rows computes mostly padding; one at least a vector wide stays.
    if (s.block_q > s.vector_width && s.block_q >= 2 * rows) return "block_q far beyond the query count";
    return std::nullopt;
  };
  return space;
}

CpuSchedule to_cpu_schedule(const tuner::Schedule& point, CpuSchedule base) {
  for (const auto& [name, value] : point) {
    int64_t* f = schedule_field(base, name);
    if (!f) throw std::invalid_argument(fmt::format("the CPU schedule has no parameter '{}'", name));
    *f = value;
  }
  return base;
}

tuner::Schedule to_tuner_schedule(const CpuSchedule& s) {
  tuner::Schedule point;
  for (const ScheduleField& f : kScheduleFields) point[f.name] = s.*f.member;
  return point;
}

tuner::TuneKey cpu_tune_key(const ir::Pattern& pattern, const ir::AttentionSizes& sz, StorageType storage) {
  tuner::TuneKey key;
  key.kernel = "attention";
  key.problem = tuner::hash_text(ir::to_string(pattern));
  key.bucket = targets::attention_tune_bucket(sz);
  key.dtype = storage == StorageType::BFloat16 ? "bf16" : "f32";
  key.target = "cpu:" + halide_target_string();
  return key;
}

CpuCostModel::CpuCostModel(ir::Pattern pattern, ir::AttentionSizes sz, int64_t threads)
    : pattern_(std::move(pattern)),
      sz_(sz),
      threads_(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency())) {}

const CpuCostModel::PlanWork& CpuCostModel::work(const CpuSchedule& s) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto key = std::make_tuple(s.block_q, s.min_block_q, s.block_k, s.chunk_k, s.vector_width, s.reindex);
  if (auto it = plans_.find(key); it != plans_.end()) return it->second;
  analysis::ClassifyOptions classify;
  classify.B = sz_.B;
  classify.H = sz_.H;
  classify.D = sz_.D;
  // Masks that read run-time tensors are classified per call from their values; without them every tile that
  // may hold a pair counts as PARTIAL, which ranks tilings the same way.
  const auto planner_key = std::make_tuple(s.block_q, s.block_k, s.reindex);
  auto planned = planner_plans_.find(planner_key);
  if (planned == planner_plans_.end()) {
    planned =
        planner_plans_.emplace(planner_key, planner::plan_pattern(pattern_, sz_.N, sz_.M, planner_options(s))).first;
  }
  const ExecutionPlan plan = make_execution_plan(planned->second, sz_, s, classify);
  PlanWork w;
  w.tiling = plan.tiling;
  for (size_t c = 0; c < plan.plan.components.size(); ++c) {
    for (const ViewTables& t : plan.tables[c]) {
      w.calls += 1;
      w.tile_rows += t.tile_rows;
    }
    const ChunkCounts chunks = chunk_counts(plan.tables[c]);
    w.chunks_ns += chunks_ns(static_cast<double>(chunks.full), static_cast<double>(chunks.partial),
                             {plan.tiling[c].block_q, plan.tiling[c].chunk_k, s.vector_width}, sz_.D, sz_.Dv);
  }
  return plans_.emplace(key, w).first->second;
}

double CpuCostModel::operator()(const tuner::Schedule& point) const {
  const CpuSchedule s = to_cpu_schedule(point);
  const PlanWork& w = work(s);
  // Only the ranking matters. The chunks' work is tile_cost.h's; a kernel call costs ~3 us.
  // Split-KV: a call per part, and each further part's state merged per query row after the wave.
  const double splits = static_cast<double>(std::max<int64_t>(1, s.kv_splits));
  const double split_merge_ns = (splits - 1.0) * static_cast<double>(sz_.N) * (static_cast<double>(sz_.Dv) + 30.0);
  const double per_head = w.chunks_ns + 3000.0 * w.calls * splits + split_merge_ns;
  const double heads = static_cast<double>(sz_.B * sz_.H);
  // Work is split over (batch, head, query tile, key part): a few large tiles leave threads idle.
  const double units = std::max(1.0, heads * w.tile_rows * splits);
  const double t = static_cast<double>(threads_);
  const double balance = units / (std::ceil(units / t) * t);
  // Each further thread a call uses is a kept worker to wake (targets/cpu/kept_threads.h): ~10 us when it has gone
  // to sleep, as much as a decoding step over a few hundred keys (where split-KV then does not pay).
  const double wake_ups = (std::min(t, units) - 1.0) * 10000.0;
  return heads * per_head / (t * balance) + wake_ups;
}

std::string CpuCostModel::kernel_identity(const tuner::Schedule& point) const {
  CpuSchedule s = to_cpu_schedule(point);
  const PlanWork& w = work(s);
  // Equal tilings mean equal tables too: no run reached either chunk_k, so neither split one, and every component
  // took the same query and key tiles, whatever min_block_q allowed.
  s.chunk_k = 0;
  s.min_block_q = 0;
  std::vector<std::string> tiles;
  for (const ComponentTiling& t : w.tiling) tiles.push_back(fmt::format("{}x{}x{}", t.block_q, t.block_k, t.chunk_k));
  return fmt::format("{}|tiles={}", describe(s), fmt::join(tiles, ","));
}

}  // namespace tessera::cpu
