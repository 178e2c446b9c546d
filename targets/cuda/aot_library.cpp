#include "targets/cuda/aot_library.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "targets/common/aot_tensors.h"
#include "targets/common/attention_problem.h"
#include "targets/common/build_steps.h"
#include "targets/cuda/kernel_headers.h"

namespace tessera::cuda {
namespace {

namespace fs = std::filesystem;

template <typename T, typename Format>
std::string device_array(const std::string& type, const std::string& name, const std::vector<T>& values,
                         Format format) {
  std::string out = fmt::format("__device__ const {} {}[] = {{", type, name);
  for (size_t n = 0; n < values.size(); ++n)
    out += fmt::format("{}{},", n % 8 == 0 ? "\n    " : " ", format(values[n]));
  if (values.empty()) out += "{}";
  return out + "\n};\n";
}

std::string index_view(const tessera_cuda::IndexView& v) {
  return fmt::format("{{{}, {}, {}, {}}}", v.origin, v.stride, v.group, v.count);
}

// The host launcher: the plan's tables live in device memory as __device__ arrays; the batch, the data and the
// stream come with each call.
std::string launcher_source(const CudaAotRequest& r, const LaunchPlan& plan, const KernelSource& kernels,
                            const KernelConfig& config, const std::string& prefix,
                            const std::map<std::string, std::vector<int64_t>>& shapes) {
  const ir::AttentionSizes& sz = r.sizes;
  std::string text = "\n// ---- Tables of the launch plan and the host launcher ----\n#include <cuda_runtime.h>\n\n";
  for (size_t c = 0; c < plan.components.size(); ++c) {
    const ComponentLaunch& component = plan.components[c];
    text += device_array("tessera_cuda::ViewDesc", fmt::format("views_{}", c), component.views,
                         [](const tessera_cuda::ViewDesc& v) {
                           return fmt::format("{{{}, {}}}", index_view(v.queries), index_view(v.keys));
                         });
    text += device_array(
        "tessera_cuda::BlockDesc", fmt::format("blocks_{}", c), component.blocks, [](const tessera_cuda::BlockDesc& b) {
          return fmt::format("{{{}, {}, {}, {}, {}}}", b.view, b.query_tile, b.slot, b.tile_begin, b.tile_end);
        });
    text += device_array("int", fmt::format("tiles_{}", c), component.tiles, [](int32_t t) { return t; });
  }
  const int64_t shared = kernel_shared_bytes(config);
  text += fmt::format(R"(
namespace {{
constexpr int kHeads = {H}, kKvHeads = {Hkv}, kQueries = {N}, kKeys = {M}, kHeadDim = {D}, kValueDim = {Dv};
constexpr int kSlots = {slots};
constexpr float kScale = {scale:.9g}f;

template <typename T>
const void* device_address(const T& symbol) {{
  void* address = nullptr;
  cudaGetSymbolAddress(&address, symbol);
  return address;
}}
}}  // namespace

extern "C" size_t {prefix}_workspace_bytes(int batch) {{
  if (kSlots == 1) return 0;
  const size_t rows = static_cast<size_t>(batch) * kHeads * kQueries;
  return rows * kSlots * (kValueDim + 1) * sizeof(float);
}}

extern "C" int {prefix}(const void* q, const void* k, const void* v, float* out, int batch,
                        const void* const* tensors, void* workspace, cudaStream_t stream) {{
  if (batch < 0 || (batch > 0 && (!q || !k || !v || !out))) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  if (kSlots > 1 && workspace == nullptr) return cudaErrorInvalidValue;
  const long long rows = static_cast<long long>(batch) * kHeads * kQueries;
  float* slot_out = kSlots > 1 ? static_cast<float*>(workspace) : out;
  float* slot_lse = kSlots > 1 ? slot_out + rows * kSlots * kValueDim : nullptr;
  if (kSlots > 1) {{
    const long long count = rows * kSlots;
    tessera_fill<<<static_cast<unsigned>((count + tessera_cuda::kFillThreads - 1) / tessera_cuda::kFillThreads),
                   tessera_cuda::kFillThreads, 0, stream>>>(slot_lse, count, tessera_cuda::minus_infinity());
  }} else {{
    cudaMemsetAsync(out, 0, static_cast<size_t>(rows) * kValueDim * sizeof(float), stream);
  }}
  tessera_cuda::PatternArgs args;
  args.H = kHeads;
  args.D = kHeadDim;
  args.scale = kScale;
{tensor_setup}
  const tessera_cuda::KernelParams p = tessera_cuda::launch_params(q, k, v, slot_out, slot_lse, kSlots, batch, kHeads,
                                                                   kKvHeads, kQueries, kKeys, kValueDim, kScale);
)",
                      fmt::arg("H", sz.H), fmt::arg("Hkv", sz.Hkv), fmt::arg("N", sz.N), fmt::arg("M", sz.M),
                      fmt::arg("D", sz.D), fmt::arg("Dv", sz.Dv), fmt::arg("slots", plan.slots),
                      fmt::arg("scale", targets::natural_scale(r.pattern, sz.D)), fmt::arg("prefix", prefix),
                      fmt::arg("tensor_setup", [&] {
                        std::string setup;
                        int slot = 0;
                        for (const auto& [name, shape] : shapes) {
                          setup += fmt::format("  args.tensors[{}] = tensors[{}];  // {}\n", slot, slot, name);
                          const ir::TensorDecl* decl = r.pattern.input(name);
                          for (size_t d = 0; d < shape.size(); ++d) {
                            const bool batch_dim = decl && d < decl->dims.size() && decl->dims[d] == "B";
                            setup += fmt::format("  args.shapes[{}][{}] = {};\n", slot, d,
                                                 batch_dim ? std::string("batch") : std::to_string(shape[d]));
                          }
                          ++slot;
                        }
                        return setup;
                      }()));
  for (size_t c = 0; c < plan.components.size(); ++c) {
    const ComponentLaunch& component = plan.components[c];
    if (component.blocks.empty()) continue;
    text += fmt::format("  {{\n    tessera_cuda::KernelParams pc = p;\n    pc.pattern = args;\n");
    for (size_t s = 0; s < component.symbol_values.size(); ++s)
      text += fmt::format("    pc.pattern.symbols[{}] = {};\n", s, component.symbol_values[s]);
    text += fmt::format(
        "    pc.query_origin_symbol = {};\n    pc.key_origin_symbol = {};\n"
        "    pc.views = static_cast<const tessera_cuda::ViewDesc*>(device_address(views_{c}));\n"
        "    pc.blocks = static_cast<const tessera_cuda::BlockDesc*>(device_address(blocks_{c}));\n"
        "    pc.tiles = static_cast<const int*>(device_address(tiles_{c}));\n",
        component.query_origin_symbol, component.key_origin_symbol, fmt::arg("c", c));
    if (shared > 48 * 1024)
      text += fmt::format("    cudaFuncSetAttribute({}, cudaFuncAttributeMaxDynamicSharedMemorySize, {});\n",
                          kernels.kernels[c], shared);
    text += fmt::format("    {}<<<dim3({}, batch * kHeads), {}, {}, stream>>>(pc);\n  }}\n", kernels.kernels[c],
                        component.blocks.size(), kernel_threads(config), shared);
  }
  text += R"(  if (kSlots > 1) {
    const tessera_cuda::MergeParams merge =
        tessera_cuda::merge_params(slot_out, slot_lse, out, kSlots, rows, kValueDim);
    tessera_merge_slots<<<static_cast<unsigned>(rows), tessera_cuda::kMergeThreads, 0, stream>>>(merge);
  }
  return static_cast<int>(cudaGetLastError());
}
)";
  return text;
}

