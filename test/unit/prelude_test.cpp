// The standard library: it loads cleanly, and every pattern means what its documentation says, checked at
// every (i, j) against an independent C++ formulation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "compiler/ir/evaluate.h"
#include "compiler/sema/pattern_library.h"
#include "test/unit/independent_attention.h"

namespace tessera::sema {
namespace {

using MaskFn = std::function<bool(int64_t q, int64_t k)>;

int64_t fdiv(int64_t a, int64_t b) {
  return static_cast<int64_t>(std::floor(static_cast<double>(a) / static_cast<double>(b)));
}
int64_t fmod_(int64_t a, int64_t b) { return a - b * fdiv(a, b); }

ir::AttentionSizes sizes(int64_t N, int64_t M) {
  ir::AttentionSizes s;
  s.B = 2;
  s.H = 4;
  s.Hkv = 4;
  s.N = N;
  s.M = M;
  s.D = 3;
  s.Dv = 3;
  return s;
}

std::string fmt_args(const std::string& name, int64_t a, int64_t b) {
  return name + "(" + std::to_string(a) + ", " + std::to_string(b) + ")";
}

const std::vector<std::pair<int64_t, int64_t>> kShapes = {{1, 1}, {16, 16}, {7, 19}, {19, 7}, {33, 40}};

ir::Pattern instantiate(const PatternLibrary& lib, const std::string& e) {
  dsl::Diagnostics diags;
  auto p = lib.instantiate(e, diags);
  EXPECT_TRUE(p.has_value()) << diags.str();
  EXPECT_FALSE(diags.has_errors()) << diags.str();
  return p ? *p : ir::Pattern{};
}

void expect_mask(const PatternLibrary& lib, const std::string& e, const MaskFn& want) {
  ir::Pattern p = instantiate(lib, e);
  if (!p.mask) return;
  for (auto [N, M] : kShapes) {
    ir::PatternEvaluator ev(p, sizes(N, M), {}, 1.0);
    int mismatches = 0;
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) {
        int64_t q = i + M - N;
        if (ev.allowed(1, 2, i, j) != want(q, j) && ++mismatches <= 3) {
          ADD_FAILURE() << e << " N=" << N << " M=" << M << " i=" << i << " j=" << j << ": got "
                        << ev.allowed(1, 2, i, j);
        }
      }
    }
  }
}

TEST(Prelude, LoadsWithoutErrors) {
  PatternLibrary lib;
  std::vector<std::string> names;
  for (const auto& d : lib.declarations()) {
    EXPECT_TRUE(d.from_prelude) << d.name;
    names.push_back(d.name);
  }
  EXPECT_EQ(names,
            (std::vector<std::string>{"full",          "causal",  "sliding_window", "local",    "strided",    "fixed",
                                      "dilated",       "local2d", "prefix_lm",      "document", "alibi",      "softcap",
                                      "relative",      "local1d", "relative_bidir", "t5_bias",  "relative2d", "hardmax",
                                      "luong_local_p", "dot",     "bilinear",       "additive", "sample"}));
  const Declaration* fixed = lib.find("fixed");
  ASSERT_NE(fixed, nullptr);
  ASSERT_EQ(fixed->params.size(), 2u);
  EXPECT_EQ(fixed->params[0].name, "block");
  EXPECT_EQ(fixed->params[0].constraint, ">= 1");
  EXPECT_EQ(fixed->params[1].constraint, ">= 0");
  EXPECT_EQ(lib.find("softcap")->params[0].type, ir::Type::Float);
  EXPECT_EQ(lib.find("softcap")->params[0].constraint, "> 0.0");
  EXPECT_EQ(lib.ast_dump(), "");  // the prelude is not part of the user's AST
}

