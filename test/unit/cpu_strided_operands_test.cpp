// cpu::attention_strided_into: Q, K, V and the output laid out token-major ([B, rows, heads, width] inside wider
// rows, as a model's fused QKV projection writes them), against the float64 reference on the dense operands.
// Plain softmax patterns are read in place, the rest through dense copies; both must agree with the reference,
// and the padding between rows must never be written.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "targets/cpu/cpu_attention.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using runtime::Tensor;
using test::Shape;

// A [B, heads, rows, width] tensor copied into token-major rows of `row_floats` floats (heads * width and then
// padding), starting `start` floats into its storage (64-byte aligned, as borrowed tensors need), and the strides
// that read it back.
struct TokenMajor {
  Tensor storage;
  cpu::RowStrides strides;
};

TokenMajor token_major(const Tensor& t, int64_t padding, int64_t start) {
  const std::vector<int64_t>& s = t.shape();
  const int64_t row_floats = s[1] * s[3] + padding;
  TokenMajor out{Tensor(runtime::DType::Float32, {start + s[0] * s[2] * row_floats}),
                 {row_floats, s[3], s[2] * row_floats, start}};
  std::fill_n(out.storage.data<float>(), out.storage.numel(), std::nanf(""));
  for (int64_t b = 0; b < s[0]; ++b)
    for (int64_t h = 0; h < s[1]; ++h)
      for (int64_t r = 0; r < s[2]; ++r)
        for (int64_t e = 0; e < s[3]; ++e)
          out.storage.data<float>()[out.strides.offset(b, h, r) + e] =
              t.data<float>()[((b * s[1] + h) * s[2] + r) * s[3] + e];
  return out;
}

struct Result {
  double max_error = 0;  // against the reference
  bool padding_untouched = true;
};

Result run_token_major(const std::string& expression, const Shape& s, const cpu::CpuOptions& options = {}) {
  const ir::Pattern pattern = test::instantiate(expression);
  test::RandomProblem problem(pattern, s, 17);
  const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);

  TokenMajor q = token_major(problem.q, 3, 0), k = token_major(problem.k, 5, 7), v = token_major(problem.v, 1, 3);
  Tensor q_view = Tensor::borrow(runtime::DType::Float32, problem.q.shape(), q.storage.data<float>());
  Tensor k_view = Tensor::borrow(runtime::DType::Float32, problem.k.shape(), k.storage.data<float>());
  Tensor v_view = Tensor::borrow(runtime::DType::Float32, problem.v.shape(), v.storage.data<float>());
  targets::AttentionInputs inputs = problem.inputs;
  inputs.q = &q_view;
  inputs.k = &k_view;
  inputs.v = &v_view;
  // The output's padding holds a sentinel that must survive.
  const float sentinel = 12345.0f;
  const int64_t out_row = s.H * s.Dv + 2;
  Tensor out_storage(runtime::DType::Float32, {s.B * s.N * out_row});
  float* out = out_storage.data<float>();
  std::fill_n(out, out_storage.numel(), sentinel);
  Tensor out_view = Tensor::borrow(runtime::DType::Float32, {s.B, s.H, s.N, s.Dv}, out);
  const cpu::OperandStrides strides{q.strides, k.strides, v.strides, {out_row, s.Dv, s.N * out_row, 0}};
  cpu::attention_strided_into(pattern, inputs, strides, out_view, options);

  Result result;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.N; ++i) {
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t e = 0; e < s.Dv; ++e) {
          const double got = out[strides.out.offset(b, h, i) + e];
          const double want = expected[static_cast<size_t>(((b * s.H + h) * s.N + i) * s.Dv + e)];
          result.max_error = std::max(result.max_error, std::isfinite(got) ? std::abs(got - want) : 1e30);
        }
      for (int64_t e = s.H * s.Dv; e < out_row; ++e)
        result.padding_untouched = result.padding_untouched && out[(b * s.N + i) * out_row + e] == sentinel;
    }
  return result;
}

class CpuStridedOperands : public ::testing::TestWithParam<std::string> {};

TEST_P(CpuStridedOperands, MatchReferenceAndLeaveThePaddingAlone) {
  // N < M, ragged tiles, GQA; then N > M with Dv != D.
  for (const Shape& s : {Shape{2, 4, 2, 77, 150, 32, 32}, Shape{1, 2, 1, 90, 40, 16, 24}}) {
    SCOPED_TRACE(testing::PrintToString(s));
    const Result r = run_token_major(GetParam(), s);
    EXPECT_LE(r.max_error, 2e-4);
    EXPECT_TRUE(r.padding_untouched);
  }
}

// Read in place: plain softmax patterns, a re-indexed plan (strided's residue classes step over rows), run-time
// segment ids, a score modifier. Through dense copies: hardmax.
INSTANTIATE_TEST_SUITE_P(Patterns, CpuStridedOperands,
                         ::testing::Values("full", "causal & sliding_window(window=40)", "strided(stride=16)",
                                           "fixed(block=32, summary=4)", "causal & document", "causal & alibi",
                                           "causal & hardmax"),
                         [](const auto& info) { return test::case_name(info.param); });

TEST(CpuStridedOperandsStorage, Bf16ComputesOnDenseCopies) {
  cpu::CpuOptions options;
  options.storage = cpu::StorageType::BFloat16;
  const Result r = run_token_major("causal & sliding_window(window=40)", Shape{1, 4, 2, 70, 70, 32, 32}, options);
  EXPECT_LE(r.max_error, 3e-2);  // bf16 operands (8-bit mantissa), float32 accumulation
  EXPECT_TRUE(r.padding_untouched);
}

}  // namespace
}  // namespace tessera
