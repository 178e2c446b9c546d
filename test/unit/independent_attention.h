// An independent float64 attention, written from the math with plain loops, for checking every target.
//
// Nothing here goes through the expression IR, its interpreter or the DSL: masks and score modifiers are
// ordinary C++ functions, and there is one hand-written function per standard-library pattern (dsl/prelude.attn)
// so that tests of any target can compare against them. Arrays are plain C-ordered float buffers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

namespace tessera::oracle {

// (b, h, i, j, q, k): batch, query head, query row, key column, absolute query position (i + M - N), key position.
using MaskFn = std::function<bool(int64_t b, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k)>;
// The same point plus the scaled logit s; returns the modified logit.
using ScoreFn = std::function<double(int64_t b, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k, double s)>;

// An attention pattern as plain C++.
struct Rule {
  MaskFn mask;
  ScoreFn score;
};

// Q [B, H, N, D], K [B, Hkv, M, D], V [B, Hkv, M, Dv], C order.
struct Problem {
  int64_t B = 1, H = 1, Hkv = 1, N = 0, M = 0, D = 0, Dv = 0;
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  double scale = 1;
};

// Integer division and remainder rounding towards negative infinity, as the DSL defines them.
inline int64_t floordiv(int64_t a, int64_t b) {
  const int64_t t = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? t - 1 : t;
}
inline int64_t floormod(int64_t a, int64_t b) { return a - floordiv(a, b) * b; }

// softmax(score(scale * q.k) over the allowed keys) @ V, in float64. Output [B, H, N, Dv]. A row without an
// allowed key, or whose best score is -inf, is zero; one with a NaN score is NaN.
inline std::vector<double> attention(const Problem& p, const Rule& rule) {
  std::vector<double> out(static_cast<size_t>(p.B * p.H * p.N * p.Dv), 0.0);
  const int64_t heads_per_kv = p.H / p.Hkv;
  std::vector<double> logits(static_cast<size_t>(p.M));
  std::vector<char> allowed(static_cast<size_t>(p.M));
  for (int64_t b = 0; b < p.B; ++b) {
    for (int64_t h = 0; h < p.H; ++h) {
      const int64_t g = h / heads_per_kv;
      for (int64_t i = 0; i < p.N; ++i) {
        const int64_t q = i + p.M - p.N;
        // Pass 1: logits of allowed keys and their maximum.
        double best = -std::numeric_limits<double>::infinity();
        bool any = false;
        for (int64_t j = 0; j < p.M; ++j) {
          allowed[j] = rule.mask(b, h, i, j, q, j);
          if (!allowed[j]) continue;
          any = true;
          double dot = 0;
          for (int64_t d = 0; d < p.D; ++d) {
            dot +=
                double(p.q[((b * p.H + h) * p.N + i) * p.D + d]) * double(p.k[((b * p.Hkv + g) * p.M + j) * p.D + d]);
          }
          logits[j] = rule.score(b, h, i, j, q, j, p.scale * dot);
          best = std::max(best, logits[j]);
        }
        if (!any) continue;
        // A NaN logit must poison the row, as the math says; std::max above may have skipped it.
        for (int64_t j = 0; j < p.M; ++j) {
          if (allowed[j] && std::isnan(logits[j])) best = logits[j];
        }
        if (best == -std::numeric_limits<double>::infinity()) continue;
        // Pass 2: normaliser. Pass 3: weighted sum of values.
        double z = 0;
        for (int64_t j = 0; j < p.M; ++j) {
          if (allowed[j]) z += std::exp(logits[j] - best);
        }
        for (int64_t j = 0; j < p.M; ++j) {
          if (!allowed[j]) continue;
          const double w = std::exp(logits[j] - best) / z;
          for (int64_t e = 0; e < p.Dv; ++e) {
            out[((b * p.H + h) * p.N + i) * p.Dv + e] += w * double(p.v[((b * p.Hkv + g) * p.M + j) * p.Dv + e]);
          }
        }
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------
// The standard library, row by row (d = q - k).

inline double keep_score(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double s) { return s; }
inline Rule mask_only(MaskFn mask) { return Rule{std::move(mask), keep_score}; }

inline Rule full() {
  return mask_only([](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; });
}

inline Rule causal() {
  return mask_only([](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) { return k <= q; });
}

inline Rule sliding_window(int64_t window) {
  return mask_only(
      [=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) { return 0 <= q - k && q - k < window; });
}

inline Rule local(int64_t window) {
  return mask_only(
      [=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) { return (q > k ? q - k : k - q) < window; });
}

inline Rule strided(int64_t stride) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    const int64_t d = q - k;
    return k <= q && (d < stride || floormod(d, stride) == 0);
  });
}

inline Rule fixed(int64_t block, int64_t summary) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    return k <= q && (floordiv(k, block) == floordiv(q, block) || floormod(k, block) >= block - summary);
  });
}

