// The symbols a planner component's kernel reads (view origins, the original sizes, sizes bound from run-time
// tensors' shapes such as relative's R) and the values of those fixed for a whole call: shared by the targets so
// that every kernel takes them in the same order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"

namespace tessera::targets {

// The symbols `local` (a component's localized pattern) reads, sorted by name: the order kernels take them in.
std::vector<std::string> kernel_symbols(const ir::Pattern& local);

// The values of the symbols that are the same for every view of a call: the original N and M
// (planner::kQueries, planner::kKeys) and each run-time tensor's named dimensions, from `tensor_shapes`.
std::map<std::string, int64_t> call_symbol_values(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                  const std::map<std::string, std::vector<int64_t>>& tensor_shapes);

}  // namespace tessera::targets
