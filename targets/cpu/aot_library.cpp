#include "targets/cpu/aot_library.h"

#include <Halide.h>
#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>

#include "compiler/ir/printer.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/common/kernel_symbols.h"
#include "targets/common/tensor_index_bounds.h"
#include "targets/cpu/attention_driver_text.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/execution_plan.h"

namespace tessera::cpu {

namespace {

namespace fs = std::filesystem;

bool is_c_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
}

void run_step(const std::string& command, const std::string& what) {
  if (std::system(command.c_str()) != 0) {
    throw std::runtime_error(fmt::format("{} failed; the command was:\n  {}", what, command));
  }
}

std::string int_array(const std::string& name, const std::vector<int32_t>& values) {
  std::string out = fmt::format("const int32_t {}[] = {{", name);
  for (size_t n = 0; n < values.size(); ++n) out += fmt::format("{}{}", n % 24 == 0 ? "\n    " : "", values[n]) + ",";
  return out + "};\n";
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Run-time tensors are indexed in their batch dimension by exactly `b`, so any batch a call chooses stays in
// bounds; every other index is proven for all batches below 2^31 by interval analysis.
void check_tensor_indices(const AotRequest& r, const std::map<std::string, std::vector<int64_t>>& shapes) {
  std::function<void(const ir::Expr&)> visit = [&](const ir::Expr& e) {
    if (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ) {
      const ir::TensorDecl* decl = r.pattern.input(e->name);
      for (size_t d = 0; decl && d < e->operands.size() && d < decl->dims.size(); ++d) {
        const ir::Expr& index = e->operands[d];
        if (decl->dims[d] == "B" && !(index->kind == ir::Kind::Var && index->var == ir::Var::Batch)) {
          throw std::invalid_argument(fmt::format(
              "tensor '{}' is indexed in its batch dimension by '{}', not by b: a library compiled ahead of time "
              "chooses the batch per call and cannot prove that index in bounds",
              e->name, ir::to_string(index)));
        }
      }
    }
    for (const auto& o : e->operands) visit(o);
  };
  visit(r.pattern.mask);
  visit(r.pattern.score);
  ir::AttentionSizes any_batch = r.sizes;
  any_batch.B = std::numeric_limits<int32_t>::max();
  std::map<std::string, std::vector<int64_t>> any_batch_shapes = shapes;
  for (const ir::TensorDecl& decl : r.pattern.inputs) {
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      if (decl.dims[d] == "B") any_batch_shapes[decl.name][d] = any_batch.B;
    }
  }
  std::string unproven;
  if (!targets::tensor_indices_proven(r.pattern, any_batch, any_batch_shapes, &unproven)) {
    throw std::invalid_argument(
        fmt::format("cannot prove every index of {} in bounds for these sizes; a library compiled ahead of time "
                    "does not check indices at run time (use `tessera eval`, which does)",
                    unproven));
  }
}

// Shapes of the run-time tensors with the batch dimension as 1 (the library substitutes the call's batch).
std::map<std::string, std::vector<int64_t>> tensor_shapes(const AotRequest& r) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ir::TensorDecl& decl : r.pattern.inputs) {
    std::vector<int64_t>& shape = shapes[decl.name];
    for (const std::string& dim : decl.dims) {
      if (dim == "B") {
        shape.push_back(1);
      } else if (ir::is_attention_size(dim)) {
        shape.push_back(r.sizes.size(dim));
      } else if (auto value = r.tensor_sizes.find(dim); value != r.tensor_sizes.end()) {
        shape.push_back(value->second);
      } else {
        throw std::invalid_argument(fmt::format(
            "tensor '{}' has dimension '{}', whose size the library must know: give it with --size {}=VALUE", decl.name,
            dim, dim));
      }
    }
  }
  return shapes;
}

struct Names {
  std::string prefix;  // tessera_<name>
  std::string macro;   // TESSERA_<NAME>
};

std::string tensor_type(const ir::TensorDecl& decl) {
  return decl.elem_type == ir::ElemType::Int32 ? "int32_t" : "float";
}

std::string tensor_shape_text(const ir::TensorDecl& decl, const std::vector<int64_t>& shape) {
  std::vector<std::string> dims;
  for (size_t d = 0; d < decl.dims.size(); ++d) {
    dims.push_back(decl.dims[d] == "B" ? "batch" : fmt::format("{}={}", decl.dims[d], shape[d]));
  }
  return fmt::format("[{}]", fmt::join(dims, ", "));
}

