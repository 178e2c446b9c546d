// Random weights of the shapes a model's graph declares: for models that have no packaged checkpoint (the tests,
// benchmarks and demos of the example architectures).
//
// Scaled so activations keep their size through many layers: norm scales 1 ± 0.2, biases ±0.1, matrices (tables
// included) uniform in ±1/sqrt(last dimension) (PyTorch's nn.Linear default for [out, in]), other tensors ±0.2.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "compiler/graph/graph.h"
#include "runtime/tensor.h"

namespace tessera::runtime {

std::map<std::string, Tensor> random_weights(const graph::Graph& graph, uint64_t seed);

}  // namespace tessera::runtime
