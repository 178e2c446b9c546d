#include "targets/common/attention_problem.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "runtime/linear.h"

namespace tessera::targets {

namespace {

using runtime::DType;
using runtime::Tensor;
using runtime::TensorError;

const Tensor& require_float4d(const Tensor* t, const char* name, const char* layout, OperandTypes types) {
  if (t == nullptr) throw TensorError(fmt::format("attention input {} was not given", name));
  if (t->rank() != 4) {
    throw TensorError(fmt::format("attention input {} must have rank 4 {}, got {}", name, layout, t->type_string()));
  }
  const bool bf16 = types == OperandTypes::Float32OrBFloat16 && t->dtype() == DType::BFloat16;
  if (t->dtype() != DType::Float32 && !bf16) {
    throw TensorError(fmt::format("attention input {} must be float32{} {}, got {}", name,
                                  types == OperandTypes::Float32 ? "" : " or bfloat16", layout, t->type_string()));
  }
  return *t;
}

// Checks Q, K and V against each other and returns the attention sizes they define.
}  // namespace

ConvertedOperands::ConvertedOperands(const AttentionInputs& given, const std::function<Tensor(const Tensor&)>& convert)
    : q(convert(*given.q)), k(convert(*given.k)), v(convert(*given.v)), inputs(given) {
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
}

ir::AttentionSizes validate_attention_inputs(const AttentionInputs& in, OperandTypes types) {
  const Tensor& q = require_float4d(in.q, "Q", "[B, H, N, D]", types);
  const Tensor& k = require_float4d(in.k, "K", "[B, Hkv, M, D]", types);
  const Tensor& v = require_float4d(in.v, "V", "[B, Hkv, M, Dv]", types);
  const std::string shapes = fmt::format("(Q {}, K {}, V {})", q.shape_string(), k.shape_string(), v.shape_string());
  if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) {
    throw TensorError(fmt::format("Q, K and V must share one element type, got Q {}, K {}, V {}", q.type_string(),
                                  k.type_string(), v.type_string()));
  }

  ir::AttentionSizes s;
  s.B = q.dim(0);
  s.H = q.dim(1);
  s.N = q.dim(2);
  s.D = q.dim(3);
  s.Hkv = k.dim(1);
  s.M = k.dim(2);
  s.Dv = v.dim(3);
  if (k.dim(0) != s.B) throw TensorError(fmt::format("Q and K disagree on the batch size B {}", shapes));
  if (k.dim(3) != s.D) throw TensorError(fmt::format("Q and K disagree on the head dimension D {}", shapes));
  if (v.dim(0) != s.B) throw TensorError(fmt::format("K and V disagree on the batch size B {}", shapes));
  if (v.dim(1) != s.Hkv) throw TensorError(fmt::format("K and V disagree on the number of kv heads Hkv {}", shapes));
  if (v.dim(2) != s.M) throw TensorError(fmt::format("K and V disagree on the key sequence length M {}", shapes));
  // N = 0 (no queries) and M = 0 (no keys: every row is zero) have a clear meaning; these do not.
  for (auto [value, what] : {std::pair{s.B, "batch size B"}, std::pair{s.H, "number of query heads H"},
                             std::pair{s.Hkv, "number of kv heads Hkv"}, std::pair{s.D, "head dimension D"},
                             std::pair{s.Dv, "value dimension Dv"}}) {
    if (value == 0) throw TensorError(fmt::format("the {} must not be zero {}", what, shapes));
  }
  if (s.H % s.Hkv != 0) {
    throw TensorError(
        fmt::format("the number of query heads H = {} is not a multiple of the number of kv heads "
                    "Hkv = {} {}",
                    s.H, s.Hkv, shapes));
  }
  return s;
}

double natural_scale(const ir::Pattern& pattern, int64_t D) {
  return pattern.scoring == ir::Scoring::ScaledDot ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0;
}

double attention_scale(const ir::Pattern& pattern, const AttentionInputs& inputs, const ir::AttentionSizes& sizes) {
  const double scale = inputs.scale ? *inputs.scale : natural_scale(pattern, sizes.D);
  if (!std::isfinite(scale)) throw TensorError(fmt::format("the attention scale must be finite, got {}", scale));
  return scale;
}

