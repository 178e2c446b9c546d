// gemm_compare: the GEMM behind the runtime's projections and feed-forward layers, y = x · Wᵀ + b with W
// stored [out, in] (PyTorch's nn.Linear), at all-MiniLM-L6-v2's shapes on a batch of 32 × 128 tokens:
// rows 4096, in → out 384 → 384 (Q/K/V/output projections), 384 → 1536 and 1536 → 384 (the FFN).
//
// It times (a) runtime::linear, i.e. OpenBLAS cblas_sgemm on each thread's rows with the bias as its initial
// value, (a') one cblas_sgemm that OpenBLAS threads itself, and (b) a register-tiled Halide
// JIT matmul written here, for a few tile choices, on the same number of threads. Each result is checked
// against a float64 naive product. The question it answers is which one runtime::linear should use.
//
// The Halide matmul reads W transposed ([in, out], so that output columns are contiguous and vectorise): a
// runtime would transpose each weight once when loading the model, so the transpose is done before timing.
// OpenBLAS packs its operands inside every call, and that cost is in its times.
//
// GFLOP/s = 2·rows·in·out / median seconds / 1e9 (the bias adds are not counted). Error = max |y − ref| /
// max |ref| over the whole output: normwise, because an elementwise ratio is meaningless where ref ≈ 0.
// One JSON line per measurement.
#include <Halide.h>
#include <cblas.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "runtime/blas_kernels.h"
#include "runtime/linear.h"

namespace {

struct Shape {
  int rows, in, out;
};

struct Timing {
  double median_ms, min_ms;
};

Timing time_runs(const std::function<void()>& fn, int warmup, int runs) {
  using Clock = std::chrono::steady_clock;
  for (int w = 0; w < warmup; ++w) fn();
  std::vector<double> ms;
  for (int r = 0; r < runs; ++r) {
    const Clock::time_point start = Clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return {n % 2 == 1 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]), ms.front()};
}

// The float64 product every implementation is checked against: plain loops, nothing shared with either.
std::vector<double> reference(const Shape& s, const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b) {
  std::vector<double> y(static_cast<size_t>(s.rows) * s.out);
  for (int r = 0; r < s.rows; ++r) {
    const float* xr = &x[static_cast<size_t>(r) * s.in];
    for (int o = 0; o < s.out; ++o) {
      const float* wo = &w[static_cast<size_t>(o) * s.in];
      double sum = b[o];
      for (int k = 0; k < s.in; ++k) sum += static_cast<double>(xr[k]) * static_cast<double>(wo[k]);
      y[static_cast<size_t>(r) * s.out + o] = sum;
    }
  }
  return y;
}

double normwise_error(const std::vector<float>& y, const std::vector<double>& ref) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(static_cast<double>(y[i]) - ref[i]));
    max_ref = std::max(max_ref, std::abs(ref[i]));
  }
  return max_diff / max_ref;
}

// Tile of the output computed in registers: tile_o columns (a multiple of the 16 fp32 lanes of a zmm register)
// by tile_r rows, tile_o / 16 × tile_r accumulators, which must fit the 32 zmm registers with room for the W
// vectors and the broadcast x value. block_r > 0 groups row tiles into blocks of block_r rows and sweeps the
// column tiles inside a block, so one W column slice ([in, tile_o]) is reused by every row tile of the block
// while it is in L1/L2; block_r = 0 sweeps all columns for each row tile (x's tile stays in L1, W streams from
// L2).
struct Tiling {
  int tile_o, tile_r, block_r;
  std::string name() const {
    return fmt::format("{}x{}{}", tile_o, tile_r, block_r ? fmt::format("/rows{}", block_r) : "");
  }
};

class HalideMatmul {
 public:
  explicit HalideMatmul(const Tiling& t) {
    using Halide::Var;
    Var o("o"), r("r"), oi("oi"), ri("ri"), ot("ot"), rt("rt"), rb("rb");
    Halide::RDom k(0, x_.dim(0).extent(), "k");
    Halide::Func acc("acc");
    acc(o, r) = b_(o);
    acc(o, r) += wt_(o, k) * x_(k, r);
    y_(o, r) = acc(o, r);

    y_.tile(o, r, ot, rt, oi, ri, t.tile_o, t.tile_r).vectorize(oi, 16).unroll(oi).unroll(ri);
    Var tile_loop = ot;  // the loop just outside the register tile, where acc lives
    if (t.block_r > 0) {
      y_.split(rt, rb, rt, t.block_r / t.tile_r).reorder(oi, ri, rt, ot, rb).parallel(rb);
      tile_loop = rt;
    } else {
      y_.parallel(rt);
    }
    acc.compute_at(y_, tile_loop).vectorize(o, 16).unroll(o).unroll(r);
    acc.update().reorder(o, r, k).vectorize(o, 16).unroll(o).unroll(r);

    // Every dense buffer here is row-major with the innermost dimension contiguous; saying so lets Halide
    // drop the stride multiplies from the inner loop.
    x_.dim(0).set_stride(1);
    wt_.dim(0).set_stride(1);
    y_.output_buffer().dim(0).set_stride(1);
    y_.compile_jit(Halide::get_jit_target_from_environment());
  }

  // x: [rows, in]; wt: [in, out] (W transposed); b: [out]; y: [rows, out].
  void operator()(const Shape& s, float* x, float* wt, float* b, float* y) {
    Halide::Buffer<float> xb(x, s.in, s.rows), wb(wt, s.out, s.in), bb(b, s.out), yb(y, s.out, s.rows);
    x_.set(xb);
    wt_.set(wb);
    b_.set(bb);
    y_.realize(yb);
  }

