#include "runtime/linear.h"

#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "runtime/blas_kernels.h"
#include "runtime/parallel_rows.h"

namespace tessera::runtime {

namespace {

// Up to this many rows go through one matrix-vector product per row.
constexpr int64_t kGemvRows = 4;
// Below these a product stays on fewer threads: starting a thread, and waking an idle core of a VM, cost tens of
// microseconds each, as much as a matrix-vector product over a 768 x 768 weight.
constexpr int64_t kMinRowsPerThread = 64;
constexpr int64_t kMinWeightFloatsPerThread = int64_t{1} << 20;

void check_size(const char* name, int64_t value, int64_t minimum) {
  if (value < minimum || value > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(fmt::format("linear: {} = {} is out of range [{}, {}]", name, value, minimum,
                                            std::numeric_limits<int32_t>::max()));
  }
}

// A tuned blocking: blocks of rows x features, row-major, dealt out to the threads in contiguous runs (a thread's
// consecutive blocks share rows of x). Each block starts from the bias (beta = 1), as the default path does; an
// epilogue needs whole rows, so it runs after every block, in a second pass over the rows.
void blocked_gemm(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out,
                  float* y, const RowEpilogue& epilogue, const GemmBlocking& blocking, int64_t threads) {
  const GemmBlocks blocks = resolve_blocks(blocking, rows, out, threads);
  const auto k = static_cast<int>(in);
  parallel_rows(
      blocks.count(),
      [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
          const int64_t r0 = b / blocks.feature_blocks * blocks.rows, f0 = b % blocks.feature_blocks * blocks.features;
          const int64_t m = std::min(blocks.rows, rows - r0), n = std::min(blocks.features, out - f0);
          float* yb = y + r0 * out + f0;
          if (bias) {
            for (int64_t r = 0; r < m; ++r)
              std::memcpy(yb + r * out, bias + f0, static_cast<size_t>(n) * sizeof(float));
          }
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), k, 1.0f,
                      x + r0 * in, k, weight + f0 * in, k, bias ? 1.0f : 0.0f, yb, static_cast<int>(out));
        }
      },
      threads, 1);
  if (epilogue) {
    parallel_rows(
        rows,
        [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) epilogue(y + r * out, out);
        },
        threads, kMinRowsPerThread);
  }
}

}  // namespace

GemmBlocks resolve_blocks(const GemmBlocking& blocking, int64_t rows, int64_t out, int64_t threads) {
  auto ceil_div = [](int64_t a, int64_t b) { return (a + b - 1) / b; };
  GemmBlocks blocks;
  blocks.rows = std::max<int64_t>(
      1, std::min(rows, blocking.row_block > 0 ? blocking.row_block : ceil_div(rows, std::max<int64_t>(1, threads))));
  blocks.features = std::max<int64_t>(1, std::min(out, blocking.feature_block > 0 ? blocking.feature_block : out));
  blocks.row_blocks = ceil_div(rows, blocks.rows);
  blocks.feature_blocks = ceil_div(out, blocks.features);
  return blocks;
}

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y) {
  linear(x, rows, in, weight, bias, out, y, RowEpilogue());
}

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            const RowEpilogue& epilogue) {
  linear(x, rows, in, weight, bias, out, y, epilogue, GemmBlocking());
}

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y,
            const RowEpilogue& epilogue, const GemmBlocking& blocking) {
  if (blocking.row_block < 0 || blocking.feature_block < 0) {
    throw std::invalid_argument(fmt::format("linear: block sizes {} x {} must be >= 0 (0: the whole extent)",
                                            blocking.row_block, blocking.feature_block));
  }
  check_size("rows", rows, 0);
  check_size("in", in, 1);
  check_size("out", out, 1);
  if (rows == 0) return;
  select_blas_kernels();
  if (x == nullptr) throw std::invalid_argument("linear: x is null");
  if (weight == nullptr) throw std::invalid_argument("linear: weight is null");
  if (y == nullptr) throw std::invalid_argument("linear: y is null");

  const auto k = static_cast<int>(in);
  const auto n = static_cast<int>(out);
  const int64_t threads = gemm_threads();
  if (rows <= kGemvRows) {
    // A decoding step's few rows: sgemm would pack (copy) the whole weight matrix on every call, which measured
    // as the largest single cost of GPT-2 decoding; matrix-vector products read it once, in place. The threads
    // take disjoint output features, so each reads its own rows of the weight.
    parallel_rows(
        out,
        [&](int64_t begin, int64_t end) {
          const auto features = static_cast<int>(end - begin);
          for (int64_t r = 0; r < rows; ++r) {
            float* yr = y + r * out + begin;
            if (bias) std::memcpy(yr, bias + begin, static_cast<size_t>(features) * sizeof(float));
            cblas_sgemv(CblasRowMajor, CblasNoTrans, features, k, 1.0f, weight + begin * in, k, x + r * in, 1,
                        bias ? 1.0f : 0.0f, yr, 1);
          }
        },
        threads, std::max<int64_t>(1, kMinWeightFloatsPerThread / in));
    if (epilogue) {
      for (int64_t r = 0; r < rows; ++r) epilogue(y + r * out, out);
    }
    return;
  }
  if (blocking != GemmBlocking()) {
    blocked_gemm(x, rows, in, weight, bias, out, y, epilogue, blocking, threads);
    return;
  }
  parallel_rows(
      rows,
      [&](int64_t begin, int64_t end) {
        const auto m = static_cast<int>(end - begin);
        float* yb = y + begin * out;
        if (epilogue) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x + begin * in, k, weight, k, 0.0f, yb,
                      n);
          for (int64_t r = 0; r < m; ++r) {
            float* row = yb + r * out;
            if (bias) {
              for (int64_t c = 0; c < out; ++c) row[c] += bias[c];
            }
            epilogue(row, out);
          }
          return;
        }
        // The bias is written first and the product accumulated onto it (beta = 1): measured within noise of
        // sgemm alone, where adding the bias in a second sweep over y cost up to 20% at 384 -> 1536.
        if (bias) {
          for (int64_t r = 0; r < m; ++r) std::memcpy(yb + r * out, bias, static_cast<size_t>(out) * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x + begin * in, k, weight, k,
                    bias ? 1.0f : 0.0f, yb, n);
      },
      threads, kMinRowsPerThread);
}

}  // namespace tessera::runtime
