#include "targets/cpu/execution_plan.h"

#include <fmt/format.h>

#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include "compiler/ir/printer.h"
#include "targets/common/kernel_symbols.h"
#include "targets/cpu/tile_cost.h"

namespace tessera::cpu {

tessera_cpu_driver::ChunkTables ViewTables::driver_tables() const {
  return {full.data(), partial.data(), full_counts.data(), partial_counts.data(), max_full, max_partial, tile_rows};
}

ViewTables chunk_tables(const analysis::TileMap& tiles, int64_t M, int64_t tiles_per_chunk) {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> runs[2];  // [full, partial][row] -> (first, count)
  int64_t longest = 0;
  for (auto& r : runs) r.resize(static_cast<size_t>(tiles.rows));
  for (int64_t row = 0; row < tiles.rows; ++row) {
    for (int64_t c = 0; c < tiles.cols;) {
      analysis::TileKind kind = tiles.at(row, c);
      if (kind == analysis::TileKind::Empty) {
        ++c;
        continue;
      }
      int64_t end = c + 1;
      while (end < tiles.cols && end - c < tiles_per_chunk && tiles.at(row, end) == kind) ++end;
      int64_t first = c * tiles.block_k;
      int64_t last = std::min(end * tiles.block_k, M);
      runs[kind == analysis::TileKind::Full ? 0 : 1][static_cast<size_t>(row)].emplace_back(
          static_cast<int32_t>(first), static_cast<int32_t>(last - first));
      longest = std::max(longest, last - first);
      c = end;
    }
  }
  ViewTables t;
  t.tile_rows = static_cast<int32_t>(tiles.rows);
  t.longest_run = longest;
  int32_t* max_slots[2] = {&t.max_full, &t.max_partial};
  std::vector<int32_t>* table[2] = {&t.full, &t.partial};
  std::vector<int32_t>* counts[2] = {&t.full_counts, &t.partial_counts};
  for (int kind = 0; kind < 2; ++kind) {
    for (const auto& row : runs[kind]) *max_slots[kind] = std::max(*max_slots[kind], static_cast<int32_t>(row.size()));
    const size_t slots = static_cast<size_t>(std::max(1, *max_slots[kind]));
    table[kind]->assign(2 * slots * static_cast<size_t>(tiles.rows), 0);
    counts[kind]->assign(static_cast<size_t>(tiles.rows), 0);
    for (size_t row = 0; row < runs[kind].size(); ++row) {
      const auto& r = runs[kind][row];
      (*counts[kind])[row] = static_cast<int32_t>(r.size());
      for (size_t slot = 0; slot < r.size(); ++slot) {
        (*table[kind])[2 * (row * slots + slot)] = r[slot].first;
        (*table[kind])[2 * (row * slots + slot) + 1] = r[slot].second;
      }
    }
  }
  return t;
}

ChunkCounts chunk_counts(const std::vector<ViewTables>& views) {
  ChunkCounts n;
  for (const ViewTables& view : views) {
    for (size_t row = 0; row < static_cast<size_t>(view.tile_rows); ++row) {
      n.full += view.full_counts[row];
      n.partial += view.partial_counts[row];
    }
  }
  return n;
}

int64_t chunk_keys_for_runs(int64_t longest_run, const CpuSchedule& sched) {
  // Runs shorter than a tile are views with fewer keys than block_k (strided(128)'s residue classes at N=4096 hold
  // 32): their chunks take only those keys, instead of a whole tile of which the rest is masked.
  int64_t keys = longest_run > 0 ? std::min(sched.block_k, longest_run) : sched.block_k;
  while (keys < longest_run && keys < sched.chunk_k) keys *= 2;
  keys = std::min(keys, sched.chunk_k);
  return (keys + sched.vector_width - 1) / sched.vector_width * sched.vector_width;
}

planner::PlanOptions planner_options(const CpuSchedule& sched) {
  planner::PlanOptions options;
  options.block_q = sched.block_q;
  options.block_k = sched.block_k;
  options.allow_reindexing = sched.reindex != 0;
  return options;
}

ExecutionPlan make_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify) {
  return make_execution_plan(planner::plan_pattern(pattern, sz.N, sz.M, planner_options(sched)), sz, sched,
                             std::move(classify));
}