std::string header_text(const AotRequest& r, const Names& n, const ExecutionPlan& execution,
                        const std::map<std::string, std::vector<int64_t>>& shapes, const std::string& target) {
  const ir::AttentionSizes& s = r.sizes;
  std::string plan;
  for (const planner::Component& c : execution.plan.components) plan += fmt::format(" *   - {}\n", c.description);
  std::string tensor_params, tensor_docs;
  for (const auto& [name, shape] : shapes) {  // by name: the order of the _v array too
    const ir::TensorDecl& decl = *r.pattern.input(name);
    tensor_params += fmt::format("const {}* {}, ", tensor_type(decl), name);
    tensor_docs += fmt::format(" *   {:<9}{} {}, C order (a run-time input of the pattern)\n", name, tensor_type(decl),
                               tensor_shape_text(decl, shape));
  }
  std::string text = fmt::format(
      R"header(/* {prefix}.h: generated by `tessera compile`; do not edit.
 *
 * Attention with the pattern
 *   {pattern}
 * compiled ahead of time for the CPU (Halide target {target}).
 * Schedule ({schedule_source}): {schedule}.
 * Shapes are fixed at compile time, except the batch:
 *   H={H} query heads, Hkv={Hkv} key/value heads, N={N} queries, M={M} keys, D={D}, Dv={Dv}.
 * Query row i sits at key position i + M - N. The plan baked into the library:
{plan} *
 * Link the static library with the C++ runtime and threads, e.g.
 *   cc app.c -I DIR DIR/lib{prefix}.a -lstdc++ -lpthread -ldl -lm
 */
#ifndef {macro}_H
#define {macro}_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#ifndef TESSERA_OK
#define TESSERA_OK 0
#define TESSERA_ERROR_INVALID_ARGUMENT 1 /* a null pointer, batch < 1, threads < 0, a non-finite scale */
#define TESSERA_ERROR_TOO_LARGE 2        /* batch * H * N * D (or M, Dv) does not fit in 32 bits */
#define TESSERA_ERROR_KERNEL 3           /* a kernel reported an error (printed to stderr by Halide) */
#define TESSERA_ERROR_OUT_OF_MEMORY 4
#define TESSERA_ERROR_INTERNAL 5
#endif

#define {macro}_HEADS {H}
#define {macro}_KV_HEADS {Hkv}
#define {macro}_QUERIES {N}
#define {macro}_KEYS {M}
#define {macro}_HEAD_DIM {D}
#define {macro}_VALUE_DIM {Dv}
#define {macro}_TENSOR_COUNT {tensor_count}
#define {macro}_BF16 {bf16}

/* out = softmax(pattern(scale * q k^T)) v, in float32 with float32 accumulation.
 *   q        {qkv} [batch, H, N, D], C order{qkv_note}
 *   k        {qkv} [batch, Hkv, M, D]
 *   v        {qkv} [batch, Hkv, M, Dv]
{tensor_docs} *   out      float [batch, H, N, Dv], written; a row with no allowed key is zeros
 *   batch    >= 1
 *   scale    the logit scale; 0 selects 1/sqrt(D)
 *   threads  worker threads; 0 uses every hardware thread
 * Returns TESSERA_OK or a TESSERA_ERROR_* code. Calls may run concurrently. */
int {prefix}(const {qkv}* q, const {qkv}* k, const {qkv}* v, {tensor_params}float* out, int64_t batch,
{indent}float scale, int32_t threads);

/* The same with the run-time tensors as an array, in the order listed above ({tensor_count} entries; may be
 * NULL when there are none): one signature for every pattern. */
int {prefix}_v(const {qkv}* q, const {qkv}* k, const {qkv}* v, const void* const* tensors, float* out,
{indent}  int64_t batch, float scale, int32_t threads);

/* A short description of an error code. */
const char* {prefix}_error_string(int code);

#ifdef __cplusplus
}}
#endif

