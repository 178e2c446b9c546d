// --target cuda on a real GPU against the float64 reference, for every standard-library pattern and composition
// (ctest label `gpu`). Without a GPU every test reports skipped; the same kernels are checked on the host under
// the warp emulator (test/unit/cuda_emulated_attention_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "targets/cuda/cuda_attention.h"
#include "targets/cuda/cuda_driver.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using test::Shape;

double max_difference(const std::string& expression, const Shape& s, uint64_t seed, const cuda::CudaOptions& options) {
  const ir::Pattern pattern = test::instantiate(expression);
  // Inputs rounded to the element type first, so that the reference sees what the GPU sees.
  test::RandomProblem problem(
      pattern, s, seed, [&](const runtime::Tensor& t) { return cuda::element_values(t, options.attention.element); });
  const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
  return test::max_abs_difference(cuda::attention(pattern, problem.inputs, options), expected);
}

constexpr double kBf16Tolerance = 1.5e-2;  // P rounded to bf16 before P V (see the emulated test)

class CudaGpu : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(CudaGpu, MatchesReference) {
  cuda::CudaOptions options;
  options.kernel_cache_dir = "none";
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 300, 520, 64, 64}, 1, options), kBf16Tolerance);
  EXPECT_LE(max_difference(GetParam(), Shape{1, 2, 1, 256, 256, 128, 128}, 2, options), kBf16Tolerance);
}

std::vector<std::string> gpu_cases() {
  std::vector<std::string> cases = test::standard_pattern_cases();
  cases.insert(cases.end(), {"strided(stride=128)", "fixed(block=128, summary=8)"});  // re-indexed at these sizes
  return cases;
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaGpu, ::testing::ValuesIn(gpu_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

TEST(CudaGpuDecoding, SplitKeysMergeByLogSumExp) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  cuda::CudaOptions options;
  EXPECT_LE(max_difference("causal", Shape{2, 8, 2, 1, 4000, 128, 128}, 3, options), kBf16Tolerance);
  options.attention.element = cuda::Element::Float16;
  EXPECT_LE(max_difference("causal & alibi", Shape{1, 4, 4, 4, 3000, 64, 64}, 4, options), 4e-3);
}

// Inf and NaN in V reach only the pairs that keep their key (the guarded kernels; see the emulated test).
TEST(CudaGpuValues, NanAndInfPropagateOnlyThroughKeptPairs) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const Shape s{1, 4, 2, 300, 330, 64, 64};
  cuda::CudaOptions options;
  options.kernel_cache_dir = "none";
  for (const char* expression : {"causal", "sliding_window(window=20) | strided(stride=16)", "causal & hardmax",
                                 "luong_local_p(half_width=6)"}) {
    SCOPED_TRACE(expression);
    const ir::Pattern pattern = test::instantiate(expression);
    test::RandomProblem problem(
        pattern, s, 21, [&](const runtime::Tensor& t) { return cuda::element_values(t, options.attention.element); });
    float* v = problem.v.data<float>();
    for (int64_t g = 0; g < s.Hkv; ++g) {
      v[(g * s.M + 320) * s.Dv + 3] = std::numeric_limits<float>::quiet_NaN();
      v[(g * s.M + 170) * s.Dv + 5] = std::numeric_limits<float>::infinity();
      v[(g * s.M + 33) * s.Dv + 1] = -std::numeric_limits<float>::infinity();
    }
    const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
    const runtime::Tensor got = cuda::attention(pattern, problem.inputs, options);
    for (size_t e = 0; e < expected.size(); ++e) {
      const double g = got.data<float>()[e], x = expected[e];
      ASSERT_EQ(std::isnan(g), std::isnan(x)) << "element " << e << ": got " << g << ", reference " << x;
      if (std::isinf(x)) {
        ASSERT_EQ(g, x) << "element " << e;
      } else if (!std::isnan(x)) {
        ASSERT_LE(std::abs(g - x), kBf16Tolerance) << "element " << e;
      }
    }
  }
}

}  // namespace
}  // namespace tessera
