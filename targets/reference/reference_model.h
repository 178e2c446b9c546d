// The float64 model executor: the numerical oracle the float32 runtime executor is tested against, as
// reference_attention is for attention kernels.
//
// It walks a graph::Graph node by node and computes every value in double precision with plain loops, for the
// whole sequence at once (a full forward pass, no KV cache). Slow by design; correctness only.
//
// Semantics (the fast executor implements the same). Positions p = 0..N-1 of a value; widths come from the
// nodes. Weights are read by name (PyTorch layout, float32); NAME is the node's `name`:
//   Input                token ids of the model input `input_name` (int32 or int64 [B, N]).
//   Embedding            E[id], E = NAME.weight [vocab, width]; an id outside [0, vocab) is an error.
//   LearnedPositions     W[p], W = NAME.weight [length, width]; only the input's N matters (ids or seq);
//                        N > length is an error.
//   SinusoidalPositions  Vaswani et al.: PE[p, 2j] = sin(p / 10000^(2j/width)), PE[p, 2j+1] = cos(same).
//   SegmentEmbedding     row 0 of NAME.weight [types, width] at every position (every token is segment 0).
//   LayerNorm            (x − mean) / sqrt(var + eps) · NAME.weight + NAME.bias, biased variance over width.
//   RMSNorm              x / sqrt(mean(x²) + eps) · NAME.weight.
//   Linear               x · Wᵀ + b, W = NAME.weight [out, in], b = NAME.bias [out] only when has_bias.
//   Attention            Q = x · NAME.query.weightᵀ (+ NAME.query.bias), split into `heads` heads of head_dim
//                        (head h = columns h*head_dim..); K and V likewise (NAME.key.*, NAME.value.*) from the
//                        context inputs[1] (cross-attention) or from x, with kv_heads heads. Query head h reads
//                        kv head h / (heads / kv_heads). For each (b, h) the node's pattern is applied as
//                        reference::attention_f64 applies it: query row i sits at key position i + M − N
//                        (M = context length), logits s = scale · (q · k) with scale = node.scale or
//                        1/sqrt(head_dim), mask and score from the pattern, softmax in double, a row with no
//                        allowed key is zeros (a NaN score makes its row NaN). The pattern's float32 tensors
//                        are the weights NAME.<tensor> (e.g. NAME.rel [heads, R, head_dim] for `relative`),
//                        its int tensors the run-time `inputs` of that name (e.g. "segments" int32 [B, M]).
//                        dot(q_vec, T[...]) uses the float64 query. Heads are concatenated back (head h →
//                        columns h*head_dim..), then · NAME.output.weightᵀ (+ NAME.output.bias).
//                        With `rotary` (self-attention), each head of Q and K at position p first has features
//                        c and c + rotary_dims/2 (c < rotary_dims/2) turned by p · rotary_base^(−2c/rotary_dims):
//                        (u, w) → (u·cos − w·sin, w·cos + u·sin).
//   Add, Mul             elementwise, on values of the same kind and shape.
//   Scale                x · factor.
//   ReLU                 max(x, 0).
//   GELU                 0.5·x·(1 + erf(x / √2)).
//   GELUTanh             0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
//   SiLU                 x / (1 + e^−x).
//   MeanPool             mean over the N positions (N ≥ 1).
//   ClsPool              position 0 (N ≥ 1).
//   Normalize            x / max(‖x‖₂, 1e-12) over width (PyTorch F.normalize).
//   Unembed              x · Eᵀ, E = the weight "<tied node's name>.weight" [vocab, width] of the Embedding node
//                        `tied`.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/graph/graph.h"
#include "runtime/tensor.h"

namespace tessera::reference {

struct ModelTensor {           // float64, C order
  std::vector<int64_t> shape;  // [B, N, width] for a sequence, [B, width] for a pooled value
                               // ([B, N] ids as doubles if the output is an Input node)
  std::vector<double> values;
};

// Runs every node of `graph` in float64 and returns the output node's value.
// weights: every name Graph nodes list in Node::weights (float32 tensors of exactly those shapes);
// inputs: token ids for each graph.inputs name (int32 or int64 [B, N]; every input of one model has the same B,
//   N may differ between inputs, e.g. encoder source and decoder target), plus the int run-time tensors of
//   graph.runtime_tensors by name (e.g. "segments" int32 [B, M]).
// Errors name the offending thing and shapes:
//   runtime::TensorError  a missing, null, mis-typed or mis-shaped weight, input or run-time tensor (including
//                         one an attention pattern rejects, and an index it computes out of bounds);
//   std::invalid_argument an id outside [0, vocab) (naming the node and the id), a position >= length of a
//                         learned_positions table, values of different shapes combined, a pool over N = 0, or a
//                         malformed graph (bad input indices or kinds, widths that disagree with the weights).
ModelTensor run_model_f64(const graph::Graph& graph, const std::map<std::string, const runtime::Tensor*>& weights,
                          const std::map<std::string, const runtime::Tensor*>& inputs);

}  // namespace tessera::reference
