// runtime::linear (y = x · Wᵀ + b through OpenBLAS) against a float64 product written out here, on odd sizes
// that exercise the BLAS kernels' edge handling rather than their full tiles.
#include "runtime/linear.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

struct Case {
  int64_t rows, in, out;
};

std::vector<float> random_values(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(rng);
  return v;
}

// with_epilogue: through the epilogue overload, with an epilogue that negates each row (undone before checking)
// and must see every row once, bias included.
// blocking: through the blocking overload (runtime::GemmBlocking), always with an epilogue argument (possibly empty).
void check_against_float64(const Case& c, bool with_bias, bool with_epilogue = false,
                           std::optional<GemmBlocking> blocking = std::nullopt) {
  SCOPED_TRACE(
      testing::Message() << c.rows << "x" << c.in << " -> " << c.out << (with_bias ? " with" : " without") << " bias"
                         << (with_epilogue ? ", epilogue" : "")
                         << (blocking ? fmt::format(", blocks {} x {}", blocking->row_block, blocking->feature_block)
                                      : std::string()));
  std::mt19937 rng(static_cast<unsigned>(c.rows * 10007 + c.in * 101 + c.out));
  const std::vector<float> x = random_values(static_cast<size_t>(c.rows * c.in), rng);
  const std::vector<float> w = random_values(static_cast<size_t>(c.out * c.in), rng);
  const std::vector<float> b = random_values(static_cast<size_t>(c.out), rng);
  // NaN first: every element must be written, none may be read (beta = 0).
  std::vector<float> y(static_cast<size_t>(c.rows * c.out), std::numeric_limits<float>::quiet_NaN());
  if (with_epilogue) {
    std::vector<int> calls(static_cast<size_t>(c.rows), 0);
    std::mutex mutex;
    const RowEpilogue negate = [&](float* row, int64_t count) {
      ASSERT_EQ(count, c.out);
      const int64_t r = (row - y.data()) / c.out;
      ASSERT_TRUE(r >= 0 && r < c.rows && row == y.data() + r * c.out);
      for (int64_t e = 0; e < count; ++e) row[e] = -row[e];
      std::lock_guard lock(mutex);
      ++calls[static_cast<size_t>(r)];
    };
    if (blocking) {
      linear(x.data(), c.rows, c.in, w.data(), with_bias ? b.data() : nullptr, c.out, y.data(), negate, *blocking);
    } else {
      linear(x.data(), c.rows, c.in, w.data(), with_bias ? b.data() : nullptr, c.out, y.data(), negate);
    }
    EXPECT_EQ(calls, std::vector<int>(static_cast<size_t>(c.rows), 1));
    for (float& e : y) e = -e;
  } else if (blocking) {
    linear(x.data(), c.rows, c.in, w.data(), with_bias ? b.data() : nullptr, c.out, y.data(), {}, *blocking);
  } else {
    linear(x.data(), c.rows, c.in, w.data(), with_bias ? b.data() : nullptr, c.out, y.data());
  }

  // Any summation order of an n-term fp32 dot product (blocked, FMA or not) is within γ_n · Σ|x_k·w_k| of the
  // exact value, γ_n = n·u / (1 − n·u), u = 2^-24 (Higham, Accuracy and Stability, §3.1); the bias add is one
  // more rounding, so n = in + 1 terms, scaled by Σ|x_k·w_k| + |b|. This is a worst-case bound: a wrong index
  // or a missing term is off by about the size of a term, far above it.
  const double u = std::ldexp(1.0, -24);
  const double n = static_cast<double>(c.in + 1);
  const double gamma = n * u / (1 - n * u);
  for (int64_t r = 0; r < c.rows; ++r) {
    for (int64_t o = 0; o < c.out; ++o) {
      double exact = with_bias ? b[o] : 0.0;
      double magnitude = with_bias ? std::abs(b[o]) : 0.0;
      for (int64_t k = 0; k < c.in; ++k) {
        const double p = static_cast<double>(x[r * c.in + k]) * static_cast<double>(w[o * c.in + k]);
        exact += p;
        magnitude += std::abs(p);
      }
      const double got = y[r * c.out + o];
      ASSERT_LE(std::abs(got - exact), gamma * magnitude) << "row " << r << " column " << o;
    }
  }
}

