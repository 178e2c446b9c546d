// `tessera tune`: searches a kernel's schedule space on this machine (compiler/tuner/search.h over the space the
// CPU backend declares in targets/cpu/cpu_schedule_space.h), prints every candidate tried, and stores the winner
// in the tuning cache that eval, bench, compile and the model runtime read.
//
// Timings are never taken while something else of ours runs: each candidate is compiled and checked against the
// reference first, then timed alone. On a 2-core machine a compile beside a timed run would take one of the two
// cores the kernel runs on.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>

#include "compiler/cli/allowed_pairs.h"
#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/gemm_tuner.h"
#include "compiler/cli/model_context.h"
#include "compiler/cli/random_inputs.h"
#include "compiler/cli/search_report.h"
#include "compiler/ir/printer.h"
#include "compiler/tuner/search.h"
#include "compiler/tuner/tune_cache.h"
#include "targets/cpu/cpu_schedule_space.h"
#include "targets/cpu/tuned_schedules.h"
#include "targets/cuda/cuda_attention.h"
#include "targets/cuda/cuda_driver.h"
#include "targets/cuda/cuda_schedule_space.h"
#include "targets/reference/reference_attention.h"

namespace tessera::cli {

namespace {

struct TuneOptions {
  std::string pattern;
  std::vector<std::string> specs;
  std::string name;
  std::string model;
  std::vector<std::string> sets;
  int64_t batch = 1, seq = 0;
  std::optional<int64_t> heads, kv_heads, keys, head_dim, value_dim;
  std::string dtype;  // empty: f32 on the CPU, bf16 on CUDA
  std::string target = "cpu";
  double budget = 120;
  int64_t max_candidates = 12;
  int64_t runs = 5;
  std::optional<uint64_t> seed;
  std::optional<int64_t> threads;
  std::string cache;
  bool show = false;
  bool no_store = false;
  bool no_refine = false;
  int64_t rel_distances = 64;
  int64_t documents = 3;
};

// One attention problem to tune: a pattern at one shape.
struct Problem {
  std::string description;  // the pattern expression, or the model's node
  ir::Pattern pattern;
  RandomInputShape shape;
};

tuner::SearchOptions search_options(const TuneOptions& o) {
  tuner::SearchOptions search;
  search.budget_seconds = o.budget;
  search.max_candidates = o.max_candidates;
  search.runs = o.runs;
  search.seed = o.seed;
  search.refine = !o.no_refine;
  return search;
}

std::filesystem::path cache_path(const TuneOptions& o) {
  return o.cache.empty() ? tuner::default_cache_path() : std::filesystem::path(o.cache);
}

// The small shape every candidate is checked on against the float64 reference: the heads and head dims of the
// tuned shape (the kernels are specialised to them), at most 256 queries, and the same distance between the
// last query and the last key (decoding shapes keep their long context: one query costs little).
RandomInputShape check_shape(const RandomInputShape& s) {
  RandomInputShape c = s;
  c.batch = 1;
  c.seq = std::min<int64_t>(s.seq, 256);
  c.keys = s.keys >= s.seq ? c.seq + (s.keys - s.seq) : std::max<int64_t>(1, s.keys * c.seq / s.seq);
  return c;
}

// The tolerance of `tessera eval --target cpu` against the reference (float32 accumulation). bf16 is compared
// with the reference run on the same rounded inputs, plus what rounding P to bf16 before P.V can move an output:
// 2^-8 max|V| (see CpuAttention.BFloat16StorageComputesOnTheRoundedInputs).
constexpr double kTolerance = 2e-4;

// The largest |x| of a float32 tensor.
double max_abs(const runtime::Tensor& t) {
  double m = 0;
  for (int64_t e = 0; e < t.numel(); ++e) m = std::max(m, std::abs(double{t.data<float>()[e]}));
  return m;
}

class ProblemTuner {
 public:
  ProblemTuner(const Problem& problem, const TuneOptions& o)
      : problem_(problem),
        o_(o),
        cuda_(o.target == "cuda"),
        storage_(o.dtype == "bf16" ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32),
        element_(o.dtype == "f16" ? cuda::Element::Float16 : cuda::Element::BFloat16),
        timed_(problem.shape, problem.pattern, 0),
        check_(check_shape(problem.shape), problem.pattern, 1) {
    sizes_ = targets::validate_attention_inputs(timed_.inputs);
    // bf16 on the CPU: timed on bf16 tensors rounded once, as `tessera bench` times them.
    if (!cuda_ && storage_ == cpu::StorageType::BFloat16) timed_bf16_.emplace(timed_.inputs, runtime::to_bfloat16);
    out_ = runtime::Tensor(runtime::DType::Float32, {sizes_.B, sizes_.H, sizes_.N, sizes_.Dv});
    // The reference the check compares with: on the rounded inputs the kernels store (bf16, or f16 on CUDA).
    // The CPU's bf16 storage rounds as the CUDA target's bf16 does.
    auto round = [this](const runtime::Tensor& t) {
      return cuda::element_values(t, cuda_ ? element_ : cuda::Element::BFloat16);
    };
    if (cuda_ || storage_ == cpu::StorageType::BFloat16) {
      const targets::ConvertedOperands rounded(check_.inputs, round);
      expected_ = reference::attention_f64(problem.pattern, rounded.inputs);
      // 16-bit P before P V on tensor cores (see test/gpu/) and in the CPU's bf16 P.V; float32 accumulation.
      if (cuda_) {
        tolerance_ = element_ == cuda::Element::Float16 ? 4e-3 : 1.5e-2;
      } else {
        tolerance_ += std::ldexp(max_abs(rounded.v), -8);
      }
    } else {
      expected_ = reference::attention_f64(problem.pattern, check_.inputs);
    }
  }

