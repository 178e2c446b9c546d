// The CUDA target end to end without a GPU: the generated source of every standard-library pattern is compiled
// for the host under the warp emulator (targets/cuda/emulation/), which executes mma.sync, ldmatrix and cp.async
// as the PTX ISA defines them, and the result is compared with the float64 reference on the same bf16- (or
// fp16-) rounded inputs. What differs from the reference is only P rounded to 16 bits before P V.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "targets/cuda/attention_runner.h"
#include "targets/cuda/emulation/emulated_device.h"
#include "targets/cuda/kernel_source.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using test::Shape;

// An emulated sm_80 device (mma.sync kernels) or sm_90a device (wgmma kernels).
cuda::emulation::EmulatedDevice& device(bool wgmma) {
  static const std::string work_dir = (std::filesystem::temp_directory_path() / "tessera-emulated-kernels").string();
  static cuda::emulation::EmulatedDevice sm80(TESSERA_CXX_COMPILER, TESSERA_SOURCE_DIR, work_dir);
  static cuda::emulation::EmulatedDevice sm90a(TESSERA_CXX_COMPILER, TESSERA_SOURCE_DIR, work_dir, true);
  return wgmma ? sm90a : sm80;
}

double max_difference(const std::string& expression, const Shape& s, uint64_t seed,
                      const cuda::CudaAttentionOptions& options, bool wgmma = false) {
  const ir::Pattern pattern = test::instantiate(expression);
  test::RandomProblem problem(pattern, s, seed,
                              [&](const runtime::Tensor& t) { return cuda::element_values(t, options.element); });
  const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
  const runtime::Tensor got = cuda::run_attention(device(wgmma), pattern, problem.inputs, options);
  EXPECT_EQ(got.shape(), (std::vector<int64_t>{s.B, s.H, s.N, s.Dv}));
  return test::max_abs_difference(got, expected);
}

// P is rounded to 8 significant bits (bf16) before P V: outputs, weighted means of unit-variance values, move by
// up to ~2^-8 of their magnitude.
constexpr double kBf16Tolerance = 1.5e-2;

class CudaEmulatedPatterns : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEmulatedPatterns, MatchesReference) {
  // N < M, ragged tiles, GQA, two query tiles.
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 64;
  options.schedule.block_n = 32;
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 64, 64}, 1, options), kBf16Tolerance);
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaEmulatedPatterns, ::testing::ValuesIn(test::standard_pattern_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// The sm_90a kernel: both products as warpgroup MMAs with B read through shared-memory descriptors.
class CudaEmulatedWgmma : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEmulatedWgmma, MatchesReference) {
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 64;
  options.schedule.block_n = 32;
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 64, 64}, 1, options, true), kBf16Tolerance);
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaEmulatedWgmma, ::testing::ValuesIn(test::standard_pattern_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// The variants beyond masks (scoring functions, normalisers, weights), on both kernels.
class CudaEmulatedVariants : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEmulatedVariants, MatchesReference) {
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 64;
  options.schedule.block_n = 32;
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 64, 64}, 1, options), kBf16Tolerance);
  EXPECT_LE(max_difference(GetParam(), Shape{2, 4, 2, 77, 150, 64, 64}, 1, options, true), kBf16Tolerance);
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaEmulatedVariants, ::testing::ValuesIn(test::variant_pattern_cases()),
                         [](const auto& info) { return test::case_name(info.param); });

