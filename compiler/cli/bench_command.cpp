// `tessera bench`: times one pattern's attention on random inputs with a chosen target and reports the
// throughput over the pairs the mask keeps, ending with one JSON line for scripts.
//
// Throughput counts only allowed (q, k) pairs, each costing a D-long dot product for the logit and a Dv-long
// multiply-add into the output: 2·(D + Dv) flops, 4·D when Dv = D. A kernel that skips masked tiles is then
// compared fairly with one that computes everything and throws most of it away.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "compiler/analysis/tensor_value_bounds.h"
#include "compiler/cli/allowed_pairs.h"
#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/random_inputs.h"
#include "compiler/cli/tune_cache_flags.h"
#include "targets/common/attention_problem.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/execution_plan.h"
#include "targets/cuda/cuda_attention.h"
#include "targets/reference/reference_attention.h"

namespace tessera::cli {

namespace {

constexpr int64_t kMaxRuns = 1'000'000;

struct BenchOptions {
  std::string pattern;
  std::vector<std::string> specs;
  int64_t batch = 1, heads = 1, seq = 0, head_dim = 0;
  std::optional<int64_t> kv_heads, keys, value_dim;
  std::string dtype;
  std::string target;
  std::optional<int64_t> threads;
  std::string schedule;
  int64_t warmup = 2;
  int64_t runs = 10;
  uint64_t seed = 0;
  int64_t rel_distances = 64;
  int64_t documents = 3;
  TuneCacheFlags tune_cache;
};

// Computes attention into `out`, a float32 [B, H, N, Dv] tensor kept across the runs: the CPU target writes it in
// place (attention_into, as the tuner and the model runtime call it), so that no run pays for a fresh output's page
// faults (~9 ms of strided(128)'s ~94 at N=16384, H=8, on the Zen 4 VM of bench/RESULTS.md).
using AttentionFunction =
    std::function<void(const ir::Pattern&, const targets::AttentionInputs&, runtime::Tensor& out)>;

cpu::CpuOptions cpu_options_for(const BenchOptions& o) {
  cpu::CpuOptions cpu_options;
  try {
    // --schedule names what it changes; the rest are the defaults for this shape, whose query tile shrinks for a
    // few queries (decoding): `--schedule kv_splits=2` at one query keeps its one-row tile.
    cpu_options.schedule =
        cpu::parse_schedule(o.schedule, cpu::few_query_schedule(cpu::host_default_schedule(), o.seq));
    cpu::validate_schedule(cpu_options.schedule);
  } catch (const std::invalid_argument& e) {
    throw UserError(e.what());
  }
  cpu_options.storage = o.dtype == "bf16" ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32;
  cpu_options.schedule.threads = o.threads.value_or(0);
  // An explicit --schedule is what is timed; otherwise the tuning cache's schedule for this pattern and shape.
  // Only the CPU target's: --target cuda reads the cache for its own schedule (once, with one warning if damaged).
  if (o.schedule.empty() && o.target == "cpu") cpu_options.tuned = load_tuned_schedules(o.tune_cache);
  return cpu_options;
}

AttentionFunction attention_for(const BenchOptions& o, const cpu::CpuOptions& cpu_options) {
  if (o.target == "reference") {
    return [](const auto& p, const auto& in, runtime::Tensor& out) { out = reference::attention(p, in); };
  }
  return [cpu_options](const auto& p, const auto& in, runtime::Tensor& out) {
    cpu::attention_into(p, in, out, cpu_options);
  };
}

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

void validate(const BenchOptions& o, int64_t kv_heads) {
  if (o.heads % kv_heads != 0) {
    throw UserError(fmt::format("--heads {} must be a multiple of --kv-heads {}", o.heads, kv_heads));
  }
  if (o.target == "reference" && o.dtype != "f32") {
    throw UserError(fmt::format("reference runs in float64; --dtype {} applies to --target cpu or cuda", o.dtype));
  }
  if (o.target == "cpu" && o.dtype == "f16") throw UserError("--dtype f16 applies to --target cuda");
  if (o.target == "cuda" && o.dtype == "f32") {
    throw UserError("--target cuda runs on tensor cores: --dtype bf16 or f16 (float32 inputs are converted)");
  }
  if (o.target == "cuda" && (o.threads || !o.schedule.empty())) {
    throw UserError("--threads and --schedule apply to --target cpu");
  }
  if (o.target == "reference" && o.threads) {
    throw UserError("the reference runs on one thread; --threads applies to --target cpu");
  }
}

int run_bench(const BenchOptions& o) {
  RandomInputShape shape{.batch = o.batch,
                         .heads = o.heads,
                         .kv_heads = o.kv_heads.value_or(o.heads),
                         .seq = o.seq,
                         .keys = o.keys.value_or(o.seq),
                         .head_dim = o.head_dim,
                         .value_dim = o.value_dim.value_or(o.head_dim),
                         .rel_distances = o.rel_distances,
                         .documents = o.documents};
  validate(o, shape.kv_heads);
  sema::PatternLibrary library = load_library(o.specs);
  ir::Pattern pattern = instantiate_pattern(library, o.pattern);
  const cpu::CpuOptions cpu_options = cpu_options_for(o);
  AttentionFunction attention = attention_for(o, cpu_options);

  const RandomAttentionInputs random(shape, pattern, o.seed);
  const targets::AttentionInputs& inputs = random.inputs;
  ir::AttentionSizes sizes = targets::validate_attention_inputs(inputs);

  int64_t total_pairs = count_allowed_pairs(pattern, sizes, inputs);
  int64_t heads_in_all = sizes.B * sizes.H;
  std::cout << fmt::format("bench {}: target {}, {}, B={} H={} Hkv={} N={} M={} D={} Dv={}{}\n", pattern.name, o.target,
                           o.dtype, sizes.B, sizes.H, sizes.Hkv, sizes.N, sizes.M, sizes.D, sizes.Dv,
                           o.threads ? fmt::format(", {} threads", *o.threads) : "");
  std::string schedule_source;
  std::optional<int64_t> pairs_computed;  // per (batch, head), by the CPU kernels' tiles
  if (o.target == "cpu") {
    cpu::TunedSchedules::Choice choice{cpu_options.schedule, o.schedule.empty() ? "default" : "--schedule"};
    if (cpu_options.tuned)
      choice = cpu_options.tuned->choose(pattern, sizes, cpu_options.storage, cpu_options.schedule);
    schedule_source = choice.source;
    std::cout << fmt::format("schedule ({}): {}\n", choice.source, cpu::describe(choice.schedule));
    analysis::ClassifyOptions classify;
    classify.B = sizes.B;
    classify.H = sizes.H;
    classify.D = sizes.D;
    if (sizes.N > 0 && sizes.M > 0) {
      // A mask over run-time tensors is tiled per call from their values, as the kernels run it.
      if (ir::uses_tensors(pattern.mask)) {
        classify.load_bounds = analysis::make_load_bounds(targets::runtime_tensor_views(pattern, inputs).views);
      }
      pairs_computed = cpu::kernel_pairs(*cpu::call_execution_plan(pattern, sizes, choice.schedule, classify));
    }
  }
  std::cout << fmt::format(
      "allowed pairs: {} in all, {:.1f} per (batch, head) of {} (density {:.4f}%)\n", total_pairs,
      static_cast<double>(total_pairs) / static_cast<double>(heads_in_all), sizes.N * sizes.M,
      100.0 * static_cast<double>(total_pairs) / static_cast<double>(heads_in_all * sizes.N * sizes.M));

  std::vector<double> ms;
  double checksum = 0;  // printed, so that no run's output is dead
  if (o.target == "cuda") {
    cuda::CudaOptions cuda_options;
    if (o.dtype == "f16") cuda_options.attention.element = cuda::Element::Float16;
    const CudaScheduleChoice choice =
        tuned_cuda_schedule(o.tune_cache, pattern, inputs, cuda_options.attention.element);
    cuda_options.attention.schedule = choice.schedule;
    cuda::TimedAttention timed = cuda::time_attention(pattern, inputs, cuda_options, o.warmup, o.runs);
    std::cout << fmt::format("device: {}\nschedule ({}): {}\n", timed.device, choice.source,
                             cuda::describe(timed.schedule));
    schedule_source = choice.source;
    ms = timed.ms;
    if (timed.out.numel() > 0) checksum = timed.out.data<float>()[timed.out.numel() - 1];
    for (size_t r = 0; r < ms.size(); ++r) std::cout << fmt::format("run {}/{}: {:.3f} ms\n", r + 1, o.runs, ms[r]);
  }
  using Clock = std::chrono::steady_clock;
  // bf16 on the CPU: Q, K and V are rounded to bf16 tensors once, before the runs, as an application holding bf16
  // activations passes them (and as FlashAttention's and PyTorch's benchmarks time bf16 tensors). Rounding float32
  // inputs inside each call cost causal at N=4096 ~4% of its time and dilated(32, 4) ~40% (allocations included).
  std::optional<targets::ConvertedOperands> bf16;
  if (o.target == "cpu" && o.dtype == "bf16") bf16.emplace(inputs, runtime::to_bfloat16);
  const targets::AttentionInputs& timed = bf16 ? bf16->inputs : inputs;
  runtime::Tensor out;
  if (o.target != "cuda") {
    out = runtime::Tensor(runtime::DType::Float32, {sizes.B, sizes.H, sizes.N, sizes.Dv});
    for (int64_t w = 0; w < o.warmup; ++w) attention(pattern, timed, out);
  }
  for (int64_t r = 0; o.target != "cuda" && r < o.runs; ++r) {
    Clock::time_point start = Clock::now();
    attention(pattern, timed, out);
    Clock::time_point stop = Clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
    if (out.numel() > 0) checksum += out.data<float>()[out.numel() - 1];
    std::cout << fmt::format("run {}/{}: {:.3f} ms\n", r + 1, o.runs, ms.back());
  }

  double median_ms = median_of(ms);
  double min_ms = *std::min_element(ms.begin(), ms.end());
  double flops = 2.0 * static_cast<double>(sizes.D + sizes.Dv) * static_cast<double>(total_pairs);
  double gflops = median_ms > 0 ? flops / (median_ms * 1e-3) / 1e9 : 0.0;
  std::cout << fmt::format("median {:.3f} ms, min {:.3f} ms, {:.2f} GFLOP/s over allowed pairs (checksum {:.6g})\n",
                           median_ms, min_ms, gflops, checksum);
  // The kernels' own rate: over every pair their tiles compute, masked or not (the tile grid's excess included).
  const double computed_flops = 2.0 * static_cast<double>(sizes.D + sizes.Dv) *
                                static_cast<double>(pairs_computed.value_or(0)) * static_cast<double>(heads_in_all);
  const double gflops_computed = median_ms > 0 ? computed_flops / (median_ms * 1e-3) / 1e9 : 0.0;
  if (pairs_computed) {
    std::cout << fmt::format(
        "pairs computed by the kernels' tiles: {} per (batch, head), {:.2f}x the allowed; "
        "{:.2f} GFLOP/s over them\n",
        *pairs_computed,
        total_pairs > 0 ? static_cast<double>(*pairs_computed * heads_in_all) / static_cast<double>(total_pairs) : 0.0,
        gflops_computed);
  }

  nlohmann::json line;
  line["pattern"] = pattern.name;
  line["target"] = o.target;
  line["dtype"] = o.dtype;
  line["B"] = sizes.B;
  line["H"] = sizes.H;
  line["N"] = sizes.N;
  line["M"] = sizes.M;
  line["D"] = sizes.D;
  line["median_ms"] = median_ms;
  line["min_ms"] = min_ms;
  // Per (batch, head): an integer when every head keeps the same number, else their mean.
  if (total_pairs % heads_in_all == 0) {
    line["pairs"] = total_pairs / heads_in_all;
  } else {
    line["pairs"] = static_cast<double>(total_pairs) / static_cast<double>(heads_in_all);
  }
  line["gflops"] = gflops;
  if (pairs_computed) {
    line["pairs_computed"] = *pairs_computed;
    line["gflops_computed"] = gflops_computed;
  }
  if (!schedule_source.empty()) line["schedule"] = schedule_source;
  std::cout << line.dump() << "\n";
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Time attention with a pattern on random inputs (like `tessera inputs`): --warmup untimed runs, then --runs\n"
      "timed ones, one line each, a summary, and as the last line one JSON object:\n"
      "  "
      "{\"pattern\",\"target\",\"dtype\",\"B\",\"H\",\"N\",\"M\",\"D\",\"median_ms\",\"min_ms\",\"pairs\",\"gflops\"}\n"
      "`pairs` is the number of allowed (query, key) pairs PER (batch, head) (their mean if the mask depends on\n"
      "b, h or run-time tensors), counted exactly; gflops = 2*(D+Dv)*pairs*B*H / median seconds / 1e9, i.e.\n"
      "4*D*pairs*B*H/time when Dv = D: only the pairs the mask keeps count as work. With --target cpu it also\n"
      "has \"pairs_computed\" (per (batch, head), the pairs the kernels' tiles compute, masked or not) and\n"
      "\"gflops_computed\" (the same rate over those): the kernels' efficiency apart from the tile grid's excess.");
  cmd->add_option("--pattern", o->pattern, "Pattern expression, e.g. 'causal & sliding_window(window=256)'")
      ->required();
  cmd->add_option("--spec", o->specs, "Spec file(s) whose patterns the expression may use");
  cmd->add_option("--batch", o->batch, "B")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "H, query heads")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", o->kv_heads, "Hkv, key/value heads (default H; must divide H)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->seq, "N, queries")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", o->head_dim, "D")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--value-dim", o->value_dim, "Dv (default D)")->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", o->dtype,
                  "Storage of Q/K/V in the kernels: f32 or bf16 (--target cpu), bf16 or f16 (--target cuda)")
      ->required()
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--target", o->target,
                  "Where to run: cpu (Halide backend), cuda (GPU 0; timed with CUDA events, the kernels only:\n"
                  "planning, compilation and uploads happen once before the warm-up) or reference (float64 oracle, "
                  "slow)")
      ->required()
      ->check(CLI::IsMember({"cpu", "cuda", "reference"}));
  cmd->add_option(
      "--schedule", o->schedule,
      "CPU schedule, e.g. block_q=128,block_k=64,chunk_k=512 (--target cpu; the rest default for the shape, a "
      "few queries' tile for decoding; the tuning cache is not read)");
  add_tune_cache_flags(cmd, o->tune_cache);
  cmd->add_option("--threads", o->threads, "CPU threads (--target cpu; default: every hardware thread)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o->warmup, "Untimed runs first (default 2)")->check(CLI::Range(int64_t{0}, kMaxRuns));
  cmd->add_option("--runs", o->runs, "Timed runs, at least 1 (default 10)")->check(CLI::Range(int64_t{1}, kMaxRuns));
  cmd->add_option("--seed", o->seed, "Random seed of the inputs (default 0)");
  cmd->add_option("--rel-distances", o->rel_distances, "Size of free tensor dimensions such as R (default 64)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--documents", o->documents, "Documents per row of `segments` (default 3)")
      ->check(CLI::PositiveNumber);
  return {cmd, [o] { return run_bench(*o); }};
}

}  // namespace tessera::cli
