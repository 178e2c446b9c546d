// naive_attention_openblas: the baseline Tessera's fused kernels must beat. For each (batch, head) it
// materialises the whole logit matrix S = scale·Q·Kᵀ with OpenBLAS sgemm, applies the mask (causal, or none)
// and a row softmax in place, and multiplies by V with a second sgemm: every pair is computed, masked or not.
//
// Throughput counts the allowed pairs only, exactly as `tessera bench` does (2·(D + Dv) flops per pair, 4·D
// here since Dv = D), so the two programs' GFLOP/s compare work done for the same result. The last line is the
// same JSON object `tessera bench` prints, with "target":"openblas-naive".
//
// --check compares the output with a float64 computation on small shapes instead of benchmarking.
#include <cblas.h>
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "runtime/blas_kernels.h"

namespace {

struct Shape {
  int64_t B = 1, H = 8, N = 4096, M = 0, D = 64;  // M = 0: M = N
  bool causal = true;
};

// First key query row i may see is 0; the last is its absolute position i + M - N (causal), or M - 1.
int64_t allowed_in_row(const Shape& s, int64_t i) {
  if (!s.causal) return s.M;
  return std::clamp<int64_t>(i + s.M - s.N + 1, 0, s.M);
}

int64_t allowed_pairs_per_head(const Shape& s) {
  int64_t pairs = 0;
  for (int64_t i = 0; i < s.N; ++i) pairs += allowed_in_row(s, i);
  return pairs;
}

// Masks and normalises rows [row0, row1) of S (N x M) in place; a row with no allowed key becomes zeros.
void softmax_rows(const Shape& s, float* S, int64_t row0, int64_t row1) {
  for (int64_t i = row0; i < row1; ++i) {
    float* row = S + i * s.M;
    int64_t allowed = allowed_in_row(s, i);
    float max = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < allowed; ++j) max = std::max(max, row[j]);
    float sum = 0;
    for (int64_t j = 0; j < allowed; ++j) {
      row[j] = std::exp(row[j] - max);
      sum += row[j];
    }
    float inv = allowed > 0 ? 1.0f / sum : 0.0f;
    for (int64_t j = 0; j < allowed; ++j) row[j] *= inv;
    std::fill(row + allowed, row + s.M, 0.0f);
  }
}

// out [B,H,N,D] = softmax(mask(scale·Q·Kᵀ))·V, Q [B,H,N,D], K and V [B,H,M,D]; S is N x M scratch.
void naive_attention(const Shape& s, const float* Q, const float* K, const float* V, float* out, float* S,
                     int threads) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.D));
  const auto N = static_cast<blasint>(s.N), M = static_cast<blasint>(s.M), D = static_cast<blasint>(s.D);
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    const float* q = Q + bh * s.N * s.D;
    const float* k = K + bh * s.M * s.D;
    const float* v = V + bh * s.M * s.D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, M, D, scale, q, D, k, D, 0.0f, S, M);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back(softmax_rows, std::cref(s), S, s.N * t / threads, s.N * (t + 1) / threads);
    }
    for (auto& thread : pool) thread.join();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, M, 1.0f, S, M, v, D, 0.0f, out + bh * s.N * s.D, D);
  }
}

std::vector<float> random_normal(int64_t count, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> data(static_cast<size_t>(count));
  for (float& x : data) x = normal(rng);
  return data;
}

// The same attention in float64, straight from the definition, independent of BLAS.
std::vector<double> attention_f64(const Shape& s, const std::vector<float>& Q, const std::vector<float>& K,
                                  const std::vector<float>& V) {
  std::vector<double> out(static_cast<size_t>(s.B * s.H * s.N * s.D), 0.0);
  double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
  std::vector<double> logits(static_cast<size_t>(s.M));
  for (int64_t bh = 0; bh < s.B * s.H; ++bh) {
    for (int64_t i = 0; i < s.N; ++i) {
      int64_t q_pos = i + s.M - s.N;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < s.M; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < s.D; ++d) dot += double{Q[(bh * s.N + i) * s.D + d]} * K[(bh * s.M + j) * s.D + d];
        logits[j] = scale * dot;
        if (!s.causal || j <= q_pos) max = std::max(max, logits[j]);
      }
      if (max == -std::numeric_limits<double>::infinity()) continue;  // no allowed key: zeros
      double sum = 0;
      for (int64_t j = 0; j < s.M; ++j) {
        logits[j] = (!s.causal || j <= q_pos) ? std::exp(logits[j] - max) : 0.0;
        sum += logits[j];
      }
      for (int64_t j = 0; j < s.M; ++j) {
        for (int64_t d = 0; d < s.D; ++d) {
          out[(bh * s.N + i) * s.D + d] += logits[j] / sum * V[(bh * s.M + j) * s.D + d];
        }
      }
    }
  }
  return out;
}

