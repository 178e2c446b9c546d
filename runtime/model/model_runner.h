// Runs a model's graph (compiler/graph/graph.h) in float32 on the CPU: attention through the CPU target's fused
// kernels (JIT, cached per pattern and shape), projections and feed-forward layers through runtime::linear
// (OpenBLAS), the rest as plain loops over activation buffers that an ActivationArena recycles.
//
// Two ways to run:
//  * forward(): every node over whole inputs — encoders, embeddings, and a decoder's prefill.
//  * begin_decoding() + decode(): incremental decoding of one input stream with a KV cache. Nodes that do not
//    depend on the stream (an encoder–decoder's encoder, the K/V projections of cross-attention) are computed
//    once; each decode() runs the stream's nodes on the new positions only, appends their self-attention keys
//    and values to the cache and attends over everything cached. Valid only for graphs whose streamed
//    self-attention patterns never let a query see a later key (Node::causal_in_time): then decoding token by
//    token gives exactly the outputs of one forward() over the whole sequence.
//
// Semantics of each op are those of the float64 oracle, targets/reference/reference_model.h.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compiler/graph/graph.h"
#include "runtime/model/activation_arena.h"
#include "runtime/model/model_error.h"
#include "runtime/model/model_weights.h"
#include "runtime/tensor.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::runtime {

struct RunnerOptions {
  cpu::CpuOptions attention;  // the attention kernels' schedule and storage type
  // Called after each node of a pass with (nodes done, nodes in the pass): progress bars for long runs.
  std::function<void(int64_t, int64_t)> on_progress;
  // Accumulate wall time per op kind (and attention's parts) across calls: ModelRunner::profile().
  bool profile = false;
};

class ModelRunner {
 public:
  // `graph` and `weights` are referenced, not copied: they must outlive the runner. The weights must have been
  // checked against this graph (ModelWeights does that).
  ModelRunner(const graph::Graph& graph, const ModelWeights& weights, RunnerOptions options = {});
  ~ModelRunner();
  ModelRunner(const ModelRunner&) = delete;
  ModelRunner& operator=(const ModelRunner&) = delete;

  // inputs: token ids [B, N] (int32 or int64) for every graph input by name, and the int tensors attention
  // patterns read (Graph::runtime_tensors) by name. Returns the output node's value, [B, N, width] or
  // [B, width], valid until the next call. Throws TensorError / ModelError naming the offending
  // input, node or token id.
  const Tensor& forward(const std::map<std::string, const Tensor*>& inputs);

  // Starts decoding the one graph input not in `fixed_inputs` (for a single-input model: pass {} or only
  // run-time tensors). Computes every node that does not depend on it, and empties the KV caches. Throws
  // ModelError naming the node when the graph cannot be decoded incrementally (a pooled output, a
  // streamed attention whose pattern may look ahead).
  void begin_decoding(const std::map<std::string, const Tensor*>& fixed_inputs = {});
  // Appends `ids` ([B, n], the batch of begin_decoding's inputs, or any B for a single-input model on the first
  // call) after the positions decoded so far; returns the output for the n new positions, [B, n, width].
  const Tensor& decode(const Tensor& ids);
  int64_t decoded_positions() const;
  const std::string& decoded_input() const;

  const ActivationArena& arena() const;
  // Milliseconds per op kind ("linear", "attention", ...; "attention.kernel" is the fused kernels' share of
  // "attention") summed over every pass since construction; empty unless RunnerOptions::profile.
  const std::map<std::string, double>& profile() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera::runtime