void project_for_additive(const ir::Pattern& pattern, const AttentionInputs& inputs, const ir::AttentionSizes& sz,
                          AdditiveProjection& out) {
  auto weight = [&](const std::string& name) -> const Tensor& {
    auto it = inputs.tensors.find(name);
    if (pattern.additive.empty() || it == inputs.tensors.end() || it->second == nullptr ||
        it->second->dtype() != DType::Float32 || it->second->rank() != 3 || it->second->dim(0) != sz.H ||
        it->second->dim(2) != sz.D) {
      throw std::logic_error("tessera internal error: project_for_additive called before the inputs were validated");
    }
    return *it->second;
  };
  const Tensor& wq = weight(pattern.additive.query_weight);
  const Tensor& wk = weight(pattern.additive.key_weight);
  const int64_t A = wq.dim(1);
  const int64_t group = sz.H / sz.Hkv;
  out.sizes = sz;
  out.sizes.D = A;
  out.sizes.Hkv = sz.H;
  out.q = Tensor(DType::Float32, {sz.B, sz.H, sz.N, A});
  out.k = Tensor(DType::Float32, {sz.B, sz.H, sz.M, A});
  for (int64_t b = 0; b < sz.B; ++b) {
    for (int64_t h = 0; h < sz.H; ++h) {
      const int64_t kvh = h / group;
      if (sz.N > 0) {
        runtime::linear(inputs.q->data<float>() + (b * sz.H + h) * sz.N * sz.D, sz.N, sz.D,
                        wq.data<float>() + h * A * sz.D, nullptr, A, out.q.data<float>() + (b * sz.H + h) * sz.N * A);
      }
      if (sz.M > 0) {
        runtime::linear(inputs.k->data<float>() + (b * sz.Hkv + kvh) * sz.M * sz.D, sz.M, sz.D,
                        wk.data<float>() + h * A * sz.D, nullptr, A, out.k.data<float>() + (b * sz.H + h) * sz.M * A);
      }
    }
  }
  out.inputs = inputs;
  out.inputs.q = &out.q;
  out.inputs.k = &out.k;
  if (group > 1) {
    out.v = Tensor(DType::Float32, {sz.B, sz.H, sz.M, sz.Dv});
    const int64_t head = sz.M * sz.Dv;
    for (int64_t b = 0; b < sz.B; ++b) {
      for (int64_t h = 0; h < sz.H; ++h) {
        const float* from = inputs.v->data<float>() + (b * sz.Hkv + h / group) * head;
        std::copy(from, from + head, out.v.data<float>() + (b * sz.H + h) * head);
      }
    }
    out.inputs.v = &out.v;
  }
}

AttentionInputs project_queries(const ir::Pattern& pattern, const AttentionInputs& inputs, const ir::AttentionSizes& sz,
                                Tensor& projected) {
  if (pattern.query_projection.empty()) return inputs;
  // W is one of the pattern's inputs, float32 [H, D, D]: ir::PatternEvaluator has reported it if missing or
  // mis-shaped, before any target gets here.
  auto it = inputs.tensors.find(pattern.query_projection);
  if (it == inputs.tensors.end() || it->second == nullptr || it->second->dtype() != DType::Float32 ||
      it->second->shape() != std::vector<int64_t>{sz.H, sz.D, sz.D}) {
    throw std::logic_error("tessera internal error: project_queries called before the inputs were validated");
  }
  const Tensor& w = *it->second;
  projected = Tensor(DType::Float32, {sz.B, sz.H, sz.N, sz.D});
  const float* q = inputs.q->data<float>();
  const float* wd = w.data<float>();
  float* out = projected.data<float>();
  std::vector<double> row(static_cast<size_t>(sz.D));
  for (int64_t b = 0; b < sz.B; ++b) {
    for (int64_t h = 0; h < sz.H; ++h) {
      const float* wh = wd + h * sz.D * sz.D;
      for (int64_t n = 0; n < sz.N; ++n) {
        const float* qv = q + ((b * sz.H + h) * sz.N + n) * sz.D;
        std::fill(row.begin(), row.end(), 0.0);
        for (int64_t d = 0; d < sz.D; ++d) {
          for (int64_t e = 0; e < sz.D; ++e) row[static_cast<size_t>(e)] += double(qv[d]) * double(wh[d * sz.D + e]);
        }
        float* ov = out + ((b * sz.H + h) * sz.N + n) * sz.D;
        for (int64_t e = 0; e < sz.D; ++e) ov[e] = static_cast<float>(row[static_cast<size_t>(e)]);
      }
    }
  }
  AttentionInputs result = inputs;
  result.q = &projected;
  return result;
}

namespace {

ir::ElemType elem_type_of(const std::string& name, const Tensor& t) {
  switch (t.dtype()) {
    case DType::Float32: return ir::ElemType::Float32;
    case DType::Int32: return ir::ElemType::Int32;
    case DType::Int64: break;
    case DType::BFloat16: break;
  }
  throw std::logic_error("tessera internal error: int64 run-time tensor '" + name + "' was not narrowed");
}

}  // namespace

RuntimeTensorViews runtime_tensor_views(const ir::Pattern& pattern, const AttentionInputs& inputs) {
  RuntimeTensorViews result;
  for (const ir::TensorDecl& decl : pattern.inputs) {
    auto given = inputs.tensors.find(decl.name);
    if (given == inputs.tensors.end()) continue;
    const Tensor* t = given->second;
    if (t == nullptr) throw TensorError(fmt::format("run-time tensor '{}' is null", decl.name));
    if (t->dtype() == DType::Int64) {
      t = &result.narrowed.emplace(decl.name, runtime::to_int32(*t, fmt::format("run-time tensor '{}'", decl.name)))
               .first->second;
    }
    result.views.emplace(decl.name, ir::TensorView{elem_type_of(decl.name, *t), t->shape(), t->raw_data()});
  }
  return result;
}

tuner::Shape attention_tune_bucket(const ir::AttentionSizes& sz) {
  return tuner::bucket_shape({{"BH", sz.B * sz.H},
                              {"N", sz.N},
                              {"M", sz.M},
                              {"D", sz.D},
                              {"Dv", sz.Dv},
                              {"G", sz.H / std::max<int64_t>(sz.Hkv, 1)}});
}

}  // namespace tessera::targets
