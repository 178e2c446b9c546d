// hash_uniform(seed, a, b, c, d): a float in (0, 1) that depends on nothing but five integers, the same on every
// target, for reproducible randomness inside patterns (the `sample` normaliser's Gumbel noise).
//
// Each argument enters by its low 32 bits (so 32-bit targets agree with the 64-bit interpreter); the state is
// mixed after each with the "lowbias32" integer finaliser (x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15;
// x *= 0x846ca68b; x ^= x >> 16), and the top 23 bits become (bits + 0.5) / 2^23, exact in float32 (24 bits
// of mantissa hold bits + 0.5; 24 bits would not). The
// Halide lowering and the CUDA helper (expression_support.cuh) repeat these steps in uint32 arithmetic.
#pragma once

#include <cstdint>

namespace tessera::ir {

inline constexpr uint32_t kHashUniformStart = 0x9e3779b9u;

constexpr uint32_t hash_mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

constexpr uint32_t hash_bits(int64_t seed, int64_t a, int64_t b, int64_t c, int64_t d) {
  uint32_t x = hash_mix(static_cast<uint32_t>(seed) ^ kHashUniformStart);
  for (int64_t v : {a, b, c, d}) x = hash_mix(x ^ static_cast<uint32_t>(v));
  return x;
}

// (top 23 bits + 0.5) / 2^23.
constexpr double hash_uniform(int64_t seed, int64_t a, int64_t b, int64_t c, int64_t d) {
  return (static_cast<double>(hash_bits(seed, a, b, c, d) >> 9) + 0.5) / 8388608.0;
}

}  // namespace tessera::ir
