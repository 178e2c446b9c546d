// Evolving Attention (Wang et al., "Evolving Attention with Residual Convolutions", 2021): one attention layer of
// a chain that hands its pre-softmax attention maps to the next. What every target receives and how it is checked.
//
// For a layer with logits L = score(scale * q . k) over the pattern's allowed pairs, the previous layer's map P
// (none for the first layer of a chain) and per-layer weights W [H, H, 3, 3], bias [H]:
//   input   I = alpha * P + (1 - alpha) * L     (I = L without P)
//   conv    C = ReLU(bias + conv3x3(I))         heads are the channels: C[h, i, j] = bias[h] +
//                                               sum over c, u, v of W[h, c, u, v] * I[c, i + u - oy, j + v - ox]
//   map     A = beta * C + (1 - beta) * I
//   out     softmax(A over the allowed keys) . V, and A is handed on.
// Every map holds 0 at the pairs the pattern masks (and the convolution reads 0 outside the N x M map), so a
// masked logit never enters a map. The taps' offsets (oy, ox) depend on the layer's kind:
//   encoder  (1, 1): the centred 3 x 3 window, rows i-1..i+1, columns j-1..j+1;
//   decoder  (2, 2): the window shifted down and right by one, rows i-2..i, columns j-2..j: with a causal mask
//            nothing a query reads comes from a later key or a later query;
//   cross    (2, 1): encoder-decoder attention, rows i-2..i (no later decoder query), columns j-1..j+1 (every
//            encoder key is visible).
#pragma once

#include "compiler/graph/graph.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"

namespace tessera::targets {

using graph::evolving_kind_name;
using graph::EvolvingKind;

// The convolution's tap (u, v) reads map row i + u - row_offset, column j + v - column_offset.
struct EvolvingTaps {
  int row_offset, column_offset;
};
EvolvingTaps evolving_taps(EvolvingKind kind);

struct EvolvingAttentionInputs {
  AttentionInputs attention;                     // Q, K, V, the pattern's run-time tensors, the scale
  const runtime::Tensor* previous = nullptr;     // float32 [B, H, N, M]: the previous layer's map A, or none
  const runtime::Tensor* conv_weight = nullptr;  // float32 [H, H, 3, 3]
  const runtime::Tensor* conv_bias = nullptr;    // float32 [H]
  double alpha = 0.5, beta = 0.5;
  EvolvingKind kind = EvolvingKind::Encoder;
};

// Checks Q, K, V (validate_attention_inputs), the map and weights against them and alpha, beta (finite), and that
// the pattern is one the layer runs (softmax, scaled or plain dot scoring, no weight); returns the sizes.
// Throws runtime::TensorError naming the tensor and shapes, std::invalid_argument for the pattern.
ir::AttentionSizes validate_evolving_inputs(const ir::Pattern& pattern, const EvolvingAttentionInputs& inputs);

}  // namespace tessera::targets
