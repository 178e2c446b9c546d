// Evolving Attention on the CPU (targets/common/evolving_attention_problem.h states the math): one JIT-compiled
// Halide pipeline per (pattern, sizes, kind). Per batch row and tile of query rows it computes the input map I
// of every head over the tile's rows and a halo of up to two rows before and one after (the logits fused in),
// then per head the 3x3 convolution across heads, the map A, the softmax over the keys and P V, so no map but
// the one handed on is ever stored whole.
#pragma once

#include <cstdint>
#include <string>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/evolving_attention_problem.h"

namespace tessera::cpu {

struct EvolvingAttentionResult {
  runtime::Tensor out;  // float32 [B, H, N, Dv]
  runtime::Tensor map;  // float32 [B, H, N, M]: the map A for the next layer (0 at masked pairs)
};

// How the kernel runs a layer of `kind` with H heads over N x M, for `tessera plan --evolving` (several lines).
std::string describe_evolving_kernel(targets::EvolvingKind kind, int64_t H, int64_t N, int64_t M);

// Throws what targets::validate_evolving_inputs and ir::PatternEvaluator throw for bad inputs.
EvolvingAttentionResult evolving_attention(const ir::Pattern& pattern, const targets::EvolvingAttentionInputs& inputs);

}  // namespace tessera::cpu
