// A randomized differential check of the CPU target against the float64 reference: per iteration a random pattern
// expression (compositions of the standard library with random parameters), shape, storage, schedule and
// sometimes non-finite inputs, all drawn from (seed, iteration). On a disagreement it prints one line that
// reproduces it (`--seed S --first I --iterations 1` replays that iteration) and exits non-zero.
//
// The unit tests pin chosen cases; this finds the ones nobody chose: ragged sizes against every tile size the
// tuner may pick, compositions whose plans mix re-indexed views, GQA with split keys, bf16 with run-time tables.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "compiler/sema/pattern_library.h"
#include "compiler/tuner/schedule_space.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"
#include "runtime/npy.h"
#include "runtime/tensor.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/cpu_schedule_space.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

using Rng = std::mt19937_64;

int64_t uniform(Rng& rng, int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); }
bool chance(Rng& rng, double p) { return std::bernoulli_distribution(p)(rng); }
template <typename T>
const T& pick(Rng& rng, const std::vector<T>& values) {
  return values[static_cast<size_t>(uniform(rng, 0, static_cast<int64_t>(values.size()) - 1))];
}

// Sizes and pattern parameters log-uniform in [lo, hi]: the edges (1, a tile, a tile plus one) matter more than the
// middle, and small values are where the planner's special cases (period 1, an empty window) live.
int64_t log_uniform(Rng& rng, int64_t lo, int64_t hi) {
  const double x = std::uniform_real_distribution<double>(std::log(static_cast<double>(lo)),
                                                          std::log(static_cast<double>(hi) + 1.0))(rng);
  return std::clamp(static_cast<int64_t>(std::floor(std::exp(x))), lo, hi);
}

// A sequence length: mostly log-uniform up to 300, sometimes right at a tile edge, sometimes long.
int64_t sequence_length(Rng& rng, int64_t longest) {
  if (chance(rng, 0.15))
    return pick(rng, std::vector<int64_t>{1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 257});
  if (chance(rng, 0.1)) return uniform(rng, 300, longest);
  return log_uniform(rng, 1, 300);
}

// ---- Pattern expressions ----

// One standard-library mask with random valid parameters (prelude.attn's constraints).
std::string random_mask(Rng& rng) {
  switch (uniform(rng, 0, 10)) {
    case 0: return "full";
    case 1: return "causal";
    case 2: return fmt::format("sliding_window(window={})", log_uniform(rng, 1, 400));
    case 3: return fmt::format("local(window={})", log_uniform(rng, 1, 200));
    case 4: return fmt::format("strided(stride={})", log_uniform(rng, 1, 130));
    case 5: {
      const int64_t block = log_uniform(rng, 1, 130);
      return fmt::format("fixed(block={}, summary={})", block, uniform(rng, 0, block));
    }
    case 6: return fmt::format("dilated(window={}, dilation={})", log_uniform(rng, 1, 64), log_uniform(rng, 1, 20));
    case 7: {
      const int64_t width = log_uniform(rng, 1, 40);
      return fmt::format("local2d(width={}, block_h={}, block_w={}, halo_h={}, halo_w={})", width,
                         log_uniform(rng, 1, 8), log_uniform(rng, 1, width), uniform(rng, 0, 3), uniform(rng, 0, 3));
    }
    case 8: return fmt::format("local1d(query_block={}, memory={})", log_uniform(rng, 1, 100), uniform(rng, 0, 100));
    case 9: return fmt::format("prefix_lm(prefix={})", uniform(rng, 0, 320));
    default: return "document";
  }
}

