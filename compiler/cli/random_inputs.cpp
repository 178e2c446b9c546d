#include "compiler/cli/random_inputs.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace tessera::cli {

namespace {

runtime::Tensor random_normal(std::vector<int64_t> shape, std::mt19937_64& rng) {
  runtime::Tensor t(runtime::DType::Float32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  float* data = t.data<float>();
  for (int64_t e = 0; e < t.numel(); ++e) data[e] = normal(rng);
  return t;
}

// Document ids that never decrease along a row, as packed sequences have.
runtime::Tensor random_segments(int64_t batch, int64_t keys, int64_t documents, std::mt19937_64& rng) {
  runtime::Tensor t(runtime::DType::Int32, {batch, keys});
  std::uniform_int_distribution<int64_t> cut(0, keys);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> cuts;
    for (int64_t d = 1; d < documents; ++d) cuts.push_back(cut(rng));
    std::sort(cuts.begin(), cuts.end());
    for (int64_t m = 0; m < keys; ++m) {
      t.data<int32_t>()[b * keys + m] =
          static_cast<int32_t>(std::upper_bound(cuts.begin(), cuts.end(), m) - cuts.begin());
    }
  }
  return t;
}

int64_t dimension_size(const RandomInputShape& s, const std::string& dim) {
  if (dim == "B") return s.batch;
  if (dim == "H") return s.heads;
  if (dim == "Hkv") return s.kv_heads;
  if (dim == "N") return s.seq;
  if (dim == "M") return s.keys;
  if (dim == "D") return s.head_dim;
  if (dim == "Dv") return s.value_dim;
  return s.rel_distances;  // a free size such as R
}

}  // namespace

RandomInputs random_inputs(const RandomInputShape& s, const ir::Pattern* pattern, uint64_t seed) {
  std::mt19937_64 rng(seed);
  RandomInputs inputs;
  inputs.q = random_normal({s.batch, s.heads, s.seq, s.head_dim}, rng);
  inputs.k = random_normal({s.batch, s.kv_heads, s.keys, s.head_dim}, rng);
  inputs.v = random_normal({s.batch, s.kv_heads, s.keys, s.value_dim}, rng);
  if (!pattern) return inputs;
  for (const ir::TensorDecl& decl : pattern->inputs) {
    std::vector<int64_t> shape;
    for (const auto& dim : decl.dims) shape.push_back(dimension_size(s, dim));
    if (decl.name == "centers" && decl.elem_type == ir::ElemType::Float32) {
      // luong_local_p's predicted key positions: spread over the keys (and a little past both ends).
      runtime::Tensor t(runtime::DType::Float32, shape);
      std::uniform_real_distribution<float> position(-2.0f, static_cast<float>(s.keys) + 1.0f);
      for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = position(rng);
      inputs.tensors.emplace_back(decl.name, std::move(t));
    } else if (decl.elem_type == ir::ElemType::Float32) {
      runtime::Tensor t = random_normal(shape, rng);
      if (decl.name == pattern->query_projection || decl.name == pattern->additive.query_weight ||
          decl.name == pattern->additive.key_weight) {
        // Projections of q and k: a standard deviation of 1/sqrt(D), as initialised projections have, keeps the
        // projected vectors at the scale of Q and K (and additive scoring's tanh out of saturation).
        const float stddev = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
        for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] *= stddev;
      }
      inputs.tensors.emplace_back(decl.name, std::move(t));
    } else if (decl.name == "segments" && shape.size() == 2) {
      inputs.tensors.emplace_back(decl.name, random_segments(shape[0], shape[1], s.documents, rng));
    } else {
      runtime::Tensor t(runtime::DType::Int32, shape);
      std::uniform_int_distribution<int32_t> bit(0, 1);
      for (int64_t e = 0; e < t.numel(); ++e) t.data<int32_t>()[e] = bit(rng);
      inputs.tensors.emplace_back(decl.name, std::move(t));
    }
  }
  return inputs;
}

RandomAttentionInputs::RandomAttentionInputs(const RandomInputShape& shape, const ir::Pattern& pattern, uint64_t seed)
    : data(random_inputs(shape, &pattern, seed)) {
  inputs.q = &data.q;
  inputs.k = &data.k;
  inputs.v = &data.v;
  for (const auto& [name, tensor] : data.tensors) inputs.tensors[name] = &tensor;
}

}  // namespace tessera::cli