TEST(Prelude, MasksMatchTheirDefinitions) {
  PatternLibrary lib;
  expect_mask(lib, "full", [](int64_t, int64_t) { return true; });
  expect_mask(lib, "causal", [](int64_t q, int64_t k) { return k <= q; });
  for (int64_t w : {1, 3, 8}) {
    expect_mask(lib, "sliding_window(" + std::to_string(w) + ")",
                [w](int64_t q, int64_t k) { return 0 <= q - k && q - k < w; });
    expect_mask(lib, "local(window=" + std::to_string(w) + ")",
                [w](int64_t q, int64_t k) { return std::abs(q - k) < w; });
    expect_mask(lib, "prefix_lm(" + std::to_string(w) + ")", [w](int64_t q, int64_t k) { return k <= q || k < w; });
  }
  for (int64_t block : {1, 3, 8}) {
    for (int64_t memory : {0, 2, 5}) {
      expect_mask(lib, "local1d(" + std::to_string(block) + ", " + std::to_string(memory) + ")",
                  [block, memory](int64_t q, int64_t k) { return k <= q && k >= q / block * block - memory; });
    }
  }
  for (int64_t stride : {1, 3, 4}) {
    expect_mask(lib, "strided(" + std::to_string(stride) + ")", [stride](int64_t q, int64_t k) {
      int64_t d = q - k;
      return k <= q && (d < stride || fmod_(d, stride) == 0);
    });
  }
  for (auto [block, summary] : {std::pair<int64_t, int64_t>{4, 1}, {5, 0}, {3, 3}}) {
    expect_mask(lib, fmt_args("fixed", block, summary), [block, summary](int64_t q, int64_t k) {
      return k <= q && (fdiv(k, block) == fdiv(q, block) || fmod_(k, block) >= block - summary);
    });
  }
  for (auto [window, dilation] : {std::pair<int64_t, int64_t>{3, 2}, {4, 1}, {2, 5}}) {
    expect_mask(lib, fmt_args("dilated", window, dilation), [window, dilation](int64_t q, int64_t k) {
      int64_t d = q - k;
      return 0 <= d && d < window * dilation && fmod_(d, dilation) == 0;
    });
  }
}

TEST(Prelude, Local2dMatchesItsDefinition) {
  PatternLibrary lib;
  struct Case {
    int64_t width, bh, bw, hh, hw;
  };
  for (const Case& c : {Case{4, 2, 2, 1, 1}, Case{5, 3, 2, 0, 2}, Case{3, 1, 3, 2, 0}}) {
    std::string e = "local2d(width=" + std::to_string(c.width) + ", block_h=" + std::to_string(c.bh) +
                    ", block_w=" + std::to_string(c.bw) + ", halo_h=" + std::to_string(c.hh) +
                    ", halo_w=" + std::to_string(c.hw) + ")";
    expect_mask(lib, e, [c](int64_t q, int64_t k) {
      int64_t row_q = fdiv(q, c.width), col_q = fmod_(q, c.width);
      int64_t row_k = fdiv(k, c.width), col_k = fmod_(k, c.width);
      int64_t r0 = fdiv(row_q, c.bh) * c.bh, c0 = fdiv(col_q, c.bw) * c.bw;
      return k <= q && r0 - c.hh <= row_k && row_k <= r0 + c.bh - 1 && c0 - c.hw <= col_k &&
             col_k <= c0 + c.bw - 1 + c.hw;
    });
  }
}

TEST(Prelude, DocumentReadsSegments) {
  PatternLibrary lib;
  ir::Pattern p = instantiate(lib, "document");
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_EQ(p.inputs[0].name, "segments");
  for (auto [N, M] : kShapes) {
    std::vector<int32_t> segments(static_cast<size_t>(2 * M));
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t m = 0; m < M; ++m)
        segments[static_cast<size_t>(b * M + m)] = static_cast<int32_t>((m * (b + 2)) / 5);
    }
    std::map<std::string, ir::TensorView> tensors{{"segments", {ir::ElemType::Int32, {2, M}, segments.data()}}};
    ir::PatternEvaluator ev(p, sizes(N, M), tensors, 1.0);
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t j = 0; j < M; ++j) {
          int64_t q = i + M - N;
          bool want = q >= 0 && segments[static_cast<size_t>(b * M + q)] == segments[static_cast<size_t>(b * M + j)];
          ASSERT_EQ(ev.allowed(b, 0, i, j), want) << N << " " << M << " " << b << " " << i << " " << j;
        }
      }
    }
  }
}

