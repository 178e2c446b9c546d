#include "compiler/planner/allowed_pairs.h"

#include "compiler/analysis/pattern_stats.h"

namespace tessera::planner {

std::optional<int64_t> count_allowed_pairs(const ir::Pattern& pattern, int64_t N, int64_t M,
                                           const analysis::ClassifyOptions& options) {
  if (!pattern.has_mask()) return N * M;
  return count_allowed_pairs(plan_pattern(pattern, N, M), pattern, options);
}

std::optional<int64_t> count_allowed_pairs(const Plan& plan, const ir::Pattern& pattern,
                                           const analysis::ClassifyOptions& options) {
  const int64_t N = plan.N, M = plan.M;
  if (!pattern.has_mask()) return N * M;
  if (plan.components.size() == 1 && plan.components[0].kind == ComponentKind::TileSparse) {
    return analysis::pattern_stats(pattern, N, M, 64, 64, options).allowed_pairs;
  }
  int64_t total = 0;
  for (const Component& component : plan.components) {
    for (const View& view : component.views) {
      const analysis::PatternStats stats = analysis::pattern_stats(bind_view(component, view, N, M), view.queries.count,
                                                                   view.keys.count, 64, 64, options);
      if (!stats.allowed_pairs) return std::nullopt;
      total += *stats.allowed_pairs;
    }
  }
  return total;
}

}  // namespace tessera::planner
