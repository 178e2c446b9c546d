// Random attention problems for the targets' tests: Q, K, V, document segment ids and relative embeddings drawn
// from a seed, bound to whichever run-time tensors a pattern reads, and the comparison with the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"

namespace tessera::test {

struct Shape {
  int64_t B, H, Hkv, N, M, D, Dv;
};

inline void PrintTo(const Shape& s, std::ostream* os) {
  *os << "B=" << s.B << " H=" << s.H << " Hkv=" << s.Hkv << " N=" << s.N << " M=" << s.M << " D=" << s.D
      << " Dv=" << s.Dv;
}

inline runtime::Tensor random_tensor(std::vector<int64_t> shape, std::mt19937_64& rng, float stddev = 1.0f) {
  runtime::Tensor t(runtime::DType::Float32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = normal(rng);
  return t;
}

// Owns the tensors `inputs` points to (so it neither copies nor moves). `round` maps Q, K and V to the values a
// target stores (e.g. bf16), so the reference sees what the target sees.
struct RandomProblem {
  runtime::Tensor q, k, v, segments, rel, rel_bidir;
  targets::AttentionInputs inputs;

  RandomProblem(const ir::Pattern& pattern, const Shape& s, uint64_t seed,
                const std::function<runtime::Tensor(const runtime::Tensor&)>& round = {},
                const runtime::Tensor* given_segments = nullptr) {
    std::mt19937_64 rng(seed);
    q = random_tensor({s.B, s.H, s.N, s.D}, rng);
    k = random_tensor({s.B, s.Hkv, s.M, s.D}, rng);
    v = random_tensor({s.B, s.Hkv, s.M, s.Dv}, rng);
    if (round) {
      q = round(q);
      k = round(k);
      v = round(v);
    }
    // Three documents per batch row, shifted by the batch index.
    segments = runtime::Tensor(runtime::DType::Int32, {s.B, s.M});
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t m = 0; m < s.M; ++m) segments.data<int32_t>()[b * s.M + m] = static_cast<int32_t>((m * 3) / s.M + b);
    rel = random_tensor({s.H, 9, s.D}, rng, 0.5f);
    rel_bidir = random_tensor({s.H, 9, s.D}, rng, 0.5f);  // relative_bidir(max_distance <= 4)
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    if (pattern.input("segments")) inputs.tensors["segments"] = given_segments ? given_segments : &segments;
    if (pattern.input("rel")) inputs.tensors["rel"] = &rel;
    if (pattern.input("rel_bidir")) inputs.tensors["rel_bidir"] = &rel_bidir;
  }
  RandomProblem(const RandomProblem&) = delete;
  RandomProblem& operator=(const RandomProblem&) = delete;
};

// The largest |got - expected|; infinity if `got` holds a NaN.
inline double max_abs_difference(const runtime::Tensor& got, const std::vector<double>& expected) {
  double worst = 0;
  for (size_t e = 0; e < expected.size(); ++e) {
    const double g = got.data<float>()[e];
    if (std::isnan(g)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(g - expected[e]));
  }
  return worst;
}

}  // namespace tessera::test