// A score modifier, composed with a mask by `&`. Table sizes stay within RandomProblem::kFreeDimension (9): the
// reference refuses an index past a table's end, and the point here is the kernels, not that refusal.
std::string random_modifier(Rng& rng) {
  switch (uniform(rng, 0, 5)) {
    case 0: return "alibi";
    case 1: return fmt::format("softcap(cap={})", pick(rng, std::vector<double>{0.05, 0.5, 1.0, 2.5, 5.0, 20.0, 50.0}));
    case 2: return "relative";
    case 3: return fmt::format("relative_bidir(max_distance={})", uniform(rng, 0, 4));
    case 4: {
      const bool bidirectional = chance(rng, 0.5);
      return fmt::format("t5_bias(buckets={}, max_distance={}{})", uniform(rng, 2, 9), log_uniform(rng, 1, 300),
                         bidirectional ? "" : ", bidirectional=false");
    }
    default:
      return fmt::format("relative2d(width={}, max_rows={}, max_cols={})", log_uniform(rng, 1, 30), uniform(rng, 0, 4),
                         uniform(rng, 0, 4));
  }
}

// A tree of masks of depth <= `depth` under &, | and -, parenthesised where composite; now and then a modifier
// inside it (sema decides whether a score may sit under | or -: what it refuses is counted, not checked).
std::string mask_tree(Rng& rng, int depth) {
  if (depth == 0 || chance(rng, depth == 3 ? 0.3 : 0.5)) {
    if (chance(rng, 0.04)) return random_modifier(rng);
    return random_mask(rng);
  }
  const char* op = pick(rng, std::vector<const char*>{"&", "|", "-"});
  return fmt::format("({} {} {})", mask_tree(rng, depth - 1), op, mask_tree(rng, depth - 1));
}

std::string random_expression(Rng& rng) {
  std::vector<std::string> terms;
  if (chance(rng, 0.08)) {
    // The list every target is checked on, verbatim: a case added there is drawn here too.
    const auto& cases = chance(rng, 0.7) ? test::standard_pattern_cases() : test::variant_pattern_cases();
    terms.push_back("(" + pick(rng, cases) + ")");
  } else if (!chance(rng, 0.08)) {  // else modifiers alone: every key allowed
    terms.push_back(mask_tree(rng, 3));
  }
  const int64_t modifiers = chance(rng, 0.5) ? uniform(rng, 1, 2) : 0;
  for (int64_t i = 0; i < modifiers; ++i) terms.push_back(random_modifier(rng));
  // Scorings and normalisers other than softmax, rarely: they run on other kernels (hardmax, additive).
  if (chance(rng, 0.05)) terms.push_back(pick(rng, std::vector<std::string>{"dot", "bilinear", "additive"}));
  if (chance(rng, 0.03)) terms.push_back(fmt::format("luong_local_p(half_width={})", log_uniform(rng, 1, 40)));
  if (chance(rng, 0.04)) {
    terms.push_back(chance(rng, 0.5) ? std::string("hardmax") : fmt::format("sample(seed={})", uniform(rng, 0, 99)));
  }
  if (terms.empty()) terms.push_back("full");
  // A lone tree loses its outer parentheses; with terms after it, it keeps them ('&' binds tighter than '|' and
  // '-', so `a | b & alibi` would score only b's pairs).
  if (terms.size() == 1 && terms.front().front() == '(' && !chance(rng, 0.2)) {
    terms.front() = terms.front().substr(1, terms.front().size() - 2);
  }
  std::string expression = terms.front();
  for (size_t t = 1; t < terms.size(); ++t) expression += " & " + terms[t];
  return expression;
}

// ---- Shapes, storage, schedules ----

test::Shape random_shape(Rng& rng) {
  test::Shape s{};
  s.B = uniform(rng, 1, 2);
  s.H = uniform(rng, 1, 4);
  std::vector<int64_t> divisors;
  for (int64_t d = 1; d <= s.H; ++d) {
    if (s.H % d == 0) divisors.push_back(d);
  }
  s.Hkv = pick(rng, divisors);
  if (chance(rng, 0.15)) {  // a decoding step: a few queries at the end of many keys
    s.N = uniform(rng, 1, 8);
    s.M = sequence_length(rng, 1100);
  } else {
    s.N = sequence_length(rng, 1100);
    s.M = chance(rng, 0.3) ? s.N : sequence_length(rng, 1100);
  }
  const std::vector<int64_t> widths{16, 32, 64, 128}, odd_widths{8, 12, 20, 24, 40, 48};
  s.D = chance(rng, 0.1) ? pick(rng, odd_widths) : pick(rng, widths);
  s.Dv = chance(rng, 0.6) ? s.D : (chance(rng, 0.1) ? pick(rng, odd_widths) : pick(rng, widths));
  // The reference interprets the pattern per pair: keep long problems to one batch row and two heads.
  if (s.N * s.M > 300 * 300) {
    s.B = 1;
    s.H = std::min<int64_t>(s.H, 2);
    s.Hkv = std::min(s.Hkv, s.H);
  }
  return s;
}

