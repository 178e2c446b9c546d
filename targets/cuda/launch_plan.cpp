#include "targets/cuda/launch_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "targets/common/kernel_symbols.h"

namespace tessera::cuda {
namespace {

int32_t narrow(int64_t value, const char* what) {
  if (value < 0 || value > std::numeric_limits<int32_t>::max())
    throw std::runtime_error(fmt::format("{} = {} is beyond the CUDA kernels' 32-bit indices", what, value));
  return static_cast<int32_t>(value);
}

tessera_cuda::IndexView index_view(const planner::IndexView& v) {
  return {narrow(v.origin, "view origin"), narrow(v.stride, "view stride"), narrow(v.group, "view group"),
          narrow(v.count, "view size")};
}

// Non-empty key tiles of one query-tile row, as tile-list entries.
std::vector<int32_t> row_entries(const analysis::TileMap& tiles, int64_t row) {
  std::vector<int32_t> entries;
  for (int64_t c = 0; c < tiles.cols; ++c) {
    analysis::TileKind kind = tiles.at(row, c);
    if (kind != analysis::TileKind::Empty)
      entries.push_back(tessera_cuda::tile_entry(static_cast<int32_t>(c), kind == analysis::TileKind::Partial));
  }
  return entries;
}

}  // namespace

CudaSchedule resolve_schedule(const CudaSchedule& schedule, int64_t head_dim, int64_t value_dim, bool wgmma) {
  CudaSchedule s = schedule;
  const bool wide = std::max(head_dim, value_dim) > 128;
  if (s.block_m == 0) s.block_m = wide ? 64 : 128;
  if (s.block_n == 0) s.block_n = wide ? 32 : 64;
  if (s.stages == 0) s.stages = 2;
  if (s.stages < 2 || s.stages > 4)
    throw std::invalid_argument(fmt::format("bad CUDA schedule ({}): 2 to 4 stages", describe(s)));
  for (int64_t tile : {s.block_m, s.block_n}) {
    if (tile < 16 || tile > 128 || tile % 16 != 0)
      throw std::invalid_argument(
          fmt::format("bad CUDA schedule ({}): tiles are multiples of 16 from 16 to 128", describe(s)));
  }
  if (wgmma && s.block_m % 64 != 0)
    throw std::invalid_argument(fmt::format(
        "bad CUDA schedule ({}): the sm_90a kernel's block_m is 64 or 128 (whole warpgroups)", describe(s)));
  if (s.kv_splits < 0 || s.reindex < 0 || s.reindex > 1)
    throw std::invalid_argument(fmt::format("bad CUDA schedule ({}): kv_splits >= 0, reindex 0 or 1", describe(s)));
  return s;
}

std::string describe(const CudaSchedule& s) {
  return fmt::format("block_m={},block_n={},stages={},reindex={},kv_splits={}", s.block_m, s.block_n, s.stages,
                     s.reindex, s.kv_splits);
}

LaunchPlan make_launch_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                            const std::map<std::string, std::vector<int64_t>>& tensor_shapes,
                            const LaunchOptions& options) {
  const CudaSchedule sched = resolve_schedule(options.schedule, sz.D, sz.Dv);
  narrow(sz.N, "N");
  narrow(sz.M, "M");
  narrow(sz.B * sz.H, "B * H");
  planner::PlanOptions plan_options;
  plan_options.block_q = sched.block_m;
  plan_options.block_k = sched.block_n;
  // Hardmax breaks ties towards the lowest key, which the kernel sees only by walking the keys in order in one
  // block: no re-indexing, no key splits (a log-sum-exp merge would blend the splits' choices).
  const bool hardmax = pattern.normalizer == ir::Normalizer::Hardmax;
  plan_options.allow_reindexing = sched.reindex != 0 && !hardmax;
  analysis::ClassifyOptions classify = options.classify;
  // Exact enumeration would only sharpen PARTIAL tiles of masks the intervals cannot follow; keep planning fast.
  classify.enumerate_limit = std::min<int64_t>(classify.enumerate_limit, 256);

  LaunchPlan launch;
  launch.block_m = sched.block_m;
  launch.block_n = sched.block_n;
  launch.plan = planner::plan_pattern(pattern, sz.N, sz.M, plan_options);

  const std::map<std::string, int64_t> constants = targets::call_symbol_values(pattern, sz, tensor_shapes);

  int32_t next_slot = 0;
  for (const planner::Component& component : launch.plan.components) {
    ComponentLaunch& out = launch.components.emplace_back();
    out.symbols = targets::kernel_symbols(component.local);
    for (size_t s = 0; s < out.symbols.size(); ++s) {
      const std::string& name = out.symbols[s];
      if (name == planner::kQueryOrigin) {
        out.query_origin_symbol = static_cast<int32_t>(s);
        out.symbol_values.push_back(0);
      } else if (name == planner::kKeyOrigin) {
        out.key_origin_symbol = static_cast<int32_t>(s);
        out.symbol_values.push_back(0);
      } else if (auto value = constants.find(name); value != constants.end()) {
        out.symbol_values.push_back(narrow(value->second, name.c_str()));
      } else {
        throw std::logic_error("tessera internal error: no value for the kernel's symbol " + name);
      }
    }

    // Tile lists per (view, query tile).
    struct Row {
      int32_t view, query_tile;
      std::vector<int32_t> entries;
    };
    std::vector<Row> rows;
    size_t longest = 0;
    for (size_t v = 0; v < component.views.size(); ++v) {
      const planner::View& view = component.views[v];
      out.views.push_back({index_view(view.queries), index_view(view.keys)});
      if (view.queries.count == 0) continue;
      ir::Pattern bound = planner::bind_view(component, view, sz.N, sz.M);
      analysis::TileMap tiles =
          analysis::classify_tiles(bound, view.queries.count, view.keys.count, sched.block_m, sched.block_n, classify);
      for (int64_t r = 0; r < tiles.rows; ++r) {
        rows.push_back({static_cast<int32_t>(v), static_cast<int32_t>(r), row_entries(tiles, r)});
        longest = std::max(longest, rows.back().entries.size());
      }
    }

    // Split the keys where the grid alone would leave multiprocessors idle (decoding), at least two tiles a split.
    int64_t splits = hardmax ? 1 : sched.kv_splits;
    if (splits <= 0) {
      const int64_t grid = static_cast<int64_t>(rows.size()) * sz.B * sz.H;
      splits = grid >= options.multiprocessors || grid == 0
                   ? 1
                   : std::min<int64_t>((options.multiprocessors + grid - 1) / grid,
                                       std::max<int64_t>(1, static_cast<int64_t>(longest) / 2));
    }
    out.splits = splits;

    std::vector<int32_t> wave_of(component.views.size(), 0);
    std::vector<std::vector<size_t>> waves = planner::disjoint_waves(component);
    for (size_t w = 0; w < waves.size(); ++w)
      for (size_t v : waves[w]) wave_of[v] = static_cast<int32_t>(w);

    for (const Row& row : rows) {
      const int64_t n = static_cast<int64_t>(row.entries.size());
      for (int64_t s = 0; s < splits; ++s) {
        tessera_cuda::BlockDesc block;
        block.view = row.view;
        block.query_tile = row.query_tile;
        block.slot =
            next_slot + wave_of[static_cast<size_t>(row.view)] * static_cast<int32_t>(splits) + static_cast<int32_t>(s);
        block.tile_begin = narrow(static_cast<int64_t>(out.tiles.size()), "tile list length");
        const int64_t first = n * s / splits, last = n * (s + 1) / splits;
        out.tiles.insert(out.tiles.end(), row.entries.begin() + first, row.entries.begin() + last);
        block.tile_end = static_cast<int32_t>(out.tiles.size());
        out.blocks.push_back(block);
      }
    }
    next_slot += static_cast<int32_t>(std::max<size_t>(1, waves.size())) * static_cast<int32_t>(splits);
  }
  launch.slots = std::max(1, next_slot);
  if (hardmax && launch.slots != 1)
    throw std::logic_error("tessera internal error: a hardmax launch needs one output slot, the plan has " +
                           std::to_string(launch.slots));
  return launch;
}

std::vector<VisitedPair> visited_pairs(const LaunchPlan& plan, size_t component) {
  const ComponentLaunch& c = plan.components.at(component);
  std::vector<VisitedPair> pairs;
  for (const tessera_cuda::BlockDesc& block : c.blocks) {
    const tessera_cuda::ViewDesc& view = c.views.at(static_cast<size_t>(block.view));
    for (int32_t t = block.tile_begin; t < block.tile_end; ++t) {
      const int32_t entry = c.tiles.at(static_cast<size_t>(t));
      const int64_t j0 = int64_t{tessera_cuda::entry_key_tile(entry)} * plan.block_n;
      for (int64_t x = block.query_tile * plan.block_m;
           x < std::min<int64_t>((block.query_tile + 1) * plan.block_m, view.queries.count); ++x) {
        for (int64_t y = j0; y < std::min<int64_t>(j0 + plan.block_n, view.keys.count); ++y) {
          pairs.push_back({tessera_cuda::original_index(view.queries, static_cast<int32_t>(x)),
                           tessera_cuda::original_index(view.keys, static_cast<int32_t>(y)),
                           tessera_cuda::entry_masked(entry), block.slot});
        }
      }
    }
  }
  return pairs;
}

}  // namespace tessera::cuda
