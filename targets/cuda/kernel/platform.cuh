// What every header under targets/cuda/kernel/ assumes about the compiler. These headers are compiled three
// ways: by NVRTC (which has no standard headers, so they include none), by nvcc ahead of time, and by the host
// C++ compiler — the emitted pattern functions in tests, the whole kernel under the warp emulator
// (TESSERA_CUDA_EMULATION, targets/cuda/emulation/).
#pragma once

#if defined(__CUDACC__) && !defined(TESSERA_CUDA_EMULATION)
#define TESSERA_DEVICE_CODE 1
#define TESSERA_HD __host__ __device__ __forceinline__
#define TESSERA_DEVICE __device__ __forceinline__
#define TESSERA_GLOBAL extern "C" __global__
#define TESSERA_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
// For loops over register arrays that nvcc leaves rolled (their arrays then live in local memory).
#define TESSERA_UNROLL _Pragma("unroll")
#else
#define TESSERA_DEVICE_CODE 0
#define TESSERA_HD inline
#define TESSERA_DEVICE inline
// Under the emulator a kernel is a plain function, called once per emulated thread.
#define TESSERA_GLOBAL extern "C"
#define TESSERA_LAUNCH_BOUNDS(threads)
#define TESSERA_UNROLL
#endif

namespace tessera_cuda {

// Fixed-width types without <cstdint>, which NVRTC does not have.
using i32 = int;
using u32 = unsigned int;
using i64 = long long;
using u16 = unsigned short;

static_assert(sizeof(i32) == 4 && sizeof(u32) == 4 && sizeof(i64) == 8 && sizeof(u16) == 2, "unexpected type sizes");

}  // namespace tessera_cuda