namespace {

// Exact enumeration of undecided tiles would only turn PARTIAL into EMPTY or FULL for masks the intervals cannot
// follow; a small limit keeps planning fast for long sequences.
constexpr int64_t kPlanEnumerateLimit = 256;

// A component's views classified with block_q x block_k tiles, and what its kernel then costs: every run of tiles
// costs a whole chunk.
struct Tiled {
  std::vector<analysis::TileMap> maps;
  std::vector<ViewTables> tables;
  ComponentTiling tiling;
  int64_t tile_rows = 0;
  double cost = 0;
};

// `chunk_k`: the chunk the kernel is compiled for, or 0 to fit it to the runs. `coarse`: the views' maps in tiles
// that these subdivide, refined rather than classified again, or null.
Tiled tile_component(const planner::Component& component, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                     const analysis::ClassifyOptions& classify, int64_t block_q, int64_t block_k, int64_t chunk_k,
                     const std::vector<analysis::TileMap>* coarse = nullptr) {
  Tiled t;
  int64_t longest_run = 0;
  const int64_t tiles_per_chunk = std::max<int64_t>(1, (chunk_k > 0 ? chunk_k : sched.chunk_k) / block_k);
  for (size_t n = 0; n < component.views.size(); ++n) {
    const planner::View& view = component.views[n];
    ir::Pattern bound = planner::bind_view(component, view, sz.N, sz.M);
    const analysis::TileMap& tiles =
        t.maps.emplace_back(analysis::classify_tiles(bound, view.queries.count, view.keys.count, block_q, block_k,
                                                     classify, coarse != nullptr ? &coarse->at(n) : nullptr));
    const ViewTables& v = t.tables.emplace_back(chunk_tables(tiles, view.keys.count, tiles_per_chunk));
    longest_run = std::max(longest_run, v.longest_run);
    t.tile_rows += v.tile_rows;
  }
  if (chunk_k == 0) {
    // A single row of query tiles is a decoding step: its runs grow with the context, and shrinking its chunks
    // would compile a new kernel each time the context passes a chunk size.
    CpuSchedule keys = sched;
    keys.block_k = block_k;
    chunk_k = t.tile_rows > 1 ? chunk_keys_for_runs(longest_run, keys) : sched.chunk_k;
  } else if (longest_run > chunk_k) {
    throw std::logic_error(
        fmt::format("tessera internal error: a run of {} keys is longer than the {}-key chunks its kernel loops over",
                    longest_run, chunk_k));
  }
  t.tiling = {block_q, block_k, chunk_k};
  const ChunkCounts chunks = chunk_counts(t.tables);
  t.cost = chunks_ns(static_cast<double>(chunks.full), static_cast<double>(chunks.partial),
                     {block_q, chunk_k, sched.vector_width}, std::max<int64_t>(sz.D, 1), std::max<int64_t>(sz.Dv, 1));
  return t;
}

}  // namespace

