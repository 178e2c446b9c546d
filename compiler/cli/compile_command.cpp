// `tessera compile`: compiles a pattern ahead of time into a static library with a C header (see
// targets/cpu/aot_library.h), for one problem shape; the batch is chosen per call.
#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <optional>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/tune_cache_flags.h"
#include "targets/cpu/aot_library.h"
#include "targets/cuda/aot_library.h"

namespace tessera::cli {

namespace {

struct CompileOptions {
  std::string pattern, name, lib_name;
  std::vector<std::string> specs;
  std::string target = "cpu";
  std::string output_dir;
  int64_t heads = 0, seq = 0, head_dim = 0;
  std::optional<int64_t> kv_heads, keys, value_dim;
  std::vector<std::string> sizes;  // NAME=VALUE
  std::string dtype;               // empty: f32 on the CPU, bf16 on CUDA
  std::string schedule;
  TuneCacheFlags tune_cache;
};

// "causal & sliding_window(window=256)" -> "causal_sliding_window_window_256"
std::string identifier_from(const std::string& expression) {
  std::string id;
  for (char c : expression) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      id += c;
    } else if (!id.empty() && id.back() != '_') {
      id += '_';
    }
  }
  while (!id.empty() && id.back() == '_') id.pop_back();
  if (id.size() > 48) id.resize(48);
  if (id.empty() || std::isdigit(static_cast<unsigned char>(id[0]))) id = "pattern_" + id;
  return id;
}

// --target cuda:ARCH: the request's pattern, name and sizes, built by nvcc into a library with a CUDA launcher.
int run_compile_cuda(const CompileOptions& o, const cpu::AotRequest& common) {
  if (o.target == "cuda") throw UserError("--target cuda needs an architecture: cuda:sm_80 or cuda:sm_90a");
  cuda::CudaAotRequest request;
  try {
    request.arch = cuda::parse_cuda_arch(o.target.substr(5));
  } catch (const cuda::UnsupportedArch& e) {
    throw UserError(e.what());
  }
  if (o.dtype == "f32") throw UserError("--target cuda takes --dtype bf16 (the default there) or f16");
  if (!o.schedule.empty())
    throw UserError("--schedule is a CPU schedule; the CUDA target uses the tuning cache or its defaults");
  request.element = o.dtype == "f16" ? cuda::Element::Float16 : cuda::Element::BFloat16;
  request.pattern = common.pattern;
  request.name = common.name;
  request.sizes = common.sizes;
  request.tensor_sizes = common.tensor_sizes;
  // Schedules tuned on a GPU of this architecture (`tessera tune --target cuda` there) are baked in.
  const CudaScheduleChoice tuned =
      tuned_cuda_library_schedule(o.tune_cache, request.pattern, request.sizes, request.element, request.arch);
  request.schedule = tuned.schedule;
  request.schedule_source = tuned.source;
  request.output_dir = o.output_dir;
  request.nvcc = cuda::find_cuda_tool("nvcc");
  if (request.nvcc.empty()) throw UserError("--target cuda needs nvcc: install the CUDA toolkit or set CUDA_HOME");
  cuda::CudaAotResult result;
  try {
    result = cuda::write_cuda_aot_library(request);
  } catch (const std::invalid_argument& e) {
    throw UserError(e.what());
  }
  std::cout << fmt::format(
      "compiled {} for {} (schedule: {}, {})\n  library: {}\n  header:  {}\n  ptx:     {}\n  ptxas:   {}\n",
      request.pattern.name, cuda::arch_name(request.arch), cuda::describe(result.schedule), request.schedule_source,
      result.library, result.header, result.ptx, result.ptxas_log);
  std::cout << result.ptxas_report;
  return 0;
}

