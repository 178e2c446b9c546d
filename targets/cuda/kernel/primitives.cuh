// The GPU operations the attention kernel is written in: thread and block indices, barriers, warp shuffles,
// tensor-core matrix products (mma.sync m16n8k16), ldmatrix, cp.async and conversions.
//
// On a GPU each is one or two PTX instructions. Under TESSERA_CUDA_EMULATION (host tests) each forwards to the
// warp emulator (targets/cuda/emulation/warp_emulator.h), which runs a block's threads as fibers and implements
// the collective operations from the PTX ISA's definitions, so the kernel's fragment bookkeeping can be checked
// against a reference on a machine without a GPU. The kernel never touches threadIdx, asm or __shfl directly.
#pragma once

#include "platform.cuh"

#if defined(TESSERA_CUDA_EMULATION)
#include "targets/cuda/emulation/warp_emulator.h"
#endif

namespace tessera_cuda {

#if TESSERA_DEVICE_CODE

TESSERA_DEVICE u32 thread_index() { return threadIdx.x; }
TESSERA_DEVICE u32 block_index_x() { return blockIdx.x; }
TESSERA_DEVICE u32 block_index_y() { return blockIdx.y; }
TESSERA_DEVICE u32 block_index_z() { return blockIdx.z; }
TESSERA_DEVICE void block_sync() { __syncthreads(); }

// Every lane of the warp takes part.
TESSERA_DEVICE float shfl_xor(float value, int lane_mask) { return __shfl_xor_sync(0xffffffffu, value, lane_mask); }
TESSERA_DEVICE float shfl_index(float value, int source_lane) { return __shfl_sync(0xffffffffu, value, source_lane); }

TESSERA_DEVICE char* dynamic_shared_memory() {
  extern __shared__ __align__(128) char tessera_shared[];
  return tessera_shared;
}

TESSERA_DEVICE u32 shared_address(const void* pointer) {
  u32 address;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(address) : "l"(pointer));
  return address;
}