#endif
)header",
      fmt::arg("prefix", n.prefix), fmt::arg("macro", n.macro), fmt::arg("pattern", r.pattern.name),
      fmt::arg("qkv", r.storage == StorageType::BFloat16 ? "uint16_t" : "float"),
      fmt::arg("bf16", r.storage == StorageType::BFloat16 ? 1 : 0),
      fmt::arg("qkv_note", r.storage == StorageType::BFloat16
                               ? " (bf16: the upper 16 bits of each float32, rounded to nearest even)"
                               : ""),
      fmt::arg("target", target), fmt::arg("schedule", describe(r.schedule)),
      fmt::arg("schedule_source", r.schedule_source), fmt::arg("H", s.H), fmt::arg("Hkv", s.Hkv), fmt::arg("N", s.N),
      fmt::arg("M", s.M), fmt::arg("D", s.D), fmt::arg("Dv", s.Dv), fmt::arg("plan", plan),
      fmt::arg("tensor_count", r.pattern.inputs.size()), fmt::arg("tensor_docs", tensor_docs),
      fmt::arg("tensor_params", tensor_params), fmt::arg("indent", std::string(n.prefix.size() + 5, ' ')));
  return text;
}

// The kernels' C signatures, in the order of kernel_arguments().
std::string kernel_prototype(const std::string& fn, const ir::Pattern& pattern,
                             const std::vector<std::string>& symbols) {
  std::string args =
      "halide_buffer_t* q, halide_buffer_t* k, halide_buffer_t* v, halide_buffer_t* acc_in, halide_buffer_t* max_in, "
      "halide_buffer_t* sum_in, halide_buffer_t* full_chunks, halide_buffer_t* partial_chunks, "
      "halide_buffer_t* full_counts, halide_buffer_t* partial_counts, int32_t max_full, int32_t max_partial, "
      "int32_t heads, int32_t group, int32_t n_queries, int32_t m_keys, int32_t key_origin, float scale";
  std::set<std::string> names;
  for (const ir::TensorDecl& t : pattern.inputs) names.insert(t.name);
  for (const std::string& t : names) args += fmt::format(", halide_buffer_t* tensor_{}", t);
  for (const std::string& s : symbols) args += fmt::format(", int32_t symbol_{}", s);
  args += ", halide_buffer_t* acc_out, halide_buffer_t* max_out, halide_buffer_t* sum_out";
  return fmt::format("int {}({});\n", fn, args);
}

std::string kernel_call(const std::string& fn, size_t tensors, size_t symbols) {
  std::string args =
      "in(c.q), in(c.k), in(c.v), in(c.acc_in), in(c.max_in), in(c.sum_in), in(c.full_chunks), "
      "in(c.partial_chunks), in(c.full_counts), in(c.partial_counts), c.max_full, c.max_partial, "
      "c.heads, c.group, c.n_queries, c.m_keys, c.key_origin, c.scale";
  for (size_t t = 0; t < tensors; ++t) args += fmt::format(", in(c.tensors[{}])", t);
  for (size_t s = 0; s < symbols; ++s) args += fmt::format(", c.symbols[{}]", s);
  args += ", c.acc_out, c.max_out, c.sum_out";
  return fmt::format("  return {}({});\n", fn, args);
}

