// The float64 Evolving Attention layer (targets/common/evolving_attention_problem.h states the math): the oracle
// the CPU kernel and the model runtime's evolving layers are checked against. Plain loops, slow by design.
#pragma once

#include <vector>

#include "compiler/ir/pattern.h"
#include "targets/common/evolving_attention_problem.h"

namespace tessera::reference {

struct EvolvingAttentionResult {
  std::vector<double> out;  // [B, H, N, Dv], C order
  std::vector<double> map;  // [B, H, N, M]: the pre-softmax map A handed to the next layer (0 at masked pairs)
};

// Throws what targets::validate_evolving_inputs and ir::PatternEvaluator throw for bad inputs.
EvolvingAttentionResult evolving_attention_f64(const ir::Pattern& pattern,
                                               const targets::EvolvingAttentionInputs& inputs);

}  // namespace tessera::reference