std::string header_source(const CudaAotRequest& r, const std::string& prefix, const CudaSchedule& schedule,
                          const std::map<std::string, std::vector<int64_t>>& shapes) {
  const ir::AttentionSizes& sz = r.sizes;
  const char* element = r.element == Element::BFloat16 ? "bf16 (__nv_bfloat16)" : "f16 (__half)";
  std::string tensors;
  for (const auto& [name, shape] : shapes) {
    const ir::TensorDecl* decl = r.pattern.input(name);
    std::string dims;
    for (size_t d = 0; d < shape.size(); ++d)
      dims += fmt::format("{}{}", d ? ", " : "",
                          decl && decl->dims[d] == "B" ? std::string("batch") : std::to_string(shape[d]));
    tensors += fmt::format(" *     {} {}[{}]\n", decl && decl->elem_type == ir::ElemType::Int32 ? "int32" : "float32",
                           name, dims);
  }
  if (tensors.empty()) tensors = " *     (none: pass NULL)\n";
  return fmt::format(
      R"(/* {prefix}.h: generated by Tessera. Pattern: {pattern}
 * Target: CUDA {arch}, {element} inputs, fp32 accumulation and output. Schedule: {schedule} ({source}).
 * Shape: H={H}, Hkv={Hkv}, N={N}, M={M}, D={D}, Dv={Dv}; the batch is chosen per call.
 */
#ifndef {macro}_H
#define {macro}_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {{
#endif

/* Device memory the call needs besides its inputs and output, for `batch` (0: pass NULL). */
size_t {prefix}_workspace_bytes(int batch);

/* Attention on `stream`, asynchronously. Device pointers:
 *   q [batch, {H}, {N}, {D}], k [batch, {Hkv}, {M}, {D}], v [batch, {Hkv}, {M}, {Dv}]: {element}
 *   out [batch, {H}, {N}, {Dv}]: float (rows with no allowed key are zeros)
 *   v must be finite: these kernels multiply masked keys' values by 0 on tensor cores, so an Inf or NaN in v
 *   reaches the rows of its key tile that may not see it (the run-time target guards it; this library does not).
 *   tensors: the pattern's run-time tensors, in this order, as device pointers:
{tensors} *   workspace: {prefix}_workspace_bytes(batch) bytes
 * Returns a cudaError_t: 0 (cudaSuccess) once the work is queued. */
int {prefix}(const void* q, const void* k, const void* v, float* out, int batch, const void* const* tensors,
             void* workspace, cudaStream_t stream);

#ifdef __cplusplus
}}
#endif

