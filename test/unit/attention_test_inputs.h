// Random attention problems for the targets' tests: Q, K, V, document segment ids and relative embeddings drawn
// from a seed, bound to whichever run-time tensors a pattern reads, and the comparison with the reference.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
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
// target stores (e.g. bf16), so the reference sees what the target sees. Each float table a pattern reads gets
// random values, with 9 entries along a free dimension (R of rel): enough for relative_bidir and relative2d up
// to a distance of 4 and T5 tables of 9 buckets, and small enough that the clamps are reached.
struct RandomProblem {
  static constexpr int64_t kFreeDimension = 9;
  runtime::Tensor q, k, v, segments;
  std::map<std::string, runtime::Tensor> tables;
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
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    for (const ir::TensorDecl& decl : pattern.inputs) {
      if (decl.name == "segments") {
        inputs.tensors["segments"] = given_segments ? given_segments : &segments;
        continue;
      }
      if (decl.elem_type != ir::ElemType::Float32) throw std::invalid_argument("no random values for " + decl.name);
      std::vector<int64_t> shape;
      for (const std::string& dim : decl.dims) shape.push_back(size_of(s, dim));
      runtime::Tensor values = random_tensor(shape, rng, 0.5f);
      if (decl.name == "bilinear_w" || decl.name == "additive_wq" || decl.name == "additive_wk") {
        // Entries of variance 1/D keep the projected queries at the scale of Q itself (as an orthogonal W would),
        // and additive scoring's tanh out of saturation:
        // 16-bit targets round the projected queries, a rounding the float64 reference does not make, and its
        // effect grows with their size.
        values = random_tensor(shape, rng, static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.D))));
      } else if (decl.name == "centers") {  // luong_local_p's key positions: spread over the keys
        std::uniform_real_distribution<float> position(-2.0f, static_cast<float>(s.M) + 1.0f);
        for (int64_t e = 0; e < values.numel(); ++e) values.data<float>()[e] = position(rng);
      }
      inputs.tensors[decl.name] = &tables.emplace(decl.name, std::move(values)).first->second;
    }
  }
  RandomProblem(const RandomProblem&) = delete;
  RandomProblem& operator=(const RandomProblem&) = delete;

 private:
  static int64_t size_of(const Shape& s, const std::string& dim) {
    if (dim == "B") return s.B;
    if (dim == "H") return s.H;
    if (dim == "Hkv") return s.Hkv;
    if (dim == "N") return s.N;
    if (dim == "M") return s.M;
    if (dim == "D") return s.D;
    if (dim == "Dv") return s.Dv;
    return kFreeDimension;
  }
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
