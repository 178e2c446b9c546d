// `tessera inputs`: writes random Q/K/V (and the run-time tensors a pattern reads) as .npy files, so that
// `tessera eval` can be tried, scripted and tested without Python.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <random>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
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

runtime::Tensor random_normal(std::vector<int64_t> shape, std::mt19937_64& rng) {
  runtime::Tensor t(runtime::DType::Float32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  float* data = t.data<float>();
  for (int64_t e = 0; e < t.numel(); ++e) data[e] = normal(rng);
  return t;
}

// Document ids that never decrease along a row, as packed sequences have.
runtime::Tensor random_segments(int64_t batch, int64_t keys, int64_t documents, std::mt19937_64& rng) {
  runtime::Tensor t(runtime::DType::Int32, {batch, keys});
  std::uniform_int_distribution<int64_t> cut(0, keys);
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> cuts;
    for (int64_t d = 1; d < documents; ++d) cuts.push_back(cut(rng));
    std::sort(cuts.begin(), cuts.end());
    for (int64_t m = 0; m < keys; ++m) {
      t.data<int32_t>()[b * keys + m] =
          static_cast<int32_t>(std::upper_bound(cuts.begin(), cuts.end(), m) - cuts.begin());
    }
  }
  return t;
}

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

  std::mt19937_64 rng(o.seed);
  save(o, "q", random_normal({o.batch, o.heads, o.seq, o.head_dim}, rng));
  save(o, "k", random_normal({o.batch, kv_heads, keys, o.head_dim}, rng));
  save(o, "v", random_normal({o.batch, kv_heads, keys, value_dim}, rng));
  if (o.pattern.empty()) return 0;

  sema::PatternLibrary library = load_library(o.specs);
  ir::Pattern pattern = instantiate_pattern(library, o.pattern);
  for (const ir::TensorDecl& decl : pattern.inputs) {
    std::vector<int64_t> shape;
    for (const auto& dim : decl.dims) {
      if (dim == "B")
        shape.push_back(o.batch);
      else if (dim == "H")
        shape.push_back(o.heads);
      else if (dim == "Hkv")
        shape.push_back(kv_heads);
      else if (dim == "N")
        shape.push_back(o.seq);
      else if (dim == "M")
        shape.push_back(keys);
      else if (dim == "D")
        shape.push_back(o.head_dim);
      else if (dim == "Dv")
        shape.push_back(value_dim);
      else
        shape.push_back(o.rel_distances);  // a free size such as R
    }
    if (decl.elem_type == ir::ElemType::Float32) {
      save(o, decl.name, random_normal(shape, rng));
    } else if (decl.name == "segments" && shape.size() == 2) {
      save(o, decl.name, random_segments(shape[0], shape[1], o.documents, rng));
    } else {
      runtime::Tensor t(runtime::DType::Int32, shape);
      std::uniform_int_distribution<int32_t> bit(0, 1);
      for (int64_t e = 0; e < t.numel(); ++e) t.data<int32_t>()[e] = bit(rng);
      save(o, decl.name, t);
    }
  }
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
