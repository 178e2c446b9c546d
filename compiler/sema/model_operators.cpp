#include "compiler/sema/model_operators.h"

namespace tessera::sema {

namespace {

using graph::OpKind;
using T = OperatorArgType;

const std::vector<OperatorSignature>& signatures() {
  static const std::vector<OperatorSignature> table = {
      {"embedding",
       OpKind::Embedding,
       1,
       1,
       {{"vocab", T::Int, true}, {"width", T::Int, true}},
       true,
       "embedding(ids, vocab=INT, width=INT)"},
      {"learned_positions",
       OpKind::LearnedPositions,
       1,
       1,
       {{"length", T::Int, true}, {"width", T::Int, false}},
       true,
       "learned_positions(x, length=INT, width=INT)"},
      {"sinusoidal_positions",
       OpKind::SinusoidalPositions,
       1,
       1,
       {{"width", T::Int, false}},
       false,
       "sinusoidal_positions(x, width=INT)"},
      {"segment_embedding",
       OpKind::SegmentEmbedding,
       1,
       1,
       {{"types", T::Int, true}, {"width", T::Int, true}},
       true,
       "segment_embedding(ids, types=INT, width=INT)"},
      {"layernorm", OpKind::LayerNorm, 1, 1, {{"eps", T::Float, false}}, true, "layernorm(x, eps=FLOAT)"},
      {"rmsnorm", OpKind::RMSNorm, 1, 1, {{"eps", T::Float, false}}, true, "rmsnorm(x, eps=FLOAT)"},
      {"linear",
       OpKind::Linear,
       1,
       1,
       {{"out", T::Int, true}, {"bias", T::Bool, false}},
       true,
       "linear(x, out=INT, bias=BOOL)"},
      {"attention",
       OpKind::Attention,
       1,
       2,
       {{"heads", T::Int, true},
        {"kv_heads", T::Int, false},
        {"head_dim", T::Int, false},
        {"pattern", T::Pattern, false},
        {"bias", T::Bool, false},
        {"scale", T::Float, false},
        {"evolving", T::Bool, false},
        {"alpha", T::Float, false},
        {"beta", T::Float, false},
        {"rotary", T::Bool, false},
        {"rotary_base", T::Float, false},
        {"rotary_dims", T::Int, false}},
       true,
       "attention(x [, context], heads=INT, kv_heads=INT, head_dim=INT, pattern=PATTERN, bias=BOOL, scale=FLOAT, "
       "evolving=BOOL, alpha=FLOAT, beta=FLOAT, rotary=BOOL, rotary_base=FLOAT, rotary_dims=INT)"},
      {"relu", OpKind::ReLU, 1, 1, {}, false, "relu(x)"},
      {"gelu", OpKind::GELU, 1, 1, {}, false, "gelu(x)"},
      {"gelu_tanh", OpKind::GELUTanh, 1, 1, {}, false, "gelu_tanh(x)"},
      {"silu", OpKind::SiLU, 1, 1, {}, false, "silu(x)"},
      {"mean_pool", OpKind::MeanPool, 1, 1, {}, false, "mean_pool(seq)"},
      {"cls_pool", OpKind::ClsPool, 1, 1, {}, false, "cls_pool(seq)"},
      {"normalize", OpKind::Normalize, 1, 1, {}, false, "normalize(x)"},
      {"unembed", OpKind::Unembed, 2, 2, {}, false, "unembed(x, EMBEDDING)"},
  };
  return table;
}

}  // namespace

const OperatorSignature* find_operator(const std::string& name) {
  for (const auto& s : signatures()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::vector<std::string> operator_names() {
  std::vector<std::string> names;
  for (const auto& s : signatures()) names.emplace_back(s.name);
  return names;
}

const char* arg_type_name(OperatorArgType type) {
  switch (type) {
    case OperatorArgType::Int: return "int";
    case OperatorArgType::Float: return "float";
    case OperatorArgType::Bool: return "bool";
    case OperatorArgType::Pattern: return "a pattern";
  }
  return "?";
}

}  // namespace tessera::sema