// Runs the BLAS version against the float64 one on a few small shapes; returns whether all agree.
bool check(int threads) {
  std::vector<Shape> shapes = {
      {.B = 2, .H = 3, .N = 33, .M = 33, .D = 16, .causal = true},
      {.B = 1, .H = 2, .N = 20, .M = 47, .D = 8, .causal = true},  // queries at the end of the keys
      {.B = 1, .H = 2, .N = 47, .M = 20, .D = 8, .causal = true},  // the first 27 rows see no key
      {.B = 1, .H = 1, .N = 64, .M = 80, .D = 64, .causal = false},
  };
  bool ok = true;
  std::mt19937_64 rng(1);
  for (const Shape& s : shapes) {
    std::vector<float> Q = random_normal(s.B * s.H * s.N * s.D, rng);
    std::vector<float> K = random_normal(s.B * s.H * s.M * s.D, rng);
    std::vector<float> V = random_normal(s.B * s.H * s.M * s.D, rng);
    std::vector<float> out(static_cast<size_t>(s.B * s.H * s.N * s.D));
    std::vector<float> S(static_cast<size_t>(s.N * s.M));
    naive_attention(s, Q.data(), K.data(), V.data(), out.data(), S.data(), threads);
    std::vector<double> expected = attention_f64(s, Q, K, V);
    double max_error = 0;
    for (size_t e = 0; e < out.size(); ++e) max_error = std::max(max_error, std::abs(out[e] - expected[e]));
    // fp32 logits of 64-term dot products of N(0,1) values and a softmax: ~1e-6 relative; 1e-4 absolute leaves
    // room without hiding a wrong mask or a transposed operand, which give errors of order 1.
    bool pass = max_error <= 1e-4;
    ok = ok && pass;
    fmt::print("check B={} H={} N={} M={} D={} {}: max |error| {:.3g} vs float64: {}\n", s.B, s.H, s.N, s.M, s.D,
               s.causal ? "causal" : "full", max_error, pass ? "ok" : "FAILED");
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Naive attention on OpenBLAS: S = scale*Q*K^T materialised by sgemm, mask + softmax, times V by sgemm.\n"
      "GFLOP/s count allowed pairs only: 4*D*pairs*B*H / median seconds / 1e9, pairs per (batch, head).\n"
      "The last line is one JSON object like `tessera bench`'s, with target \"openblas-naive\".",
      "naive_attention_openblas"};
  Shape s;
  int threads = 2, warmup = 2, runs = 10;
  uint64_t seed = 0;
  std::string mask = "causal";
  bool run_check = false;
  app.add_option("--batch", s.B, "B (default 1)")->check(CLI::PositiveNumber);
  app.add_option("--heads", s.H, "H (default 8)")->check(CLI::PositiveNumber);
  app.add_option("--seq", s.N, "N, queries (default 4096)")->check(CLI::PositiveNumber);
  app.add_option("--keys", s.M, "M, keys (default N)")->check(CLI::PositiveNumber);
  app.add_option("--head-dim", s.D, "D = Dv (default 64)")->check(CLI::PositiveNumber);
  app.add_option("--mask", mask, "causal (default) or full")->check(CLI::IsMember({"causal", "full"}));
  app.add_option("--threads", threads, "OpenBLAS and softmax threads (default 2)")->check(CLI::PositiveNumber);
  app.add_option("--warmup", warmup, "Untimed runs first (default 2)")->check(CLI::NonNegativeNumber);
  app.add_option("--runs", runs, "Timed runs (default 10)")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "Random seed (default 0)");
  app.add_flag("--check", run_check, "Compare with float64 on small shapes instead of benchmarking");
  CLI11_PARSE(app, argc, argv);
  if (s.M == 0) s.M = s.N;
  s.causal = mask == "causal";
  // The same kernel set the runtime's GEMMs use: a baseline on OpenBLAS's SSE3 fallback would flatter Tessera.
  tessera::runtime::select_blas_kernels();
  openblas_set_num_threads(threads);
  if (run_check) return check(threads) ? 0 : 1;

  std::mt19937_64 rng(seed);
  std::vector<float> Q = random_normal(s.B * s.H * s.N * s.D, rng);
  std::vector<float> K = random_normal(s.B * s.H * s.M * s.D, rng);
  std::vector<float> V = random_normal(s.B * s.H * s.M * s.D, rng);
  std::vector<float> out(static_cast<size_t>(s.B * s.H * s.N * s.D));
  std::vector<float> S(static_cast<size_t>(s.N * s.M));
  int64_t pairs = allowed_pairs_per_head(s);
  fmt::print("naive attention (OpenBLAS {}), {}: B={} H={} N={} M={} D={}, {} threads; {} allowed pairs per head\n",
             openblas_get_config(), mask, s.B, s.H, s.N, s.M, s.D, threads, pairs);

  using Clock = std::chrono::steady_clock;
  for (int w = 0; w < warmup; ++w) naive_attention(s, Q.data(), K.data(), V.data(), out.data(), S.data(), threads);
  std::vector<double> ms;
  double checksum = 0;  // printed, so that no run's output is dead
  for (int r = 0; r < runs; ++r) {
    Clock::time_point start = Clock::now();
    naive_attention(s, Q.data(), K.data(), V.data(), out.data(), S.data(), threads);
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    checksum += out.back();
    fmt::print("run {}/{}: {:.3f} ms\n", r + 1, runs, ms.back());
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  size_t n = sorted.size();
  double median_ms = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  double seconds = median_ms * 1e-3;
  double heads = static_cast<double>(s.B * s.H);
  double gflops = 4.0 * static_cast<double>(s.D) * static_cast<double>(pairs) * heads / seconds / 1e9;
  double dense_gflops = 4.0 * static_cast<double>(s.D * s.N * s.M) * heads / seconds / 1e9;
  fmt::print(
      "median {:.3f} ms, min {:.3f} ms, {:.2f} GFLOP/s over allowed pairs ({:.2f} counting every pair) "
      "(checksum {:.6g})\n",
      median_ms, sorted.front(), gflops, dense_gflops, checksum);

  nlohmann::json line;
  line["pattern"] = s.causal ? "causal" : "full";
  line["target"] = "openblas-naive";
  line["dtype"] = "f32";
  line["B"] = s.B;
  line["H"] = s.H;
  line["N"] = s.N;
  line["M"] = s.M;
  line["D"] = s.D;
  line["median_ms"] = median_ms;
  line["min_ms"] = sorted.front();
  line["pairs"] = pairs;
  line["gflops"] = gflops;
  std::cout << line.dump() << std::endl;
  return 0;
}
