// `tessera eval`: runs one pattern's attention on .npy inputs with a chosen target.
#include <fmt/format.h>

#include <iostream>
#include <map>
#include <optional>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/tune_cache_flags.h"
#include "runtime/npy.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cuda/cuda_attention.h"
#include "targets/reference/reference_attention.h"

namespace tessera::cli {

namespace {

struct EvalOptions {
  std::string pattern;
  std::vector<std::string> specs;
  std::string q_path, k_path, v_path, out_path;
  std::string rel_path, segments_path;
  std::vector<std::string> inputs;  // NAME=FILE.npy
  std::optional<double> scale;
  std::string target = "cpu";  // the CPU is the default target everywhere
  std::string dtype;           // empty: f32 on the CPU, bf16 on CUDA
  TuneCacheFlags tune_cache;
};

// Loads a run-time tensor; int64 ids (numpy's default integer) become int32 when the pattern wants int32.
runtime::Tensor load_runtime_tensor(const ir::Pattern& pattern, const std::string& name, const std::string& path) {
  runtime::Tensor tensor = runtime::read_npy(path);
  const ir::TensorDecl* decl = pattern.input(name);
  if (decl && decl->elem_type == ir::ElemType::Int32 && tensor.dtype() == runtime::DType::Int64) {
    return runtime::to_int32(tensor, path);
  }
  return tensor;
}

int run_eval(const EvalOptions& options) {
  if (!options.dtype.empty() && options.target == "reference") {
    throw UserError("--dtype applies to --target cpu and cuda; the reference runs in float64");
  }
  if (options.dtype == "f16" && options.target != "cuda") {
    throw UserError("--dtype f16 applies to --target cuda; the CPU stores f32 or bf16");
  }
  if (options.dtype == "f32" && options.target == "cuda") {
    throw UserError("--target cuda runs on tensor cores in bf16 (default) or f16: float32 inputs are converted");
  }
  sema::PatternLibrary library = load_library(options.specs);
  ir::Pattern pattern = instantiate_pattern(library, options.pattern);

  std::map<std::string, std::string> tensor_paths;
  if (!options.rel_path.empty()) tensor_paths["rel"] = options.rel_path;
  if (!options.segments_path.empty()) tensor_paths["segments"] = options.segments_path;
  for (const auto& binding : options.inputs) {
    auto eq = binding.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == binding.size()) {
      throw UserError(fmt::format("--input expects NAME=FILE.npy, got '{}'", binding));
    }
    tensor_paths[binding.substr(0, eq)] = binding.substr(eq + 1);
  }

  runtime::Tensor q = runtime::read_npy(options.q_path);
  runtime::Tensor k = runtime::read_npy(options.k_path);
  runtime::Tensor v = runtime::read_npy(options.v_path);
  std::map<std::string, runtime::Tensor> extra;
  for (const auto& [name, path] : tensor_paths) {
    if (!pattern.input(name)) {
      std::cerr << fmt::format("tessera: warning: pattern '{}' does not read '{}'; ignoring {}\n", pattern.name, name,
                               path);
      continue;
    }
    extra.emplace(name, load_runtime_tensor(pattern, name, path));
  }

  reference::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  for (const auto& [name, tensor] : extra) inputs.tensors[name] = &tensor;
  inputs.scale = options.scale;
  runtime::Tensor out = [&] {
    if (options.target == "reference") return reference::attention(pattern, inputs);
    if (options.target == "cuda") {
      cuda::CudaOptions cuda_options;
      if (options.dtype == "f16") cuda_options.attention.element = cuda::Element::Float16;
      cuda_options.attention.schedule =
          tuned_cuda_schedule(options.tune_cache, pattern, inputs, cuda_options.attention.element).schedule;
      return cuda::attention(pattern, inputs, cuda_options);
    }
    cpu::CpuOptions cpu_options;
    if (options.dtype == "bf16") cpu_options.storage = cpu::StorageType::BFloat16;
    cpu_options.tuned = load_tuned_schedules(options.tune_cache);
    // The defaults' query tile shrinks for a few queries (decoding).
    cpu_options.schedule = cpu::few_query_schedule(cpu_options.schedule, q.shape().size() == 4 ? q.shape()[2] : 0);
    return cpu::attention(pattern, inputs, cpu_options);
  }();
  runtime::write_npy(options.out_path, out);
  return 0;
}

}  // namespace

Command add_eval_command(CLI::App& app) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval",
      "Compute attention with a pattern on .npy inputs: Q [B,H,N,D], K [B,Hkv,M,D], V [B,Hkv,M,Dv] (float32),\n"
      "out [B,H,N,Dv]. Query row i sits at key position i + M - N.");
  cmd->add_option("--pattern", options->pattern, "Pattern expression, e.g. 'causal & sliding_window(window=256)'")
      ->required();
  cmd->add_option("--spec", options->specs, "Spec file(s) whose patterns the expression may use");
  cmd->add_option("--q", options->q_path, "Queries, float32 [B,H,N,D]")->required();
  cmd->add_option("--k", options->k_path, "Keys, float32 [B,Hkv,M,D]")->required();
  cmd->add_option("--v", options->v_path, "Values, float32 [B,Hkv,M,Dv]")->required();
  cmd->add_option("--rel", options->rel_path, "Relative embeddings for `relative`, float32 [H,R,D]");
  cmd->add_option("--segments", options->segments_path, "Document ids for `document`, int32 or int64 [B,M]");
  cmd->add_option("--input", options->inputs, "Any declared run-time tensor, as NAME=FILE.npy (repeatable)");
  cmd->add_option("--scale", options->scale, "Logit scale (default 1/sqrt(D))");
  cmd->add_option("--target", options->target, "Where to run: reference (float64 oracle), cpu (default), cuda")
      ->check(CLI::IsMember({"reference", "cpu", "cuda"}));
  cmd->add_option("--dtype", options->dtype,
                  "Storage of Q, K, V (fp32 accumulation): for --target cpu f32 (default) or bf16; for --target cuda\n"
                  "bf16 (default) or f16. The float32 inputs are rounded to the type.")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--out", options->out_path, "Output .npy, float32 [B,H,N,Dv]")->required();
  add_tune_cache_flags(cmd, options->tune_cache);
  return {cmd, [options] { return run_eval(*options); }};
}

}  // namespace tessera::cli
