// A dense layer, y = x · Wᵀ + b, with the weight stored [out, in] as PyTorch's nn.Linear stores it: the
// projections and feed-forward layers of the encoder models the runtime runs.
//
// The product goes through OpenBLAS's cblas_sgemm (row-major, W transposed), which measured faster than a
// register-tiled Halide matmul at the MiniLM shapes (bench/gemm_compare.cpp, bench/RESULTS.md). The rows are split
// across gemm_threads() threads (OpenBLAS's own thread count, read once), each calling OpenBLAS on the calling
// thread: see runtime/blas_kernels.h for why, and for the kernel set the first call may correct.
#pragma once

#include <cstdint>
#include <functional>

namespace tessera::runtime {

// x: [rows, in] row-major; weight: [out, in]; bias: [out] or nullptr; y: [rows, out], overwritten (it must not
// alias x, weight or bias). rows may be 0 (nothing is written); in and out must be at least 1, and every size
// at most INT32_MAX (the BLAS interface takes 32-bit ints). Throws std::invalid_argument naming the bad size or
// the null pointer.
void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y);

// The same, then epilogue(row, out) on every row of y once its bias is added (an activation, say), by the thread
// that computed the row, right after its GEMM: the bias add and the activation take one pass over y together,
// where writing the bias first and activating after took two more (of 24 MiB each at MiniLM's FFN).
// (With a tuned GemmBlocking, below, a block may be narrower than a row: the epilogue then runs after the blocks.)
using RowEpilogue = std::function<void(float* row, int64_t count)>;
void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            const RowEpilogue& epilogue);

// How a product of more than a few rows is cut into OpenBLAS calls, the one choice about a GEMM that this build
// can make (OpenBLAS's own blocking is fixed when it is built): each call computes a block of row_block rows by
// feature_block output features, and the blocks, row-major, are dealt out to the threads in contiguous runs.
// 0 means the whole extent: the default {0, 0} splits the rows evenly across the threads, one call each.
// `tessera tune --model` times blockings per GEMM shape (targets/cpu/gemm_tuning.h).
struct GemmBlocking {
  int64_t row_block = 0;
  int64_t feature_block = 0;
  bool operator==(const GemmBlocking&) const = default;
};

// The blocks a blocking cuts a product of `rows` x `out` into on `threads` threads: 0 resolved to its extent,
// sizes clamped to the product. What linear() runs and what the tuner's constraints and cost model count.
struct GemmBlocks {
  int64_t rows = 0, features = 0;  // per block
  int64_t row_blocks = 0, feature_blocks = 0;
  int64_t count() const { return row_blocks * feature_blocks; }
};
GemmBlocks resolve_blocks(const GemmBlocking& blocking, int64_t rows, int64_t out, int64_t threads);

// The same with a blocking; throws std::invalid_argument for a negative block size.
void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            const RowEpilogue& epilogue, const GemmBlocking& blocking);

}  // namespace tessera::runtime