// A point of the backend's own schedule space (what the tuner may choose), each parameter drawn independently
// until the space's constraints accept the point.
cpu::CpuSchedule random_schedule(Rng& rng, const ir::Pattern& pattern, const test::Shape& s) {
  const ir::AttentionSizes sz{s.B, s.H, s.Hkv, s.N, s.M, s.D, s.Dv};
  const tuner::ScheduleSpace space = cpu::cpu_schedule_space(pattern, sz, cpu::halide_target_string());
  for (int attempt = 0; attempt < 1000; ++attempt) {
    tuner::Schedule point;
    for (const tuner::Parameter& p : space.parameters) point[p.name] = pick(rng, p.values);
    if (!space.invalid(point)) return cpu::to_cpu_schedule(point);
  }
  return cpu::to_cpu_schedule(space.defaults());
}

// bf16 of `t`'s values, rounded independently of the runtime's conversion (through long double, ties to even).
runtime::Tensor round_to_bf16(const runtime::Tensor& t) {
  runtime::Tensor r = t.clone();
  for (int64_t e = 0; e < r.numel(); ++e) {
    const long double x = r.data<float>()[e];
    if (x == 0 || !std::isfinite(static_cast<double>(x))) continue;
    int exponent = 0;
    std::frexp(static_cast<double>(x), &exponent);
    const long double quantum = std::ldexp(1.0L, exponent - 8);  // 8 significant bits
    r.data<float>()[e] = static_cast<float>(std::nearbyint(x / quantum) * quantum);
  }
  return r;
}

// ---- One iteration ----

struct Overrides {  // for reducing a failure: replace what the iteration draws, keep the rest of its draws
  std::optional<std::string> pattern, shape, schedule, dtype;
  std::vector<std::string> spec_files;  // patterns `pattern` may name besides the standard library
  std::optional<int64_t> threads;
  bool no_inject = false;
  bool inf_keys = false;
  std::string dump_dir;
};

struct Tally {
  int64_t compared = 0, failed = 0, not_elaborated = 0, refused = 0, reference_refused = 0;
  std::map<std::string, int64_t> refusals;  // message -> count
  std::vector<std::string> not_elaborated_examples;
};

test::Shape parse_shape(const std::string& text) {
  std::vector<int64_t> v;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    v.push_back(std::stoll(text.substr(start, comma - start)));
    start = comma + 1;
  }
  if (v.size() != 7) throw std::invalid_argument("--shape takes B,H,Hkv,N,M,D,Dv");
  return test::Shape{v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
}

std::string shape_string(const test::Shape& s) {
  return fmt::format("{},{},{},{},{},{},{}", s.B, s.H, s.Hkv, s.N, s.M, s.D, s.Dv);
}

// Writes the problem as .npy files and prints the `tessera eval` lines that run it on both targets.
void dump(const std::string& dir, const test::RandomProblem& problem, const std::string& expression, bool bf16) {
  std::filesystem::create_directories(dir);
  runtime::write_npy(dir + "/q.npy", *problem.inputs.q);
  runtime::write_npy(dir + "/k.npy", *problem.inputs.k);
  runtime::write_npy(dir + "/v.npy", *problem.inputs.v);
  std::string extra;
  for (const auto& [name, tensor] : problem.inputs.tensors) {
    runtime::write_npy(fmt::format("{}/{}.npy", dir, name), *tensor);
    extra += fmt::format(" --input {}={}/{}.npy", name, dir, name);
  }
  for (const char* target : {"reference", "cpu"}) {
    fmt::print("  tessera eval --pattern '{}' --q {}/q.npy --k {}/k.npy --v {}/v.npy{} --target {}{} --out {}/{}.npy\n",
               expression, dir, dir, dir, extra, target, bf16 && std::string(target) == "cpu" ? " --dtype bf16" : "",
               dir, target);
  }
}