  int run() {
    std::string device;
    tuner::ScheduleSpace space;
    std::function<double(const tuner::Schedule&)> model;
    if (cuda_) {
      cuda::CudaContext& context = cuda::CudaContext::get();
      cuda::CudaDeviceLimits limits;
      limits.wgmma = context.arch().major == 9 && context.arch().accelerated;
      limits.shared_bytes = static_cast<int64_t>(context.max_shared_bytes_per_block());
      limits.multiprocessors = context.multiprocessor_count();
      device = cuda::arch_name(context.arch()) + " " + context.device_name();
      space = cuda::cuda_schedule_space(problem_.pattern, sizes_, limits);
      model = [m = std::make_shared<cuda::CudaCostModel>(problem_.pattern, sizes_, limits)](
                  const tuner::Schedule& point) { return (*m)(point); };
    } else {
      space = cpu::cpu_schedule_space(problem_.pattern, sizes_, cpu::halide_target_string());
      auto cost = std::make_shared<cpu::CpuCostModel>(problem_.pattern, sizes_, o_.threads.value_or(0));
      model = [cost](const tuner::Schedule& point) { return (*cost)(point); };
      space.kernel_identity = [cost](const tuner::Schedule& point) { return cost->kernel_identity(point); };
    }
    const int64_t pairs = count_allowed_pairs(problem_.pattern, sizes_, timed_.inputs);
    const double flops = 2.0 * static_cast<double>(sizes_.D + sizes_.Dv) * static_cast<double>(pairs);

    std::cout << fmt::format("tune {}: {} {}, B={} H={} Hkv={} N={} M={} D={} Dv={}{}\n", problem_.description,
                             cuda_ ? "cuda " + device : std::string("cpu"), dtype(), sizes_.B, sizes_.H, sizes_.Hkv,
                             sizes_.N, sizes_.M, sizes_.D, sizes_.Dv,
                             o_.threads ? fmt::format(", {} threads", *o_.threads) : "");
    tuner::Evaluator evaluator;
    evaluator.predict = model;
    evaluator.check = [this](const tuner::Schedule& s) { return check(s); };
    evaluator.run = [this](const tuner::Schedule& s) { return time_once(s); };
    const tuner::SearchResult result =
        search_with_progress(space, evaluator, search_options(o_), "tune " + problem_.description);

    std::cout << fmt::format(
        "space: {} valid points ranked by the cost model ({} pruned by the backend's constraints), {} measured "
        "(rank -: refinements of register tiles, grain and min_block_q)\n",
        result.space_points, result.pruned, result.trials.size());
    SearchReport report;
    report.point_heading = "schedule";
    report.point_width = 112;
    report.failure_subject = fmt::format("candidate schedule of '{}'", problem_.description);
    report.flops = flops;
    const Winner winner = report_search(result, space, report);

    // One JSON line per problem, last, for scripts (bench/tune_patterns.sh collects them).
    nlohmann::json line;
    line["problem"] = problem_.description;
    line["pattern"] = problem_.pattern.name;
    line["dtype"] = dtype();
    line["target"] = cuda_ ? "cuda" : "cpu";
    line["B"] = sizes_.B;
    line["H"] = sizes_.H;
    line["N"] = sizes_.N;
    line["M"] = sizes_.M;
    line["D"] = sizes_.D;
    add_search_fields(line, result, space, winner, flops);

    tuner::TuneEntry entry = winner_entry(result, winner);
    entry.key = cuda_ ? cuda::cuda_tune_key(problem_.pattern, sizes_, element_, device)
                      : cpu::cpu_tune_key(problem_.pattern, sizes_, storage_);
    entry.description = problem_.description;
    if (!o_.no_store) {
      tuner::TuneCache::store(cache_path(o_), cpu::tessera_version(), entry);
      std::cout << fmt::format("cache: stored in {}\n", cache_path(o_).string());
    }
    std::cout << line.dump() << "\n";
    return 0;
  }

