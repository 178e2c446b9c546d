// --target cuda on a real GPU against the float64 reference, for every standard-library pattern and composition
// (ctest label `gpu`). Without a GPU every test reports skipped; the same kernels are checked on the host under
// the warp emulator (test/unit/cuda_emulated_attention_test.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "targets/cuda/cuda_attention.h"
#include "targets/cuda/cuda_driver.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/prelude_patterns.h"

namespace tessera {
namespace {

struct Shape {
  int64_t B, H, Hkv, N, M, D, Dv;
};

runtime::Tensor random_tensor(std::vector<int64_t> shape, std::mt19937_64& rng, float stddev = 1.0f) {
  runtime::Tensor t(runtime::DType::Float32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, stddev);
  for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = normal(rng);
  return t;
}

// Inputs rounded to bf16 first, so that the reference sees what the GPU sees.
runtime::Tensor bf16_rounded(const runtime::Tensor& t) { return runtime::bfloat16_to_float32(runtime::to_bfloat16(t)); }

double max_difference(const std::string& expression, const Shape& s, uint64_t seed, const cuda::CudaOptions& options) {
  const ir::Pattern pattern = test::instantiate(expression);
  std::mt19937_64 rng(seed);
  runtime::Tensor q = bf16_rounded(random_tensor({s.B, s.H, s.N, s.D}, rng));
  runtime::Tensor k = bf16_rounded(random_tensor({s.B, s.Hkv, s.M, s.D}, rng));
  runtime::Tensor v = bf16_rounded(random_tensor({s.B, s.Hkv, s.M, s.Dv}, rng));
  runtime::Tensor segments(runtime::DType::Int32, {s.B, s.M});
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t m = 0; m < s.M; ++m) segments.data<int32_t>()[b * s.M + m] = static_cast<int32_t>((m * 3) / s.M + b);
  runtime::Tensor rel = random_tensor({s.H, 9, s.D}, rng, 0.5f);
  targets::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  if (pattern.input("segments")) inputs.tensors["segments"] = &segments;
  if (pattern.input("rel")) inputs.tensors["rel"] = &rel;
  const std::vector<double> expected = reference::attention_f64(pattern, inputs);
  const runtime::Tensor got = cuda::attention(pattern, inputs, options);
  double worst = 0;
  for (size_t e = 0; e < expected.size(); ++e) {
    const double g = got.data<float>()[e];
    if (std::isnan(g)) return std::numeric_limits<double>::infinity();
    worst = std::max(worst, std::abs(g - expected[e]));
  }
  return worst;
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

const std::vector<std::string> kPatterns = {
    "full",
    "causal",
    "sliding_window(window=19)",
    "local(window=7)",
    "strided(stride=8)",
    "fixed(block=16, summary=3)",
    "dilated(window=6, dilation=3)",
    "local2d(width=12, block_h=3, block_w=4, halo_h=2, halo_w=1)",
    "prefix_lm(prefix=21)",
    "document",
    "alibi",
    "softcap(cap=2.5)",
    "relative",
    "causal & alibi",
    "causal & document",
    "causal & softcap(cap=20)",
    "causal & relative",
    "sliding_window(window=5) | strided(stride=16)",
    "causal - prefix_lm(prefix=40)",
    "strided(stride=128)",
    "fixed(block=128, summary=8)",
};

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaGpu, ::testing::ValuesIn(kPatterns), [](const auto& info) {
  std::string name;
  for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
});

TEST(CudaGpuDecoding, SplitKeysMergeByLogSumExp) {
  if (!cuda::cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  cuda::CudaOptions options;
  EXPECT_LE(max_difference("causal", Shape{2, 8, 2, 1, 4000, 128, 128}, 3, options), kBf16Tolerance);
  options.attention.element = cuda::Element::Float16;
  EXPECT_LE(max_difference("causal & alibi", Shape{1, 4, 4, 4, 3000, 64, 64}, 4, options), 4e-3);
}

}  // namespace
}  // namespace tessera