// D += A * B for one warp: A 16x16 (row major), B 16x8 (column major), fp32 accumulators. Fragment layouts:
// fragments.cuh.
TESSERA_DEVICE void mma_m16n8k16_bf16(float d[4], const u32 a[4], const u32 b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
TESSERA_DEVICE void mma_m16n8k16_f16(float d[4], const u32 a[4], const u32 b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Four 8x8 matrices of 16-bit elements from shared memory; lane l gives the address of row l % 8 of matrix
// l / 8 (16 contiguous bytes) and receives register r[m] of matrix m.
TESSERA_DEVICE void ldmatrix_x4(u32 r[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
// The same, each matrix transposed.
TESSERA_DEVICE void ldmatrix_x4_trans(u32 r[4], const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

// 16 bytes global -> shared, asynchronously; `valid` false writes zeros instead (src-size 0).
TESSERA_DEVICE void cp_async_16(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(valid ? 16 : 0));
}
TESSERA_DEVICE void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
TESSERA_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

// Two floats rounded to nearest even into one register: `lo` in bits 0-15, `hi` in bits 16-31.
TESSERA_DEVICE u32 pack_bf16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
TESSERA_DEVICE u32 pack_f16x2(float lo, float hi) {
  u32 r;
  asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

// 2^x (ex2.approx: relative error 2^-22; -inf gives 0).
TESSERA_DEVICE float fast_exp2(float x) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

// 1 / x (rcp.approx.ftz.f32: within 1 ulp; 1 / inf = 0).
TESSERA_DEVICE float fast_reciprocal(float x) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;\n" : "=f"(r) : "f"(x));
  return r;
}

// sm_90a warpgroup MMA bookkeeping (the products themselves: wgmma_ops.cuh). Only the sm_90a kernel calls these.
TESSERA_DEVICE void wgmma_fence() {
#if __CUDA_ARCH__ >= 900
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
TESSERA_DEVICE void wgmma_commit_group() {
#if __CUDA_ARCH__ >= 900
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
template <int Pending>
TESSERA_DEVICE void wgmma_wait_group() {
#if __CUDA_ARCH__ >= 900
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
#else
  __trap();
#endif
}
// Orders this thread's generic-proxy shared-memory writes (cp.async included) before the async proxy (wgmma) reads.
TESSERA_DEVICE void fence_proxy_async() {
#if __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  __trap();
#endif
}

#elif defined(TESSERA_CUDA_EMULATION)

TESSERA_DEVICE u32 thread_index() { return emulation::thread_index(); }
TESSERA_DEVICE u32 block_index_x() { return emulation::block_index(0); }
TESSERA_DEVICE u32 block_index_y() { return emulation::block_index(1); }
TESSERA_DEVICE u32 block_index_z() { return emulation::block_index(2); }
TESSERA_DEVICE void block_sync() { emulation::block_sync(); }
TESSERA_DEVICE float shfl_xor(float value, int lane_mask) { return emulation::shfl_xor(value, lane_mask); }
TESSERA_DEVICE float shfl_index(float value, int source_lane) { return emulation::shfl_index(value, source_lane); }
TESSERA_DEVICE char* dynamic_shared_memory() { return emulation::dynamic_shared_memory(); }
TESSERA_DEVICE void mma_m16n8k16_bf16(float d[4], const u32 a[4], const u32 b[2]) {
  emulation::mma_m16n8k16(emulation::Element::BFloat16, d, a, b);
}
TESSERA_DEVICE void mma_m16n8k16_f16(float d[4], const u32 a[4], const u32 b[2]) {
  emulation::mma_m16n8k16(emulation::Element::Float16, d, a, b);
}
TESSERA_DEVICE void ldmatrix_x4(u32 r[4], const void* row) { emulation::ldmatrix_x4(r, row, false); }
TESSERA_DEVICE void ldmatrix_x4_trans(u32 r[4], const void* row) { emulation::ldmatrix_x4(r, row, true); }
TESSERA_DEVICE void cp_async_16(void* shared, const void* global, bool valid) {
  emulation::cp_async_16(shared, global, valid);
}
TESSERA_DEVICE void cp_async_commit() { emulation::cp_async_commit(); }
template <int Pending>
TESSERA_DEVICE void cp_async_wait() {
  emulation::cp_async_wait(Pending);
}
TESSERA_DEVICE u32 pack_bf16x2(float lo, float hi) { return emulation::pack_bf16x2(lo, hi); }
TESSERA_DEVICE u32 pack_f16x2(float lo, float hi) { return emulation::pack_f16x2(lo, hi); }
TESSERA_DEVICE float fast_exp2(float x) { return emulation::exp2(x); }
TESSERA_DEVICE float fast_reciprocal(float x) { return emulation::reciprocal(x); }
TESSERA_DEVICE u32 shared_address(const void* pointer) { return emulation::shared_address(pointer); }
TESSERA_DEVICE void wgmma_fence() { emulation::wgmma_fence(); }
TESSERA_DEVICE void wgmma_commit_group() { emulation::wgmma_commit_group(); }
template <int Pending>
TESSERA_DEVICE void wgmma_wait_group() {
  emulation::wgmma_wait_group(Pending);
}
TESSERA_DEVICE void fence_proxy_async() { emulation::fence_proxy_async(); }
template <int N, bool BFloat16, bool TransB>
TESSERA_DEVICE void wgmma_m64k16(float* d, const u32 a[4], unsigned long long b_desc, bool scale_d) {
  static_assert(N % 16 == 0 && N >= 16 && N <= 256, "wgmma_ops.cuh has the multiples of 16 up to 256");
  emulation::wgmma_m64k16(BFloat16 ? emulation::Element::BFloat16 : emulation::Element::Float16, N, d, a, b_desc,
                          TransB, scale_d);
}

#endif  // host code without the emulator: no primitives (it only reads the parameter structs)

}  // namespace tessera_cuda