std::string source_text(const AotRequest& r, const Names& n, const ExecutionPlan& execution,
                        const std::vector<tessera_cpu_driver::ComponentPlan>& components,
                        const std::map<std::string, std::vector<int64_t>>& shapes) {
  const ir::AttentionSizes& s = r.sizes;
  std::string prototypes, tables, plan, kernels, kernel_list, guarded_list;
  for (size_t c = 0; c < components.size(); ++c) {
    const std::vector<std::string> symbols = targets::kernel_symbols(execution.plan.components[c].local);
    for (const char* variant : {"", "_guarded"}) {
      const std::string fn = fmt::format("{}_component{}{}", n.prefix, c, variant);
      prototypes += kernel_prototype(fn, r.pattern, symbols);
      kernels += fmt::format("int kernel{}{}(const tcd::KernelCall& c) {{\n{}}}\n\n", c, variant,
                             kernel_call(fn, r.pattern.inputs.size(), symbols.size()));
    }
    kernel_list += fmt::format("kernel{}, ", c);
    guarded_list += fmt::format("kernel{}_guarded, ", c);
    const tessera_cpu_driver::ComponentPlan& component = components[c];
    plan += fmt::format("  {{\n    tcd::ComponentPlan& c = components.emplace_back();\n    c.kernel = {};\n", c);
    for (size_t v = 0; v < component.views.size(); ++v) {
      const ViewTables& t = execution.tables[c][v];
      const std::string id = fmt::format("c{}v{}", c, v);
      tables += int_array(id + "_full", t.full) + int_array(id + "_partial", t.partial) +
                int_array(id + "_full_counts", t.full_counts) + int_array(id + "_partial_counts", t.partial_counts);
      const tessera_cpu_driver::ViewPlan& view = component.views[v];
      plan += fmt::format(
          "    c.views.push_back({{{{{}, {}, {}, {}}}, {{{}, {}, {}, {}}}, {{{id}_full, {id}_partial, "
          "{id}_full_counts, "
          "{id}_partial_counts, {}, {}, {}}}}});\n",
          view.queries.origin, view.queries.stride, view.queries.count, view.queries.group, view.keys.origin,
          view.keys.stride, view.keys.count, view.keys.group, t.max_full, t.max_partial, t.tile_rows,
          fmt::arg("id", id));
    }
    for (const std::vector<size_t>& wave : component.waves)
      plan += fmt::format("    c.waves.push_back({{{}}});\n", fmt::join(wave, ", "));
    for (const tessera_cpu_driver::SymbolValue& sym : component.symbols) {
      plan += fmt::format("    c.symbols.push_back({{tcd::SymbolSource({}), {}}});\n", static_cast<int>(sym.source),
                          sym.value);
    }
    plan += "  }\n";
  }

  std::string tensor_setup;
  size_t index = 0;
  for (const auto& [name, shape] : shapes) {
    const ir::TensorDecl* decl = r.pattern.input(name);
    std::string extents;
    for (size_t d = shape.size(); d-- > 0;) {
      extents += decl->dims[d] == "B" ? "batch, " : fmt::format("{}, ", shape[d]);
    }
    tensor_setup += fmt::format(
        "  tensor_buffers[{0}] = tcd::Buffer::dense(const_cast<void*>(tensors[{0}]), halide_type_t({1}, 32), "
        "{{{2}}});\n",
        index++, decl->elem_type == ir::ElemType::Int32 ? "halide_type_int" : "halide_type_float", extents);
  }
  std::string tensor_args, tensor_array;
  std::vector<std::string> tensor_names;
  for (const auto& [name, shape] : shapes) {
    tensor_args += fmt::format("const {}* {}, ", tensor_type(*r.pattern.input(name)), name);
    tensor_names.push_back(name);
  }

  return fmt::format(
      R"glue(// Generated by `tessera compile` for {pattern}: the plan as constant tables, the kernels' entry points,
// and the C API. The host driver is attention_driver.h, Tessera's own, copied beside this file.
#include "{prefix}.h"

#include <cmath>
#include <mutex>
#include <new>

#include "attention_driver.h"

extern "C" {{
{prototypes}}}

namespace {{

namespace tcd = tessera_cpu_driver;

{tables}
std::vector<tcd::ComponentPlan> make_plan() {{
  std::vector<tcd::ComponentPlan> components;
{plan}  return components;
}}

halide_buffer_t* in(const halide_buffer_t* b) {{ return const_cast<halide_buffer_t*>(b); }}

{kernels}void* reusing_malloc(void*, size_t size) {{ return tcd::block_cache::allocate(size); }}
void reusing_free(void*, void* data) {{ tcd::block_cache::release(data); }}

constexpr int64_t kH = {H}, kHkv = {Hkv}, kN = {N}, kM = {M}, kD = {D}, kDv = {Dv};

}}  // namespace

extern "C" int {prefix}_v(const {qkv}* q, const {qkv}* k, const {qkv}* v, const void* const* tensors, float* out,
                          int64_t batch, float scale, int32_t threads) {{
  constexpr size_t kTensors = {tensor_count};
  if (!q || !k || !v || !out || batch < 1 || threads < 0 || !std::isfinite(scale)) {{
    return TESSERA_ERROR_INVALID_ARGUMENT;
  }}
  for (size_t t = 0; t < kTensors; ++t) {{
    if (!tensors || !tensors[t]) return TESSERA_ERROR_INVALID_ARGUMENT;
  }}
  const int64_t widest = std::max({{kH * kN * kD, kHkv * kM * kD, kH * kN * kDv, kHkv * kM * kDv}});
  if (batch > INT32_MAX / widest) return TESSERA_ERROR_TOO_LARGE;
  try {{
    static const std::vector<tcd::ComponentPlan> components = make_plan();
    // Kernels that keep masked keys' V rows out entirely, for V holding NaN or Inf (as the reference does).
    static const std::vector<tcd::Kernel> fast = {{{kernel_list}}}, guarded = {{{guarded_list}}};
    const std::vector<tcd::Kernel>& kernels = tcd::all_finite(v, batch * kHkv * kM * kDv) ? fast : guarded;
    static std::once_flag hooks;
    std::call_once(hooks, [] {{
      halide_set_custom_malloc(reusing_malloc);
      halide_set_custom_free(reusing_free);
    }});
    std::vector<tcd::Buffer> tensor_buffers(kTensors);
{tensor_setup}    tcd::Problem p;
    p.qkv_type = {qkv_type};
    p.q = q;
    p.k = k;
    p.v = v;
    p.out = out;
    p.B = batch;
    p.H = kH;
    p.Hkv = kHkv;
    p.N = kN;
    p.M = kM;
    p.D = kD;
    p.Dv = kDv;
    p.scale = scale != 0.0f ? scale : {default_scale}f;
    for (const tcd::Buffer& b : tensor_buffers) p.tensors.push_back(&b.buf);
    p.block_q = {block_q};
    p.max_tiles_per_call = {grain};
    p.threads = threads;
    return tcd::run(p, components, kernels) == 0 ? TESSERA_OK : TESSERA_ERROR_KERNEL;
  }} catch (const std::bad_alloc&) {{
    return TESSERA_ERROR_OUT_OF_MEMORY;
  }} catch (...) {{
    return TESSERA_ERROR_INTERNAL;
  }}
}}

extern "C" int {prefix}(const {qkv}* q, const {qkv}* k, const {qkv}* v, {tensor_args}float* out, int64_t batch,
                        float scale, int32_t threads) {{
  const void* tensors[] = {{{tensor_array}nullptr}};
  return {prefix}_v(q, k, v, tensors, out, batch, scale, threads);
}}

extern "C" const char* {prefix}_error_string(int code) {{
  switch (code) {{
    case TESSERA_OK: return "ok";
    case TESSERA_ERROR_INVALID_ARGUMENT: return "invalid argument (null pointer, batch < 1, threads < 0 or a non-finite scale)";
    case TESSERA_ERROR_TOO_LARGE: return "batch too large: a tensor would exceed 2^31 elements";
    case TESSERA_ERROR_KERNEL: return "a kernel failed (Halide printed the reason)";
    case TESSERA_ERROR_OUT_OF_MEMORY: return "out of memory";
    default: return "internal error";
  }}
}}
)glue",
      fmt::arg("pattern", r.pattern.name), fmt::arg("prefix", n.prefix), fmt::arg("prototypes", prototypes),
      fmt::arg("qkv", r.storage == StorageType::BFloat16 ? "uint16_t" : "float"),
      fmt::arg("qkv_type", r.storage == StorageType::BFloat16 ? "halide_type_t(halide_type_uint, 16)"
                                                              : "halide_type_t(halide_type_float, 32)"),
      fmt::arg("tables", tables), fmt::arg("plan", plan), fmt::arg("kernels", kernels),
      fmt::arg("kernel_list", kernel_list), fmt::arg("guarded_list", guarded_list), fmt::arg("H", s.H),
      fmt::arg("Hkv", s.Hkv), fmt::arg("N", s.N), fmt::arg("M", s.M), fmt::arg("D", s.D), fmt::arg("Dv", s.Dv),
      fmt::arg("tensor_count", shapes.size()), fmt::arg("tensor_setup", tensor_setup),
      fmt::arg("tensor_args", tensor_args),
      fmt::arg("tensor_array",
               [&] {
                 std::string a;
                 for (const std::string& t : tensor_names) a += t + ", ";
                 return a;
               }()),
      fmt::arg("default_scale", fmt::format("{:.9g}", 1.0 / std::sqrt(static_cast<double>(s.D)))),
      fmt::arg("block_q", r.schedule.block_q), fmt::arg("grain", r.schedule.grain));
}

}  // namespace

