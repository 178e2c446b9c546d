// fma_peak: this machine's fp32 FMA peak (AVX-512 vfmadd on zmm, and AVX2 vfmadd on ymm: the ceiling of kernels
// compiled for a CPU without AVX-512) and bf16 dot-product peak (AVX512-BF16 vdpbf16ps), on one thread and on every
// hardware thread: the roofline a CPU kernel's GFLOP/s are measured against.
//
// Each thread runs kChains independent accumulator chains, enough to cover the FMA latency (4 cycles) times
// the FMA ports (2 on a core with two 512-bit FMA units) with margin, so the loop is throughput-bound. The
// chains start from distinct values: chains that start equal and see the same operations are one chain to the
// compiler, which would then compute one and count it kChains times.
//
// The kernels carry target attributes instead of the file being compiled with -mavx512f, so that nothing else
// in the program uses AVX-512 and the run-time check can skip what this CPU cannot do.
//
// Per cycle, a core with two 512-bit FMA ports peaks at 2 x 16 lanes x 2 = 64 fp32 flops; vdpbf16ps is 64
// flops per instruction, so its per-cycle peak is 64 times its instructions per cycle.
//
// Usage: fma_peak [seconds per measurement, default 0.5]
#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 16;
constexpr int64_t kItersPerBatch = 1 << 20;  // iterations between clock reads

volatile float g_sink = 0;  // every result lands here, so no chain is dead code

// Not _mm512_reduce_add_ps: GCC 12 warns (-Wuninitialized) inside its header.
__attribute__((target("avx512f"))) float horizontal_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

// fp32: each iteration issues kChains vfmadd231ps zmm, 16 lanes x 2 flops each.
__attribute__((target("avx512f,fma"))) float fma_f32_kernel(int64_t iterations, float seed) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + 0.01f * static_cast<float>(c + 1));
  // acc = acc * a + b converges to b / (1 - a) = 1: no overflow and no denormals however long it runs.
  const __m512 a = _mm512_set1_ps(0.999f);
  const __m512 b = _mm512_set1_ps(0.001f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  return horizontal_sum(sum);
}
constexpr double kF32FlopsPerIter = kChains * 16 * 2;

__attribute__((target("avx"))) float horizontal_sum(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

// fp32 on 256-bit vectors: each iteration issues kYmmChains vfmadd231ps ymm, 8 lanes x 2 flops each. Without
// AVX-512 there are 16 vector registers: 16 chains and their two operands would spill, and measure the spills.
constexpr int kYmmChains = 12;
__attribute__((target("avx2,fma"))) float fma_f32_ymm_kernel(int64_t iterations, float seed) {
  __m256 acc[kYmmChains];
  for (int c = 0; c < kYmmChains; ++c) acc[c] = _mm256_set1_ps(seed + 0.01f * static_cast<float>(c + 1));
  const __m256 a = _mm256_set1_ps(0.999f);
  const __m256 b = _mm256_set1_ps(0.001f);
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 12
    for (int c = 0; c < kYmmChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 sum = acc[0];
  for (int c = 1; c < kYmmChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  return horizontal_sum(sum);
}
constexpr double kF32YmmFlopsPerIter = kYmmChains * 8 * 2;

// bf16: each vdpbf16ps zmm multiplies 32 bf16 pairs and adds them, two per fp32 lane, into 16 fp32 lanes:
// 32 multiplies + 32 adds = 64 flops.
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_kernel(int64_t iterations, float seed) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(seed + 0.01f * static_cast<float>(c + 1));
  // Products of 2^-12 each: after 1e10 iterations a lane has grown by about 5e6, still exact enough and finite.
  const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0x1p-6f), _mm512_set1_ps(0x1p-6f));
  const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0x1p-6f), _mm512_set1_ps(0x1p-6f));
  for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
  }
  __m512 sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  return horizontal_sum(sum);
}
constexpr double kBf16FlopsPerIter = kChains * 64;

