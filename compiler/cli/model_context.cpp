#include "compiler/cli/model_context.h"

#include <fmt/format.h>

#include <iostream>
#include <map>

#include "compiler/cli/command_context.h"
#include "compiler/sema/model_elaboration.h"
#include "runtime/npy.h"

namespace tessera::cli {

void add_model_flags(CLI::App* cmd, ModelFlags& flags) {
  cmd->add_option("--model", flags.spec, "Spec file declaring the model (.attn)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--name", flags.name, "Which model of the spec (needed when it declares several)");
  cmd->add_option("--set", flags.sets, "Override a model parameter, PARAM=VALUE (repeatable)");
  cmd->add_option("--weights", flags.weights, "Weights (.safetensors; F32, F16 or BF16 tensors)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--naming", flags.naming,
                  "How the checkpoint names its tensors: bert, gpt2, llama (Hugging Face's LlamaForCausalLM), "
                  "tessera (the spec's own names) or auto (detected from the names)")
      ->check(CLI::IsMember({"auto", "tessera", "bert", "gpt2", "llama"}));
  cmd->add_option("--dtype", flags.dtype,
                  "Attention storage: f32, or bf16 (Q, K, V rounded to bf16, fp32 accumulation)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  cmd->add_option("--threads", flags.threads, "Threads for the attention kernels (0: every core)")
      ->check(CLI::NonNegativeNumber);
  add_tune_cache_flags(cmd, flags.tune_cache);
}

graph::Graph load_model_graph(const ModelFlags& flags) {
  sema::PatternLibrary library = load_library({flags.spec});
  std::map<std::string, std::string> overrides;
  for (const std::string& binding : flags.sets) {
    const size_t eq = binding.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == binding.size()) {
      throw UserError(fmt::format("--set expects PARAM=VALUE, got '{}'", binding));
    }
    overrides[binding.substr(0, eq)] = binding.substr(eq + 1);
  }
  std::string name = flags.name;
  if (name.empty()) {
    const std::vector<std::string> models = library.model_names();
    if (models.size() != 1) {
      throw UserError(fmt::format("{} declares {} models{}: choose one with --name", flags.spec, models.size(),
                                  models.empty() ? "" : fmt::format(" ({})", fmt::join(models, ", "))));
    }
    name = models.front();
  }
  dsl::Diagnostics diags;
  std::optional<graph::Graph> graph = sema::elaborate_model(library, name, overrides, diags);
  diags.print(std::cerr);
  if (!graph || diags.has_errors()) throw CommandFailed{1};
  return std::move(*graph);
}

runtime::ModelWeights load_model_weights(const ModelFlags& flags, const graph::Graph& graph) {
  std::optional<runtime::CheckpointNaming> naming;
  if (flags.naming != "auto") naming = runtime::parse_checkpoint_naming(flags.naming);
  runtime::ModelWeights weights = runtime::ModelWeights::load(flags.weights, graph, naming);
  if (!weights.extra().empty()) {
    const auto& extra = weights.extra();
    const size_t shown = std::min<size_t>(extra.size(), 6);
    std::cerr << fmt::format("tessera: warning: {} tensor{} in {} not used by model '{}': {}{}\n", extra.size(),
                             extra.size() == 1 ? "" : "s", flags.weights, graph.name,
                             fmt::join(extra.begin(), extra.begin() + static_cast<std::ptrdiff_t>(shown), ", "),
                             extra.size() > shown ? ", ..." : "");
  }
  return weights;
}

runtime::RunnerOptions runner_options(const ModelFlags& flags) {
  runtime::RunnerOptions options;
  options.attention.storage = flags.dtype == "bf16" ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32;
  options.attention.schedule.threads = flags.threads;
  options.attention.tuned = load_tuned_schedules(flags.tune_cache);
  return options;
}

runtime::Tensor read_token_ids(const std::string& path) {
  const runtime::Tensor ids = runtime::read_npy(path);
  if (ids.dtype() == runtime::DType::Float32) {
    throw UserError(fmt::format("{}: token ids must be integers, got {}", path, ids.type_string()));
  }
  if (ids.rank() != 1 && ids.rank() != 2) {
    throw UserError(fmt::format("{}: token ids are {}, expected [N] or [B, N]", path, ids.type_string()));
  }
  // Nothing to run: the runner would fail deep inside (an empty interval, a zero batch in attention).
  if (ids.numel() == 0) {
    throw UserError(fmt::format("{}: no token ids ({}); expected at least one sequence of at least one token", path,
                                ids.type_string()));
  }
  runtime::Tensor ids32 = runtime::to_int32(ids, path);
  if (ids.rank() == 2) return ids32;
  runtime::Tensor batch(runtime::DType::Int32, {1, ids.dim(0)});
  std::copy_n(ids32.data<int32_t>(), ids.dim(0), batch.data<int32_t>());
  return batch;
}

}  // namespace tessera::cli
