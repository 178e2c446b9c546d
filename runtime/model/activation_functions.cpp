#include "runtime/model/activation_functions.h"

#include <bit>
#include <cmath>
#include <limits>

// Each array function is compiled for AVX-512, AVX2 and the baseline; the loader picks the best the CPU has, so
// the library stays portable while the loops run 16 floats wide where they can.
#define TESSERA_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

namespace tessera::runtime {

namespace {

// Branch-free so that loops calling it vectorise: the clamps and the NaN/overflow fix-ups are selects.
inline float exp_approx(float x) {
  const float log2e = 1.44269504088896341f;
  // ln 2 split in a part with few mantissa bits (exact products with small n) and the rest.
  const float ln2_hi = 0.693359375f;
  const float ln2_lo = -2.12194440e-4f;
  // Selects rather than fmin/fmax/nearbyint, whose NaN and rounding-mode rules keep GCC from vectorising.
  const float low = x < -87.5f ? -87.5f : (x == x ? x : 0.0f);  // NaN becomes 0 here (no UB in the int
                                                                // conversion below) and is restored at the end
  const float clamped = low > 88.5f ? 88.5f : low;
  // Round to nearest by adding and removing 1.5·2^23 (exact for |v| < 2^22).
  const float magic = 12582912.0f;
  const float n = (clamped * log2e + magic) - magic;
  const float r = (clamped - n * ln2_hi) - n * ln2_lo;  // |r| <= ln2/2
  // Taylor coefficients to degree 6: relative error below 2e-7 on |r| <= 0.347.
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n, n in [-127, 128): the biased exponent built in the bits; n = -126.. keeps it normal, below is a flush.
  const int32_t biased = static_cast<int32_t>(n) + 127;
  const float scale = std::bit_cast<float>(static_cast<uint32_t>(biased < 1 ? 0 : biased) << 23);
  float result = p * scale;
  result = x < -87.3f ? 0.0f : result;
  result = x > 88.7f ? std::numeric_limits<float>::infinity() : result;
  return x != x ? x : result;
}

inline float erf_approx(float x) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  const float y = 1.0f - poly * t * exp_approx(-a * a);
  return x < 0.0f ? -y : y;
}

inline float tanh_approx(float y) {
  // 1 - 2 / (e^{2y} + 1): exact limits ±1 (e^{2y} = inf gives 1, 0 gives -1); small |y| uses y itself, where the
  // subtraction would lose the relative precision of tanh(y) ≈ y.
  const float t = 1.0f - 2.0f / (exp_approx(2.0f * y) + 1.0f);
  return (y < 1e-4f && y > -1e-4f) ? y : t;
}

}  // namespace

float fast_exp(float x) { return exp_approx(x); }

TESSERA_VECTOR_CLONES void relu_inplace(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

TESSERA_VECTOR_CLONES void gelu_inplace(float* x, int64_t count) {
  const float inv_sqrt2 = 0.70710678118654752f;
  for (int64_t i = 0; i < count; ++i) x[i] = 0.5f * x[i] * (1.0f + erf_approx(x[i] * inv_sqrt2));
}

TESSERA_VECTOR_CLONES void gelu_tanh_inplace(float* x, int64_t count) {
  const float sqrt_2_over_pi = 0.79788456080286536f;
  for (int64_t i = 0; i < count; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + tanh_approx(sqrt_2_over_pi * (v + 0.044715f * v * v * v)));
  }
}

TESSERA_VECTOR_CLONES void silu_inplace(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] = x[i] / (1.0f + exp_approx(-x[i]));
}

}  // namespace tessera::runtime
