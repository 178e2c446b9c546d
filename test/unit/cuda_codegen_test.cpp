// The CUDA target's generated source for every standard-library pattern compiles without a GPU, for sm_80 and
// sm_90a, through NVRTC (ptxas accepts the PTX; its register and spill report goes to the test log) and through
// nvcc. The PTX must use the
// tensor cores. What the kernels compute is checked under the warp emulator (cuda_emulated_attention_test.cpp).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "targets/cuda/kernel_headers.h"
#include "targets/cuda/kernel_source.h"
#include "targets/cuda/launch_plan.h"
#include "targets/cuda/nvrtc_compiler.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/standard_pattern_cases.h"

namespace tessera {
namespace {

const std::vector<std::string> kPatterns = {
    "full",
    "causal",
    "sliding_window(window=256)",
    "local(window=64)",
    "strided(stride=128)",
    "fixed(block=128, summary=8)",
    "dilated(window=6, dilation=3)",
    "local2d(width=64, block_h=8, block_w=8, halo_h=2, halo_w=2)",
    "prefix_lm(prefix=100)",
    "document",
    "alibi",
    "softcap(cap=30)",
    "relative",
    "relative_bidir(max_distance=64)",
    "t5_bias(buckets=32, max_distance=128)",
    "causal & t5_bias(buckets=32, max_distance=128, bidirectional=false)",
    "relative2d(width=32, max_rows=8, max_cols=8)",
    "causal & dot",
    "causal & bilinear",
    "local1d(query_block=128, memory=256)",
    "causal & alibi",
    "causal & document",
    "causal & softcap(cap=30)",
    "causal & relative",
    "sliding_window(window=64) | strided(stride=128)",
    "causal - prefix_lm(prefix=40)",
    "causal & luong_local_p(half_width=64)",  // a weight: P scaled before P V
    "causal & alibi & sample(seed=1)",        // hardmax: one-hot P, ties to the lowest key
    "causal & additive",                      // v . tanh(q + k) per pair: D = 128 holds A = 64 floats
};

// The run-time tensors' shapes for sizes `sz`.
std::map<std::string, std::vector<int64_t>> tensor_shapes(const ir::Pattern& pattern, const ir::AttentionSizes& sz) {
  std::map<std::string, std::vector<int64_t>> shapes;
  if (pattern.input("segments")) shapes["segments"] = {sz.B, sz.M};
  if (pattern.input("rel")) shapes["rel"] = {sz.H, 64, sz.D};
  if (pattern.input("rel_bidir")) shapes["rel_bidir"] = {sz.H, 129, sz.D};
  if (pattern.input("rel_rows")) shapes["rel_rows"] = {sz.H, 17, sz.D};
  if (pattern.input("rel_cols")) shapes["rel_cols"] = {sz.H, 17, sz.D};
  if (pattern.input("t5")) shapes["t5"] = {sz.H, 32};
  if (pattern.input("bilinear_w")) shapes["bilinear_w"] = {sz.H, sz.D, sz.D};
  if (pattern.input("centers")) shapes["centers"] = {sz.B, sz.N};
  for (const char* name : {"additive_wq", "additive_wk"})
    if (pattern.input(name)) shapes[name] = {sz.H, 64, sz.D};
  if (pattern.input("additive_v")) shapes["additive_v"] = {sz.H, 64};
  return shapes;
}

ir::AttentionSizes codegen_sizes() {
  ir::AttentionSizes sz;
  sz.B = 1;
  sz.H = 4;
  sz.Hkv = 4;
  sz.N = 1024;
  sz.M = 1024;
  sz.D = 128;
  sz.Dv = 128;
  return sz;
}

class CudaCodegen : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaCodegen, CompilesForSm80AndSm90aWithTensorCores) {
  const ir::Pattern pattern = test::instantiate(GetParam());
  const ir::AttentionSizes sz = codegen_sizes();
  const std::map<std::string, std::vector<int64_t>> shapes = tensor_shapes(pattern, sz);
  cuda::LaunchOptions options;
  const cuda::LaunchPlan plan = cuda::make_launch_plan(pattern, sz, shapes, options);
  const std::string ptxas = cuda::find_cuda_tool("ptxas");
  const std::string nvcc = cuda::find_cuda_tool("nvcc");
  const std::filesystem::path work_dir =
      std::filesystem::temp_directory_path() / ("tessera-codegen-" + test::case_name(GetParam()));
  // sm_80: mma.sync; sm_90a: the warpgroup kernel (wgmma), whose query tiles are whole warpgroups.
  for (const bool wgmma : {false, true}) {
    const char* arch_text = wgmma ? "sm_90a" : "sm_80";
    cuda::CudaSchedule schedule{.block_m = plan.block_m, .block_n = plan.block_n};
    schedule.stages = wgmma ? 3 : 2;  // both pipeline depths compile
    const cuda::KernelConfig config = cuda::kernel_config(sz, schedule, cuda::Element::BFloat16, wgmma);
    const cuda::KernelSource source = cuda::attention_source(pattern, plan, config);
    cuda::NvrtcSource nvrtc{"tessera_attention.cu", source.text, {}, {}};
    for (const cuda::KernelHeader& header : cuda::kernel_headers())
      nvrtc.headers.emplace_back(header.name, header.text);
    const cuda::CudaArch arch = cuda::parse_cuda_arch(arch_text);
    const cuda::NvrtcResult result = cuda::compile_to_ptx(nvrtc, arch, "");
    EXPECT_NE(result.ptx.find(fmt::format(".target {}", arch_text)), std::string::npos);
    if (wgmma) {
      // S = Q K^T (n = block_n), except under additive scoring, which is not a matrix product; O += P V (n = Dv).
      if (pattern.scoring != ir::Scoring::Additive) {
        EXPECT_NE(result.ptx.find("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16"), std::string::npos);
      }
      EXPECT_NE(result.ptx.find("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16"), std::string::npos);
      EXPECT_NE(result.ptx.find("fence.proxy.async.shared::cta"), std::string::npos);
    } else {
      EXPECT_NE(result.ptx.find("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"), std::string::npos);
      EXPECT_NE(result.ptx.find("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16"), std::string::npos);
    }
    EXPECT_NE(result.ptx.find("cp.async.cg.shared.global"), std::string::npos);
    for (const std::string& kernel : source.kernels)
      EXPECT_NE(result.ptx.find(".entry " + kernel), std::string::npos) << kernel;
    if (!ptxas.empty()) {
      const cuda::PtxasReport report = cuda::assemble_ptx(result.ptx, arch, ptxas);
      EXPECT_TRUE(report.ok) << report.log;
      std::cout << "ptxas " << arch_text << " for " << GetParam() << ":\n" << report.log << "\n";
    }

    // The same source through nvcc, as `tessera compile --target cuda:…` builds it (device code only: -cubin).
    if (nvcc.empty()) continue;
    const std::filesystem::path dir = work_dir / arch_text;
    cuda::write_kernel_headers(dir.string());
    std::ofstream(dir / "kernels.cu") << source.text;
    const std::string virtual_arch = "compute_" + std::string(arch_text).substr(3);
    const std::string command =
        fmt::format("'{}' -std=c++17 -O3 -gencode arch={},code={} -I'{}' -cubin '{}' -o '{}' > '{}' 2>&1", nvcc,
                    virtual_arch, arch_text, dir.string(), (dir / "kernels.cu").string(),
                    (dir / "kernels.cubin").string(), (dir / "nvcc.log").string());
    const int status = std::system(command.c_str());
    std::ifstream log(dir / "nvcc.log");
    const std::string log_text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_EQ(status, 0) << command << "\n" << log_text;
  }
}

INSTANTIATE_TEST_SUITE_P(StandardLibrary, CudaCodegen, ::testing::ValuesIn(kPatterns), [](const auto& info) {
  std::string name;
  for (char c : info.param) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
});

// Kernels instantiated for V holding Inf or NaN (the guarded variant: kept pairs add their keys' non-finite
// values after P V, across the quad by shfl.sync.idx) compile through NVRTC and ptxas on both architectures.
TEST(CudaCodegen, GuardedValueKernelsCompile) {
  const std::string ptxas = cuda::find_cuda_tool("ptxas");
  // One pattern per architecture (each NVRTC compile takes ~13 s here): a weight on sm_80, hardmax on sm_90a.
  for (const auto& [expression, wgmma] : {std::pair{"causal & luong_local_p(half_width=64)", false},
                                          std::pair{"causal & alibi & sample(seed=1)", true}}) {
    const ir::Pattern pattern = test::instantiate(expression);
    const ir::AttentionSizes sz = codegen_sizes();
    const cuda::LaunchPlan plan = cuda::make_launch_plan(pattern, sz, tensor_shapes(pattern, sz), {});
    {
      SCOPED_TRACE(testing::Message() << expression << (wgmma ? " sm_90a" : " sm_80"));
      cuda::KernelConfig config =
          cuda::kernel_config(sz, {.block_m = plan.block_m, .block_n = plan.block_n}, cuda::Element::BFloat16, wgmma);
      config.guard_values = true;
      const cuda::KernelSource source = cuda::attention_source(pattern, plan, config);
      EXPECT_NE(source.text.find("::Traits, true>(p)"), std::string::npos);
      cuda::NvrtcSource nvrtc{"tessera_attention.cu", source.text, {}, {}};
      for (const cuda::KernelHeader& header : cuda::kernel_headers())
        nvrtc.headers.emplace_back(header.name, header.text);
      const cuda::CudaArch arch = cuda::parse_cuda_arch(wgmma ? "sm_90a" : "sm_80");
      const cuda::NvrtcResult result = cuda::compile_to_ptx(nvrtc, arch, "");
      EXPECT_NE(result.ptx.find("shfl.sync.idx.b32"), std::string::npos);
      if (!ptxas.empty()) {
        const cuda::PtxasReport report = cuda::assemble_ptx(result.ptx, arch, ptxas);
        EXPECT_TRUE(report.ok) << report.log;
        std::cout << "ptxas (guarded values) for " << expression << ":\n" << report.log << "\n";
      }
    }
  }
}

}  // namespace
}  // namespace tessera
