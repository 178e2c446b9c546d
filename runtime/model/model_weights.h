// The weights of one model: every tensor its graph declares, float32, checked against the declared shapes.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compiler/graph/graph.h"
#include "runtime/model/checkpoint_naming.h"
#include "runtime/tensor.h"

namespace tessera::runtime {

class ModelWeights {
 public:
  // Takes `tensors` (by spec weight name, already mapped) and checks them against `graph`: a weight the graph
  // declares and `tensors` lacks, or one of another shape, throws TensorError naming it (and the closest name
  // present, for a typo); tensors the graph does not declare are dropped and listed in `extra()`.
  ModelWeights(const graph::Graph& graph, std::map<std::string, Tensor> tensors);

  // Reads a .safetensors file (F32, F16 or BF16 tensors), maps its names (`naming`, or detected from the names
  // when absent) and checks it as above. Errors name the file and the tensor.
  static ModelWeights load(const std::string& path, const graph::Graph& graph,
                           std::optional<CheckpointNaming> naming = std::nullopt);

  const Tensor& at(const std::string& name) const;  // throws std::out_of_range naming it
  const Tensor* find(const std::string& name) const;
  // Checkpoint tensors the model does not use (by their names in the file), e.g. BERT's pooler.
  const std::vector<std::string>& extra() const { return extra_; }
  CheckpointNaming naming() const { return naming_; }

 private:
  std::map<std::string, Tensor> tensors_;
  std::vector<std::string> extra_;
  CheckpointNaming naming_ = CheckpointNaming::Tessera;
};

}  // namespace tessera::runtime
