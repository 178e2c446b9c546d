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

// The same point without the logit: the weight of its probability.
using WeightFn = std::function<double(int64_t b, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k)>;

// An attention pattern as plain C++. Without `weight`, every probability has weight 1; `hardmax` puts a row's
// whole weight on its first key with the highest logit.
struct Rule {
  MaskFn mask;
  ScoreFn score;
  WeightFn weight = {};
  bool hardmax = false;
  bool unscaled = false;            // `dot` scoring: logits are q.k, whatever the problem's scale
  const float* bilinear = nullptr;  // [H, D, D]: logits are scale * q . W[h] . k
  // Additive scoring when `v` is set: logits are v[h] . tanh(Wq[h] . q + Wk[h] . k), unscaled, with
  // Wq, Wk [H, units, D] and v [H, units].
  struct Additive {
    const float* wq = nullptr;
    const float* wk = nullptr;
    const float* v = nullptr;
    int64_t units = 0;
  } additive;
};

// Additive scoring's logit of one pair (see Rule::Additive).
inline double additive_logit(const Rule::Additive& a, int64_t h, int64_t D, const float* q, const float* k) {
  double logit = 0;
  for (int64_t u = 0; u < a.units; ++u) {
    double hidden = 0;
    for (int64_t d = 0; d < D; ++d) {
      hidden += double(a.wq[(h * a.units + u) * D + d]) * double(q[d]) +
                double(a.wk[(h * a.units + u) * D + d]) * double(k[d]);
    }
    logit += double(a.v[h * a.units + u]) * std::tanh(hidden);
  }
  return logit;
}

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

// softmax(score(scale * q.k) over the allowed keys), times the weights, @ V, in float64 (or the value row of the
// first best key, for hardmax). Output [B, H, N, Dv]. A row without an allowed key, or whose best score is -inf,
// is zero; one with a NaN score is NaN.
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
          const float* qv = p.q + ((b * p.H + h) * p.N + i) * p.D;
          const float* kv = p.k + ((b * p.Hkv + g) * p.M + j) * p.D;
          if (rule.additive.v) {
            logits[j] = rule.score(b, h, i, j, q, j, additive_logit(rule.additive, h, p.D, qv, kv));
            best = std::max(best, logits[j]);
            continue;
          }
          double dot = 0;
          for (int64_t d = 0; d < p.D; ++d) {
            if (!rule.bilinear) {
              dot += double(qv[d]) * double(kv[d]);
              continue;
            }
            for (int64_t e = 0; e < p.D; ++e)
              dot += double(qv[d]) * double(rule.bilinear[(h * p.D + d) * p.D + e]) * double(kv[e]);
          }
          logits[j] = rule.score(b, h, i, j, q, j, (rule.unscaled ? 1.0 : p.scale) * dot);
          best = std::max(best, logits[j]);
        }
        if (!any) continue;
        // A NaN logit must poison the row, as the math says; std::max above may have skipped it.
        for (int64_t j = 0; j < p.M; ++j) {
          if (allowed[j] && std::isnan(logits[j])) best = logits[j];
        }
        if (best == -std::numeric_limits<double>::infinity()) continue;
        if (rule.hardmax && !std::isnan(best)) {
          int64_t first = 0;
          while (!(allowed[first] && logits[first] == best)) ++first;
          for (int64_t e = 0; e < p.Dv; ++e) {
            out[((b * p.H + h) * p.N + i) * p.Dv + e] = double(p.v[((b * p.Hkv + g) * p.M + first) * p.Dv + e]);
          }
          continue;
        }
        // Pass 2: normaliser. Pass 3: weighted sum of values.
        double z = 0;
        for (int64_t j = 0; j < p.M; ++j) {
          if (allowed[j]) z += std::exp(logits[j] - best);
        }
        for (int64_t j = 0; j < p.M; ++j) {
          if (!allowed[j]) continue;
          double w = std::exp(logits[j] - best) / z;
          if (rule.weight) w *= rule.weight(b, h, i, j, q, j);
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

// T5's bucket of a distance n >= 0 within one half of the table (`buckets` buckets, the first `exact` exact),
// from the definition floor(L * log(n / exact) / log(max_distance / exact)) with L = buckets - exact, decided
// in integers: that floor reaches j iff (n / exact)^L >= (max_distance / exact)^j, i.e.
// n^L >= max_distance^j * exact^(L - j). Keep n^L below 2^127 (small tests do).
inline int64_t t5_half_bucket(int64_t n, int64_t exact, int64_t max_distance, int64_t buckets) {
  __extension__ using Wide = unsigned __int128;
  if (n < exact) return n;
  const int64_t L = buckets - exact;
  auto power = [](Wide base, int64_t e) {
    Wide r = 1;
    while (e-- > 0) r *= base;
    return r;
  };
  int64_t j = 0;
  while (j + 1 < L && power(Wide(n), L) >= power(Wide(max_distance), j + 1) * power(Wide(exact), L - j - 1)) ++j;
  return exact + j;
}

// T5 relative position bias: s + table[h, bucket(k - q)], `table` [H, rows].
inline Rule t5_bias(const float* table, int64_t rows, int64_t buckets, int64_t max_distance, bool bidirectional) {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t, int64_t h, int64_t, int64_t, int64_t q, int64_t k, double s) {
                const int64_t relative = k - q;  // T5's memory_position - query_position
                int64_t half = buckets, offset = 0, n = std::max(-relative, int64_t{0});
                if (bidirectional) {
                  half = buckets / 2;
                  offset = relative > 0 ? half : 0;
                  n = relative < 0 ? -relative : relative;
                }
                return s + double(table[h * rows + offset + t5_half_bucket(n, half / 2, max_distance, half)]);
              }};
}

