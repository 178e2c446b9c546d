// The CUDA C++ source of one attention call's kernels: one functor per planner component, emitted from the
// component's localized pattern (device_expression.h), and one instantiation of the kernel template
// (kernel/flash_attention.cuh) per component. The same text goes to NVRTC, to nvcc ahead of time, and to the host
// compiler under the warp emulator.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "targets/cuda/launch_plan.h"

namespace tessera::cuda {

enum class Element { BFloat16, Float16 };
const char* element_name(Element element);  // "bf16", "f16"

struct KernelConfig {
  int64_t head_dim = 64, value_dim = 64;
  int64_t block_m = 128, block_n = 64;
  int64_t stages = 2;
  Element element = Element::BFloat16;
  bool wgmma = false;  // the sm_90a kernel (warpgroup MMA); query tiles are then multiples of 64
  // V holds Inf or NaN: the kernels keep them out of pairs that are not kept (flash_attention.cuh,
  // add_nonfinite_values) and read KernelParams::v_raw and value_flags.
  bool guard_values = false;
};

// The kernel configuration of a call of sizes `sz` run with `schedule` (resolved: see resolve_schedule).
KernelConfig kernel_config(const ir::AttentionSizes& sz, const CudaSchedule& schedule,
                           Element element = Element::BFloat16, bool wgmma = false);

// Head and value dimensions the kernel template supports (multiples of 64 up to 256).
bool supported_head_dim(int64_t dim);
// Why the kernels cannot run sizes `sz` ("the CUDA target does not support head dimension D = 32 …"), or nullopt.
std::optional<std::string> unsupported_dims(const ir::AttentionSizes& sz);

// Threads per block and dynamic shared memory of the attention kernel for `config` (as AttentionTraits computes
// them).
int64_t kernel_threads(const KernelConfig& config);
int64_t kernel_shared_bytes(const KernelConfig& config);

struct KernelSource {
  std::string text;
  std::vector<std::string> kernels;  // the attention kernel of each component, in plan order
  std::string merge_kernel = "tessera_merge_slots";
  std::string fill_kernel = "tessera_fill";
};

// `pattern` is the pattern the plan was made from (its run-time tensors give the functors' tensor order). The
// functors live in namespace `functor_namespace` (one per library, so that libraries linked together keep theirs).
KernelSource attention_source(const ir::Pattern& pattern, const LaunchPlan& plan, const KernelConfig& config,
                              const std::string& functor_namespace = "tessera_pattern");

}  // namespace tessera::cuda
