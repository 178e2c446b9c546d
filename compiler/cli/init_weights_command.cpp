// `tessera init-weights`: a .safetensors file of random weights for a model spec — for the architectures that
// have no packaged checkpoint (demos, benchmarks, tests of the runtime on a real file).
#include <fmt/format.h>

#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/model_context.h"
#include "runtime/model/random_weights.h"
#include "runtime/safetensors.h"

namespace tessera::cli {

namespace {

struct InitWeightsOptions {
  ModelFlags model;
  std::string out;
  uint64_t seed = 0;
};

int run_init_weights(const InitWeightsOptions& options) {
  const graph::Graph graph = load_model_graph(options.model);
  const std::map<std::string, runtime::Tensor> weights = runtime::random_weights(graph, options.seed);
  std::map<std::string, const runtime::Tensor*> views;
  int64_t parameters = 0;
  for (const auto& [name, tensor] : weights) {
    views[name] = &tensor;
    parameters += tensor.numel();
  }
  runtime::write_safetensors(
      options.out, views,
      {{"format", "pt"}, {"tessera.model", graph.name}, {"tessera.seed", std::to_string(options.seed)}});
  std::cout << fmt::format("wrote {}: {} tensors, {} parameters of model '{}' (random, seed {})\n", options.out,
                           weights.size(), parameters, graph.name, options.seed);
  return 0;
}

}  // namespace

Command add_init_weights_command(CLI::App& app) {
  auto options = std::make_shared<InitWeightsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "init-weights", "Write random weights of a model's declared shapes (.safetensors, Tessera naming)");
  cmd->add_option("--model", options->model.spec, "Spec file declaring the model (.attn)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--name", options->model.name, "Which model of the spec (needed when it declares several)");
  cmd->add_option("--set", options->model.sets, "Override a model parameter, PARAM=VALUE (repeatable)");
  cmd->add_option("-o,--out", options->out, "The .safetensors file to write")->required();
  cmd->add_option("--seed", options->seed, "Random seed (default 0)");
  return {cmd, [options] { return run_init_weights(*options); }};
}

}  // namespace tessera::cli