// With Q = 0 every logit is 0: hardmax must pick each row's lowest allowed key even when the maximum recurs in
// later key tiles (several per block here) and a key split is asked for. A NaN logit makes its row NaN.
TEST(CudaEmulated, HardmaxTiesGoToTheLowestAllowedKey) {
  const Shape s{1, 2, 1, 100, 100, 64, 64};
  cuda::CudaAttentionOptions options;
  options.schedule.block_n = 16;
  options.schedule.kv_splits = 3;
  for (bool wgmma : {false, true}) {
    options.schedule.block_m = wgmma ? 64 : 32;
    for (const char* expression : {"causal & hardmax", "sliding_window(window=40) & hardmax"}) {
      SCOPED_TRACE(testing::Message() << expression << (wgmma ? " sm_90a" : " sm_80"));
      const ir::Pattern pattern = test::instantiate(expression);
      test::RandomProblem problem(
          pattern, s, 11, [](const runtime::Tensor& t) { return cuda::element_values(t, cuda::Element::BFloat16); });
      std::fill(problem.q.data<float>(), problem.q.data<float>() + problem.q.numel(), 0.0f);
      constexpr int64_t kNanRow = 57;
      problem.q.data<float>()[(s.N + kNanRow) * s.D + 3] = std::numeric_limits<float>::quiet_NaN();  // head 1
      const runtime::Tensor got = cuda::run_attention(device(wgmma), pattern, problem.inputs, options);
      const int64_t window = std::string(expression).starts_with("causal") ? s.M : 40;
      for (int64_t h = 0; h < s.H; ++h) {
        for (int64_t i = 0; i < s.N; ++i) {
          const int64_t key = std::max<int64_t>(0, i - window + 1);
          for (int64_t e = 0; e < s.Dv; ++e) {
            const float value = got.data<float>()[(h * s.N + i) * s.Dv + e];
            if (h == 1 && i == kNanRow) {
              ASSERT_TRUE(std::isnan(value)) << "column " << e;
            } else {
              ASSERT_EQ(value, problem.v.data<float>()[key * s.Dv + e]) << "head " << h << " row " << i;
            }
          }
        }
      }
    }
  }
}

// NaN and Inf in V propagate as in the reference: through kept pairs (a hardmax row's choice, a weighted pair
// times its weight's sign), never through masked keys or keys a hardmax row did not choose, where the tensor-core
// product alone would give 0 * Inf = NaN. Re-indexed views, GQA and both kernels.
TEST(CudaEmulated, NanAndInfInValuesPropagateOnlyThroughKeptPairs) {
  const Shape s{1, 4, 2, 100, 130, 64, 64};
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  cuda::CudaAttentionOptions options;
  options.schedule.block_n = 32;
  for (bool wgmma : {false, true}) {
    options.schedule.block_m = 64;
    for (const char* expression : {"causal", "sliding_window(window=20) | strided(stride=16)", "causal & hardmax",
                                   "luong_local_p(half_width=6)"}) {
      SCOPED_TRACE(testing::Message() << expression << (wgmma ? " sm_90a" : " sm_80"));
      const ir::Pattern pattern = test::instantiate(expression);
      test::RandomProblem problem(
          pattern, s, 21, [](const runtime::Tensor& t) { return cuda::element_values(t, cuda::Element::BFloat16); });
      float* v = problem.v.data<float>();
      for (int64_t g = 0; g < s.Hkv; ++g) {
        v[(g * s.M + 120) * s.Dv + 3] = nan;  // a late key: masked for most causal rows
        v[(g * s.M + 70) * s.Dv + 5] = inf;
        v[(g * s.M + 70) * s.Dv + 9] = -inf;
        v[(g * s.M + 33) * s.Dv + 0] = inf;
        v[(g * s.M + 33) * s.Dv + 1] = nan;
      }
      const std::vector<double> expected = reference::attention_f64(pattern, problem.inputs);
      const runtime::Tensor got = cuda::run_attention(device(wgmma), pattern, problem.inputs, options);
      int64_t nan_elements = 0, inf_elements = 0;
      for (size_t e = 0; e < expected.size(); ++e) {
        const double g = got.data<float>()[e], x = expected[e];
        ASSERT_EQ(std::isnan(g), std::isnan(x)) << "element " << e << ": got " << g << ", reference " << x;
        if (std::isnan(x)) {
          ++nan_elements;
        } else if (std::isinf(x)) {
          ++inf_elements;
          ASSERT_EQ(g, x) << "element " << e;
        } else {
          ASSERT_LE(std::abs(g - x), kBf16Tolerance) << "element " << e;
        }
      }
      EXPECT_GT(nan_elements, 0);
      EXPECT_GT(inf_elements, 0);
    }
  }
}

