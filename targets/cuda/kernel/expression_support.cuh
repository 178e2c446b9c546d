// The scalar operations that emitted pattern functors (targets/cuda/device_expression.h) are written in: the
// expression IR's semantics (compiler/ir/evaluate.cpp) in 32-bit integers and float32, like the CPU target's
// Halide lowering (targets/cpu/halide_lowering.cpp).
//
// Integer results are evaluate.cpp's 64-bit results reduced modulo 2^32 wherever the 64-bit result of 32-bit
// operands would be (wrapping +, -, *, negation, abs, floor / and % including INT_MIN / -1; shl by a count
// outside [0, 31] gives 0 and shr clamps its count into [0, 31], which is what evaluate.cpp's 64-bit shifts
// give modulo 2^32). The
// one deliberate difference is int(x): evaluate.cpp gives 0 for NaN and for values outside the 64-bit range;
// here, as in the Halide lowering, 0 for NaN and for values outside the 32-bit range (so both targets agree,
// and the result is never a wrapped truncation of an out-of-range value).
//
// Compiled by NVRTC (no standard headers), nvcc and the host compiler; <cmath> only in host-only builds.
#pragma once

#include "pattern_args.cuh"
#include "platform.cuh"

#if !TESSERA_DEVICE_CODE
#include <cmath>
#endif

namespace tessera_cuda {

// ---- Integers: two's-complement wrap-around through unsigned arithmetic, never undefined behaviour ----

TESSERA_HD i32 add_i32(i32 a, i32 b) { return static_cast<i32>(static_cast<u32>(a) + static_cast<u32>(b)); }
TESSERA_HD i32 sub_i32(i32 a, i32 b) { return static_cast<i32>(static_cast<u32>(a) - static_cast<u32>(b)); }
TESSERA_HD i32 mul_i32(i32 a, i32 b) { return static_cast<i32>(static_cast<u32>(a) * static_cast<u32>(b)); }
TESSERA_HD i32 neg_i32(i32 a) { return static_cast<i32>(0u - static_cast<u32>(a)); }

// Division rounding towards negative infinity; by zero gives 0; INT_MIN / -1 wraps to INT_MIN.
TESSERA_HD i32 floor_div_i32(i32 a, i32 b) {
  if (b == 0) return 0;
  if (b == -1) return neg_i32(a);  // the one quotient that overflows
  i32 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

// The remainder of floor_div_i32: it has the divisor's sign; by zero gives 0.
TESSERA_HD i32 floor_mod_i32(i32 a, i32 b) {
  if (b == 0 || b == -1) return 0;  // -1: INT_MIN % -1 traps on x86
  i32 r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

TESSERA_HD i32 min_i32(i32 a, i32 b) { return a < b ? a : b; }
TESSERA_HD i32 max_i32(i32 a, i32 b) { return a > b ? a : b; }
TESSERA_HD i32 abs_i32(i32 a) { return a < 0 ? neg_i32(a) : a; }
// min(max(x, lo), hi): lo > hi gives hi, as on every target.
TESSERA_HD i32 clamp_i32(i32 x, i32 lo, i32 hi) { return min_i32(max_i32(x, lo), hi); }

TESSERA_HD i32 bitand_i32(i32 a, i32 b) { return a & b; }
TESSERA_HD i32 bitor_i32(i32 a, i32 b) { return a | b; }
TESSERA_HD i32 bitxor_i32(i32 a, i32 b) { return a ^ b; }
TESSERA_HD i32 bitnot_i32(i32 a) { return ~a; }
TESSERA_HD i32 shl_i32(i32 a, i32 bits) {
  return bits < 0 || bits > 31 ? 0 : static_cast<i32>(static_cast<u32>(a) << bits);
}
// Arithmetic shift; counts past 31 give the sign, negative counts shift by 0.
TESSERA_HD i32 shr_i32(i32 a, i32 bits) { return a >> clamp_i32(bits, 0, 31); }

// compiler/ir/hash_uniform.h in uint32 arithmetic.
TESSERA_HD u32 hash_mix_u32(u32 x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
TESSERA_HD float hash_uniform_f32(i32 seed, i32 a, i32 b, i32 c, i32 d) {
  u32 x = hash_mix_u32(static_cast<u32>(seed) ^ 0x9e3779b9u);
  x = hash_mix_u32(x ^ static_cast<u32>(a));
  x = hash_mix_u32(x ^ static_cast<u32>(b));
  x = hash_mix_u32(x ^ static_cast<u32>(c));
  x = hash_mix_u32(x ^ static_cast<u32>(d));
  return (static_cast<float>(x >> 9) + 0.5f) * (1.0f / 8388608.0f);
}

// ---- Floats ----

#if TESSERA_DEVICE_CODE
// __int_as_float exists in device passes only; nvcc's host pass of these __host__ __device__ functions gets the
// host compiler's builtins.
#if defined(__CUDA_ARCH__)
TESSERA_HD float f32_inf() { return __int_as_float(0x7f800000); }
TESSERA_HD float f32_nan() { return __int_as_float(0x7fffffff); }
#else
TESSERA_HD float f32_inf() { return __builtin_huge_valf(); }
TESSERA_HD float f32_nan() { return __builtin_nanf(""); }
#endif
TESSERA_HD float abs_f32(float x) { return fabsf(x); }
TESSERA_HD float min_f32(float a, float b) { return fminf(a, b); }
TESSERA_HD float max_f32(float a, float b) { return fmaxf(a, b); }
TESSERA_HD float tanh_f32(float x) { return tanhf(x); }
TESSERA_HD float exp_f32(float x) { return expf(x); }
TESSERA_HD float log_f32(float x) { return logf(x); }
TESSERA_HD float exp2_f32(float x) { return exp2f(x); }
TESSERA_HD float sqrt_f32(float x) { return sqrtf(x); }
TESSERA_HD float pow_f32(float x, float y) { return powf(x, y); }
TESSERA_HD float floor_f32(float x) { return floorf(x); }
TESSERA_HD float ceil_f32(float x) { return ceilf(x); }
#else
TESSERA_HD float f32_inf() { return HUGE_VALF; }
TESSERA_HD float f32_nan() { return NAN; }
TESSERA_HD float abs_f32(float x) { return std::fabs(x); }
TESSERA_HD float min_f32(float a, float b) { return std::fmin(a, b); }
TESSERA_HD float max_f32(float a, float b) { return std::fmax(a, b); }
TESSERA_HD float tanh_f32(float x) { return std::tanh(x); }
TESSERA_HD float exp_f32(float x) { return std::exp(x); }
TESSERA_HD float log_f32(float x) { return std::log(x); }
TESSERA_HD float exp2_f32(float x) { return std::exp2(x); }
TESSERA_HD float sqrt_f32(float x) { return std::sqrt(x); }
TESSERA_HD float pow_f32(float x, float y) { return std::pow(x, y); }
TESSERA_HD float floor_f32(float x) { return std::floor(x); }
TESSERA_HD float ceil_f32(float x) { return std::ceil(x); }
#endif

// fmin / fmax semantics: a NaN operand is ignored. lo > hi gives hi.
TESSERA_HD float clamp_f32(float x, float lo, float hi) { return min_f32(max_f32(x, lo), hi); }
// a - b * floor(a / b), the remainder with the divisor's sign; by zero gives 0.
TESSERA_HD float mod_f32(float a, float b) { return b == 0.0f ? 0.0f : a - b * floor_f32(a / b); }

TESSERA_HD float to_f32(i32 x) { return static_cast<float>(x); }
// Truncation towards zero; NaN and values whose truncation lies outside [-2^31, 2^31) give 0 (see the top).
TESSERA_HD i32 to_i32(float x) {
  // Both bounds are exact in float (their truncations are the bounds); the negated test also catches NaN.
  if (!(x >= -2147483648.0f && x < 2147483648.0f)) return 0;
  return static_cast<i32>(x);
}

// ---- Run-time tensors ----

// The flat C-order offset of element `index` (`rank` indices) of tensor `tensor`, each index clamped into
// [0, extent - 1]: an index that a guard in the expression would have kept from being read (both sides of
// && are computed) is harmless instead of out of bounds.
TESSERA_HD i64 clamped_offset(const PatternArgs& a, int tensor, int rank, const i32 index[]) {
  i64 offset = 0;
  for (int d = 0; d < rank; ++d) {
    const i32 extent = a.shapes[tensor][d];
    offset = offset * extent + clamp_i32(index[d], 0, extent - 1);
  }
  return offset;
}

TESSERA_HD i32 load_i32(const PatternArgs& a, int tensor, int rank, const i32 index[]) {
  return static_cast<const i32*>(a.tensors[tensor])[clamped_offset(a, tensor, rank, index)];
}

TESSERA_HD float load_f32(const PatternArgs& a, int tensor, int rank, const i32 index[]) {
  return static_cast<const float*>(a.tensors[tensor])[clamped_offset(a, tensor, rank, index)];
}

}  // namespace tessera_cuda
