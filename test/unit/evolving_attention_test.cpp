// Evolving Attention layers (targets/common/evolving_attention_problem.h): the float64 reference checked against
// properties that follow from the definition alone (no convolution is plain attention; alpha = 1 and beta = 0
// hand the previous map on; a single tap reads the neighbour its kind says), the CPU kernel against the reference,
// and causality: a decoder (and a cross layer) never lets a query see a later position.
#include "targets/cpu/evolving_attention.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>

#include "targets/reference/evolving_attention.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using targets::EvolvingKind;
using test::Shape;

// A random evolving layer: Q, K, V (and the pattern's tables) from test::RandomProblem, convolution weights,
// optionally a previous map.
struct Layer {
  ir::Pattern pattern;
  test::RandomProblem problem;
  runtime::Tensor weight, bias, previous;
  targets::EvolvingAttentionInputs inputs;

  Layer(const std::string& expression, const Shape& s, EvolvingKind kind, bool with_previous, uint64_t seed)
      : pattern(test::instantiate(expression)), problem(pattern, s, seed) {
    std::mt19937_64 rng(seed * 7 + 1);
    weight = test::random_tensor({s.H, s.H, 3, 3}, rng, 0.3f);
    bias = test::random_tensor({s.H}, rng, 0.3f);
    inputs.attention = problem.inputs;
    inputs.conv_weight = &weight;
    inputs.conv_bias = &bias;
    inputs.kind = kind;
    inputs.alpha = 0.4;
    inputs.beta = 0.7;
    if (with_previous) {
      previous = test::random_tensor({s.B, s.H, s.N, s.M}, rng);
      inputs.previous = &previous;
    }
  }
};

double max_difference(const runtime::Tensor& got, const std::vector<double>& want) {
  return test::max_abs_difference(got, want);
}

TEST(EvolvingAttention, WithoutConvolutionItIsPlainAttention) {
  for (const char* expression : {"full", "causal & alibi", "sliding_window(window=5)"}) {
    SCOPED_TRACE(expression);
    Layer layer(expression, Shape{2, 4, 2, 19, 23, 16, 8}, EvolvingKind::Encoder, false, 1);
    layer.inputs.beta = 0;
    const reference::EvolvingAttentionResult got = reference::evolving_attention_f64(layer.pattern, layer.inputs);
    const std::vector<double> want = reference::attention_f64(layer.pattern, layer.problem.inputs);
    ASSERT_EQ(got.out.size(), want.size());
    for (size_t e = 0; e < want.size(); ++e) EXPECT_NEAR(got.out[e], want[e], 1e-12) << e;
  }
}

TEST(EvolvingAttention, AlphaOneAndBetaZeroHandThePreviousMapOn) {
  const Shape s{1, 2, 2, 9, 9, 8, 4};
  Layer layer("causal", s, EvolvingKind::Decoder, true, 2);
  layer.inputs.alpha = 1;
  layer.inputs.beta = 0;
  const reference::EvolvingAttentionResult got = reference::evolving_attention_f64(layer.pattern, layer.inputs);
  const float* previous = layer.previous.data<float>();
  const float* v = layer.problem.v.data<float>();
  for (int64_t h = 0; h < s.H; ++h) {
    for (int64_t i = 0; i < s.N; ++i) {
      double best = -1e300, z = 0;
      for (int64_t j = 0; j <= i; ++j) best = std::max(best, double(previous[(h * s.N + i) * s.M + j]));
      for (int64_t j = 0; j <= i; ++j) z += std::exp(double(previous[(h * s.N + i) * s.M + j]) - best);
      for (int64_t j = 0; j < s.M; ++j) {
        const double want = j <= i ? double(previous[(h * s.N + i) * s.M + j]) : 0.0;
        EXPECT_EQ(got.map[static_cast<size_t>((h * s.N + i) * s.M + j)], want);
      }
      for (int64_t e = 0; e < s.Dv; ++e) {
        double want = 0;
        for (int64_t j = 0; j <= i; ++j)
          want += std::exp(double(previous[(h * s.N + i) * s.M + j]) - best) / z * double(v[(h * s.M + j) * s.Dv + e]);
        EXPECT_NEAR(got.out[static_cast<size_t>((h * s.N + i) * s.Dv + e)], want, 1e-12);
      }
    }
  }
}