TEST(Linear, MatchesFloat64OnOddSizes) {
  // Up to 4 rows take the matrix-vector path, more the GEMM: both sides of the switch. 300 rows split across
  // threads; a 3 x 1200 -> 2000 product splits its matrix-vector products across threads by output feature.
  for (const Case& c : {Case{1, 1, 1}, Case{1, 385, 97}, Case{3, 130, 7}, Case{4, 64, 33}, Case{5, 64, 33},
                        Case{7, 13, 5}, Case{33, 64, 17}, Case{300, 70, 41}, Case{3, 1200, 2000}}) {
    check_against_float64(c, /*with_bias=*/false);
    check_against_float64(c, /*with_bias=*/true);
  }
}

TEST(Linear, EpilogueSeesEachRowOnceWithItsBias) {
  for (const Case& c : {Case{1, 385, 97}, Case{4, 64, 33}, Case{33, 64, 17}, Case{300, 70, 41}}) {
    check_against_float64(c, /*with_bias=*/false, /*with_epilogue=*/true);
    check_against_float64(c, /*with_bias=*/true, /*with_epilogue=*/true);
  }
}

// Tuned blockings (`tessera tune --model`) cut the product into blocks of rows by output features: blocks that
// divide the sizes and blocks that leave ragged edges, more blocks than threads and fewer, with and without the
// bias and the epilogue (which needs whole rows, so it runs after the blocks).
TEST(Linear, BlockingsComputeTheSameProduct) {
  for (const Case& c : {Case{300, 70, 41}, Case{64, 33, 256}, Case{5, 64, 1000}}) {
    for (const GemmBlocking& blocking : {GemmBlocking{32, 0}, GemmBlocking{0, 16}, GemmBlocking{7, 13},
                                         GemmBlocking{128, 4096}, GemmBlocking{1, 1}, GemmBlocking{0, 0}}) {
      check_against_float64(c, /*with_bias=*/false, /*with_epilogue=*/false, blocking);
      check_against_float64(c, /*with_bias=*/true, /*with_epilogue=*/false, blocking);
      check_against_float64(c, /*with_bias=*/true, /*with_epilogue=*/true, blocking);
    }
  }
  const std::vector<float> x(4, 1.0f), w(4, 1.0f);
  std::vector<float> y(4);
  test::expect_error<std::invalid_argument>(
      [&] {
        linear(x.data(), 2, 2, w.data(), nullptr, 2, y.data(), {}, GemmBlocking{-1, 0});
      },
      {"block sizes -1 x 0"});
}

TEST(Linear, ZeroRowsWritesNothing) {
  const float x = 1, w = 2;
  float y = 42;
  linear(&x, 0, 1, &w, nullptr, 1, &y);
  EXPECT_EQ(y, 42);
}

TEST(Linear, RejectsBadSizesAndNullPointers) {
  const std::vector<float> x(4, 1.0f), w(4, 1.0f), b(2, 0.0f);
  std::vector<float> y(4);
  auto call = [&](int64_t rows, int64_t in, int64_t out) {
    linear(x.data(), rows, in, w.data(), b.data(), out, y.data());
  };
  using test::expect_error;
  using E = std::invalid_argument;
  expect_error<E>([&] { call(-1, 2, 2); }, {"rows = -1"});
  expect_error<E>([&] { call(2, 0, 2); }, {"in = 0"});
  expect_error<E>([&] { call(2, 2, 0); }, {"out = 0"});
  expect_error<E>([&] { call(2, -3, 2); }, {"in = -3"});
  // The BLAS interface takes 32-bit sizes: larger ones must be refused, not truncated.
  const int64_t too_big = int64_t{1} << 31;
  expect_error<E>([&] { call(too_big, 2, 2); }, {"rows = 2147483648"});
  expect_error<E>([&] { call(2, too_big, 2); }, {"in = 2147483648"});
  expect_error<E>([&] { call(2, 2, too_big); }, {"out = 2147483648"});
  expect_error<E>([&] { linear(nullptr, 2, 2, w.data(), nullptr, 2, y.data()); }, {"x is null"});
  expect_error<E>([&] { linear(x.data(), 2, 2, nullptr, nullptr, 2, y.data()); }, {"weight is null"});
  expect_error<E>([&] { linear(x.data(), 2, 2, w.data(), nullptr, 2, nullptr); }, {"y is null"});
}

}  // namespace
}  // namespace tessera::runtime