// Additive scoring replaces Q and K by their projections, so any head dimension D works (the projections' A up to
// 128 is the kernel's limit), and fp16 V as well.
TEST(CudaEmulated, AdditiveScoringAtAnyHeadDimension) {
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 64;
  options.schedule.block_n = 32;
  EXPECT_LE(max_difference("causal & additive", Shape{1, 4, 2, 40, 70, 32, 64}, 12, options), kBf16Tolerance);
  options.element = cuda::Element::Float16;
  EXPECT_LE(max_difference("sliding_window(window=30) & additive", Shape{1, 2, 1, 70, 70, 48, 64}, 13, options, true),
            4e-3);

  const ir::Pattern pattern = test::instantiate("causal & additive");
  test::RandomProblem problem(pattern, Shape{1, 2, 2, 16, 16, 64, 64}, 14);
  std::mt19937_64 rng(15);
  problem.tables.at("additive_wq") = test::random_tensor({2, 129, 64}, rng);
  problem.tables.at("additive_wk") = test::random_tensor({2, 129, 64}, rng);
  problem.tables.at("additive_v") = test::random_tensor({2, 129}, rng);
  try {
    cuda::run_attention(device(false), pattern, problem.inputs, options);
    FAIL() << "A = 129 was accepted";
  } catch (const cuda::UnsupportedProblem& e) {
    EXPECT_NE(std::string(e.what()).find("1 to 128 hidden units; 'additive_v' of 'causal & additive' has A = 129"),
              std::string::npos)
        << e.what();
  }
}

TEST(CudaEmulated, WgmmaFloat16WideValuesAndTwoWarpgroups) {
  cuda::CudaAttentionOptions options;
  options.element = cuda::Element::Float16;
  options.schedule.block_m = 128;
  options.schedule.block_n = 64;
  EXPECT_LE(max_difference("causal", Shape{1, 2, 1, 150, 150, 64, 128}, 6, options, true), 4e-3);
}

TEST(CudaEmulated, DeeperPipelines) {
  // Enough key tiles per query tile that 3 and 4 stages are all in flight at once.
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 64;
  options.schedule.block_n = 16;
  for (int64_t stages : {3, 4}) {
    options.schedule.stages = stages;
    EXPECT_LE(max_difference("causal", Shape{1, 2, 1, 64, 200, 64, 64}, 7, options), kBf16Tolerance) << stages;
    EXPECT_LE(max_difference("sliding_window(window=90) | strided(stride=16)", Shape{1, 1, 1, 130, 130, 64, 64}, 8,
                             options, true),
              kBf16Tolerance)
        << stages;
  }
}

TEST(CudaEmulated, WideHeadsAtTheDefaultTiles) {
  // D above 128 takes 64 x 32 tiles (shared memory); both kernels, GQA, N > M (early rows see no key).
  const cuda::CudaAttentionOptions options;
  for (bool wgmma : {false, true}) {
    EXPECT_LE(max_difference("causal & alibi", Shape{1, 4, 2, 90, 70, 256, 256}, 9, options, wgmma), kBf16Tolerance)
        << wgmma;
    EXPECT_LE(max_difference("sliding_window(window=40)", Shape{1, 2, 1, 80, 80, 192, 64}, 10, options, wgmma),
              kBf16Tolerance)
        << wgmma;
  }
}

TEST(CudaEmulated, Float16AndWideHeads) {
  cuda::CudaAttentionOptions options;
  options.element = cuda::Element::Float16;
  options.schedule.block_m = 32;
  options.schedule.block_n = 64;
  // fp16 keeps 11 significant bits.
  EXPECT_LE(max_difference("causal", Shape{1, 2, 1, 70, 70, 128, 64}, 2, options), 4e-3);
}

TEST(CudaEmulated, DecodingSplitsKeysAndMerges) {
  cuda::CudaAttentionOptions options;
  options.schedule.block_m = 16;
  options.schedule.block_n = 32;
  options.schedule.kv_splits = 3;
  EXPECT_LE(max_difference("causal", Shape{1, 2, 2, 3, 200, 64, 64}, 3, options), kBf16Tolerance);
  options.schedule.kv_splits = 0;  // chosen from the grid
  EXPECT_LE(max_difference("causal & alibi", Shape{1, 1, 1, 1, 300, 64, 64}, 4, options), kBf16Tolerance);
}

TEST(CudaEmulated, UnsupportedHeadDimensionIsNamed) {
  cuda::CudaAttentionOptions options;
  try {
    max_difference("causal", Shape{1, 1, 1, 8, 8, 32, 32}, 5, options);
    FAIL() << "D = 32 was accepted";
  } catch (const cuda::UnsupportedProblem& e) {
    EXPECT_NE(std::string(e.what()).find("head dimension D = 32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera
