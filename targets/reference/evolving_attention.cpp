#include "targets/reference/evolving_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "compiler/ir/evaluate.h"

namespace tessera::reference {

EvolvingAttentionResult evolving_attention_f64(const ir::Pattern& pattern,
                                               const targets::EvolvingAttentionInputs& inputs) {
  const ir::AttentionSizes sz = targets::validate_evolving_inputs(pattern, inputs);
  const targets::AttentionInputs& attention = inputs.attention;
  const double scale = targets::attention_scale(pattern, attention, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, attention);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);

  const int64_t B = sz.B, H = sz.H, N = sz.N, M = sz.M, D = sz.D, Dv = sz.Dv, group = sz.H / sz.Hkv;
  const float* q = attention.q->data<float>();
  const float* k = attention.k->data<float>();
  const float* v = attention.v->data<float>();
  const float* previous = inputs.previous ? inputs.previous->data<float>() : nullptr;
  const float* w = inputs.conv_weight->data<float>();
  const float* bias = inputs.conv_bias->data<float>();
  const targets::EvolvingTaps taps = targets::evolving_taps(inputs.kind);

  EvolvingAttentionResult result;
  result.out.assign(static_cast<size_t>(B * H * N * Dv), 0.0);
  result.map.assign(static_cast<size_t>(B * H * N * M), 0.0);
  // One batch row's input maps I and allowed pairs, every head: the convolution mixes the heads.
  std::vector<double> input(static_cast<size_t>(H * N * M));
  std::vector<char> allowed(static_cast<size_t>(H * N * M));
  auto at = [&](int64_t h, int64_t i, int64_t j) { return static_cast<size_t>((h * N + i) * M + j); };

  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        const float* q_vec = q + ((b * H + h) * N + i) * D;
        for (int64_t j = 0; j < M; ++j) {
          const bool keep = evaluator.allowed(b, h, i, j);
          allowed[at(h, i, j)] = keep;
          input[at(h, i, j)] = 0.0;
          if (!keep) continue;
          const float* k_vec = k + ((b * sz.Hkv + h / group) * M + j) * D;
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(q_vec[d]) * static_cast<double>(k_vec[d]);
          const double logit = evaluator.score(b, h, i, j, scale * dot, q_vec);
          const double before = previous ? static_cast<double>(previous[((b * H + h) * N + i) * M + j]) : 0.0;
          input[at(h, i, j)] = previous ? inputs.alpha * before + (1 - inputs.alpha) * logit : logit;
        }
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; ++i) {
        double* map_row = result.map.data() + ((b * H + h) * N + i) * M;
        for (int64_t j = 0; j < M; ++j) {
          if (!allowed[at(h, i, j)]) continue;  // the map holds 0 there
          double conv = bias[h];
          for (int64_t c = 0; c < H; ++c) {
            for (int64_t u = 0; u < 3; ++u) {
              const int64_t y = i + u - taps.row_offset;
              if (y < 0 || y >= N) continue;
              for (int64_t x_tap = 0; x_tap < 3; ++x_tap) {
                const int64_t x = j + x_tap - taps.column_offset;
                if (x < 0 || x >= M) continue;
                conv += static_cast<double>(w[((h * H + c) * 3 + u) * 3 + x_tap]) * input[at(c, y, x)];
              }
            }
          }
          map_row[j] = inputs.beta * std::max(conv, 0.0) + (1 - inputs.beta) * input[at(h, i, j)];
        }
        // Softmax over the allowed keys (a NaN makes the row NaN), then P V.
        double best = -std::numeric_limits<double>::infinity();
        bool any = false, nan = false;
        for (int64_t j = 0; j < M; ++j) {
          if (!allowed[at(h, i, j)]) continue;
          any = true;
          nan |= std::isnan(map_row[j]);
          best = std::max(best, map_row[j]);
        }
        double* o = result.out.data() + ((b * H + h) * N + i) * Dv;
        if (!any || best == -std::numeric_limits<double>::infinity()) continue;
        if (nan) {
          std::fill(o, o + Dv, std::numeric_limits<double>::quiet_NaN());
          continue;
        }
        double z = 0;
        for (int64_t j = 0; j < M; ++j) {
          if (allowed[at(h, i, j)]) z += std::exp(map_row[j] - best);
        }
        for (int64_t j = 0; j < M; ++j) {
          if (!allowed[at(h, i, j)]) continue;
          const double p = std::exp(map_row[j] - best) / z;
          const float* v_row = v + ((b * sz.Hkv + h / group) * M + j) * Dv;
          for (int64_t e = 0; e < Dv; ++e) o[e] += p * static_cast<double>(v_row[e]);
        }
      }
    }
  }
  return result;
}

}  // namespace tessera::reference