// Runs iteration `iteration` of `seed`; returns false on a disagreement (after printing its reproducer).
bool run_iteration(uint64_t seed, int64_t iteration, const Overrides& over, bool verbose, Tally& tally) {
  static const sema::PatternLibrary library = [&] {
    sema::PatternLibrary with_specs;
    for (const std::string& path : over.spec_files) {
      std::ifstream in(path);
      if (!in) throw std::runtime_error(fmt::format("cannot read spec file '{}'", path));
      const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
      dsl::Diagnostics diags;
      if (!with_specs.add_file(std::make_shared<dsl::SourceFile>(path, text), diags))
        throw std::runtime_error(diags.str());
    }
    return with_specs;
  }();
  std::seed_seq seq{seed, static_cast<uint64_t>(iteration)};
  Rng rng(seq);
  std::string expression = random_expression(rng);
  test::Shape s = random_shape(rng);
  bool bf16 = chance(rng, 0.2);
  const uint64_t problem_seed = rng();
  const bool use_default = chance(rng, 0.5);
  const int64_t threads = chance(rng, 0.25) ? 1 : 0;
  const bool inject = chance(rng, 0.1);
  const uint64_t schedule_seed = rng(), inject_seed = rng();
  const bool into_sentinel = chance(rng, 0.5);

  if (over.pattern) expression = *over.pattern;
  if (over.shape) s = parse_shape(*over.shape);
  if (over.dtype) bf16 = *over.dtype == "bf16";

  dsl::Diagnostics diags;
  const std::optional<ir::Pattern> elaborated = library.instantiate(expression, diags);
  if (!elaborated) {
    ++tally.not_elaborated;
    if (tally.not_elaborated_examples.size() < 5) {
      const std::string first_error = diags.all().empty() ? std::string() : diags.all().front().message;
      tally.not_elaborated_examples.push_back(fmt::format("{}  ({})", expression, first_error));
    }
    if (verbose) fmt::print("[{}:{}] not elaborated: {}\n", seed, iteration, expression);
    return true;
  }
  const ir::Pattern& pattern = *elaborated;

  cpu::CpuOptions options;
  Rng schedule_rng(schedule_seed);
  options.schedule = use_default ? cpu::host_default_schedule() : random_schedule(schedule_rng, pattern, s);
  if (over.schedule) options.schedule = cpu::parse_schedule(*over.schedule, cpu::host_default_schedule());
  options.schedule.threads = over.threads.value_or(threads);
  if (bf16) options.storage = cpu::StorageType::BFloat16;

  // The reference sees the values the target stores: bf16 storage rounds Q, K and V (not the tables).
  test::RandomProblem problem(pattern, s, problem_seed,
                              bf16 ? round_to_bf16 : std::function<runtime::Tensor(const runtime::Tensor&)>{});
  std::string injected;
  if (inject && !over.no_inject) {
    // The contract (NanAndInfPropagateOnlyThroughAllowedPairs): a non-finite K or V element reaches exactly the
    // rows whose allowed pairs read it, as in the reference; masked keys contribute nothing, not 0 * NaN.
    // An infinite key element gives a +inf logit wherever the query's matching element has the opposite sign:
    // the reference's row is then NaN (inf - inf), the kernels' a row of zeros, as if nothing were allowed
    // (exp2_of_nonpositive clamps the NaN). Reported, not settled: keys get NaN only unless --inf-keys.
    Rng irng(inject_seed);
    const int64_t count = uniform(irng, 1, 3);
    for (int64_t n = 0; n < count; ++n) {
      const bool key = chance(irng, 0.5);
      runtime::Tensor& t = key ? problem.k : problem.v;
      const int64_t e = uniform(irng, 0, t.numel() - 1);
      float value =
          pick(irng, std::vector<float>{std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                                        -std::numeric_limits<float>::infinity()});
      if (key && !over.inf_keys) value = std::numeric_limits<float>::quiet_NaN();
      t.data<float>()[e] = value;
      injected += fmt::format("{}{}[{}]={}", injected.empty() ? "" : ",", &t == &problem.k ? "k" : "v", e, value);
    }
  }

  const std::string what = fmt::format(
      "seed={} iteration={} pattern='{}' shape={} dtype={} schedule='{}' threads={}{}{}", seed, iteration, expression,
      shape_string(s), bf16 ? "bf16" : "f32", cpu::describe(options.schedule), options.schedule.threads,
      injected.empty() ? "" : " inject=" + injected, into_sentinel ? " into" : "");
  if (verbose) fmt::print("[{}:{}] {}\n", seed, iteration, what);
  std::fflush(stdout);

  std::vector<double> expected;
  try {
    expected = reference::attention_f64(pattern, problem.inputs);
  } catch (const std::exception& e) {
    ++tally.reference_refused;
    ++tally.refusals[fmt::format("reference: {}", e.what())];
    return true;
  }
  // Half the time the output is the caller's, filled beforehand with kSentinel: an element the kernels never
  // write then reads as kSentinel, not as whatever the allocator left (which may happen to be 0).
  constexpr float kSentinel = 4242.0f;
  runtime::Tensor got;
  try {
    if (into_sentinel) {
      got = runtime::Tensor(runtime::DType::Float32, {s.B, s.H, s.N, s.Dv});
      std::fill(got.data<float>(), got.data<float>() + got.numel(), kSentinel);
      cpu::attention_into(pattern, problem.inputs, got, options);
    } else {
      got = cpu::attention(pattern, problem.inputs, options);
    }
  } catch (const std::invalid_argument& e) {  // a clear refusal (an unsupported width, say): counted, not a failure
    ++tally.refused;
    ++tally.refusals[fmt::format("cpu: {}", e.what())];
    return true;
  } catch (const std::exception& e) {
    ++tally.failed;
    fmt::print("FAIL {} error='{}'\n", what, e.what());
    fmt::print("  replay: attention_differential --seed {} --first {} --iterations 1\n", seed, iteration);
    if (!over.dump_dir.empty()) dump(over.dump_dir, problem, expression, bf16);
    return false;
  }
  ++tally.compared;

  // bf16: BFloat16StorageComputesOnTheRoundedInputs's bound. P.V may round each probability to bf16, which moves an
  // output (a weighted mean of V's rows) by at most 2^-8 max|V|.
  double tolerance = 2e-4;
  if (bf16) {
    double max_v = 0;
    for (int64_t e = 0; e < problem.v.numel(); ++e) {
      const double x = problem.v.data<float>()[e];
      if (std::isfinite(x)) max_v = std::max(max_v, std::abs(x));
    }
    tolerance += std::ldexp(max_v, -8);
  }
  int64_t bad = 0, first_bad = -1;
  std::vector<int64_t> bad_rows;  // flat (b, h, i) indices, the first few: which rows a bug reaches tells much
  int64_t bad_row_count = 0, last_bad_row = -1;
  for (size_t e = 0; e < expected.size(); ++e) {
    const double g = got.data<float>()[e], x = expected[e];
    bool ok;
    if (std::isnan(x) || std::isnan(g)) {
      ok = std::isnan(x) && std::isnan(g);
    } else if (std::isinf(x) || std::isinf(g)) {
      ok = g == x;
    } else if (x == 0.0) {
      ok = g == 0.0;  // a row with no allowed key is exactly zero
    } else {
      ok = std::abs(g - x) <= tolerance;
    }
    if (ok) continue;
    if (bad++ == 0) first_bad = static_cast<int64_t>(e);
    const auto flat_row = static_cast<int64_t>(e) / s.Dv;
    if (flat_row == last_bad_row) continue;
    last_bad_row = flat_row;
    if (bad_row_count++ < 16) bad_rows.push_back(flat_row);
  }
  if (bad == 0) return true;
  ++tally.failed;
  const auto e = static_cast<size_t>(first_bad);
  const int64_t column = first_bad % s.Dv, row = first_bad / s.Dv % s.N, head = first_bad / (s.Dv * s.N) % s.H,
                batch = first_bad / (s.Dv * s.N * s.H);
  fmt::print("FAIL {} index={} (b={},h={},i={},c={}) cpu={} reference={} tolerance={:.3g} bad_elements={}\n", what,
             first_bad, batch, head, row, column, got.data<float>()[e], expected[e], tolerance, bad);
  std::string rows;
  for (const int64_t r : bad_rows) rows += fmt::format(" ({},{},{})", r / (s.N * s.H), r / s.N % s.H, r % s.N);
  fmt::print("  bad rows (b,h,i), {} in all:{}{}\n", bad_row_count, rows,
             bad_row_count > static_cast<int64_t>(bad_rows.size()) ? " ..." : "");
  fmt::print("  replay: attention_differential --seed {} --first {} --iterations 1\n", seed, iteration);
  if (!over.dump_dir.empty()) dump(over.dump_dir, problem, expression, bf16);
  std::fflush(stdout);
  return false;
}