ExecutionPlan make_execution_plan(planner::Plan plan, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify) {
  classify.enumerate_limit = kPlanEnumerateLimit;
  ExecutionPlan execution;
  execution.plan = std::move(plan);
  for (const planner::Component& component : execution.plan.components) {
    // Candidates are compared on the intervals' classification alone (sound, with more tiles left PARTIAL): the
    // splitting and enumeration that settle PARTIAL tiles cost most of a plan's time (local2d at N=65536), and
    // run once, on the chosen tiles.
    analysis::ClassifyOptions quick = classify;
    quick.split_budget = 0;
    quick.enumerate_limit = 0;
    const auto tile = [&](int64_t block_q, int64_t block_k, const Tiled* wider = nullptr) {
      return tile_component(component, sz, sched, quick, block_q, block_k, 0, wider ? &wider->maps : nullptr);
    };
    // Below min_block_q a tile still narrows while it holds every query of each view: the rows it drops were
    // past the views' ends, computed and thrown away (strided(128)'s residue classes at N=4096 are 32 x 32).
    int64_t view_queries = 0;
    for (const planner::View& view : component.views) view_queries = std::max(view_queries, view.queries.count);
    const auto narrower_rows = [&](int64_t block_q) {
      const int64_t half = block_q / 2;
      return half > 0 && half % sched.vector_width == 0 && (half >= sched.min_block_q || half >= view_queries);
    };
    const auto narrower_keys = [&](int64_t block_k) {
      const int64_t half = block_k / 2;
      return block_k % 2 == 0 && half >= std::max(kMinBlockK, sched.vector_width);
    };
    // Descent from the schedule's tile, halving its rows or both its rows and keys at each step, while the cheaper
    // saves a twentieth of the estimate (the model is rough: where it sees a near tie, the wider tile stays). Both
    // at once, since a band as narrow as a tile may gain little from narrower rows alone (dilated(32, 4) at N=4096:
    // 9%, and 38% with narrower keys too). Narrower keys alone seldom change a component's chunks (runs of tiles of
    // one kind make the same chunks) and would cost another classification of every view per step.
    Tiled best = tile(sched.block_q, sched.block_k);
    while (best.tile_rows > 1 && narrower_rows(best.tiling.block_q)) {
      const int64_t bq = best.tiling.block_q, bk = best.tiling.block_k;
      Tiled step = tile(bq / 2, bk, &best);
      if (narrower_keys(bk)) {
        Tiled both = tile(bq / 2, bk / 2, &step);  // refines the narrower rows' maps: only their PARTIAL tiles
        if (both.cost < step.cost) step = std::move(both);
      }
      if (step.cost > 0.95 * best.cost) break;
      best = std::move(step);
    }
    best = tile_component(component, sz, sched, classify, best.tiling.block_q, best.tiling.block_k, 0, &best.maps);
    execution.tables.push_back(std::move(best.tables));
    execution.tiling.push_back(best.tiling);
  }
  return execution;
}

ExecutionPlan make_execution_plan(planner::Plan plan, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                  analysis::ClassifyOptions classify, const std::vector<ComponentTiling>& tiling) {
  if (tiling.size() != plan.components.size()) {
    throw std::logic_error("tessera internal error: a tiling for another plan's components");
  }
  classify.enumerate_limit = kPlanEnumerateLimit;  // as when the tiles were chosen
  ExecutionPlan execution;
  execution.plan = std::move(plan);
  for (size_t c = 0; c < execution.plan.components.size(); ++c) {
    const ComponentTiling& t = tiling[c];
    execution.tables.push_back(
        tile_component(execution.plan.components[c], sz, sched, classify, t.block_q, t.block_k, t.chunk_k).tables);
    execution.tiling.push_back(t);
  }
  return execution;
}

std::shared_ptr<const ExecutionPlan> cached_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                           const CpuSchedule& sched,
                                                           const analysis::ClassifyOptions& classify) {
  // Decoding asks for a new M at every step: the cache is bounded so a long generation does not keep a plan per
  // context length. Plans are shared, so dropping them never invalidates one a caller still uses.
  constexpr size_t kMaxPlans = 512;
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const ExecutionPlan>> cache;
  const std::string key =
      fmt::format("{}|B={},H={},N={},M={},D={},Dv={}|bq={},mbq={},bk={},ck={},vw={},ri={}", ir::to_string(pattern),
                  sz.B, sz.H, sz.N, sz.M, sz.D, sz.Dv, sched.block_q, sched.min_block_q, sched.block_k, sched.chunk_k,
                  sched.vector_width, sched.reindex);
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = cache.find(key); it != cache.end()) return it->second;
  }
  auto execution = std::make_shared<const ExecutionPlan>(make_execution_plan(pattern, sz, sched, classify));
  std::lock_guard<std::mutex> lock(mutex);
  if (cache.size() >= kMaxPlans) cache.clear();
  return cache.emplace(key, std::move(execution)).first->second;
}

