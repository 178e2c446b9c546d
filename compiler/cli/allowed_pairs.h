// Counting the (query, key) pairs a pattern allows, summed over batch and heads: what `bench` and `tune` divide
// the work by, so that a kernel skipping masked tiles is compared fairly with one that computes everything.
#pragma once

#include <cstdint>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "targets/common/attention_problem.h"

namespace tessera::cli {

// Exactly, by the analysis where the mask can be evaluated on its own (one distinct (b, h) at a time), otherwise
// (the mask reads run-time tensors) pair by pair with the actual inputs.
int64_t count_allowed_pairs(const ir::Pattern& pattern, const ir::AttentionSizes& sizes,
                            const targets::AttentionInputs& inputs);

}  // namespace tessera::cli
