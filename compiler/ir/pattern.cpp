#include "compiler/ir/pattern.h"

namespace tessera::ir {

bool is_attention_size(const std::string& d) {
  return d == "B" || d == "H" || d == "Hkv" || d == "N" || d == "M" || d == "D" || d == "Dv";
}

bool Pattern::has_mask() const { return !(mask->kind == Kind::BoolImm && mask->bool_value); }

bool Pattern::has_weight() const { return !(weight->kind == Kind::FloatImm && weight->float_value == 1.0); }

const char* scoring_name(Scoring scoring) {
  switch (scoring) {
    case Scoring::ScaledDot: return "scaled_dot";
    case Scoring::Dot: return "dot";
    case Scoring::Additive: return "additive";
  }
  return "?";
}

const char* normalizer_name(Normalizer normalizer) {
  switch (normalizer) {
    case Normalizer::Softmax: return "softmax";
    case Normalizer::Hardmax: return "hardmax";
  }
  return "?";
}

std::optional<std::string> beyond_dot_product_softmax(const Pattern& pattern) {
  if (pattern.has_weight()) return "weight:";
  if (pattern.normalizer != Normalizer::Softmax)
    return std::string(normalizer_name(pattern.normalizer)) + " normaliser";
  if (!pattern.query_projection.empty()) return "bilinear scoring";
  if (pattern.scoring == Scoring::Additive) return "additive scoring";
  return std::nullopt;
}

bool Pattern::has_score() const { return !(score->kind == Kind::Var && score->var == Var::Score); }

const TensorDecl* Pattern::input(const std::string& tensor_name) const {
  for (const auto& t : inputs) {
    if (t.name == tensor_name) return &t;
  }
  return nullptr;
}

}  // namespace tessera::ir