// 2D relative embeddings over raster pixels `width` wide: s + scale * (q . rows_table[h, clamp(dr) + max_rows]
// + q . cols_table[h, clamp(dc) + max_cols]) with (dr, dc) the key's row and column offset from the query.
inline Rule relative2d(const Problem& p, int64_t width, const float* rows_table, int64_t row_entries, int64_t max_rows,
                       const float* cols_table, int64_t col_entries, int64_t max_cols) {
  const float* q_data = p.q;
  const int64_t H = p.H, N = p.N, D = p.D;
  const double scale = p.scale;
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t b, int64_t h, int64_t i, int64_t, int64_t q, int64_t k, double s) {
                const int64_t dr = floordiv(k, width) - floordiv(q, width);
                const int64_t dc = floormod(k, width) - floormod(q, width);
                const int64_t r = std::min(std::max(dr, -max_rows), max_rows) + max_rows;
                const int64_t c = std::min(std::max(dc, -max_cols), max_cols) + max_cols;
                double dot = 0;
                for (int64_t d = 0; d < D; ++d) {
                  const double qd = q_data[((b * H + h) * N + i) * D + d];
                  dot += qd * (double(rows_table[(h * row_entries + r) * D + d]) +
                               double(cols_table[(h * col_entries + c) * D + d]));
                }
                return s + scale * dot;
              }};
}

// Hard attention: every key allowed, the first highest logit takes the row.
inline Rule hardmax() {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; }, keep_score, {}, true};
}

// Unscaled dot-product scoring (Luong's `dot`): logits q.k.
inline Rule dot_scoring() {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; }, keep_score, {}, false, true};
}

// Bilinear scoring (Luong's `general`): logits scale * q . W[h] . k, `w` [H, D, D].
inline Rule bilinear(const float* w) {
  return Rule{
      [](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; }, keep_score, {}, false, false, w};
}