TEST(Prelude, ScoreModifiers) {
  PatternLibrary lib;
  const int64_t N = 6, M = 9;
  ir::Pattern alibi = instantiate(lib, "alibi");
  EXPECT_FALSE(alibi.has_mask());
  ir::PatternEvaluator a(alibi, sizes(N, M), {}, 1.0);
  ir::Pattern softcap = instantiate(lib, "softcap(cap=5)");
  ir::PatternEvaluator sc(softcap, sizes(N, M), {}, 1.0);
  for (int64_t h = 0; h < 4; ++h) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) {
        double s = 0.37 * static_cast<double>(i) - 0.11 * static_cast<double>(j * h);
        int64_t q = i + M - N;
        double slope = std::pow(2.0, -8.0 * static_cast<double>(h + 1) / 4.0);
        EXPECT_NEAR(a.score(0, h, i, j, s, nullptr), s - slope * static_cast<double>(q - j), 1e-12);
        EXPECT_NEAR(sc.score(0, h, i, j, s, nullptr), 5.0 * std::tanh(s / 5.0), 1e-12);
      }
    }
  }
}

TEST(Prelude, RelativeAddsTheEmbeddingDotProduct) {
  PatternLibrary lib;
  ir::Pattern p = instantiate(lib, "relative");
  ASSERT_EQ(p.inputs.size(), 1u);
  EXPECT_EQ(p.inputs[0].name, "rel");
  const int64_t N = 5, M = 8, H = 4, R = 3, D = 3;
  std::vector<float> rel(static_cast<size_t>(H * R * D));
  for (size_t x = 0; x < rel.size(); ++x) rel[x] = static_cast<float>(x % 7) * 0.25f - 0.5f;
  std::map<std::string, ir::TensorView> tensors{{"rel", {ir::ElemType::Float32, {H, R, D}, rel.data()}}};
  const double scale = 0.5;
  ir::PatternEvaluator ev(p, sizes(N, M), tensors, scale);
  const float q_vec[3] = {1.0f, -2.0f, 0.5f};
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < M; ++j) {
        int64_t q = i + M - N;
        int64_t r = std::clamp<int64_t>(q - j, 0, R - 1);
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += q_vec[d] * rel[static_cast<size_t>((h * R + r) * D + d)];
        EXPECT_NEAR(ev.score(0, h, i, j, 1.25, q_vec), 1.25 + scale * dot, 1e-9);
      }
    }
  }
}

// T5's bias, bucketed by the IR (log_bucket rewritten into comparisons by simplify) against the independent
// integer-power definition, at distances up to 300 either way.
TEST(Prelude, T5BiasMatchesTheBucketDefinition) {
  PatternLibrary lib;
  const int64_t N = 300, M = 300, H = 4, rows = 32;
  std::vector<float> table(static_cast<size_t>(H * rows));
  for (size_t x = 0; x < table.size(); ++x) table[x] = static_cast<float>(x) * 0.125f;  // distinct per entry
  std::map<std::string, ir::TensorView> tensors{{"t5", {ir::ElemType::Float32, {H, rows}, table.data()}}};
  struct Case {
    const char* expression;
    int64_t buckets, max_distance;
    bool bidirectional;
  };
  for (const Case& c : {Case{"t5_bias(buckets=32, max_distance=128)", 32, 128, true},
                        Case{"t5_bias(buckets=16, max_distance=100, bidirectional=false)", 16, 100, false},
                        Case{"t5_bias(buckets=10, max_distance=1)", 10, 1, true}}) {  // all far keys: one bucket
    SCOPED_TRACE(c.expression);
    ir::Pattern p = instantiate(lib, c.expression);
    ASSERT_EQ(p.inputs.size(), 1u);
    EXPECT_EQ(p.inputs[0].name, "t5");
    oracle::Rule want = oracle::t5_bias(table.data(), rows, c.buckets, c.max_distance, c.bidirectional);
    ir::PatternEvaluator ev(p, sizes(N, M), tensors, 1.0);
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < N; i += 3) {
        for (int64_t j = 0; j < M; ++j) {
          ASSERT_EQ(ev.score(0, h, i, j, 0.5, nullptr), want.score(0, h, i, j, i, j, 0.5)) << h << " " << i << " " << j;
        }
      }
    }
  }
}

}  // namespace
}  // namespace tessera::sema