int run(int argc, char** argv) {
  CLI::App app{"Randomized differential check of the CPU attention kernels against the float64 reference"};
  uint64_t seed = 1;
  int64_t first = 0, iterations = 100;
  double minutes = 0;
  bool verbose = false, keep_going = false;
  Overrides over;
  app.add_option("--seed", seed, "Seed of the run (default 1)");
  app.add_option("--iterations", iterations, "Iterations to run (default 100)");
  app.add_option("--first", first, "First iteration (replays a reproducer's iteration)");
  app.add_option("--minutes", minutes, "Stop after this many minutes (between iterations)");
  app.add_flag("--verbose", verbose, "Print every iteration");
  app.add_flag("--keep-going", keep_going, "Go on after a disagreement (the exit status is still non-zero)");
  app.add_option("--pattern", over.pattern, "Replace the drawn pattern expression (reducing a failure)");
  app.add_option("--spec", over.spec_files, "Spec file(s) whose patterns --pattern may name");
  app.add_option("--shape", over.shape, "Replace the drawn shape: B,H,Hkv,N,M,D,Dv");
  app.add_option("--schedule", over.schedule, "Replace the drawn schedule (fields over the host default)");
  app.add_option("--dtype", over.dtype, "Replace the drawn storage")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--threads", over.threads, "Replace the drawn thread count (0: all)");
  app.add_flag("--no-inject", over.no_inject, "Do not inject NaN or Inf");
  app.add_flag("--inf-keys", over.inf_keys, "Inject Inf into K too, not only NaN");
  app.add_option("--dump", over.dump_dir, "On a failure, write its inputs as .npy here and print `tessera eval` lines");
  CLI11_PARSE(app, argc, argv);

  const auto start = std::chrono::steady_clock::now();
  auto elapsed_minutes = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60.0;
  };
  Tally tally;
  int64_t done = 0;
  for (int64_t i = first; i < first + iterations; ++i) {
    if (minutes > 0 && elapsed_minutes() >= minutes) break;
    ++done;
    if (!run_iteration(seed, i, over, verbose, tally) && !keep_going) break;
  }
  fmt::print(
      "seed {}: {} iterations in {:.1f} min: {} compared, {} failed, {} not elaborated, {} refused by the CPU target, "
      "{} by the reference\n",
      seed, done, elapsed_minutes(), tally.compared, tally.failed, tally.not_elaborated, tally.refused,
      tally.reference_refused);
  for (const std::string& example : tally.not_elaborated_examples) fmt::print("  not elaborated: {}\n", example);
  for (const auto& [message, count] : tally.refusals) fmt::print("  refused {}x: {}\n", count, message);
  return tally.failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  try {
    return tessera::run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "attention_differential: {}\n", e.what());
    return 2;
  }
}
