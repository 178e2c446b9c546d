// Kernels clamp the indices of run-time tensor loads (so they never read out of bounds), which would turn an
// out-of-range index into a silently wrong value. The reference reports such an index as an error; a kernel
// may run without checking only where interval analysis proves every index the pattern evaluates in bounds.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"

namespace tessera::targets {

// Whether every tensor index in `pattern`'s mask, score and weight lies within the tensor's shape for every (b, h, q,
// k) of the problem `sz`, by interval analysis (sound, not complete). On false, `unproven` (if given) names the first
// tensor whose index could not be proven, e.g. "segments (dimension 1)".
bool tensor_indices_proven(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                           const std::map<std::string, std::vector<int64_t>>& tensor_shapes,
                           std::string* unproven = nullptr);

// Throws the reference's ir::EvalError if the pattern evaluates a tensor index out of bounds anywhere in the
// problem: proven by intervals for most patterns (document's segments[b, q] with N <= M, relative's clamped
// distance); otherwise `evaluator` visits every pair once. `q` is the float32 [B, H, N, D] query tensor (what
// dot(q_vec, T[...]) reads).
void check_tensor_indices(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                          const std::map<std::string, std::vector<int64_t>>& tensor_shapes,
                          const ir::PatternEvaluator& evaluator, const float* q);

}  // namespace tessera::targets
