#include "runtime/model/random_weights.h"

#include <cmath>
#include <random>

namespace tessera::runtime {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::map<std::string, Tensor> random_weights(const graph::Graph& graph, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::map<std::string, Tensor> weights;
  for (const graph::Weight& w : graph.weights()) {
    if (weights.count(w.name)) continue;
    Tensor t(DType::Float32, w.shape);
    const bool bias = ends_with(w.name, ".bias");
    const bool scale_vector = w.shape.size() == 1 && !bias;  // a norm's weight
    const bool matrix = w.shape.size() == 2;                 // projections and tables alike
    const float amplitude = bias ? 0.1f : matrix ? 1.0f / std::sqrt(static_cast<float>(w.shape[1])) : 0.2f;
    float* data = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) data[i] = (scale_vector ? 1.0f : 0.0f) + amplitude * u(rng);
    weights.emplace(w.name, std::move(t));
  }
  return weights;
}

}  // namespace tessera::runtime
