// The elementwise functions of Transformer feed-forward layers, over whole activation buffers.
//
// std::erf, std::tanh and std::exp are scalar library calls the compiler cannot vectorise; one MiniLM forward pass
// at batch 32 × 128 tokens evaluates GELU 38 million times, which through std::erf alone took longer than all its
// attention. These use a branch-free exp (Cody–Waite range reduction, a degree-6 polynomial, the exponent built
// in the bits) that vectorises, and erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, below float
// rounding of the GELU result). Accuracy is tested against the float64 library functions.
#pragma once

#include <cstdint>

namespace tessera::runtime {

// Each overwrites x[0..count) in place.
void relu_inplace(float* x, int64_t count);
void gelu_inplace(float* x, int64_t count);       // 0.5·x·(1 + erf(x/√2))
void gelu_tanh_inplace(float* x, int64_t count);  // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
void silu_inplace(float* x, int64_t count);       // x / (1 + e^−x)

// e^x for one value, the same code the functions above inline; exposed for tests. Inputs below −87.3 give 0,
// above 88.7 give +inf, NaN gives NaN.
float fast_exp(float x);

}  // namespace tessera::runtime
