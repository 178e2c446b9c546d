// `tessera run`: one forward pass of a model over token ids from .npy files.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/model_context.h"
#include "compiler/cli/progress_bar.h"
#include "runtime/npy.h"

namespace tessera::cli {

namespace {

struct RunOptions {
  ModelFlags model;
  std::string tokens;
  std::vector<std::string> inputs;   // NAME=IDS.npy
  std::vector<std::string> tensors;  // NAME=FILE.npy
  std::string out;
  std::string pool = "none";
  bool normalize = false;
  int64_t repeat = 0;
};

std::pair<std::string, std::string> split_binding(const std::string& flag, const std::string& binding) {
  const size_t eq = binding.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == binding.size()) {
    throw UserError(fmt::format("{} expects NAME=FILE.npy, got '{}'", flag, binding));
  }
  return {binding.substr(0, eq), binding.substr(eq + 1)};
}

// --pool and --normalize on the model's output.
runtime::Tensor post_process(const runtime::Tensor& output, const RunOptions& options) {
  runtime::Tensor result = output.clone();
  if (options.pool != "none") {
    if (output.rank() != 3) {
      throw UserError(fmt::format("--pool {} needs a model whose output is a sequence, but it returns {}", options.pool,
                                  output.type_string()));
    }
    const int64_t B = output.dim(0), n = output.dim(1), W = output.dim(2);
    runtime::Tensor pooled(runtime::DType::Float32, {B, W});
    const float* x = output.data<float>();
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t c = 0; c < W; ++c) {
        double value = 0;
        if (options.pool == "cls") {
          value = n > 0 ? x[b * n * W + c] : 0.0;
        } else {
          for (int64_t p = 0; p < n; ++p) value += x[(b * n + p) * W + c];
          value = n > 0 ? value / static_cast<double>(n) : 0.0;
        }
        pooled.data<float>()[b * W + c] = static_cast<float>(value);
      }
    }
    result = std::move(pooled);
  }
  if (options.normalize) {
    const int64_t W = result.dim(result.rank() - 1);
    float* x = result.data<float>();
    for (int64_t r = 0; r < result.numel() / W; ++r) {
      double squares = 0;
      for (int64_t c = 0; c < W; ++c) squares += static_cast<double>(x[r * W + c]) * x[r * W + c];
      const double norm = std::max(std::sqrt(squares), 1e-12);
      for (int64_t c = 0; c < W; ++c) x[r * W + c] = static_cast<float>(x[r * W + c] / norm);
    }
  }
  return result;
}

int run_model(const RunOptions& options) {
  const graph::Graph graph = load_model_graph(options.model);
  std::map<std::string, runtime::Tensor> owned;
  std::map<std::string, const runtime::Tensor*> inputs;
  if (!options.tokens.empty()) {
    if (graph.inputs.empty()) throw UserError(fmt::format("model '{}' has no input", graph.name));
    owned[graph.inputs.front()] = read_token_ids(options.tokens);
  }
  for (const std::string& binding : options.inputs) {
    auto [name, path] = split_binding("--input", binding);
    if (std::find(graph.inputs.begin(), graph.inputs.end(), name) == graph.inputs.end()) {
      throw UserError(fmt::format("--input {}: model '{}' has no input named '{}' (its inputs: {})", binding,
                                  graph.name, name, fmt::join(graph.inputs, ", ")));
    }
    owned[name] = read_token_ids(path);
  }
  for (const std::string& binding : options.tensors) {
    auto [name, path] = split_binding("--tensor", binding);
    runtime::Tensor t = runtime::read_npy(path);
    owned[name] = t.dtype() == runtime::DType::Int64 ? runtime::to_int32(t, path) : std::move(t);
  }
  for (const std::string& name : graph.inputs) {
    if (!owned.count(name)) {
      throw UserError(fmt::format("model '{}' needs input '{}': give it with {}", graph.name, name,
                                  name == graph.inputs.front() ? "--tokens IDS.npy" : "--input " + name + "=IDS.npy"));
    }
  }
  for (auto& [name, tensor] : owned) inputs[name] = &tensor;

  const runtime::ModelWeights weights = load_model_weights(options.model, graph);
  runtime::RunnerOptions runner_opts = runner_options(options.model);
  ProgressBar progress(fmt::format("{} forward", graph.name), static_cast<int64_t>(graph.nodes.size()));
  bool timing = false;  // timed repeats draw no progress
  runner_opts.on_progress = [&](int64_t done, int64_t) {
    if (!timing) progress.update(done);
  };
  runtime::ModelRunner runner(graph, weights, runner_opts);
  const auto start = std::chrono::steady_clock::now();
  const runtime::Tensor output = post_process(runner.forward(inputs), options);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (!options.out.empty()) runtime::write_npy(options.out, output);
  std::cout << fmt::format("model {}: output {} in {:.1f} ms{}\n", graph.name, output.type_string(), ms,
                           options.out.empty() ? "" : " -> " + options.out);
  if (options.repeat > 0) {
    // The call above warmed up (kernels compiled, buffers allocated); these are timed.
    timing = true;
    std::vector<double> times;
    for (int64_t r = 0; r < options.repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      runner.forward(inputs);
      times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    const double median = times[times.size() / 2];
    const runtime::Tensor& first = *inputs.at(graph.inputs.front());
    const int64_t B = first.dim(0), N = first.dim(1);
    nlohmann::json record = {{"model", graph.name},
                             {"B", B},
                             {"N", N},
                             {"dtype", options.model.dtype},
                             {"median_ms", median},
                             {"min_ms", times.front()},
                             {"runs", options.repeat},
                             {"sequences_per_s", 1000.0 * static_cast<double>(B) / median}};
    std::cout << record.dump() << "\n";
  }
  return 0;
}

}  // namespace

Command add_run_command(CLI::App& app) {
  auto options = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a model's forward pass on token ids, on the CPU");
  add_model_flags(cmd, options->model);
  cmd->add_option("--tokens", options->tokens, "Token ids of the model's first input, .npy [N] or [B, N] (integers)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--input", options->inputs, "Token ids of another input, NAME=IDS.npy (repeatable)");
  cmd->add_option("--tensor", options->tensors,
                  "A run-time tensor the attention patterns read, NAME=FILE.npy (e.g. segments=S.npy)");
  cmd->add_option("--out", options->out, "Write the output (float32 .npy)");
  cmd->add_option("--pool", options->pool, "Pool a sequence output over its positions: none, mean or cls")
      ->check(CLI::IsMember({"none", "mean", "cls"}));
  cmd->add_flag("--normalize", options->normalize, "Divide each output vector by its L2 norm");
  cmd->add_option("--repeat", options->repeat,
                  "Time this many more forward passes after the first and print a JSON line with the median")
      ->check(CLI::NonNegativeNumber);
  return {cmd, [options] { return run_model(*options); }};
}

}  // namespace tessera::cli
