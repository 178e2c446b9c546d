// The runtime's choice of OpenBLAS kernels: after the first GEMM, a CPU with AVX2 or AVX-512 never runs on
// OpenBLAS's pre-AVX2 fallback (which it chose for CPUs it did not know, e.g. Intel model 207). Whether the GEMMs
// are still right on the kernels switched to is linear_test's job; each ctest case runs in its own process, so
// every one of them computes on the kernels chosen here.
#include "runtime/blas_kernels.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <vector>

#include "runtime/linear.h"

namespace tessera::runtime {
namespace {

TEST(BlasKernels, NamesOpenBlasKernelSetsByTheInstructionsTheyUse) {
  EXPECT_EQ(blas_kernel_level("SkylakeX"), 2);
  EXPECT_EQ(blas_kernel_level("COOPERLAKE"), 2);
  EXPECT_EQ(blas_kernel_level("SapphireRapids"), 2);
  EXPECT_EQ(blas_kernel_level("Haswell"), 1);
  EXPECT_EQ(blas_kernel_level("Zen"), 1);
  EXPECT_EQ(blas_kernel_level("Prescott"), 0);
  EXPECT_EQ(blas_kernel_level("Nehalem"), 0);
  EXPECT_EQ(blas_kernel_level("Sandybridge"), 0);
  EXPECT_EQ(blas_kernel_level("unknown"), 0);
}

TEST(BlasKernels, FirstGemmLeavesNoPreAvx2KernelsOnAnAvx2Cpu) {
  const std::vector<float> x(8 * 16, 1.0f), w(4 * 16, 0.5f);
  std::vector<float> y(8 * 4);
  linear(x.data(), 8, 16, w.data(), nullptr, 4, y.data());
  EXPECT_FLOAT_EQ(y[0], 8.0f);
  const std::string core = blas_kernels();
  if (core == "unknown") GTEST_SKIP() << "the BLAS linked is not a DYNAMIC_ARCH OpenBLAS";
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) GTEST_SKIP() << "OPENBLAS_CORETYPE chooses the kernels";
  const int cpu = cpu_vector_level();
  if (cpu == 0) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  EXPECT_GE(blas_kernel_level(core), 1) << "OpenBLAS runs its '" << core << "' kernels on a CPU with "
                                        << (cpu == 2 ? "AVX-512" : "AVX2");
}

}  // namespace
}  // namespace tessera::runtime
