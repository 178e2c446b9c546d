// A host emulator of the GPU operations in targets/cuda/kernel/primitives.cuh, so that the attention kernel's
// own code — fragment bookkeeping, shared-memory layout, pipelining, online softmax — runs and is checked
// against the reference on a machine without a GPU.
//
// launch() runs a grid block by block; a block's threads run as fibers (one stack each) on the calling thread,
// switched only at the collective operations. Collectives follow the PTX ISA:
//   - block_sync (bar.sync 0): every thread of the block;
//   - shfl_xor, shfl_index, mma_m16n8k16, ldmatrix_x4: every lane of one warp (threads 32w .. 32w+31), which must all
//     reach the same operation (a divergent warp is reported as an error);
//   - wgmma_fence, wgmma_m64k16, wgmma_commit_group, wgmma_wait_group: every thread of one warpgroup (threads
//     128g .. 128g+127), which must all reach the same operation (.sync.aligned);
//   - cp.async: copies are deferred to the cp_async_wait that retires their group, and the destination bytes
//     are poisoned (NaN patterns) at issue, so reading shared memory before waiting shows up as wrong results;
//   - wgmma.mma_async: the product is written to the accumulator registers only when wgmma_wait_group retires
//     its group, so reading them before waiting shows the old values.
// Errors (divergence, a deadlock, shared memory out of range) throw EmulationError from launch().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>

namespace tessera_cuda::emulation {

class EmulationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct LaunchShape {
  unsigned grid_x = 1, grid_y = 1, grid_z = 1;
  unsigned threads = 32;    // per block, a multiple of 32
  size_t shared_bytes = 0;  // dynamic shared memory per block
};

// Runs `kernel` once per thread of every block (the body a __global__ function would run).
void launch(const LaunchShape& shape, const std::function<void()>& kernel);

// Inside launch() only:
unsigned thread_index();         // threadIdx.x
unsigned block_index(int axis);  // blockIdx.x / y / z for axis 0 / 1 / 2
void block_sync();
float shfl_xor(float value, int lane_mask);
float shfl_index(float value, int source_lane);
char* dynamic_shared_memory();  // 128-byte aligned, shape.shared_bytes long

enum class Element { BFloat16, Float16 };
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 with D = C = d (in place).
void mma_m16n8k16(Element element, float d[4], const uint32_t a[4], const uint32_t b[2]);
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16; `row` is this lane's row address (in shared memory).
void ldmatrix_x4(uint32_t r[4], const void* row, bool transpose);
// cp.async.cg.shared.global 16 bytes (src-size 0 when !valid: zero fill), commit_group, wait_group.
void cp_async_16(void* shared, const void* global, bool valid);
void cp_async_commit();
void cp_async_wait(int pending);

// wgmma.mma_async.sync.aligned.m64n<n>k16.f32.<e>.<e> with A from registers (.bf16/.f16; the four .b32
// registers of each thread as the PTX register fragment for A of m64k16), B from shared memory described by the
// 64-bit matrix descriptor `b_desc` (no swizzle is the only mode Tessera uses; other modes -> EmulationError),
// `trans_b` = imm-trans-b (0: B is K-major, 1: B is MN-major), D = `d` (n/2 floats per thread, the PTX D fragment),
// scale_d false: D = A*B, true: D = A*B + D. n is a multiple of 8 from 8 to 256.
// A warpgroup collective: the 128 threads 128*g .. 128*g+127 must all arrive. The product is computed when the
// last arrives, but written to each thread's `d` only when that thread's wgmma_wait_group retires the group
// (registers are not to be read before: a kernel that forgets the wait sees stale values).
void wgmma_m64k16(Element element, int n, float* d, const uint32_t a[4], uint64_t b_desc, bool trans_b, bool scale_d);
void wgmma_fence();                  // wgmma.fence.sync.aligned (warpgroup collective; no effect in the emulator)
void wgmma_commit_group();           // wgmma.commit_group.sync.aligned: closes this thread's open group
void wgmma_wait_group(int pending);  // wgmma.wait_group.sync.aligned N: retires all but the newest N groups
// The shared-state-space address of a pointer into the block's dynamic shared memory (what
// cvta.to.shared gives on a GPU: here its offset from the start of dynamic shared memory, which starts at 0).
uint32_t shared_address(const void* pointer);
void fence_proxy_async();  // fence.proxy.async.shared::cta: no effect in the emulator

// cvt.rn.bf16x2.f32 / cvt.rn.f16x2.f32: lo in bits 0-15, hi in bits 16-31, round to nearest even.
uint32_t pack_bf16x2(float lo, float hi);
uint32_t pack_f16x2(float lo, float hi);
float exp2(float x);
float reciprocal(float x);  // rcp.approx.ftz.f32

}  // namespace tessera_cuda::emulation