std::string aot_halide_target(const std::string& target) {
  if (target == "cpu") return cpu_target().to_string();
  if (target.rfind("cpu-", 0) != 0) {
    throw std::invalid_argument(fmt::format("unknown target '{}': expected cpu or cpu-FEATURE-FEATURE...", target));
  }
  const Halide::Target host = Halide::get_host_target();
  const std::string text = Halide::Target(host.os, host.arch, host.bits).to_string() + target.substr(3);
  if (!Halide::Target::validate_target_string(text)) {
    throw std::invalid_argument(fmt::format(
        "target '{}' names a feature Halide 14 does not know (e.g. cpu-avx512_skylake, cpu-avx2-fma-f16c-sse41)",
        target));
  }
  return text;
}

AotResult write_aot_library(const AotRequest& r) {
  if (!is_c_identifier(r.name)) {
    throw std::invalid_argument(fmt::format("library name '{}' is not a C identifier", r.name));
  }
  const ir::AttentionSizes& s = r.sizes;
  if (s.H < 1 || s.Hkv < 1 || s.H % s.Hkv != 0 || s.N < 1 || s.M < 1 || s.D < 1 || s.Dv < 1) {
    throw std::invalid_argument(
        fmt::format("bad sizes H={} Hkv={} N={} M={} D={} Dv={}: all must be >= 1 and Hkv must divide H", s.H, s.Hkv,
                    s.N, s.M, s.D, s.Dv));
  }
  const Names names{"tessera_" + r.name, "TESSERA_" + upper(r.name)};
  const Halide::Target target(aot_halide_target(r.target));
  const std::map<std::string, std::vector<int64_t>> shapes = tensor_shapes(r);
  check_tensor_indices(r, shapes);

  // The plan holds for every batch: b ranges over [0, +inf) in the classification.
  analysis::ClassifyOptions classify;
  classify.H = s.H;
  classify.D = s.D;
  const ExecutionPlan execution = make_execution_plan(r.pattern, s, r.schedule, classify);
  const std::vector<tessera_cpu_driver::ComponentPlan> components = driver_components(execution, r.pattern, s, shapes);

  const fs::path dir(r.output_dir);
  fs::create_directories(dir / "src");
  fs::create_directories(dir / "obj");
  AotResult result;
  result.halide_target = target.to_string();
  std::vector<std::string> objects;
  for (size_t c = 0; c < execution.plan.components.size(); ++c) {
    const planner::Component& component = execution.plan.components[c];
    for (bool guarded : {false, true}) {
      const AttentionPipelineKey key =
          component_kernel_key(component, r.pattern, s, r.schedule, r.storage, result.halide_target, guarded);
      std::shared_ptr<AttentionPipeline> kernel = build_attention_pipeline(component.local, key);
      const std::string fn = fmt::format("{}_component{}{}", names.prefix, c, guarded ? "_guarded" : "");
      const fs::path object = dir / "obj" / (fn + ".o");
      kernel->pipeline.compile_to_object(object.string(), kernel_arguments(*kernel), fn,
                                         target.with_feature(Halide::Target::NoRuntime));
      objects.push_back(object.string());
    }
  }
  const fs::path runtime = dir / "obj" / "halide_runtime.o";
  Halide::compile_standalone_runtime(runtime.string(), target);
  objects.push_back(runtime.string());

  const fs::path header = dir / (names.prefix + ".h");
  write_file(header, header_text(r, names, execution, shapes, result.halide_target));
  const fs::path driver = dir / "src" / "attention_driver.h";
  write_file(driver, attention_driver_source());
  const fs::path source = dir / "src" / (names.prefix + ".cpp");
  write_file(source, source_text(r, names, execution, components, shapes));
  const fs::path glue = dir / "obj" / (names.prefix + ".o");
  run_step(fmt::format("{} -std=c++17 -O2 -fPIC -c {} -I {} -I {} -I {} -o {}", r.cxx, shell_quote(source.string()),
                       shell_quote(dir.string()), shell_quote((dir / "src").string()),
                       shell_quote(TESSERA_HALIDE_INCLUDE_DIR), shell_quote(glue.string())),
           "compiling the library's driver");
  objects.push_back(glue.string());

  const fs::path library = dir / ("lib" + names.prefix + ".a");
  fs::remove(library);
  std::string ar = "ar rcs " + shell_quote(library.string());
  for (const std::string& o : objects) ar += " " + shell_quote(o);
  run_step(ar, "creating the static library with ar");

  result.library = library.string();
  result.header = header.string();
  result.files = objects;
  for (const fs::path& p : {header, driver, source, library}) result.files.push_back(p.string());
  return result;
}

}  // namespace tessera::cpu
