// `tessera inputs`: writes random Q/K/V (and the run-time tensors a pattern reads) as .npy files, so that
// `tessera eval` can be tried, scripted and tested without Python.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/random_inputs.h"
#include "runtime/npy.h"

namespace tessera::cli {

namespace {

struct InputsOptions {
  int64_t batch = 1, heads = 1, seq = 0, head_dim = 0;
  std::optional<int64_t> kv_heads, keys, value_dim;
  int64_t rel_distances = 64;
  int64_t documents = 3;
  uint64_t seed = 0;
  std::string dir;
  std::string pattern;
  std::vector<std::string> specs;
};

void save(const InputsOptions& o, const std::string& name, const runtime::Tensor& t) {
  std::string path = (std::filesystem::path(o.dir) / (name + ".npy")).string();
  runtime::write_npy(path, t);
  std::cout << fmt::format("wrote {} {}\n", path, t.type_string());
}

int run_inputs(const InputsOptions& o) {
  int64_t kv_heads = o.kv_heads.value_or(o.heads);
  int64_t keys = o.keys.value_or(o.seq);
  int64_t value_dim = o.value_dim.value_or(o.head_dim);
  if (o.heads % kv_heads != 0) {
    throw UserError(fmt::format("--heads {} must be a multiple of --kv-heads {}", o.heads, kv_heads));
  }
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) throw UserError(fmt::format("cannot create directory '{}': {}", o.dir, ec.message()));

  ir::Pattern pattern;
  if (!o.pattern.empty()) pattern = instantiate_pattern(load_library(o.specs), o.pattern);
  RandomInputShape shape{.batch = o.batch,
                         .heads = o.heads,
                         .kv_heads = kv_heads,
                         .seq = o.seq,
                         .keys = keys,
                         .head_dim = o.head_dim,
                         .value_dim = value_dim,
                         .rel_distances = o.rel_distances,
                         .documents = o.documents};
  RandomInputs inputs = random_inputs(shape, o.pattern.empty() ? nullptr : &pattern, o.seed);
  save(o, "q", inputs.q);
  save(o, "k", inputs.k);
  save(o, "v", inputs.v);
  for (const auto& [name, tensor] : inputs.tensors) save(o, name, tensor);
  return 0;
}

}  // namespace

Command add_inputs_command(CLI::App& app) {
  auto o = std::make_shared<InputsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "inputs", "Write random float32 q.npy, k.npy, v.npy (and the run-time tensors --pattern reads) into --dir");
  cmd->add_option("--batch", o->batch, "B")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "H, query heads")->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", o->kv_heads, "Hkv, key/value heads (default H)")->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->seq, "N, queries")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", o->head_dim, "D")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--value-dim", o->value_dim, "Dv (default D)")->check(CLI::PositiveNumber);
  cmd->add_option("--pattern", o->pattern, "Also write the run-time tensors this pattern reads");
  cmd->add_option("--spec", o->specs, "Spec file(s) whose patterns --pattern may use");
  cmd->add_option("--rel-distances", o->rel_distances, "Size of free tensor dimensions such as R (default 64)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--documents", o->documents, "Documents per row of `segments` (default 3)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "Random seed (default 0)");
  cmd->add_option("--dir", o->dir, "Directory to write into")->required();
  return {cmd, [o] { return run_inputs(*o); }};
}

}  // namespace tessera::cli