 private:
  Halide::ImageParam x_{Halide::Float(32), 2, "x"};    // x(k, r)
  Halide::ImageParam wt_{Halide::Float(32), 2, "wt"};  // wt(o, k)
  Halide::ImageParam b_{Halide::Float(32), 1, "b"};
  Halide::Func y_{"y"};
};

std::vector<float> random_uniform(size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(rng);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "runtime::linear (OpenBLAS sgemm) against register-tiled Halide JIT matmuls at all-MiniLM-L6-v2's shapes.\n"
      "GFLOP/s = 2*rows*in*out / median seconds / 1e9. One JSON line per measurement.",
      "gemm_compare"};
  int threads = 2, warmup = 3, runs = 15, rows = 4096;
  app.add_option("--threads", threads, "OpenBLAS and Halide threads (default 2)")->check(CLI::PositiveNumber);
  app.add_option("--rows", rows, "Rows of x: batch x tokens (default 4096 = 32 x 128)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed runs first (default 3)")->check(CLI::NonNegativeNumber);
  app.add_option("--runs", runs, "Timed runs (default 15)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  // Halide's JIT thread pool reads HL_NUM_THREADS when it starts, i.e. at the first realize.
  setenv("HL_NUM_THREADS", std::to_string(threads).c_str(), 1);
  tessera::runtime::select_blas_kernels();  // before openblas_get_config() names the kernels
  openblas_set_num_threads(threads);
  tessera::runtime::gemm_threads();  // linear()'s threads: --threads; OpenBLAS itself now runs on one
  fmt::print("OpenBLAS {}; Halide JIT target {}; {} threads\n", openblas_get_config(),
             Halide::get_jit_target_from_environment().to_string(), threads);

  const std::vector<Tiling> tilings = {{32, 8, 0}, {32, 8, 64}, {48, 8, 64}, {64, 6, 96}};
  std::vector<HalideMatmul> kernels;
  kernels.reserve(tilings.size());
  for (const auto& t : tilings) kernels.emplace_back(t);

  std::mt19937_64 rng(0);
  for (const Shape& s : {Shape{rows, 384, 384}, Shape{rows, 384, 1536}, Shape{rows, 1536, 384}}) {
    std::vector<float> x = random_uniform(static_cast<size_t>(s.rows) * s.in, rng);
    std::vector<float> w = random_uniform(static_cast<size_t>(s.out) * s.in, rng);
    std::vector<float> b = random_uniform(static_cast<size_t>(s.out), rng);
    std::vector<float> wt(w.size());  // done once per model load in a runtime, so not timed
    for (int o = 0; o < s.out; ++o)
      for (int k = 0; k < s.in; ++k) wt[static_cast<size_t>(k) * s.out + o] = w[static_cast<size_t>(o) * s.in + k];
    const std::vector<double> ref = reference(s, x, w, b);
    const double flops = 2.0 * s.rows * s.in * s.out;

    auto report = [&](const std::string& impl, const std::string& schedule, std::vector<float>& y,
                      const std::function<void()>& fn, bool with_bias) {
      std::fill(y.begin(), y.end(), std::nanf(""));  // so a result left from an earlier run cannot pass
      fn();
      double error = 0;
      if (with_bias) {
        error = normwise_error(y, ref);
      } else {
        std::vector<float> y_plus_b(y);
        for (size_t i = 0; i < y.size(); ++i) y_plus_b[i] += b[i % s.out];
        error = normwise_error(y_plus_b, ref);
      }
      const Timing t = time_runs(fn, warmup, runs);
      const double gflops = flops / (t.median_ms * 1e-3) / 1e9;
      fmt::print("{:>8} {:<18} {:>5}x{:<4}->{:<4}  median {:8.3f} ms  min {:8.3f} ms  {:6.1f} GFLOP/s  error {:.2e}\n",
                 impl, schedule, s.rows, s.in, s.out, t.median_ms, t.min_ms, gflops, error);
      nlohmann::json line;
      line["impl"] = impl;
      line["schedule"] = schedule;
      line["rows"] = s.rows;
      line["in"] = s.in;
      line["out"] = s.out;
      line["threads"] = threads;
      line["median_ms"] = t.median_ms;
      line["min_ms"] = t.min_ms;
      line["gflops"] = gflops;
      line["max_rel_err"] = error;
      fmt::print("{}\n", line.dump());
    };

    std::vector<float> y(static_cast<size_t>(s.rows) * s.out);
    report(
        "openblas", "linear", y,
        [&] { tessera::runtime::linear(x.data(), s.rows, s.in, w.data(), b.data(), s.out, y.data()); }, true);
    // The same without the bias: how much of linear()'s time the bias costs.
    report(
        "openblas", "sgemm only", y,
        [&] { tessera::runtime::linear(x.data(), s.rows, s.in, w.data(), nullptr, s.out, y.data()); }, false);
    // One sgemm threaded by OpenBLAS, as linear() did before splitting rows itself (runtime/blas_kernels.h).
    report(
        "openblas", "openblas threads", y,
        [&] {
          openblas_set_num_threads(threads);
          for (int r = 0; r < s.rows; ++r) std::copy(b.begin(), b.end(), y.begin() + static_cast<ptrdiff_t>(r) * s.out);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.rows, s.out, s.in, 1.0f, x.data(), s.in, w.data(),
                      s.in, 1.0f, y.data(), s.out);
          openblas_set_num_threads(1);
        },
        true);
    for (size_t i = 0; i < kernels.size(); ++i) {
      report(
          "halide", tilings[i].name(), y, [&] { kernels[i](s, x.data(), wt.data(), b.data(), y.data()); }, true);
    }
  }
  return 0;
}
