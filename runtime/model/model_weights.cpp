#include "runtime/model/model_weights.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "runtime/safetensors.h"

namespace tessera::runtime {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t next = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

std::string closest_name(const std::string& wanted, const std::map<std::string, Tensor>& tensors) {
  std::string best;
  size_t best_distance = wanted.size() / 3 + 1;  // farther than this is not a typo
  for (const auto& [name, tensor] : tensors) {
    const size_t d = edit_distance(wanted, name);
    if (d < best_distance) {
      best = name;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace

ModelWeights::ModelWeights(const graph::Graph& graph, std::map<std::string, Tensor> tensors) {
  for (const graph::Weight& weight : graph.weights()) {
    auto it = tensors.find(weight.name);
    if (it == tensors.end()) {
      if (tensors_.count(weight.name)) continue;  // declared twice (a tied table): already taken
      const std::string near = closest_name(weight.name, tensors);
      throw TensorError(fmt::format("model '{}' needs weight '{}' {} but the weights have no such tensor{}", graph.name,
                                    weight.name, shape_string(weight.shape),
                                    near.empty() ? "" : fmt::format(" (did you mean '{}'?)", near)));
    }
    if (it->second.shape() != weight.shape) {
      throw TensorError(fmt::format("model '{}': weight '{}' has shape {}, expected {}", graph.name, weight.name,
                                    it->second.shape_string(), shape_string(weight.shape)));
    }
    tensors_.emplace(weight.name, std::move(it->second));
    tensors.erase(it);
  }
  for (const auto& [name, tensor] : tensors) extra_.push_back(name);
}

ModelWeights ModelWeights::load(const std::string& path, const graph::Graph& graph,
                                std::optional<CheckpointNaming> naming) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const std::vector<std::string> names = file.names();
  const CheckpointNaming chosen = naming ? *naming : detect_checkpoint_naming(names);
  std::map<std::string, Tensor> tensors;
  std::vector<std::string> skipped;
  for (const std::string& name : names) {
    const SafetensorsDType dtype = file.info(name).dtype;
    if (dtype != SafetensorsDType::F32 && dtype != SafetensorsDType::F16 && dtype != SafetensorsDType::BF16) {
      // Integer buffers (BERT's position_ids) are bookkeeping, not weights; a spec never declares them. A weight
      // the spec needs that was stored as an integer shows up as missing below, with its name.
      skipped.push_back(name);
      continue;
    }
    tensors.emplace(name, file.to_float32(name));
  }
  try {
    MappedCheckpoint mapped = map_checkpoint(std::move(tensors), chosen);
    ModelWeights weights(graph, std::move(mapped.tensors));
    weights.naming_ = chosen;
    weights.extra_.insert(weights.extra_.end(), mapped.unused.begin(), mapped.unused.end());
    weights.extra_.insert(weights.extra_.end(), skipped.begin(), skipped.end());
    std::sort(weights.extra_.begin(), weights.extra_.end());
    return weights;
  } catch (const TensorError& e) {
    throw TensorError(fmt::format("{} (read as {} naming): {}", path, checkpoint_naming_name(chosen), e.what()));
  }
}

const Tensor& ModelWeights::at(const std::string& name) const {
  if (const Tensor* t = find(name)) return *t;
  throw std::out_of_range(fmt::format("no weight named '{}'", name));
}

const Tensor* ModelWeights::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace tessera::runtime
