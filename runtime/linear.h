// A dense layer, y = x · Wᵀ + b, with the weight stored [out, in] as PyTorch's nn.Linear stores it: the
// projections and feed-forward layers of the encoder models the runtime runs.
//
// The product goes through OpenBLAS's cblas_sgemm (row-major, W transposed), which measured faster than a
// register-tiled Halide matmul at the MiniLM shapes (bench/gemm_compare.cpp, bench/RESULTS.md). The rows are split
// across gemm_threads() threads (OpenBLAS's own thread count, read once), each calling OpenBLAS on the calling
// thread: see runtime/blas_kernels.h for why, and for the kernel set the first call may correct.
#pragma once

#include <cstdint>

namespace tessera::runtime {

// x: [rows, in] row-major; weight: [out, in]; bias: [out] or nullptr; y: [rows, out], overwritten (it must not
// alias x, weight or bias). rows may be 0 (nothing is written); in and out must be at least 1, and every size
// at most INT32_MAX (the BLAS interface takes 32-bit ints). Throws std::invalid_argument naming the bad size or
// the null pointer.
void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y);

}  // namespace tessera::runtime