int run_compile(const CompileOptions& o) {
  if (o.pattern.empty() == o.name.empty()) throw UserError("give either --pattern EXPR or --spec FILE --name NAME");
  if (!o.name.empty() && o.specs.empty()) throw UserError("--name NAME needs the --spec FILE that declares NAME");
  sema::PatternLibrary library = load_library(o.specs);
  const std::string expression = o.pattern.empty() ? o.name : o.pattern;
  cpu::AotRequest request;
  request.pattern = instantiate_pattern(library, expression);
  request.name = o.lib_name.empty() ? identifier_from(expression) : o.lib_name;
  request.sizes.B = 1;
  request.sizes.H = o.heads;
  request.sizes.Hkv = o.kv_heads.value_or(o.heads);
  request.sizes.N = o.seq;
  request.sizes.M = o.keys.value_or(o.seq);
  request.sizes.D = o.head_dim;
  request.sizes.Dv = o.value_dim.value_or(o.head_dim);
  for (const std::string& binding : o.sizes) {
    auto eq = binding.find('=');
    int64_t value = 0;
    try {
      if (eq == std::string::npos || eq == 0) throw std::invalid_argument("");
      size_t used = 0;
      value = std::stoll(binding.substr(eq + 1), &used);
      if (used != binding.size() - eq - 1 || value < 1) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw UserError(fmt::format("--size expects NAME=POSITIVE_INTEGER, got '{}'", binding));
    }
    request.tensor_sizes[binding.substr(0, eq)] = value;
  }
  if (o.target == "cuda" || o.target.rfind("cuda:", 0) == 0) return run_compile_cuda(o, request);
  if (o.dtype == "f16") throw UserError("--dtype f16 applies to --target cuda; the CPU takes f32 or bf16");
  try {
    // The defaults of the instruction set compiled for: this machine's, or those that cpu-FEATURE-... names.
    // --schedule names what it changes; the rest are the defaults for this shape (a few queries' tile for decoding).
    request.schedule = cpu::parse_schedule(
        o.schedule,
        cpu::few_query_schedule(o.target == "cpu" ? cpu::host_default_schedule() : cpu::default_schedule(o.target),
                                request.sizes.N));
    cpu::validate_schedule(request.schedule);
  } catch (const std::invalid_argument& e) {
    throw UserError(e.what());
  }
  request.storage = o.dtype == "bf16" ? cpu::StorageType::BFloat16 : cpu::StorageType::Float32;
  request.schedule_source = o.schedule.empty() ? "default" : "--schedule";
  // The tuning cache holds schedules timed on this machine: they apply to libraries for its own features.
  if (o.schedule.empty() && o.target == "cpu") {
    if (auto tuned = load_tuned_schedules(o.tune_cache)) {
      cpu::TunedSchedules::Choice choice =
          tuned->choose(request.pattern, request.sizes, request.storage, request.schedule);
      request.schedule = choice.schedule;
      request.schedule_source = choice.source;
    }
  }
  request.target = o.target;
  request.output_dir = o.output_dir;
  if (const char* cxx = std::getenv("CXX"); cxx && *cxx) {
    request.cxx = cxx;
  } else {
    request.cxx = TESSERA_CXX_COMPILER;
  }
  cpu::AotResult result;
  try {
    result = cpu::write_aot_library(request);
  } catch (const std::invalid_argument& e) {
    throw UserError(e.what());
  }
  std::cout << fmt::format("compiled {} for {} (schedule: {})\n  library: {}\n  header:  {}\n", request.pattern.name,
                           result.halide_target, request.schedule_source, result.library, result.header);
  return 0;
}

}  // namespace

Command add_compile_command(CLI::App& app) {
  auto o = std::make_shared<CompileOptions>();
  CLI::App* cmd = app.add_subcommand(
      "compile",
      "Compile a pattern ahead of time into a static library and a C header (tessera_<name>), for one shape;\n"
      "the batch is chosen per call. The application links it without Tessera or Halide installed.");
  cmd->add_option("--pattern", o->pattern, "Pattern expression, e.g. 'causal & sliding_window(window=256)'");
  cmd->add_option("--spec", o->specs, "Spec file(s) whose patterns --pattern or --name may use");
  cmd->add_option("--name", o->name, "A pattern declared in --spec (its parameters' defaults apply)");
  cmd->add_option("--target", o->target,
                  "cpu (this machine's features, default) or cpu-FEATURE-... with Halide 14 feature names,\n"
                  "e.g. cpu-avx512_skylake or cpu-avx2-fma-f16c-sse41; cuda:sm_80 or cuda:sm_90a (nvcc builds the\n"
                  "library; the .ptx and ptxas's register report are written beside it)");
  cmd->add_option("-o,--output", o->output_dir, "Output directory (created)")->required();
  cmd->add_option("--lib-name", o->lib_name,
                  "Name of the exported function tessera_<NAME> (default: --name, or derived from --pattern)");
  cmd->add_option("--heads", o->heads, "H, query heads")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--kv-heads", o->kv_heads, "Hkv, key/value heads dividing H (default H)")->check(CLI::PositiveNumber);
  cmd->add_option("--seq", o->seq, "N, number of queries")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, number of keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--head-dim", o->head_dim, "D, query/key head dimension")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--value-dim", o->value_dim, "Dv, value head dimension (default D)")->check(CLI::PositiveNumber);
  cmd->add_option("--size", o->sizes,
                  "Size of a run-time tensor dimension that is not an attention size, NAME=VALUE (repeatable),\n"
                  "e.g. --size R=64 for relative's rel[H,R,D]");
  cmd->add_option("--dtype", o->dtype,
                  "Q, K, V as the library takes them: f32 (float; CPU default) or bf16 (uint16_t bits; CUDA default),\n"
                  "or f16 (CUDA only); fp32 accumulation")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--schedule", o->schedule,
                  "CPU schedule, e.g. 'block_q=128,block_k=64,chunk_k=128,vector_width=16' (the rest default for the "
                  "shape, a few queries' tile for decoding; the tuning cache is not read)");
  add_tune_cache_flags(cmd, o->tune_cache);
  return {cmd, [o] { return run_compile(*o); }};
}

}  // namespace tessera::cli
