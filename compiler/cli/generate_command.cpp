// `tessera generate`: autoregressive decoding with a KV cache from a prompt of token ids.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/model_context.h"
#include "compiler/cli/progress_bar.h"
#include "runtime/model/generation.h"
#include "runtime/npy.h"

namespace tessera::cli {

namespace {

struct GenerateOptions {
  ModelFlags model;
  std::string prompt;
  std::vector<std::string> inputs;  // NAME=IDS.npy: fixed inputs (an encoder–decoder's source)
  int64_t max_new = 16;
  double temperature = 0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  std::string out;
};

// The model input a node's positions come from: its first operand followed back to an `input`.
const graph::Node* source_input(const graph::Graph& graph, const graph::Node& node) {
  const graph::Node* at = &node;
  while (at->op != graph::OpKind::Input) {
    if (at->inputs.empty()) return nullptr;
    at = &graph.nodes.at(static_cast<size_t>(at->inputs.front()));
  }
  return at;
}

// Decoding feeds the prompt and every generated token but the last through the streamed input; a learned
// position table on it must hold them all. Checked before any work, in terms of the flags.
void check_positions(const graph::Graph& graph, const std::string& streamed, int64_t prompt_length, int64_t max_new) {
  if (max_new == 0) return;  // nothing is decoded
  const int64_t needed = prompt_length + max_new - 1;
  for (const graph::Node& node : graph.nodes) {
    if (node.op != graph::OpKind::LearnedPositions || node.length >= needed) continue;
    const graph::Node* input = source_input(graph, node);
    if (input == nullptr || input->input_name != streamed) continue;
    if (prompt_length > node.length) {
      throw UserError(fmt::format("the prompt has {} tokens, but learned_positions '{}' of model '{}' has {} positions",
                                  prompt_length, node.name, graph.name, node.length));
    }
    throw UserError(fmt::format(
        "a prompt of {} token{} and --max-new {} need {} positions, but learned_positions '{}' of model '{}' has {} "
        "(at most --max-new {} with this prompt)",
        prompt_length, prompt_length == 1 ? "" : "s", max_new, needed, node.name, graph.name, node.length,
        node.length - prompt_length + 1));
  }
}

int run_generate(const GenerateOptions& options) {
  const graph::Graph graph = load_model_graph(options.model);
  std::map<std::string, runtime::Tensor> owned;
  for (const std::string& binding : options.inputs) {
    const size_t eq = binding.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == binding.size()) {
      throw UserError(fmt::format("--input expects NAME=IDS.npy, got '{}'", binding));
    }
    // A model input, or an int tensor an attention pattern reads (document's segments, int32 [B, M] like ids).
    const std::string name = binding.substr(0, eq);
    const bool is_input = std::find(graph.inputs.begin(), graph.inputs.end(), name) != graph.inputs.end();
    const bool is_tensor = std::any_of(graph.runtime_tensors.begin(), graph.runtime_tensors.end(),
                                       [&](const ir::TensorDecl& decl) { return decl.name == name; });
    if (!is_input && !is_tensor) {
      throw UserError(fmt::format("--input {}: model '{}' has no input named '{}' (its inputs: {})", binding,
                                  graph.name, name, fmt::join(graph.inputs, ", ")));
    }
    owned[name] = read_token_ids(binding.substr(eq + 1));
  }
  // The prompt feeds the one input not given with --input (an encoder–decoder's target).
  std::vector<std::string> streamed;
  for (const std::string& name : graph.inputs) {
    if (!owned.count(name)) streamed.push_back(name);
  }
  if (streamed.size() != 1) {
    throw UserError(
        streamed.empty()
            ? fmt::format("every input of model '{}' ({}) is given with --input: leave out the one the prompt feeds",
                          graph.name, fmt::join(graph.inputs, ", "))
            : fmt::format("model '{}' has inputs {}: the prompt feeds one, give the others with --input NAME=IDS.npy "
                          "(e.g. --input {}=IDS.npy)",
                          graph.name, fmt::join(streamed, ", "), streamed.front()));
  }
  std::map<std::string, const runtime::Tensor*> fixed;
  for (auto& [name, tensor] : owned) fixed[name] = &tensor;
  const runtime::Tensor prompt = read_token_ids(options.prompt);
  for (const auto& [name, tensor] : owned) {
    if (tensor.dim(0) != prompt.dim(0)) {
      throw UserError(fmt::format("--input {} has batch {}, but the prompt {} has batch {}", name, tensor.dim(0),
                                  options.prompt, prompt.dim(0)));
    }
  }
  check_positions(graph, streamed.front(), prompt.dim(1), options.max_new);

  const runtime::ModelWeights weights = load_model_weights(options.model, graph);
  runtime::ModelRunner runner(graph, weights, runner_options(options.model));
  runtime::GenerationOptions gen;
  gen.max_new_tokens = options.max_new;
  gen.temperature = options.temperature;
  gen.top_k = options.top_k;
  gen.seed = options.seed;
  ProgressBar progress(fmt::format("{} generate", graph.name), options.max_new);
  // When each token was done: the first comes from the prompt's pass, the second from the first decoding step;
  // both compile their kernels on first use, so the steady rate is taken after them.
  std::vector<std::chrono::steady_clock::time_point> done_at;
  gen.on_token = [&](int64_t done, int64_t) {
    done_at.push_back(std::chrono::steady_clock::now());
    progress.update(done);
  };
  const auto start = std::chrono::steady_clock::now();
  const runtime::Tensor tokens = runtime::generate(runner, prompt, gen, fixed);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t B = tokens.dim(0), total = tokens.dim(1), N = prompt.dim(1);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int32_t> generated(tokens.data<int32_t>() + b * total + N, tokens.data<int32_t>() + (b + 1) * total);
    std::cout << fmt::format("{}\n", fmt::join(generated, " "));
  }
  std::string steady;
  if (done_at.size() > 2) {
    const double rest = std::chrono::duration<double>(done_at.back() - done_at[1]).count();
    const auto steps = static_cast<double>(done_at.size() - 2);
    steady = fmt::format("; after the first decoding step {:.1f} tokens/s, {:.1f} ms per step",
                         rest > 0 ? steps * static_cast<double>(B) / rest : 0.0, 1e3 * rest / steps);
  }
  std::cerr << fmt::format("generated {} token{} x {} in {:.2f} s ({:.1f} tokens/s, prompt of {} included{})\n",
                           options.max_new, options.max_new == 1 ? "" : "s", B, seconds,
                           seconds > 0 ? static_cast<double>(options.max_new * B) / seconds : 0.0, N, steady);
  if (!options.out.empty()) runtime::write_npy(options.out, tokens);
  return 0;
}

}  // namespace

Command add_generate_command(CLI::App& app) {
  auto options = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens from a prompt with a decoder model (KV cache)");
  add_model_flags(cmd, options->model);
  cmd->add_option("--prompt", options->prompt, "Prompt token ids, .npy [N] or [B, N] (integers)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--input", options->inputs, "A fixed input, NAME=IDS.npy (an encoder-decoder's source)");
  cmd->add_option("--max-new", options->max_new, "Tokens to generate")->required()->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", options->temperature, "0: greedy (default); > 0: sample softmax(logits / T)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", options->top_k, "Sample only among the k most likely tokens (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", options->seed, "Seed of the sampler (same seed, same tokens)");
  cmd->add_option("--out", options->out, "Write prompt + generated ids, int32 [B, N + max-new] .npy");
  return {cmd, [options] { return run_generate(*options); }};
}

}  // namespace tessera::cli
