#include "runtime/linear.h"

#include <cblas.h>
#include <fmt/format.h>

#include <limits>
#include <stdexcept>

namespace tessera::runtime {

namespace {

void check_size(const char* name, int64_t value, int64_t minimum) {
  if (value < minimum || value > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(fmt::format("linear: {} = {} is out of range [{}, {}]", name, value, minimum,
                                            std::numeric_limits<int32_t>::max()));
  }
}

}  // namespace

void linear(const float* x, int64_t rows, int64_t in, const float* weight, const float* bias, int64_t out, float* y) {
  check_size("rows", rows, 0);
  check_size("in", in, 1);
  check_size("out", out, 1);
  if (rows == 0) return;
  if (x == nullptr) throw std::invalid_argument("linear: x is null");
  if (weight == nullptr) throw std::invalid_argument("linear: weight is null");
  if (y == nullptr) throw std::invalid_argument("linear: y is null");

  const auto m = static_cast<int>(rows);
  const auto k = static_cast<int>(in);
  const auto n = static_cast<int>(out);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, weight, k, 0.0f, y, n);
  if (bias == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = y + r * out;
    for (int64_t o = 0; o < out; ++o) row[o] += bias[o];
  }
}

}  // namespace tessera::runtime
