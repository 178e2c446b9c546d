// The sm_90a flavour of the flash-attention kernel: the same block structure, tile walk and online softmax as
// flash_attention.cuh, with both products issued per warpgroup (4 warps, 64 query rows) as wgmma.mma_async:
// A (Q, then P) from registers in the mma.sync A layout each warp already holds, B (K, then V) from shared memory
// through matrix descriptors. K and V tiles are stored as the PTX ISA's canonical no-swizzle layouts ("core
// matrices" of 8 rows x 16 contiguous bytes): K-major for K (S = Q K^T), MN-major for V (O += P V, imm-trans-b 1).
#pragma once

#include "flash_attention.cuh"
#include "wgmma_ops.cuh"

namespace tessera_cuda {

struct Sm90Wgmma {
  // wgmma reads shared memory through the async proxy: cp.async's (generic-proxy) writes must be fenced first.
  TESSERA_DEVICE static void publish_shared_writes() { fence_proxy_async(); }

  // K tile [key n][d]: core matrix (n / 8, chunk) at element ((chunk * BlockN / 8) + n / 8) * 64, row n % 8 at +8 * (n
  // % 8). Core matrices adjacent in N are 128 bytes apart (SBO); adjacent in K (d) BlockN * 16 bytes (LBO).
  template <class T>
  TESSERA_HD static i32 k_offset(i32 row, i32 chunk) {
    return (chunk * (T::kBlockN / 8) + row / 8) * 64 + (row % 8) * 8;
  }
  // V tile [key k][dv]: core matrix (k / 8, chunk) at element ((k / 8) * Dv / 8 + chunk) * 64, row k % 8 at
  // +8 * (k % 8). Core matrices adjacent in N (dv) are 128 bytes apart (SBO); adjacent in K (keys) Dv * 16 (LBO).
  template <class T>
  TESSERA_HD static i32 v_offset(i32 row, i32 chunk) {
    return ((row / 8) * (T::kValueDim / 8) + chunk) * 64 + (row % 8) * 8;
  }

  // The 64-bit matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address, leading- and
  // stride-dimension byte offsets, each >> 4; base offset 0; no swizzle.
  TESSERA_DEVICE static unsigned long long descriptor(const u16* start, u32 leading_bytes, u32 stride_bytes) {
    const unsigned long long address = shared_address(start);
    return ((address & 0x3ffffull) >> 4) | (static_cast<unsigned long long>((leading_bytes >> 4) & 0x3fffu) << 16) |
           (static_cast<unsigned long long>((stride_bytes >> 4) & 0x3fffu) << 32);
  }

  template <class T>
  TESSERA_DEVICE static void qk(float (*s)[4], const u32 (*q_fragment)[4], const u16* k_tile, int /*lane*/) {
    constexpr bool kBf16 = T::kElement == ElementKind::BFloat16;
    static_assert(T::kBlockM % 64 == 0, "a wgmma kernel's query tile is whole warpgroups of 64 rows");
    wgmma_fence();
    for (int ks = 0; ks < T::kHeadDim / 16; ++ks) {
      wgmma_m64k16<T::kBlockN, kBf16, false>(
          &s[0][0], q_fragment[ks], descriptor(k_tile + 2 * ks * (T::kBlockN / 8) * 64, T::kBlockN * 16, 128), ks > 0);
    }
    wgmma_commit_group();
    wgmma_wait_group<0>();
  }

  template <class T>
  TESSERA_DEVICE static void pv(float (*o)[4], float (*s)[4], const u16* v_tile, int /*lane*/) {
    constexpr bool kBf16 = T::kElement == ElementKind::BFloat16;
    constexpr int kSteps = T::kBlockN / 16;
    u32 pa[kSteps][4];
    for (int kk = 0; kk < kSteps; ++kk) {
      pa[kk][0] = pack_pair<T::kElement>(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack_pair<T::kElement>(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack_pair<T::kElement>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack_pair<T::kElement>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
    // The fence orders the register writes above (P, and O's rescaling) before the asynchronous products.
    wgmma_fence();
    for (int kk = 0; kk < kSteps; ++kk) {
      wgmma_m64k16<T::kValueDim, kBf16, true>(
          &o[0][0], pa[kk], descriptor(v_tile + 2 * kk * (T::kValueDim / 8) * 64, T::kValueDim * 16, 128), true);
    }
    wgmma_commit_group();
    wgmma_wait_group<0>();
  }
};

}  // namespace tessera_cuda
