// Which of OpenBLAS's kernel sets the runtime's GEMMs run on.
//
// Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernels from the CPU's family and model at load time, and
// falls back to its oldest x86-64 kernels ("Prescott", SSE3) for a model it does not know: on an Intel Xeon of
// model 207 (Emerald Rapids), which has AVX-512, that made every GEMM about 3x slower (bench/RESULTS.md,
// 2026-12-03 fifth session). select_blas_kernels() corrects that one case: when the kernels OpenBLAS chose use
// neither AVX2 nor AVX-512 but the CPU has them, it switches to OpenBLAS's own SkylakeX (AVX-512) or Haswell
// (AVX2) kernels, as OPENBLAS_CORETYPE would. A choice that already uses AVX2 or better, an OPENBLAS_CORETYPE set
// by the user, and a BLAS that is not OpenBLAS are left alone.
#pragma once

#include <string>

namespace tessera::runtime {

// Runs once per process (later calls return at once); call it before the process's first BLAS call, as
// runtime::linear does. It must not run while another thread is inside OpenBLAS: OpenBLAS has no lock around its
// kernel table, so the first linear() should not race with an application's own BLAS calls.
void select_blas_kernels();

// The name of the kernel set OpenBLAS runs ("SkylakeX", "Haswell", "Prescott", ...), or "unknown" where the BLAS
// linked is not a DYNAMIC_ARCH OpenBLAS.
std::string blas_kernels();

// What the kernel set named `core` needs of the CPU, and what this CPU offers, on one scale: 0 neither AVX2 nor
// AVX-512, 1 AVX2 with FMA, 2 AVX-512 (F, BW, DQ, VL).
int blas_kernel_level(const std::string& core);
int cpu_vector_level();

// The threads runtime::linear splits a product's rows across, each thread calling BLAS on its own rows. The first
// call reads OpenBLAS's thread count (every core, or OPENBLAS_NUM_THREADS) and sets OpenBLAS to run every call on
// the calling thread. Why: OpenBLAS's idle workers spin for about 2^28 cycles (~0.1 s) after each call it
// threads, so on a 2-core machine the attention kernels, LayerNorms and transposes that follow a GEMM ran with one
// core taken; MiniLM's attention kernels took 1.5x their time alone. Returns 1 where the BLAS is not OpenBLAS (it
// then threads each call as it likes).
int gemm_threads();

}  // namespace tessera::runtime
