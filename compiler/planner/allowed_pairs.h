// Counting a pattern's allowed pairs through its sparsity plan: the plan's components and views partition the
// allowed pairs (every allowed pair lies in exactly one view of one component), and inside a view the terms that
// defined it are gone. Counting the whole mask at once evaluates it pair by pair along every line the interval
// analysis cannot decide (strided's (q - k) % 128 == 0 diagonals: ~10 s at N=65536); in a residue class those
// lines are the view's own causal diagonal, decided tile by tile.
#pragma once

#include <cstdint>
#include <optional>

#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/pattern.h"
#include "compiler/planner/sparsity_plan.h"

namespace tessera::planner {

// The exact number of pairs `pattern` allows on an N x M matrix, or nullopt where analysis::pattern_stats cannot
// count them (a mask that reads run-time tensors, or the batch or head index, or a size `options` lacks).
std::optional<int64_t> count_allowed_pairs(const ir::Pattern& pattern, int64_t N, int64_t M,
                                           const analysis::ClassifyOptions& options = {});
// The same through a plan of `pattern` already made (any plan_pattern options: every plan partitions the pairs).
std::optional<int64_t> count_allowed_pairs(const Plan& plan, const ir::Pattern& pattern,
                                           const analysis::ClassifyOptions& options = {});

}  // namespace tessera::planner