#endif
)",
      fmt::arg("prefix", prefix), fmt::arg("pattern", r.pattern.name), fmt::arg("arch", arch_name(r.arch)),
      fmt::arg("element", element), fmt::arg("schedule", describe(schedule)), fmt::arg("source", r.schedule_source),
      fmt::arg("H", sz.H), fmt::arg("Hkv", sz.Hkv), fmt::arg("N", sz.N), fmt::arg("M", sz.M), fmt::arg("D", sz.D),
      fmt::arg("Dv", sz.Dv), fmt::arg("macro", targets::upper_case(prefix)), fmt::arg("tensors", tensors));
}

}  // namespace

CudaAotResult write_cuda_aot_library(const CudaAotRequest& r) {
  for (char c : r.name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      throw std::invalid_argument(fmt::format("library name '{}' is not a C identifier", r.name));
  }
  if (r.name.empty()) throw std::invalid_argument("empty library name");
  if (auto why = unsupported_dims(r.sizes)) throw std::invalid_argument(*why);
  if (r.pattern.scoring == ir::Scoring::Additive) {
    throw std::invalid_argument(
        fmt::format("ahead-of-time libraries do not support the additive scoring of '{}' yet "
                    "(tessera eval --target cuda runs it, projecting Q and K on the host)",
                    r.pattern.name));
  }
  if (!r.pattern.query_projection.empty()) {
    throw std::invalid_argument(
        fmt::format("ahead-of-time libraries do not support the bilinear scoring of '{}' yet "
                    "(project the queries by {} before calling, and compile without it)",
                    r.pattern.name, r.pattern.query_projection));
  }
  const std::map<std::string, std::vector<int64_t>> shapes =
      targets::aot_tensor_shapes(r.pattern, r.sizes, r.tensor_sizes);
  targets::check_aot_tensor_indices(r.pattern, r.sizes, shapes);

  CudaAotResult result;
  const bool wgmma = r.arch.major == 9 && r.arch.accelerated;
  result.schedule = resolve_schedule(r.schedule, r.sizes.D, r.sizes.Dv, wgmma);
  LaunchOptions options;
  options.schedule = result.schedule;
  // Splitting keys needs the grid size; a library serves any batch, so the default keeps one split per query tile.
  if (options.schedule.kv_splits == 0) options.schedule.kv_splits = result.schedule.kv_splits = 1;
  ir::AttentionSizes plan_sizes = r.sizes;
  plan_sizes.B = 1;
  const LaunchPlan plan = make_launch_plan(r.pattern, plan_sizes, shapes, options);
  const KernelConfig config = kernel_config(r.sizes, result.schedule, r.element, wgmma);
  const KernelSource kernels = attention_source(r.pattern, plan, config, "tessera_" + r.name + "_pattern");

  const std::string prefix = "tessera_" + r.name;
  const fs::path dir(r.output_dir);
  fs::create_directories(dir / "include");
  write_kernel_headers((dir / "include").string());
  const fs::path source = dir / (prefix + ".cu");
  const fs::path header = dir / (prefix + ".h");
  const fs::path object = dir / (prefix + ".o");
  const fs::path library = dir / ("lib" + prefix + ".a");
  const fs::path ptx = dir / (prefix + ".ptx");
  const fs::path log = dir / (prefix + ".ptxas.log");
  targets::write_text_file(source, kernels.text + launcher_source(r, plan, kernels, config, prefix, shapes));
  targets::write_text_file(header, header_source(r, prefix, result.schedule, shapes));

  const std::string arch = arch_name(r.arch);
  // -gencode spelled out: nvcc's -arch=sm_90a also makes compute_90 PTX, which cannot hold wgmma.
  const std::string virtual_arch = "compute_" + arch.substr(3);
  using targets::shell_quote;
  const std::string nvcc = shell_quote(r.nvcc);
  const std::string flags =
      fmt::format("-std=c++17 -O3 -I{} -I{}", shell_quote((dir / "include").string()), shell_quote(dir.string()));
  targets::run_build_step(fmt::format("{} {} -gencode arch={},code=[{},{}] -Xptxas -v -c {} -o {} > {} 2>&1", nvcc,
                                      flags, virtual_arch, virtual_arch, arch, shell_quote(source.string()),
                                      shell_quote(object.string()), shell_quote(log.string())),
                          "nvcc", log);
  targets::run_build_step(fmt::format("{} {} -arch={} -ptx {} -o {}", nvcc, flags, virtual_arch,
                                      shell_quote(source.string()), shell_quote(ptx.string())),
                          "nvcc -ptx");
  fs::remove(library);
  targets::run_build_step(fmt::format("ar rcs {} {}", shell_quote(library.string()), shell_quote(object.string())),
                          "ar");
  fs::remove(object);

  result.library = library.string();
  result.header = header.string();
  result.source = source.string();
  result.ptx = ptx.string();
  result.ptxas_log = log.string();
  result.ptxas_report = targets::read_text_file(log);
  return result;
}

}  // namespace tessera::cuda
