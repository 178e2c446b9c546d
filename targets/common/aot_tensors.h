// What a library compiled ahead of time (any target) must settle about a pattern's run-time tensors before it is
// written: their shapes (all but the batch fixed at compile time) and that no index the pattern evaluates can be
// out of bounds, since the library does not check indices at run time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"

namespace tessera::targets {

// Shapes of the run-time tensors with the batch dimension as 1 (the library substitutes the call's batch);
// dimensions that are not attention sizes come from `tensor_sizes` (e.g. relative's R). Throws
// std::invalid_argument naming a dimension whose size is missing.
std::map<std::string, std::vector<int64_t>> aot_tensor_shapes(const ir::Pattern& pattern,
                                                              const ir::AttentionSizes& sizes,
                                                              const std::map<std::string, int64_t>& tensor_sizes);

// Run-time tensors must be indexed in their batch dimension by exactly `b`, so any batch a call chooses stays in
// bounds; every other index must be proven for all batches below 2^31 by interval analysis. Throws
// std::invalid_argument naming the tensor otherwise.
void check_aot_tensor_indices(const ir::Pattern& pattern, const ir::AttentionSizes& sizes,
                              const std::map<std::string, std::vector<int64_t>>& shapes);

}  // namespace tessera::targets