// The core clock, from a chain of dependent integer adds (one cycle each): turns GFLOP/s into flops per cycle, which
// the instruction mix predicts.
double core_ghz() {
  constexpr int64_t kIterations = 200'000'000;  // 8 dependent adds each
  using Clock = std::chrono::steady_clock;
  double best = 0;
  for (int r = 0; r < 3; ++r) {
    uint64_t x = 0, one = 1;
    Clock::time_point start = Clock::now();
    for (int64_t it = 0; it < kIterations; ++it) {
      // A register operand, not an immediate: Golden Cove folds chains of add-immediate at rename.
      asm volatile(
          "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
          "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0"
          : "+r"(x)
          : "r"(one));
    }
    double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    g_sink = g_sink + static_cast<float>(x);
    best = std::max(best, 8.0 * kIterations / elapsed / 1e9);
  }
  return best;
}

using Kernel = float (*)(int64_t, float);

// Runs `kernel` on `threads` threads for about `seconds`; returns GFLOP/s over the whole run (wall clock from
// the common start to the last thread's end).
double measure(Kernel kernel, double flops_per_iter, int threads, double seconds) {
  using Clock = std::chrono::steady_clock;
  // Calibrate the iteration count on one thread so every thread runs a fixed amount of work.
  Clock::time_point t0 = Clock::now();
  g_sink = g_sink + kernel(kItersPerBatch, 1.0f);
  double batch_s = std::chrono::duration<double>(Clock::now() - t0).count();
  int64_t iterations = std::max<int64_t>(1, static_cast<int64_t>(seconds / batch_s)) * kItersPerBatch;

  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<float> results(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) {
      }
      results[static_cast<size_t>(t)] = kernel(iterations, 1.0f + static_cast<float>(t));
    });
  }
  while (ready.load() < threads) {
  }
  Clock::time_point start = Clock::now();
  go.store(true);
  for (auto& thread : pool) thread.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  for (float r : results) g_sink = g_sink + r;
  return flops_per_iter * static_cast<double>(iterations) * threads / elapsed / 1e9;
}

// Best of a few measurements: interference only ever slows a run down.
double best_of(int repeats, Kernel kernel, double flops_per_iter, int threads, double seconds) {
  double best = 0;
  for (int r = 0; r < repeats; ++r) best = std::max(best, measure(kernel, flops_per_iter, threads, seconds));
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  if (!(seconds > 0 && seconds < 600)) {
    fmt::print(stderr, "usage: fma_peak [seconds per measurement, in (0, 600), default 0.5]\n");
    return 2;
  }
  __builtin_cpu_init();
  int all = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<int> thread_counts = {1};
  if (all > 1) thread_counts.push_back(all);

  double ghz = core_ghz();
  fmt::print("core clock (dependent integer adds): {:.2f} GHz\n", ghz);
  struct Measurement {
    const char* name;
    bool supported;
    const char* skipped;  // printed instead when the CPU lacks what the kernel needs
    Kernel kernel;
    double flops_per_iter;
  };
  const Measurement measurements[] = {
      {"fp32 FMA zmm", __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"),
       "fp32 AVX-512 FMA: skipped, this CPU lacks avx512f", fma_f32_kernel, kF32FlopsPerIter},
      {"fp32 FMA ymm", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"),
       "fp32 AVX2 FMA: skipped, this CPU lacks avx2 or fma", fma_f32_ymm_kernel, kF32YmmFlopsPerIter},
      {"bf16 vdpbf16ps zmm", static_cast<bool>(__builtin_cpu_supports("avx512bf16")),
       "bf16 vdpbf16ps zmm: skipped, this CPU lacks avx512_bf16", dpbf16_kernel, kBf16FlopsPerIter},
  };
  for (const Measurement& m : measurements) {
    if (!m.supported) {
      fmt::print("{}\n", m.skipped);
      continue;
    }
    for (int threads : thread_counts) {
      double gflops = best_of(3, m.kernel, m.flops_per_iter, threads, seconds);
      fmt::print("{}, {} thread(s): {:.1f} GFLOP/s ({:.1f} per thread, {:.1f} flops/cycle/thread)\n", m.name, threads,
                 gflops, gflops / threads, gflops / threads / ghz);
    }
  }
  fmt::print("(sink {:g})\n", static_cast<double>(g_sink));
  return 0;
}