std::shared_ptr<const ExecutionPlan> call_execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                         const CpuSchedule& sched,
                                                         const analysis::ClassifyOptions& classify) {
  analysis::ClassifyOptions structural = classify;
  structural.load_bounds = {};
  std::shared_ptr<const ExecutionPlan> cached = cached_execution_plan(pattern, sz, sched, structural);
  if (!classify.load_bounds) return cached;
  return std::make_shared<const ExecutionPlan>(make_execution_plan(cached->plan, sz, sched, classify, cached->tiling));
}

int64_t kernel_pairs(const ExecutionPlan& execution, size_t component) {
  const ChunkCounts chunks = chunk_counts(execution.tables.at(component));
  const ComponentTiling& tiling = execution.tiling.at(component);
  return (chunks.full + chunks.partial) * tiling.block_q * tiling.chunk_k;
}

int64_t kernel_pairs(const ExecutionPlan& execution) {
  int64_t pairs = 0;
  for (size_t c = 0; c < execution.tables.size(); ++c) pairs += kernel_pairs(execution, c);
  return pairs;
}

AttentionPipelineKey component_kernel_key(const ExecutionPlan& execution, size_t c, const ir::Pattern& pattern,
                                          const ir::AttentionSizes& sz, const CpuSchedule& schedule,
                                          StorageType storage, const std::string& target, bool guard_values) {
  const planner::Component& component = execution.plan.components.at(c);
  CpuSchedule component_schedule = schedule;
  component_schedule.block_q = execution.tiling.at(c).block_q;
  component_schedule.chunk_k = execution.tiling.at(c).chunk_k;
  AttentionPipelineKey key{ir::to_string(component.local),
                           sz.D,
                           sz.Dv,
                           component.key_stride,
                           component.key_group,
                           {},
                           targets::kernel_symbols(component.local),
                           component_schedule,
                           storage,
                           target,
                           guard_values};
  for (const ir::TensorDecl& t : pattern.inputs) key.tensor_ranks[t.name] = static_cast<int>(t.dims.size());
  return key;
}

std::vector<tessera_cpu_driver::ComponentPlan> driver_components(
    const ExecutionPlan& execution, const ir::Pattern& pattern, const ir::AttentionSizes& sz,
    const std::map<std::string, std::vector<int64_t>>& tensor_shapes) {
  using tessera_cpu_driver::SymbolSource;
  const std::map<std::string, int64_t> constants = targets::call_symbol_values(pattern, sz, tensor_shapes);
  std::vector<tessera_cpu_driver::ComponentPlan> components;
  for (size_t c = 0; c < execution.plan.components.size(); ++c) {
    const planner::Component& component = execution.plan.components[c];
    tessera_cpu_driver::ComponentPlan& out = components.emplace_back();
    out.kernel = c;
    out.block_q = execution.tiling[c].block_q;
    for (size_t v = 0; v < component.views.size(); ++v) {
      const planner::View& view = component.views[v];
      out.views.push_back({{view.queries.origin, view.queries.stride, view.queries.count, view.queries.group},
                           {view.keys.origin, view.keys.stride, view.keys.count, view.keys.group},
                           execution.tables[c][v].driver_tables()});
    }
    out.waves = planner::disjoint_waves(component);
    for (const std::string& name : targets::kernel_symbols(component.local)) {
      if (name == planner::kQueryOrigin) {
        out.symbols.push_back({SymbolSource::QueryOrigin, 0});
      } else if (name == planner::kKeyOrigin) {
        out.symbols.push_back({SymbolSource::KeyOrigin, 0});
      } else if (auto value = constants.find(name); value != constants.end()) {
        out.symbols.push_back({SymbolSource::Constant, value->second});
      } else {
        throw std::logic_error("tessera internal error: no value for the kernel's symbol " + name);
      }
    }
  }
  return components;
}

}  // namespace tessera::cpu
