// bfloat16 tensors: rounding float32 to bf16 against an independent computation in double (the nearest of the two
// neighbouring bf16 values, ties to the even one), exact widening back, special values, and the errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "runtime/npy.h"
#include "runtime/tensor.h"
#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// The bf16 value nearest to x, ties to an even mantissa, computed from the two candidates in double.
float nearest_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const float down = from_bits(bits & 0xffff0000u);
  const float up = from_bits((bits & 0xffff0000u) + 0x10000u);  // the next bf16 away from zero (may be inf)
  const double d_down = std::fabs(static_cast<double>(x) - down), d_up = std::fabs(static_cast<double>(x) - up);
  if (d_down < d_up) return down;
  if (d_up < d_down) return up;
  return ((bits >> 16) & 1u) ? up : down;
}

TEST(BFloat16, RoundsToNearestEvenAndWidensExactly) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<uint32_t> any_bits;
  Tensor t(DType::Float32, {4096});
  for (int64_t i = 0; i < t.numel(); ++i) {
    float f;
    do {
      f = from_bits(any_bits(rng));
    } while (!std::isfinite(f) || std::fabs(f) > 3e38f);
    t.data<float>()[i] = f;
  }
  // Exact ties: the low half is 0x8000.
  t.data<float>()[0] = from_bits(0x3f808000u);  // tie, even below -> down
  t.data<float>()[1] = from_bits(0x3f818000u);  // tie, odd below -> up
  const Tensor b = to_bfloat16(t);
  EXPECT_EQ(b.dtype(), DType::BFloat16);
  EXPECT_EQ(b.type_string(), "bfloat16[4096]");
  EXPECT_EQ(b.size_bytes(), 8192u);
  const Tensor back = bfloat16_to_float32(b);
  for (int64_t i = 0; i < t.numel(); ++i) {
    ASSERT_EQ(back.data<float>()[i], nearest_bf16(t.data<float>()[i])) << "element " << i;
  }
  EXPECT_EQ(b.data<uint16_t>()[0], 0x3f80);
  EXPECT_EQ(b.data<uint16_t>()[1], 0x3f82);
}

TEST(BFloat16, SpecialValues) {
  Tensor t(DType::Float32, {6});
  const float inf = std::numeric_limits<float>::infinity();
  const float values[] = {inf,
                          -inf,
                          std::numeric_limits<float>::quiet_NaN(),
                          from_bits(0x7f800001u) /* sNaN */,
                          -0.0f,
                          std::numeric_limits<float>::max()};
  std::copy(std::begin(values), std::end(values), t.data<float>());
  const Tensor back = bfloat16_to_float32(to_bfloat16(t));
  EXPECT_EQ(back.data<float>()[0], inf);
  EXPECT_EQ(back.data<float>()[1], -inf);
  EXPECT_TRUE(std::isnan(back.data<float>()[2]));
  EXPECT_TRUE(std::isnan(back.data<float>()[3]));  // the payload is in the dropped bits: kept NaN, not inf
  EXPECT_TRUE(std::signbit(back.data<float>()[4]));
  EXPECT_EQ(back.data<float>()[5], inf);  // FLT_MAX is nearer to 2^128 than to the largest bf16: rounds up
}

TEST(BFloat16, WrongDtypesAreErrors) {
  const Tensor ints(DType::Int32, {2});
  test::expect_error<TensorError>([&] { to_bfloat16(ints); }, {"float32", "int32[2]"});
  test::expect_error<TensorError>([&] { bfloat16_to_float32(ints); }, {"bfloat16", "int32[2]"});
  const Tensor b = to_bfloat16(Tensor(DType::Float32, {3}));
  test::expect_error<TensorError>([&] { b.data<float>(); }, {"bfloat16[3]", "float32"});
  test::expect_error<TensorError>([&] { write_npy(testing::TempDir() + "/b.npy", b); }, {"bfloat16", "float32"});
}

}  // namespace
}  // namespace tessera::runtime