// One head, one nonzero tap: the map at (i, j) is beta * ReLU(w * I(i + dy, j + dx)) + (1 - beta) * I(i, j), with
// (dy, dx) the tap's offset for the layer's kind and I the plain logits.
TEST(EvolvingAttention, EachTapReadsTheNeighbourItsKindSays) {
  const Shape s{1, 1, 1, 6, 7, 4, 4};
  struct Case {
    EvolvingKind kind;
    int u, v, dy, dx;
  };
  for (const Case& c : {Case{EvolvingKind::Encoder, 0, 2, -1, 1}, Case{EvolvingKind::Encoder, 1, 1, 0, 0},
                        Case{EvolvingKind::Decoder, 2, 2, 0, 0}, Case{EvolvingKind::Decoder, 0, 1, -2, -1},
                        Case{EvolvingKind::Cross, 1, 2, -1, 1}, Case{EvolvingKind::Cross, 2, 0, 0, -1}}) {
    SCOPED_TRACE(fmt::format("{} tap ({}, {})", targets::evolving_kind_name(c.kind), c.u, c.v));
    Layer layer("full", s, c.kind, false, 3);
    std::fill(layer.weight.data<float>(), layer.weight.data<float>() + 9, 0.0f);
    layer.weight.data<float>()[c.u * 3 + c.v] = 1.5f;
    layer.bias.data<float>()[0] = 0.25f;
    const reference::EvolvingAttentionResult got = reference::evolving_attention_f64(layer.pattern, layer.inputs);
    const float* q = layer.problem.q.data<float>();
    const float* k = layer.problem.k.data<float>();
    auto logit = [&](int64_t i, int64_t j) {
      if (i < 0 || i >= s.N || j < 0 || j >= s.M) return 0.0;
      double dot = 0;
      for (int64_t d = 0; d < s.D; ++d) dot += double(q[i * s.D + d]) * double(k[j * s.D + d]);
      return dot / 2.0;  // scale 1/sqrt(4)
    };
    for (int64_t i = 0; i < s.N; ++i) {
      for (int64_t j = 0; j < s.M; ++j) {
        const double conv = 0.25 + 1.5 * logit(i + c.dy, j + c.dx);
        const double want = 0.7 * std::max(conv, 0.0) + 0.3 * logit(i, j);
        EXPECT_NEAR(got.map[static_cast<size_t>(i * s.M + j)], want, 1e-12) << i << ", " << j;
      }
    }
  }
}

struct CpuCase {
  const char* expression;
  EvolvingKind kind;
  bool previous;
  Shape shape;
};

class EvolvingAttentionCpu : public ::testing::TestWithParam<CpuCase> {};

