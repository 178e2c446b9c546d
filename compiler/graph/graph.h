// Graph IR: what a `model` declaration means after elaboration — a flat, topologically ordered list of layer
// nodes with every shape inferred, every weight named and sized, and every attention pattern elaborated.
//
// Stacks are unrolled (layer i of `stack layer[6]` names its weights "layer.i.…"), so an executor walks the
// nodes in order and never interprets the DSL. Values are one of three kinds:
//   TokenIds  int32 [B, N]         an `input`
//   Sequence  float [B, N, width]  per-position activations
//   Pooled    float [B, width]     one vector per batch row (after mean or CLS pooling)
// B and N are run-time sizes; every width is known here.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "dsl/source.h"

namespace tessera::graph {

enum class ValueKind : uint8_t { TokenIds, Sequence, Pooled };
const char* value_kind_name(ValueKind kind);  // "ids", "seq", "pooled"

// Evolving Attention's kinds of layer (targets/common/evolving_attention_problem.h states the math and which
// neighbours each kind's 3x3 convolution reads).
enum class EvolvingKind : uint8_t { Encoder, Decoder, Cross };
const char* evolving_kind_name(EvolvingKind kind);  // "encoder", "decoder", "cross"

enum class OpKind : uint8_t {
  Input,                // no inputs; TokenIds. `input_name` is the model input it reads
  Embedding,            // ids -> seq: weight [vocab, width]
  LearnedPositions,     // ids|seq -> seq: weight [length, width], row p for absolute position p
  SinusoidalPositions,  // ids|seq -> seq: the original Transformer's sin/cos table (no weights)
  SegmentEmbedding,     // ids -> seq: weight [types, width]; every token has segment 0 (row 0)
  LayerNorm,            // seq|pooled: weight [width], bias [width]; eps
  RMSNorm,              // seq|pooled: weight [width]; eps
  Linear,               // seq|pooled: weight [out, in], bias [out] when has_bias
  Attention,            // seq (queries), [seq (context: cross-attention)] -> seq; see below
  Add,                  // two values of the same kind and width
  Mul,                  // two values of the same kind and width, elementwise
  Scale,                // one value times the constant `factor`
  ReLU,
  GELU,      // erf form
  GELUTanh,  // tanh approximation
  SiLU,
  MeanPool,   // seq -> pooled: mean over the N positions
  ClsPool,    // seq -> pooled: position 0
  Normalize,  // seq|pooled: divided by its L2 norm over width (a zero vector stays zero)
  Unembed,    // seq|pooled -> logits of width vocab: x · Eᵀ with E the weight of Embedding node `tied`
};
const char* op_name(OpKind op);  // the DSL spelling: "embedding", "layernorm", "gelu_tanh", "+", "*", ...

// A tensor the model's weight file must hold, e.g. {"layer.3.attention.query.weight", {384, 384}}.
struct Weight {
  std::string name;
  std::vector<int64_t> shape;
};

struct Node {
  OpKind op = OpKind::Input;
  // The binding path that names this node's weights ("embed_norm", "layer.3.attention"); every node with
  // weights has one, other nodes have one when bound by name in the spec and are empty otherwise.
  std::string name;
  std::vector<int> inputs;  // indices of earlier nodes
  ValueKind kind = ValueKind::Sequence;
  int64_t width = 0;  // 0 for TokenIds
  std::vector<Weight> weights;
  dsl::SourceRange where;  // the expression that produced it

  // Attributes (meaningful for the ops named).
  std::string input_name;  // Input
  int64_t vocab = 0;       // Embedding (rows of the table), Unembed (output width)
  int64_t length = 0;      // LearnedPositions: positions available (a longer input is a run-time error)
  int64_t types = 0;       // SegmentEmbedding
  double eps = 0;          // LayerNorm, RMSNorm
  double factor = 1;       // Scale
  bool has_bias = true;    // Linear, Attention
  int tied = -1;           // Unembed: index of the Embedding node whose table is the output matrix

  // Attention. Queries come from inputs[0]; keys and values from inputs[1] when present (cross-attention to
  // an encoder's output), else from inputs[0] (self-attention). Weights, PyTorch nn.Linear layout [out, in]:
  //   NAME.query.weight [heads*head_dim, width]      NAME.query.bias  [heads*head_dim]
  //   NAME.key.weight   [kv_heads*head_dim, ctx_w]   NAME.key.bias    [kv_heads*head_dim]
  //   NAME.value.weight [kv_heads*head_dim, ctx_w]   NAME.value.bias  [kv_heads*head_dim]
  //   NAME.output.weight [width, heads*head_dim]     NAME.output.bias [width]
  // (biases only when has_bias), plus NAME.<tensor> for each float tensor the pattern reads (e.g.
  // NAME.rel [heads, R, head_dim] for `relative`, R given in the spec). Int tensors the pattern reads
  // (document `segments`) are run-time inputs of the model, listed in Graph::runtime_tensors.
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  std::optional<double> scale;         // logit scale; 1/sqrt(head_dim) when absent
  std::optional<ir::Pattern> pattern;  // Attention: elaborated, every parameter bound
  bool causal_in_time = false;         // Attention: the pattern never lets a query see a later key (k <= q
                                       // for every allowed pair), so incremental decoding with a KV cache is valid
  // Rotary position embeddings (`rotary = true`; self-attention only): after the projections, each head's query
  // and key at position p have their first rotary_dims features rotated in pairs (c, c + rotary_dims/2), pair c by
  // the angle p * rotary_base^(-2c/rotary_dims), as GPT-NeoX and Hugging Face's LLaMA rotate them (RoFormer's
  // rotation over halves, not over adjacent features). Positions are those of the sequence: 0.. in a forward
  // pass, continuing after the decoded ones while decoding.
  bool rotary = false;
  double rotary_base = 10000;
  int64_t rotary_dims = 0;  // even, at most head_dim (head_dim unless given)
  // Evolving attention (`evolving = true`): the layer also reads NAME.evolving.weight [heads, heads, 3, 3] and
  // NAME.evolving.bias [heads], mixes the pre-softmax map of `evolving_previous` (the latest earlier evolving
  // layer of the same kind, -1 for the first) into its own with evolving_alpha, convolves it, and hands its map
  // on. The kind is cross for cross-attention, decoder for causal self-attention, encoder otherwise.
  std::optional<EvolvingKind> evolving;
  double evolving_alpha = 0.5, evolving_beta = 0.5;
  int evolving_previous = -1;
};

struct Graph {
  std::string name;                             // the model's name
  std::vector<std::string> inputs;              // model inputs (TokenIds), in declaration order
  std::vector<ir::TensorDecl> runtime_tensors;  // int tensors attention patterns read, by name, deduplicated
  // Topological order; Input nodes first. A deque: appending a node keeps references to the others valid, which
  // elaboration holds across adding nodes (with a vector, four ops read an input's width from freed memory).
  std::deque<Node> nodes;
  int output = -1;         // index of the node the model returns
  dsl::SourceRange where;  // the declaration

  // Every weight of every node, in node order.
  std::vector<Weight> weights() const;
  const Node& output_node() const { return nodes.at(static_cast<size_t>(output)); }
};

// The textual form printed by `--emit=graph` (one node per line, shapes and weights shown); lit tests pin it.
std::string to_string(const Graph& graph);

}  // namespace tessera::graph