// Additive scoring (Bahdanau): logits v[h] . tanh(Wq[h] . q + Wk[h] . k), unscaled; Wq, Wk [H, units, D], v [H, units].
inline Rule additive(const float* wq, const float* wk, const float* v, int64_t units) {
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              keep_score,
              {},
              false,
              false,
              nullptr,
              {wq, wk, v, units}};
}

// Sampling by Gumbel-max: hardmax over s - log(-log(u)), u from the lowbias32 hash of (seed, b, h, q, k) as the
// prelude's `sample` defines it (each integer's low 32 bits; the top 23 bits of the state, plus one half, over 2^23).
inline Rule sample(int64_t seed) {
  auto mix = [](uint32_t x) {
    x = (x ^ (x >> 16)) * 0x7feb352du;
    x = (x ^ (x >> 15)) * 0x846ca68bu;
    return x ^ (x >> 16);
  };
  return Rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
              [=](int64_t b, int64_t h, int64_t, int64_t, int64_t q, int64_t k, double s) {
                uint32_t x = mix(static_cast<uint32_t>(seed) ^ 0x9e3779b9u);
                for (int64_t v : {b, h, q, k}) x = mix(x ^ static_cast<uint32_t>(v));
                const double u = (double(x >> 9) + 0.5) / 8388608.0;
                return s - std::log(-std::log(u));
              },
              {},
              true};
}

// Luong local-p: keys within half_width of the row's centre centers[b, i] (`centers` [B, N]), each probability
// times exp(-(k - centre)^2 / (2 sigma^2)), sigma = half_width / 2.
inline Rule luong_local_p(const float* centers, int64_t N, int64_t half_width) {
  return Rule{[=](int64_t b, int64_t, int64_t i, int64_t, int64_t, int64_t k) {
                return std::abs(double(k) - double(centers[b * N + i])) <= double(half_width);
              },
              keep_score,
              [=](int64_t b, int64_t, int64_t i, int64_t, int64_t, int64_t k) {
                const double offset = double(k) - double(centers[b * N + i]), sigma = double(half_width) / 2;
                return std::exp(-offset * offset / (2 * sigma * sigma));
              }};
}

// ------------------------------------------------------------------------------------------------------------
// Composition.

// The weights of A and B multiplied (either may have none).
inline WeightFn weight_product(WeightFn a, WeightFn b) {
  if (!a) return b;
  if (!b) return a;
  return [=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
    return a(bb, h, i, j, q, k) * b(bb, h, i, j, q, k);
  };
}

// A & B: both masks; B's score applied to A's; the product of the weights; hardmax if either is.
inline Rule both(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) && b.mask(bb, h, i, j, q, k);
              },
              [=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k, double s) {
                return b.score(bb, h, i, j, q, k, a.score(bb, h, i, j, q, k, s));
              },
              weight_product(a.weight, b.weight),
              a.hardmax || b.hardmax,
              a.unscaled || b.unscaled,
              a.bilinear ? a.bilinear : b.bilinear,
              a.additive.v ? a.additive : b.additive};
}

// A | B: either mask; the same score chain, weights and normaliser as A & B.
inline Rule either(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) || b.mask(bb, h, i, j, q, k);
              },
              [=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k, double s) {
                return b.score(bb, h, i, j, q, k, a.score(bb, h, i, j, q, k, s));
              },
              weight_product(a.weight, b.weight),
              a.hardmax || b.hardmax,
              a.unscaled || b.unscaled,
              a.bilinear ? a.bilinear : b.bilinear,
              a.additive.v ? a.additive : b.additive};
}

// A - B: A's mask without B's; only A's score.
inline Rule minus(Rule a, Rule b) {
  return Rule{[=](int64_t bb, int64_t h, int64_t i, int64_t j, int64_t q, int64_t k) {
                return a.mask(bb, h, i, j, q, k) && !b.mask(bb, h, i, j, q, k);
              },
              a.score,
              a.weight,
              a.hardmax,
              a.unscaled,
              a.bilinear,
              a.additive};
}

}  // namespace tessera::oracle
