#include "targets/reference/reference_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "compiler/ir/evaluate.h"

namespace tessera::reference {

namespace {

using runtime::DType;
using runtime::Tensor;
using runtime::TensorError;

const Tensor& require_float4d(const Tensor* t, const char* name, const char* layout) {
  if (t == nullptr) throw TensorError(fmt::format("attention input {} was not given", name));
  if (t->rank() != 4) {
    throw TensorError(fmt::format("attention input {} must have rank 4 {}, got {}", name, layout, t->type_string()));
  }
  if (t->dtype() != DType::Float32) {
    throw TensorError(fmt::format("attention input {} must be float32 {}, got {}", name, layout, t->type_string()));
  }
  return *t;
}

// Checks Q, K and V against each other and returns the attention sizes they define.
ir::AttentionSizes validated_sizes(const AttentionInputs& in) {
  const Tensor& q = require_float4d(in.q, "Q", "[B, H, N, D]");
  const Tensor& k = require_float4d(in.k, "K", "[B, Hkv, M, D]");
  const Tensor& v = require_float4d(in.v, "V", "[B, Hkv, M, Dv]");
  const std::string shapes = fmt::format("(Q {}, K {}, V {})", q.shape_string(), k.shape_string(), v.shape_string());

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

ir::ElemType elem_type_of(const std::string& name, const Tensor& t) {
  switch (t.dtype()) {
    case DType::Float32: return ir::ElemType::Float32;
    case DType::Int32: return ir::ElemType::Int32;
    case DType::Int64: break;
  }
  throw std::logic_error("tessera internal error: int64 run-time tensor '" + name + "' was not narrowed");
}

}  // namespace

std::vector<double> attention_f64(const ir::Pattern& pattern, const AttentionInputs& inputs) {
  const ir::AttentionSizes sz = validated_sizes(inputs);
  const double scale = inputs.scale ? *inputs.scale : 1.0 / std::sqrt(static_cast<double>(sz.D));
  if (!std::isfinite(scale)) throw TensorError(fmt::format("the attention scale must be finite, got {}", scale));

  // Views of the run-time tensors the pattern reads (others are ignored); int64 ones are narrowed into
  // `narrowed`, which outlives the evaluator. A tensor the pattern needs but was not given is reported by the
  // evaluator, with the declared shape.
  std::map<std::string, Tensor> narrowed;
  std::map<std::string, ir::TensorView> views;
  for (const ir::TensorDecl& decl : pattern.inputs) {
    auto given = inputs.tensors.find(decl.name);
    if (given == inputs.tensors.end()) continue;
    const Tensor* t = given->second;
    if (t == nullptr) throw TensorError(fmt::format("run-time tensor '{}' is null", decl.name));
    if (t->dtype() == DType::Int64) {
      t = &narrowed.emplace(decl.name, runtime::to_int32(*t, fmt::format("run-time tensor '{}'", decl.name)))
               .first->second;
    }
    views.emplace(decl.name, ir::TensorView{elem_type_of(decl.name, *t), t->shape(), t->raw_data()});
  }
  const ir::PatternEvaluator evaluator(pattern, sz, std::move(views), scale);

  const float* q = inputs.q->data<float>();
  const float* k = inputs.k->data<float>();
  const float* v = inputs.v->data<float>();
  const int64_t group = sz.H / sz.Hkv;
  std::vector<double> out(static_cast<size_t>(sz.B * sz.H * sz.N * sz.Dv), 0.0);
  std::vector<int64_t> keys;   // allowed key columns of the current row
  std::vector<double> scores;  // their scores
  std::vector<double> row(static_cast<size_t>(sz.Dv));
  keys.reserve(static_cast<size_t>(sz.M));
  scores.reserve(static_cast<size_t>(sz.M));

  for (int64_t b = 0; b < sz.B; ++b) {
    for (int64_t h = 0; h < sz.H; ++h) {
      const int64_t kvh = h / group;
      const float* k_head = k + (b * sz.Hkv + kvh) * sz.M * sz.D;
      const float* v_head = v + (b * sz.Hkv + kvh) * sz.M * sz.Dv;
      for (int64_t i = 0; i < sz.N; ++i) {
        const float* q_vec = q + ((b * sz.H + h) * sz.N + i) * sz.D;
        keys.clear();
        scores.clear();
        double max_score = -std::numeric_limits<double>::infinity();
        bool saw_nan = false;
        for (int64_t j = 0; j < sz.M; ++j) {
          if (!evaluator.allowed(b, h, i, j)) continue;
          const float* k_vec = k_head + j * sz.D;
          double dot = 0;
          for (int64_t d = 0; d < sz.D; ++d) dot += static_cast<double>(q_vec[d]) * static_cast<double>(k_vec[d]);
          double score = evaluator.score(b, h, i, j, scale * dot, q_vec);
          keys.push_back(j);
          scores.push_back(score);
          if (std::isnan(score)) saw_nan = true;
          if (score > max_score) max_score = score;
        }
        double* o = out.data() + ((b * sz.H + h) * sz.N + i) * sz.Dv;
        if (keys.empty()) continue;  // nothing to attend to: the row stays zero
        // A NaN logit makes the softmax undefined for the whole row, even if the other logits are -inf.
        if (saw_nan) {
          std::fill(o, o + sz.Dv, std::numeric_limits<double>::quiet_NaN());
          continue;
        }
        // Every allowed key scored -inf: exp(-inf - -inf) would be NaN, but masking by score is the intent.
        if (max_score == -std::numeric_limits<double>::infinity()) continue;
        double sum = 0;
        std::fill(row.begin(), row.end(), 0.0);
        for (size_t n = 0; n < keys.size(); ++n) {
          const double p = std::exp(scores[n] - max_score);
          sum += p;
          const float* v_vec = v_head + keys[n] * sz.Dv;
          for (int64_t d = 0; d < sz.Dv; ++d) row[static_cast<size_t>(d)] += p * static_cast<double>(v_vec[d]);
        }
        for (int64_t d = 0; d < sz.Dv; ++d) o[d] = row[static_cast<size_t>(d)] / sum;
      }
    }
  }
  return out;
}

Tensor attention(const ir::Pattern& pattern, const AttentionInputs& inputs) {
  std::vector<double> result = attention_f64(pattern, inputs);
  Tensor out(DType::Float32, {inputs.q->dim(0), inputs.q->dim(1), inputs.q->dim(2), inputs.v->dim(3)});
  float* o = out.data<float>();
  for (size_t e = 0; e < result.size(); ++e) o[e] = static_cast<float>(result[e]);
  return out;
}

}  // namespace tessera::reference
