#include "targets/common/evolving_attention_problem.h"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <vector>

namespace tessera::targets {

namespace {

using runtime::DType;
using runtime::Tensor;
using runtime::TensorError;

void require_shape(const Tensor* t, const char* what, const std::vector<int64_t>& shape, const char* form) {
  if (t == nullptr) throw TensorError(fmt::format("evolving attention needs {} {}, which was not given", what, form));
  if (t->dtype() != DType::Float32 || t->shape() != shape) {
    throw TensorError(fmt::format("evolving attention's {} must be float32{} {}, got {}", what,
                                  runtime::shape_string(shape), form, t->type_string()));
  }
}

}  // namespace

EvolvingTaps evolving_taps(EvolvingKind kind) {
  switch (kind) {
    case EvolvingKind::Encoder: return {1, 1};
    case EvolvingKind::Decoder: return {2, 2};
    case EvolvingKind::Cross: return {2, 1};
  }
  return {1, 1};
}

ir::AttentionSizes validate_evolving_inputs(const ir::Pattern& pattern, const EvolvingAttentionInputs& in) {
  if (auto feature = ir::beyond_dot_product_softmax(pattern)) {
    throw std::invalid_argument(fmt::format(
        "evolving attention runs softmax attention with scaled or plain dot-product scoring, not the {} of '{}'",
        *feature, pattern.name));
  }
  const ir::AttentionSizes sz = validate_attention_inputs(in.attention);
  require_shape(in.conv_weight, "convolution weight", {sz.H, sz.H, 3, 3}, "[H, H, 3, 3]");
  require_shape(in.conv_bias, "convolution bias", {sz.H}, "[H]");
  if (in.previous) require_shape(in.previous, "previous map", {sz.B, sz.H, sz.N, sz.M}, "[B, H, N, M]");
  for (auto [value, name] : {std::pair{in.alpha, "alpha"}, std::pair{in.beta, "beta"}}) {
    if (!std::isfinite(value))
      throw TensorError(fmt::format("evolving attention's {} must be finite, got {}", name, value));
  }
  return sz;
}

}  // namespace tessera::targets
