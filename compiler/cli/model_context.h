// What the model commands (`run`, `embed`, `generate`) share: the flags that name a model and its weights, and
// loading both with errors reported the CLI's way.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "compiler/cli/tune_cache_flags.h"
#include "compiler/graph/graph.h"
#include "runtime/model/model_runner.h"
#include "runtime/model/model_weights.h"

namespace tessera::cli {

struct ModelFlags {
  std::string spec;               // --model SPEC
  std::string name;               // --name NAME (optional when the spec declares one model)
  std::vector<std::string> sets;  // --set PARAM=VALUE
  std::string weights;            // --weights FILE.safetensors
  std::string naming = "auto";    // --naming auto|tessera|bert|gpt2
  std::string dtype = "f32";      // --dtype f32|bf16 (attention storage)
  int64_t threads = 0;            // --threads (attention kernels; 0 = all cores)
  TuneCacheFlags tune_cache;      // --tune-cache FILE, --no-tune-cache
};

void add_model_flags(CLI::App* cmd, ModelFlags& flags);

// Elaborates the model; diagnostics to stderr and CommandFailed on errors.
graph::Graph load_model_graph(const ModelFlags& flags);
// Reads and checks the weights; prints a warning listing checkpoint tensors the model does not use.
runtime::ModelWeights load_model_weights(const ModelFlags& flags, const graph::Graph& graph);
runtime::RunnerOptions runner_options(const ModelFlags& flags);

// Token ids from a .npy file: [N] is one sequence (batch 1), [B, N] a batch; any integer dtype, returned int32.
// A float or higher-rank file is a UserError naming it.
runtime::Tensor read_token_ids(const std::string& path);

}  // namespace tessera::cli