 private:
  cpu::CpuOptions options(const tuner::Schedule& s) const {
    cpu::CpuOptions options;
    options.schedule = cpu::to_cpu_schedule(s);
    options.schedule.threads = o_.threads.value_or(0);
    options.storage = storage_;
    return options;
  }

  std::string dtype() const { return o_.dtype.empty() ? (cuda_ ? "bf16" : "f32") : o_.dtype; }

  cuda::CudaOptions cuda_options(const tuner::Schedule& s) const {
    cuda::CudaOptions options;
    options.attention.schedule = cuda::to_cuda_schedule(s);
    options.attention.element = element_;
    return options;
  }

  std::optional<std::string> check(const tuner::Schedule& s) const {
    runtime::Tensor got = cuda_ ? cuda::attention(problem_.pattern, check_.inputs, cuda_options(s))
                                : cpu::attention(problem_.pattern, check_.inputs, options(s));
    const float* g = got.data<float>();
    double worst = 0;
    int64_t worst_at = 0;
    for (int64_t i = 0; i < got.numel(); ++i) {
      const double e = expected_[static_cast<size_t>(i)];
      const double err = std::isnan(e) != std::isnan(g[i]) ? INFINITY : std::isnan(e) ? 0 : std::abs(g[i] - e);
      if (err > worst || std::isnan(err)) {
        worst = err;
        worst_at = i;
      }
    }
    if (worst <= tolerance_) return std::nullopt;
    return fmt::format("max abs error {:.3g} > {:.1e} at flat index {} of the check output", worst, tolerance_,
                       worst_at);
  }

  double time_once(const tuner::Schedule& s) {
    if (cuda_) {
      // The kernels alone, timed with CUDA events; each candidate is planned, compiled and uploaded once (the
      // last two candidates are kept: the confirmation round alternates the default and the winner).
      const std::string key = tuner::describe(s);
      for (auto& [name, call] : prepared_)
        if (name == key) return call->time_ms();
      if (prepared_.size() == 2) prepared_.erase(prepared_.begin());
      prepared_.emplace_back(
          key, std::make_unique<cuda::PreparedCudaCall>(problem_.pattern, timed_.inputs, cuda_options(s)));
      return prepared_.back().second->time_ms();
    }
    const cpu::CpuOptions opts = options(s);
    const auto start = std::chrono::steady_clock::now();
    cpu::attention_into(problem_.pattern, timed_bf16_ ? timed_bf16_->inputs : timed_.inputs, out_, opts);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }

  const Problem& problem_;
  const TuneOptions& o_;
  bool cuda_;
  cpu::StorageType storage_;
  cuda::Element element_;
  std::vector<std::pair<std::string, std::unique_ptr<cuda::PreparedCudaCall>>> prepared_;
  RandomAttentionInputs timed_, check_;
  ir::AttentionSizes sizes_;
  runtime::Tensor out_;
  std::optional<targets::ConvertedOperands> timed_bf16_;  // what the CPU's timed bf16 runs read
  double tolerance_ = kTolerance;                         // of check() against expected_
  std::vector<double> expected_;
};

RandomInputShape shape_from(const TuneOptions& o, int64_t heads, int64_t kv_heads, int64_t head_dim,
                            int64_t value_dim) {
  return RandomInputShape{.batch = o.batch,
                          .heads = heads,
                          .kv_heads = kv_heads,
                          .seq = o.seq,
                          .keys = o.keys.value_or(o.seq),
                          .head_dim = head_dim,
                          .value_dim = value_dim,
                          .rel_distances = o.rel_distances,
                          .documents = o.documents};
}

// Every distinct attention of the model (pattern, heads, head dims): what its forward pass asks the kernels for.
std::vector<Problem> model_problems(const TuneOptions& o, std::vector<cpu::GemmShape>* gemms) {
  ModelFlags flags;
  flags.spec = o.model;
  flags.name = o.name;
  flags.sets = o.sets;
  const graph::Graph g = load_model_graph(flags);
  std::vector<Problem> problems;
  std::set<std::string> seen;
  for (const graph::Node& node : g.nodes) {
    // Evolving layers run their own kernel, which has no schedule space yet.
    if (node.op != graph::OpKind::Attention || !node.pattern || node.evolving) continue;
    const std::string key =
        fmt::format("{}|{}|{}|{}", ir::to_string(*node.pattern), node.heads, node.kv_heads, node.head_dim);
    if (!seen.insert(key).second) continue;
    problems.push_back({fmt::format("{} ({}: {})", node.pattern->name, g.name, node.name), *node.pattern,
                        shape_from(o, node.heads, node.kv_heads, node.head_dim, node.head_dim)});
  }
  if (problems.empty()) throw UserError(fmt::format("model '{}' has no attention to tune", g.name));
  // The GEMMs as the model runtime calls runtime::linear: self-attention projects queries, keys and values in one
  // product with the three weights stacked (model_runner's project_qkv), cross-attention in three.
  const int64_t rows = o.batch * o.seq;
  std::set<std::tuple<int64_t, int64_t, int64_t>> shapes;
  for (const graph::Node& node : g.nodes) {
    const int64_t in = node.inputs.empty() ? 0 : g.nodes[static_cast<size_t>(node.inputs.at(0))].width;
    if (node.op == graph::OpKind::Linear || node.op == graph::OpKind::Unembed) shapes.insert({rows, in, node.width});
    if (node.op == graph::OpKind::Attention) {
      const int64_t q = node.heads * node.head_dim, kv = node.kv_heads * node.head_dim;
      if (node.inputs.size() > 1) {
        shapes.insert({rows, in, q});
        shapes.insert({rows, g.nodes[static_cast<size_t>(node.inputs.at(1))].width, kv});
      } else {
        shapes.insert({rows, in, q + 2 * kv});
      }
      shapes.insert({rows, q, node.width});
    }
  }
  // A few rows go through matrix-vector products, which have no blocking (runtime/linear.h).
  if (gemms && rows > 4) {
    for (const auto& [r, in, out] : shapes) gemms->push_back({r, in, out});
  }
  return problems;
}

// `gemms`, with --model, receives the model's distinct GEMM shapes.
std::vector<Problem> problems_of(const TuneOptions& o, std::vector<cpu::GemmShape>* gemms) {
  const int sources = !o.pattern.empty() + !o.model.empty() + (!o.specs.empty() && o.pattern.empty());
  if (sources != 1) throw UserError("give one of --pattern EXPR, --spec FILE [--name NAME] or --model SPEC");
  if (!o.model.empty()) {
    if (o.heads || o.kv_heads || o.head_dim || o.value_dim) {
      throw UserError("--model takes heads and head dims from the model; drop --heads/--kv-heads/--head-dim");
    }
    return model_problems(o, gemms);
  }
  if (!o.heads || !o.head_dim) throw UserError("--heads and --head-dim are required with --pattern or --spec");
  const int64_t kv = o.kv_heads.value_or(*o.heads);
  if (*o.heads % kv != 0) throw UserError(fmt::format("--heads {} must be a multiple of --kv-heads {}", *o.heads, kv));
  const RandomInputShape shape = shape_from(o, *o.heads, kv, *o.head_dim, o.value_dim.value_or(*o.head_dim));
  sema::PatternLibrary library = load_library(o.specs);
  std::vector<std::string> expressions;
  if (!o.pattern.empty()) {
    expressions.push_back(o.pattern);
  } else if (!o.name.empty()) {
    expressions.push_back(o.name);
  } else {
    // Every pattern the spec files declare that needs no arguments.
    for (const sema::Declaration& d : library.declarations()) {
      const bool all_defaulted = std::all_of(d.params.begin(), d.params.end(),
                                             [](const sema::Parameter& p) { return p.default_value.has_value(); });
      if (!d.from_prelude && all_defaulted) expressions.push_back(d.name);
    }
    if (expressions.empty()) throw UserError("the spec declares no pattern without required parameters: use --name");
  }
  std::vector<Problem> problems;
  for (const std::string& e : expressions) problems.push_back({e, instantiate_pattern(library, e), shape});
  return problems;
}

int show_cache(const TuneOptions& o) {
  const std::filesystem::path path = cache_path(o);
  const tuner::TuneCache cache = tuner::TuneCache::load(path, cpu::tessera_version());
  std::cout << fmt::format("tuning cache {} (Tessera {}): {} entr{}\n", path.string(), cpu::tessera_version(),
                           cache.entries().size(), cache.entries().size() == 1 ? "y" : "ies");
  for (const tuner::TuneEntry& e : cache.entries()) {
    std::cout << fmt::format(
        "- {} {} [{}] {} {}\n  schedule {}: {:.3f} ms ({:.2f}x the default), {} candidates in "
        "{:.1f} s, {}\n  target {}\n",
        e.key.kernel, e.description, e.key.problem, tuner::describe(e.key.bucket), e.key.dtype,
        tuner::describe(e.schedule), e.median_ms, e.median_ms > 0 ? e.default_ms / e.median_ms : 0.0, e.candidates,
        e.tuning_seconds, e.tuned_at, e.key.target);
  }
  return 0;
}

int run_tune(const TuneOptions& o) {
  if (o.show) return show_cache(o);
  if (o.target == "cuda" || o.target.rfind("cuda:", 0) == 0) {
    // Candidates are timed, never modelled alone: without a GPU there is nothing to time.
    if (!cuda::cuda_device_available())
      throw UserError("no CUDA device: tessera tune --target cuda times its candidates on a GPU, and there is none");
    throw UserError(
        "--target cuda: the CUDA schedules are not declared to the tuner yet; eval, bench and compile "
        "use their defaults (block_m, block_n by head dimension)");
  }
  if (o.target != "cpu") throw UserError(fmt::format("--target {}: tune knows cpu and cuda", o.target));
  if (o.seq < 1) throw UserError("--seq is required (the number of queries to tune for)");
  std::vector<cpu::GemmShape> gemms;
  for (const Problem& problem : problems_of(o, &gemms)) {
    ProblemTuner tuner(problem, o);
    tuner.run();
  }
  GemmTuneSettings settings;
  settings.search = search_options(o);
  if (!o.no_store) settings.store_in = cache_path(o);
  for (const cpu::GemmShape& shape : gemms) tune_gemm(shape, settings);
  return 0;
}

}  // namespace

Command add_tune_command(CLI::App& app) {
  auto o = std::make_shared<TuneOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tune",
      "Search the CPU kernels' schedule space for a pattern (or every attention and GEMM of a model) at one shape, "
      "print\n"
      "each candidate tried (schedule, median ms, GFLOP/s over allowed pairs) and the winner, and store it in\n"
      "the tuning cache ($XDG_CACHE_HOME/tessera/tune_cache.json, or --cache). eval, bench, compile and the model\n"
      "runtime then run the cached schedule for that pattern and shape bucket (exact up to 256, powers of two\n"
      "above; the nearest tuned bucket otherwise). A cost model ranks the space; the default and the best-ranked\n"
      "candidates (plus a few sampled from the rest) are checked against the float64 reference on a small shape\n"
      "(a wrong one is reported and never cached), then timed: warm-up, --runs runs, median. Register tiles and\n"
      "the parallel grain, which the model cannot rank, are then refined one at a time around the winner, and the\n"
      "winner is confirmed against the default in alternating runs (a lucky winner loses to the default).");
  cmd->add_option("--pattern", o->pattern, "Pattern expression to tune, e.g. 'causal & sliding_window(window=256)'");
  cmd->add_option("--spec", o->specs, "Spec file(s): with --name, tune that pattern; alone, every pattern declared");
  cmd->add_option("--name", o->name, "Pattern of --spec, or model of --model");
  cmd->add_option("--model", o->model, "Model spec: tune every distinct attention and GEMM shape of the model")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", o->sets, "Override a model parameter, PARAM=VALUE (with --model; repeatable)");
  cmd->add_option("--seq", o->seq, "N, queries")->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--batch", o->batch, "B (default 1)")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "H, query heads (not with --model)")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", o->kv_heads, "Hkv, key/value heads (default H; must divide H)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", o->head_dim, "D (not with --model)")->check(CLI::PositiveNumber);
  cmd->add_option("--value-dim", o->value_dim, "Dv (default D)")->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", o->dtype, "Storage of Q/K/V: f32 (CPU default) or bf16; cuda: bf16 (default) or f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--target", o->target,
                  "Target to tune for: cpu (default) or cuda (GPU 0; candidates are timed on the GPU, so there must\n"
                  "be one)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--budget", o->budget, "Seconds for checking and timing candidates per problem (default 120)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-candidates", o->max_candidates,
                  "Candidates measured per problem, the default included "
                  "(default 12)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  cmd->add_option("--runs", o->runs, "Timed runs per candidate after one warm-up run (default 5)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  cmd->add_option("--seed", o->seed,
                  "Deterministic mode: the candidates visited depend only on the space, the cost model and the seed "
                  "(no early stopping on timings; the budget still applies)");
  cmd->add_option("--threads", o->threads, "CPU threads (default: every hardware thread)")->check(CLI::PositiveNumber);
  cmd->add_option("--cache", o->cache, "Tuning cache file (default $XDG_CACHE_HOME/tessera/tune_cache.json)");
  cmd->add_flag("--show", o->show, "List the tuning cache and exit");
  cmd->add_flag("--no-store", o->no_store, "Search and report, but leave the cache as it is");
  cmd->add_flag("--no-refine", o->no_refine,
                "Skip the refinement of register tiles and the parallel grain (measured one at a time around the "
                "winner of the ranked candidates)");
  cmd->add_option("--rel-distances", o->rel_distances, "Size of free tensor dimensions such as R (default 64)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--documents", o->documents, "Documents per row of `segments` (default 3)")
      ->check(CLI::PositiveNumber);
  return {cmd, [o] { return run_tune(*o); }};
}

}  // namespace tessera::cli
