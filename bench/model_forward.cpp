// Times a model spec on random weights: forward passes (prefill) over N tokens, and optionally incremental
// decoding with the KV cache. Prints a JSON line per measurement; bench/README.md says how the results in
// bench/RESULTS.md were taken.
//
//   model_forward --spec examples/models/sparse_transformer.attn --set width=256 ... --seq 16384
//   model_forward --spec examples/models/gpt.attn --seq 2047 --decode 32      (GPT-2 small at context 2048)
#include <fmt/format.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "compiler/sema/model_elaboration.h"
#include "runtime/blas_kernels.h"
#include "runtime/model/model_runner.h"
#include "runtime/model/random_weights.h"

namespace {

using namespace tessera;

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

runtime::Tensor random_ids(int64_t B, int64_t N, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  runtime::Tensor ids(runtime::DType::Int32, {B, N});
  for (int64_t i = 0; i < ids.numel(); ++i) ids.data<int32_t>()[i] = static_cast<int32_t>(pick(rng));
  return ids;
}

int64_t vocab_of(const graph::Graph& g, const std::string& input) {
  int node = -1;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (g.nodes[i].op == graph::OpKind::Input && g.nodes[i].input_name == input) node = static_cast<int>(i);
  }
  for (const graph::Node& n : g.nodes) {
    if (n.op == graph::OpKind::Embedding && n.inputs.at(0) == node) return n.vocab;
  }
  return 1;
}

}  // namespace

int run_benchmark(int argc, char** argv) {
  CLI::App app{"Time a model's forward pass (and decoding) on random weights"};
  std::string spec, name;
  std::vector<std::string> sets;
  int64_t seq = 1024, batch = 1, runs = 3, decode = 0, warmup_seq = 128, threads = 0;
  std::string dtype = "f32";
  app.add_option("--spec", spec, "Model spec")->required()->check(CLI::ExistingFile);
  app.add_option("--name", name, "Model name (default: the spec's only model)");
  app.add_option("--set", sets, "PARAM=VALUE overrides");
  app.add_option("--seq", seq, "Tokens per sequence (every input)");
  app.add_option("--batch", batch, "Sequences");
  app.add_option("--runs", runs, "Timed forward passes (median reported)");
  app.add_option("--decode", decode, "Then decode this many tokens one by one after a prefill of --seq");
  app.add_option("--warmup-seq", warmup_seq, "Length of the untimed warm-up pass that compiles the kernels");
  app.add_option("--dtype", dtype, "Attention storage f32|bf16")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--threads", threads, "Attention kernel threads (0: all)");
  CLI11_PARSE(app, argc, argv);

  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  std::ifstream in(spec);
  std::stringstream text;
  text << in.rdbuf();
  library.add_file(std::make_shared<dsl::SourceFile>(spec, text.str()), diags);
  if (name.empty() && library.model_names().size() == 1) name = library.model_names().front();
  std::map<std::string, std::string> overrides;
  for (const std::string& s : sets) overrides[s.substr(0, s.find('='))] = s.substr(s.find('=') + 1);
  std::optional<graph::Graph> graph = sema::elaborate_model(library, name, overrides, diags);
  diags.print(std::cerr);
  if (!graph) return 1;

  const runtime::ModelWeights weights(*graph, runtime::random_weights(*graph, 1));
  runtime::RunnerOptions options;
  options.attention.storage = dtype == "bf16" ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32;
  options.attention.schedule.threads = threads;
  options.profile = true;
  runtime::ModelRunner runner(*graph, weights, options);

  auto make_inputs = [&](int64_t n, std::map<std::string, runtime::Tensor>& owned) {
    std::map<std::string, const runtime::Tensor*> inputs;
    uint64_t seed = 7;
    for (const std::string& input : graph->inputs) {
      owned[input] = random_ids(batch, n, vocab_of(*graph, input), seed++);
      inputs[input] = &owned[input];
    }
    return inputs;
  };
  {
    std::map<std::string, runtime::Tensor> owned;
    const auto start = std::chrono::steady_clock::now();
    runner.forward(make_inputs(std::min(warmup_seq, seq), owned));
    std::cerr << fmt::format("warm-up (kernels compiled) at N={}: {:.2f} s\n", std::min(warmup_seq, seq),
                             seconds_since(start));
  }
  std::map<std::string, runtime::Tensor> owned;
  const auto inputs = make_inputs(seq, owned);
  const std::map<std::string, double> before = runner.profile();
  std::vector<double> times;
  for (int64_t r = 0; r < runs; ++r) {
    const auto start = std::chrono::steady_clock::now();
    runner.forward(inputs);
    times.push_back(seconds_since(start) * 1000);
  }
  std::sort(times.begin(), times.end());
  nlohmann::json split;  // ms per pass by op kind
  for (const auto& [op, ms] : runner.profile()) {
    split[op] = (ms - (before.count(op) ? before.at(op) : 0.0)) / static_cast<double>(runs);
  }
  nlohmann::json forward = {{"model", graph->name},
                            {"sets", sets},
                            {"B", batch},
                            {"N", seq},
                            {"dtype", dtype},
                            {"median_ms", times[times.size() / 2]},
                            {"min_ms", times.front()},
                            {"tokens_per_s", 1000.0 * static_cast<double>(batch * seq) / times[times.size() / 2]},
                            {"peak_rss_mib", peak_rss_mib()},
                            {"blas", runtime::blas_kernels()},
                            {"ms_by_op", split}};
  std::cout << forward.dump() << std::endl;

  if (decode > 0) {
    std::map<std::string, const runtime::Tensor*> fixed = inputs;
    const std::string stream = graph->inputs.back();
    fixed.erase(stream);
    runner.begin_decoding(fixed);
    auto start = std::chrono::steady_clock::now();
    runner.decode(*inputs.at(stream));
    const double prefill_ms = seconds_since(start) * 1000;
    runtime::Tensor next = random_ids(batch, 1, vocab_of(*graph, stream), 99);
    runner.decode(next);  // untimed: compiles the few-query kernels
    const std::map<std::string, double> before_decode = runner.profile();
    start = std::chrono::steady_clock::now();
    for (int64_t t = 0; t < decode; ++t) runner.decode(next);
    const double decode_s = seconds_since(start);
    nlohmann::json decode_split;  // ms per token by op kind
    for (const auto& [op, ms] : runner.profile()) {
      decode_split[op] = (ms - (before_decode.count(op) ? before_decode.at(op) : 0.0)) / static_cast<double>(decode);
    }
    nlohmann::json record = {{"model", graph->name},
                             {"B", batch},
                             {"context", seq + 1 + decode},
                             {"prefill_ms", prefill_ms},
                             {"decode_tokens", decode},
                             {"decode_ms_per_token", 1000 * decode_s / static_cast<double>(decode)},
                             {"tokens_per_s", static_cast<double>(decode * batch) / decode_s},
                             {"peak_rss_mib", peak_rss_mib()},
                             {"ms_by_op", decode_split}};
    std::cout << record.dump() << std::endl;
  }
  return 0;
}

int main(int argc, char** argv) {
  // A spec, weight or shape error (a decode past the model's positions) is reported, not an abort.
  try {
    return run_benchmark(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
