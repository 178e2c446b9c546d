#include "targets/reference/reference_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "compiler/ir/evaluate.h"

namespace tessera::reference {

using runtime::DType;
using runtime::Tensor;

std::vector<double> attention_f64(const ir::Pattern& pattern, const AttentionInputs& inputs) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs);
  const double scale = targets::attention_scale(pattern, inputs, sz);

  targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, inputs);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);
  // Bilinear scoring: q_vec . W[h] in float64 (its float32 rounding only for dot(q_vec, ...) in the score).
  // The evaluator has checked W: float32 [H, D, D].
  const float* projection = pattern.query_projection.empty()
                                ? nullptr
                                : static_cast<const float*>(tensors.views.at(pattern.query_projection).data);
  std::vector<double> q_row(static_cast<size_t>(sz.D));
  std::vector<float> q_rounded(static_cast<size_t>(sz.D));
  // Additive scoring: Wq[h] . q and Wk[h] . k in float64 (the evaluator has checked Wq, Wk: float32 [H, A, D]
  // and v: float32 [H, A]), the keys once per head.
  const bool additive = pattern.scoring == ir::Scoring::Additive;
  const float *wq = nullptr, *wk = nullptr, *wv = nullptr;
  int64_t A = 0;
  if (additive) {
    wq = static_cast<const float*>(tensors.views.at(pattern.additive.query_weight).data);
    wk = static_cast<const float*>(tensors.views.at(pattern.additive.key_weight).data);
    wv = static_cast<const float*>(tensors.views.at(pattern.additive.vector).data);
    A = tensors.views.at(pattern.additive.vector).shape[1];
  }
  std::vector<double> q_additive(static_cast<size_t>(A)), k_additive(static_cast<size_t>(sz.M * A));
  auto project = [&](const float* w, const float* x, double* y) {
    for (int64_t a = 0; a < A; ++a) {
      double sum = 0;
      for (int64_t d = 0; d < sz.D; ++d) sum += static_cast<double>(w[a * sz.D + d]) * static_cast<double>(x[d]);
      y[a] = sum;
    }
  };

  const float* q = inputs.q->data<float>();
  const float* k = inputs.k->data<float>();
  const float* v = inputs.v->data<float>();
  const int64_t group = sz.H / sz.Hkv;
  std::vector<double> out(static_cast<size_t>(sz.B * sz.H * sz.N * sz.Dv), 0.0);
  const bool weighted = pattern.has_weight();
  const bool hardmax = pattern.normalizer == ir::Normalizer::Hardmax;
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
      if (additive) {
        for (int64_t j = 0; j < sz.M; ++j)
          project(wk + h * A * sz.D, k_head + j * sz.D, &k_additive[static_cast<size_t>(j * A)]);
      }
      for (int64_t i = 0; i < sz.N; ++i) {
        const float* q_vec = q + ((b * sz.H + h) * sz.N + i) * sz.D;
        for (int64_t d = 0; d < sz.D; ++d) q_row[static_cast<size_t>(d)] = q_vec[d];
        if (projection) {
          const float* w = projection + h * sz.D * sz.D;
          for (int64_t e = 0; e < sz.D; ++e) {
            double sum = 0;
            for (int64_t d = 0; d < sz.D; ++d)
              sum += static_cast<double>(q_vec[d]) * static_cast<double>(w[d * sz.D + e]);
            q_row[static_cast<size_t>(e)] = sum;
          }
          for (int64_t d = 0; d < sz.D; ++d)
            q_rounded[static_cast<size_t>(d)] = static_cast<float>(q_row[static_cast<size_t>(d)]);
          q_vec = q_rounded.data();
        }
        if (additive) project(wq + h * A * sz.D, q_vec, q_additive.data());
        keys.clear();
        scores.clear();
        double max_score = -std::numeric_limits<double>::infinity();
        bool saw_nan = false;
        for (int64_t j = 0; j < sz.M; ++j) {
          if (!evaluator.allowed(b, h, i, j)) continue;
          const float* k_vec = k_head + j * sz.D;
          double dot = 0;
          if (additive) {
            const double* k_projected = &k_additive[static_cast<size_t>(j * A)];
            for (int64_t a = 0; a < A; ++a)
              dot +=
                  static_cast<double>(wv[h * A + a]) * std::tanh(q_additive[static_cast<size_t>(a)] + k_projected[a]);
          } else {
            for (int64_t d = 0; d < sz.D; ++d) dot += q_row[static_cast<size_t>(d)] * static_cast<double>(k_vec[d]);
          }
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
        if (hardmax) {  // keys are in increasing order: the first at the maximum is the lowest index
          const size_t best = static_cast<size_t>(std::find(scores.begin(), scores.end(), max_score) - scores.begin());
          const float* v_vec = v_head + keys[best] * sz.Dv;
          for (int64_t d = 0; d < sz.Dv; ++d) o[d] = static_cast<double>(v_vec[d]);
          continue;
        }
        double sum = 0;
        std::fill(row.begin(), row.end(), 0.0);
        for (size_t n = 0; n < keys.size(); ++n) {
          const double p = std::exp(scores[n] - max_score);
          sum += p;
          const double w = weighted ? p * evaluator.weight(b, h, i, keys[n]) : p;
          const float* v_vec = v_head + keys[n] * sz.Dv;
          for (int64_t d = 0; d < sz.Dv; ++d) row[static_cast<size_t>(d)] += w * static_cast<double>(v_vec[d]);
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