inline Rule dilated(int64_t window, int64_t dilation) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    const int64_t d = q - k;
    return d >= 0 && d < window * dilation && floormod(d, dilation) == 0;
  });
}

inline Rule local2d(int64_t width, int64_t block_h, int64_t block_w, int64_t halo_h, int64_t halo_w) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    const int64_t row_q = floordiv(q, width), col_q = floormod(q, width);
    const int64_t row_k = floordiv(k, width), col_k = floormod(k, width);
    const int64_t r0 = floordiv(row_q, block_h) * block_h;
    const int64_t c0 = floordiv(col_q, block_w) * block_w;
    return k <= q && r0 - halo_h <= row_k && row_k <= r0 + block_h - 1 && c0 - halo_w <= col_k &&
           col_k <= c0 + block_w - 1 + halo_w;
  });
}

// Image Transformer local 1D: earlier keys of the query's block of `query_block` and the `memory` before it.
inline Rule local1d(int64_t query_block, int64_t memory) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    return k <= q && k >= floordiv(q, query_block) * query_block - memory;
  });
}

inline Rule prefix_lm(int64_t prefix) {
  return mask_only([=](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t k) { return k <= q || k < prefix; });
}

// segments: int32 [B, M] document ids.
inline Rule document(const int32_t* segments, int64_t M) {
  return mask_only([=](int64_t b, int64_t, int64_t, int64_t, int64_t q, int64_t k) {
    return q >= 0 && segments[b * M + q] == segments[b * M + k];
  });
}

inline Rule alibi(int64_t H) {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t, int64_t h, int64_t, int64_t, int64_t q, int64_t k, double s) {
                const double slope = std::pow(2.0, -8.0 * double(h + 1) / double(H));
                return s - slope * double(q - k);
              }};
}

inline Rule softcap(double cap) {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, double s) { return cap * std::tanh(s / cap); }};
}

// rel: float32 [H, R, D] relative embeddings; the query vectors come from the problem's Q.
inline Rule relative(const Problem& p, const float* rel, int64_t R) {
  const float* q_data = p.q;
  const int64_t H = p.H, N = p.N, D = p.D;
  const double scale = p.scale;
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t b, int64_t h, int64_t i, int64_t, int64_t q, int64_t k, double s) {
                const int64_t r = std::min(std::max(q - k, int64_t{0}), R - 1);
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                  dot += double(q_data[((b * H + h) * N + i) * D + d]) * double(rel[(h * R + r) * D + d]);
                }
                return s + scale * dot;
              }};
}

// Shaw et al.: s + scale * (q . table[h, clamp(k - q, -max_distance, max_distance) + max_distance]); `table` is
// [H, rows, D] with rows >= 2 * max_distance + 1.
inline Rule relative_bidir(const Problem& p, const float* table, int64_t rows, int64_t max_distance) {
  const float* q_data = p.q;
  const int64_t H = p.H, N = p.N, D = p.D;
  const double scale = p.scale;
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t b, int64_t h, int64_t i, int64_t, int64_t q, int64_t k, double s) {
                const int64_t r = std::min(std::max(k - q, -max_distance), max_distance) + max_distance;
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                  dot += double(q_data[((b * H + h) * N + i) * D + d]) * double(table[(h * rows + r) * D + d]);
                }
                return s + scale * dot;
              }};
}

// ------------------------------------------------------------------------------------------------------------
// Composition.

// A & B: both masks; B's score applied to A's.
inline Rule both(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) && b.mask(bb, h, i, j, q, k);
              },
              [=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k, double s) {
                return b.score(bb, h, i, j, q, k, a.score(bb, h, i, j, q, k, s));
              }};
}

// A | B: either mask; the same score chain as A & B.
inline Rule either(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) || b.mask(bb, h, i, j, q, k);
              },
              [=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k, double s) {
                return b.score(bb, h, i, j, q, k, a.score(bb, h, i, j, q, k, s));
              }};
}

// A - B: A's mask without B's; only A's score.
inline Rule minus(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) && !b.mask(bb, h, i, j, q, k);
              },
              a.score};
}

}  // namespace tessera::oracle