TEST_P(EvolvingAttentionCpu, MatchesReference) {
  const CpuCase& c = GetParam();
  Layer layer(c.expression, c.shape, c.kind, c.previous, 4);
  const reference::EvolvingAttentionResult want = reference::evolving_attention_f64(layer.pattern, layer.inputs);
  const cpu::EvolvingAttentionResult got = cpu::evolving_attention(layer.pattern, layer.inputs);
  EXPECT_LE(max_difference(got.out, want.out), 2e-4);
  EXPECT_LE(max_difference(got.map, want.map), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, EvolvingAttentionCpu,
    ::testing::Values(CpuCase{"full", EvolvingKind::Encoder, false, Shape{2, 4, 2, 37, 37, 16, 24}},
                      CpuCase{"local(window=6) & alibi", EvolvingKind::Encoder, true, Shape{1, 3, 1, 40, 40, 32, 32}},
                      CpuCase{"causal", EvolvingKind::Decoder, false, Shape{2, 4, 4, 35, 35, 16, 16}},
                      CpuCase{"causal & relative", EvolvingKind::Decoder, true, Shape{1, 4, 2, 33, 33, 16, 8}},
                      CpuCase{"full", EvolvingKind::Cross, true, Shape{2, 2, 1, 21, 30, 16, 16}}),
    [](const auto& info) {
      return fmt::format("{}_{}{}", targets::evolving_kind_name(info.param.kind),
                         test::case_name(info.param.expression), info.param.previous ? "_previous" : "");
    });

// A NaN key reaches the map where its logit enters the convolution, and the rows of those map entries; a NaN value
// reaches exactly the rows that attend its key, as in the reference (a masked key's NaN value contributes nothing,
// not 0 * NaN). Halide's exp and max map NaN to numbers, and a NaN row sum fails `total > 0`: each gave finite
// rows where the reference's are NaN.
TEST(EvolvingAttentionCpu, NanKeysAndValuesReachTheRowsTheReferenceSays) {
  auto mismatches = [](const runtime::Tensor& got, const std::vector<double>& want, int64_t* nan_rows) {
    int64_t bad = 0;
    *nan_rows = 0;
    for (int64_t e = 0; e < got.numel(); ++e) {
      const double g = got.data<float>()[e], w = want[static_cast<size_t>(e)];
      *nan_rows += std::isnan(w);
      if (std::isnan(g) != std::isnan(w) || (!std::isnan(w) && std::abs(g - w) > 2e-4)) {
        if (bad < 3) ADD_FAILURE() << "element " << e << ": " << g << " against " << w;
        ++bad;
      }
    }
    return bad;
  };
  for (const CpuCase& c : {CpuCase{"causal", EvolvingKind::Decoder, false, Shape{1, 2, 2, 30, 30, 8, 8}},
                           CpuCase{"local(window=5)", EvolvingKind::Encoder, true, Shape{1, 2, 1, 30, 30, 8, 8}}}) {
    SCOPED_TRACE(c.expression);
    Layer layer(c.expression, c.shape, c.kind, c.previous, 6);
    layer.problem.k.data<float>()[10 * c.shape.D + 3] = std::numeric_limits<float>::quiet_NaN();
    layer.problem.v.data<float>()[20 * c.shape.Dv + 1] = std::numeric_limits<float>::quiet_NaN();
    const reference::EvolvingAttentionResult want = reference::evolving_attention_f64(layer.pattern, layer.inputs);
    const cpu::EvolvingAttentionResult got = cpu::evolving_attention(layer.pattern, layer.inputs);
    int64_t nan_out = 0, nan_map = 0;
    EXPECT_EQ(mismatches(got.out, want.out, &nan_out), 0);
    EXPECT_EQ(mismatches(got.map, want.map, &nan_map), 0);
    EXPECT_GT(nan_out, 0);
    EXPECT_GT(nan_map, 0);
  }
}

// Changes every position after `t` (queries, keys, values and the previous map's later rows and columns) and
// returns whether any output row or map row up to t changed.
bool later_positions_reach_earlier_rows(EvolvingKind kind, const std::string& expression, bool use_cpu) {
  const Shape s{1, 2, 2, 20, 20, 8, 8};
  const int64_t t = 9;
  Layer layer(expression, s, kind, true, 5);
  auto run = [&](const Layer& l) {
    if (!use_cpu) {
      const reference::EvolvingAttentionResult r = reference::evolving_attention_f64(l.pattern, l.inputs);
      return std::make_pair(r.out, r.map);
    }
    const cpu::EvolvingAttentionResult r = cpu::evolving_attention(l.pattern, l.inputs);
    return std::make_pair(std::vector<double>(r.out.data<float>(), r.out.data<float>() + r.out.numel()),
                          std::vector<double>(r.map.data<float>(), r.map.data<float>() + r.map.numel()));
  };
  const auto before = run(layer);
  std::mt19937_64 rng(99);
  std::normal_distribution<float> noise(0.0f, 3.0f);
  for (int64_t h = 0; h < s.H; ++h) {
    for (int64_t pos = t + 1; pos < s.N; ++pos) {
      for (int64_t d = 0; d < s.D; ++d) {
        layer.problem.q.data<float>()[(h * s.N + pos) * s.D + d] = noise(rng);
        layer.problem.k.data<float>()[(h * s.M + pos) * s.D + d] = noise(rng);
      }
      for (int64_t e = 0; e < s.Dv; ++e) layer.problem.v.data<float>()[(h * s.M + pos) * s.Dv + e] = noise(rng);
    }
    for (int64_t i = 0; i < s.N; ++i) {
      for (int64_t j = 0; j < s.M; ++j) {
        if (i > t || j > t) layer.previous.data<float>()[(h * s.N + i) * s.M + j] = noise(rng);
      }
    }
  }
  const auto after = run(layer);
  for (int64_t h = 0; h < s.H; ++h) {
    for (int64_t i = 0; i <= t; ++i) {
      for (int64_t e = 0; e < s.Dv; ++e) {
        const size_t at = static_cast<size_t>((h * s.N + i) * s.Dv + e);
        if (before.first[at] != after.first[at]) return true;
      }
      for (int64_t j = 0; j < s.M; ++j) {
        const size_t at = static_cast<size_t>((h * s.N + i) * s.M + j);
        if (before.second[at] != after.second[at]) return true;
      }
    }
  }
  return false;
}

TEST(EvolvingAttention, ADecoderNeverSeesALaterPosition) {
  for (bool use_cpu : {false, true}) {
    SCOPED_TRACE(use_cpu ? "cpu" : "reference");
    EXPECT_FALSE(later_positions_reach_earlier_rows(EvolvingKind::Decoder, "causal", use_cpu));
    EXPECT_FALSE(later_positions_reach_earlier_rows(EvolvingKind::Decoder, "causal & alibi", use_cpu));
    // The same change does reach earlier rows through an encoder's centred taps (the test can fail).
    EXPECT_TRUE(later_positions_reach_earlier_rows(EvolvingKind::Encoder, "causal", use_cpu));
  }
}

TEST(EvolvingAttention, BadWeightsAreReportedByName) {
  Layer layer("causal", Shape{1, 2, 2, 8, 8, 8, 8}, EvolvingKind::Decoder, false, 6);
  runtime::Tensor wrong(runtime::DType::Float32, {2, 2, 3});
  layer.inputs.conv_weight = &wrong;
  try {
    reference::evolving_attention_f64(layer.pattern, layer.inputs);
    FAIL() << "no error";
  } catch (const runtime::TensorError& e) {
    EXPECT_NE(std::string(e.what()).find("convolution weight must be float32[2, 2, 3, 3]"), std::string::npos)
        << e.what();
  }
  layer.inputs.conv_weight = &layer.weight;
  layer.inputs.alpha = std::nan("");
  EXPECT_THROW(cpu::evolving_attention(layer.pattern, layer.inputs), runtime::TensorError);
  layer.inputs.alpha = 0.5;
  EXPECT_THROW(cpu::evolving_attention(test::instantiate("causal & hardmax"), layer.inputs), std::invalid_argument);
}

}  // namespace
}  // namespace tessera
