// `tessera plan`: how the sparsity planner splits a pattern into components and views, and what each costs.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <stdexcept>

#include "compiler/analysis/pattern_stats.h"
#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/ir/printer.h"
#include "compiler/planner/allowed_pairs.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/evolving_attention.h"
#include "targets/cpu/execution_plan.h"

namespace tessera::cli {

namespace {

struct PlanCommandOptions {
  std::string pattern;
  std::vector<std::string> specs;
  int64_t seq = 0;
  std::optional<int64_t> keys;
  int64_t block_q = 128, block_k = 64;
  bool no_reindex = false;
  std::string evolving;  // a kind of evolving attention layer, or empty
  int64_t heads = 1;
  bool cpu_tiles = false;
  int64_t head_dim = 64;
};

// What the CPU kernels run each component with: the tiles the execution plan's cost model picks from the plan's
// tiles (the schedule's, as --tile-q and --tile-k give them), and their chunks.
cpu::ExecutionPlan cpu_execution(const PlanCommandOptions& o, const planner::Plan& plan, int64_t N, int64_t M) {
  cpu::CpuSchedule schedule = cpu::host_default_schedule();
  schedule.block_q = o.block_q;
  schedule.block_k = o.block_k;
  schedule.chunk_k = (std::max(schedule.chunk_k, o.block_k) + o.block_k - 1) / o.block_k * o.block_k;
  schedule.reindex = o.no_reindex ? 0 : 1;
  const ir::AttentionSizes sz{.B = 1, .H = 1, .Hkv = 1, .N = N, .M = M, .D = o.head_dim, .Dv = o.head_dim};
  analysis::ClassifyOptions classify;
  classify.B = 1;
  classify.H = 1;
  classify.D = o.head_dim;
  return cpu::make_execution_plan(plan, sz, schedule, classify);
}

// An evolving attention layer is not planned by sparsity: its map is dense and stored whole.
int run_evolving_plan(const PlanCommandOptions& o, const ir::Pattern& pattern, int64_t N, int64_t M) {
  std::optional<graph::EvolvingKind> kind;
  for (graph::EvolvingKind k :
       {graph::EvolvingKind::Encoder, graph::EvolvingKind::Decoder, graph::EvolvingKind::Cross}) {
    if (o.evolving == graph::evolving_kind_name(k)) kind = k;
  }
  if (!kind) {
    throw std::runtime_error(
        fmt::format("unknown evolving layer kind '{}': expected encoder, decoder or cross", o.evolving));
  }
  analysis::PatternStats stats = analysis::pattern_stats(pattern, N, M, o.block_q, o.block_k);
  std::cout << fmt::format("plan evolving {} layer, pattern {}, for H={}, N={}, M={}\n", o.evolving, pattern.name,
                           o.heads, N, M);
  std::cout << cpu::describe_evolving_kernel(*kind, o.heads, N, M);
  std::cout << fmt::format("pairs allowed {} per head\n",
                           stats.allowed_pairs ? std::to_string(*stats.allowed_pairs) : "unknown until run time");
  return 0;
}

int run_plan(const PlanCommandOptions& o) {
  sema::PatternLibrary library = load_library(o.specs);
  ir::Pattern pattern = instantiate_pattern(library, o.pattern);
  const int64_t N = o.seq, M = o.keys.value_or(o.seq);
  if (!o.evolving.empty()) return run_evolving_plan(o, pattern, N, M);
  planner::PlanOptions options;
  options.block_q = o.block_q;
  options.block_k = o.block_k;
  options.allow_reindexing = !o.no_reindex;
  planner::Plan plan = planner::plan_pattern(pattern, N, M, options);

  std::cout << fmt::format("plan {} for N={}, M={} (tiles {}x{})\n", pattern.name, N, M, o.block_q, o.block_k);
  std::optional<cpu::ExecutionPlan> execution;
  if (o.cpu_tiles) execution = cpu_execution(o, plan, N, M);
  int64_t total = 0;
  for (size_t c = 0; c < plan.components.size(); ++c) {
    const planner::Component& comp = plan.components[c];
    const planner::ComponentCost cost = planner::component_cost(comp, N, M, options);
    total += cost.pairs;
    std::cout << fmt::format("component {}: {}\n", c + 1, comp.description);
    std::cout << fmt::format("  mask:      {}\n", ir::to_string(comp.original.mask));
    if (comp.kind != planner::ComponentKind::TileSparse) {
      const planner::View& first = comp.views.front();
      std::cout << fmt::format("  in a view: {}\n", ir::to_string(comp.local.mask));
      auto runs = [](int64_t group) { return group > 1 ? fmt::format(" in runs of {}", group) : std::string(); };
      std::cout << fmt::format("  views:     {} (queries stride {}{}, keys stride {}{}; the first {} x {})\n",
                               comp.views.size(), comp.query_stride, runs(comp.query_group), comp.key_stride,
                               runs(comp.key_group), first.queries.count, first.keys.count);
    }
    std::cout << fmt::format("  tiles:     {} empty, {} full, {} partial\n", cost.empty, cost.full, cost.partial);
    std::cout << fmt::format("  pairs computed: {}\n", cost.pairs);
    if (execution) {
      const cpu::ComponentTiling& t = execution->tiling[c];
      std::cout << fmt::format("  cpu kernel: {}x{} tiles, chunks of {} keys, {} pairs computed\n", t.block_q,
                               t.block_k, t.chunk_k, cpu::kernel_pairs(*execution, c));
    }
  }
  const std::optional<int64_t> allowed_pairs = planner::count_allowed_pairs(plan, pattern);
  std::string allowed = allowed_pairs ? std::to_string(*allowed_pairs) : "unknown until run time";
  std::cout << fmt::format("pairs computed {} of {} ({:.2f}%); pairs allowed {}\n", total, N * M,
                           100.0 * static_cast<double>(total) / static_cast<double>(std::max<int64_t>(1, N * M)),
                           allowed);
  return 0;
}

}  // namespace

Command add_plan_command(CLI::App& app) {
  auto o = std::make_shared<PlanCommandOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Show how the sparsity planner splits a pattern into components and views, and the pairs each computes");
  cmd->add_option("--pattern", o->pattern, "Pattern expression, e.g. 'strided(stride=128)'")->required();
  cmd->add_option("--spec", o->specs, "Spec file(s) whose patterns the expression may use");
  cmd->add_option("--seq", o->seq, "N, number of queries")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, number of keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--tile-q", o->block_q, "Query tile size (default 128)")->check(CLI::PositiveNumber);
  cmd->add_option("--tile-k", o->block_k, "Key tile size (default 64)")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-reindex", o->no_reindex,
                "Only the tile-sparse plan (no residue classes, column sets or column blocks)");
  cmd->add_option("--evolving", o->evolving,
                  "Plan an evolving attention layer of this kind (encoder, decoder or cross) with the pattern instead: "
                  "its stored map and fused convolution");
  cmd->add_option("--heads", o->heads, "H, heads of the evolving layer (default 1)")->check(CLI::PositiveNumber);
  cmd->add_flag("--cpu-tiles", o->cpu_tiles,
                "Also print, per component, the tiles and chunks the CPU kernels run it with: the cost model's choice "
                "from the plan's tiles (a component halves its rows, or rows and keys, where that pays)");
  cmd->add_option("--head-dim", o->head_dim, "D of Q, K and V, which --cpu-tiles prices pairs with (default 64)")
      ->check(CLI::PositiveNumber);
  return {cmd, [o] { return run_plan(*o); }};
}

}  // namespace tessera::cli
