#include "targets/cuda/attention_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "compiler/analysis/tensor_value_bounds.h"
#include "compiler/ir/evaluate.h"
#include "targets/common/tensor_index_bounds.h"

namespace tessera::cuda {
namespace {

using runtime::Tensor;

std::vector<uint16_t> device_elements(const Tensor& t, Element element) {
  std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
  if (element == Element::BFloat16) {
    Tensor rounded = runtime::to_bfloat16(t);
    std::memcpy(bits.data(), rounded.data<uint16_t>(), bits.size() * sizeof(uint16_t));
  } else {
    const float* data = t.data<float>();
    for (size_t n = 0; n < bits.size(); ++n) bits[n] = float_to_f16_bits(data[n]);
  }
  return bits;
}

template <typename T>
std::unique_ptr<DeviceMemory> upload(AttentionDevice& device, const std::vector<T>& host) {
  auto memory = device.allocate(std::max<size_t>(1, host.size() * sizeof(T)));
  if (!host.empty()) memory->upload(host.data(), host.size() * sizeof(T));
  return memory;
}

void check_dims(const ir::AttentionSizes& sz) {
  for (auto [name, dim] : {std::pair{"head dimension D", sz.D}, std::pair{"value dimension Dv", sz.Dv}}) {
    if (!supported_head_dim(dim))
      throw UnsupportedProblem(
          fmt::format("the CUDA target does not support {} = {} (supported: 64, 128, 192, 256)", name, dim));
  }
}

}  // namespace

uint16_t float_to_f16_bits(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: infinity
  if (abs < 0x38800000u) {
    // Subnormal or zero in binary16: units of 2^-24, rounded to nearest even.
    const float magnitude = std::bit_cast<float>(abs);
    const float scaled = magnitude * 16777216.0f;  // exact: a power of two
    float units = static_cast<float>(static_cast<uint32_t>(scaled));
    const float rest = scaled - units;
    if (rest > 0.5f || (rest == 0.5f && static_cast<uint32_t>(units) % 2 == 1)) units += 1.0f;
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(units));
  }
  // Normal: drop 13 mantissa bits with round to nearest even.
  const uint32_t rebased = abs - (112u << 23);
  const uint32_t half = rebased >> 13;
  const uint32_t rest = rebased & 0x1fffu;
  const uint32_t rounded = half + (rest > 0x1000u || (rest == 0x1000u && (half & 1u)) ? 1u : 0u);
  return static_cast<uint16_t>(sign | rounded);
}

runtime::Tensor run_attention(AttentionDevice& device, const ir::Pattern& pattern,
                              const targets::AttentionInputs& inputs, const CudaAttentionOptions& options) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs);
  const double scale = targets::attention_scale(inputs, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, inputs);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  check_dims(sz);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, view] : tensors.views) shapes[name] = view.shape;
  targets::check_tensor_indices(pattern, sz, shapes, evaluator, inputs.q->data<float>());
  if (tensors.views.size() > static_cast<size_t>(tessera_cuda::kMaxPatternTensors))
    throw UnsupportedProblem(
        fmt::format("the CUDA target takes at most {} run-time tensors per pattern", tessera_cuda::kMaxPatternTensors));

  Tensor out(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  if (sz.N == 0 || sz.M == 0 || sz.B * sz.H == 0) return out;  // nothing to attend to: zeros

  LaunchOptions launch_options;
  try {
    launch_options.schedule = resolve_schedule(options.schedule, sz.D, sz.Dv);
  } catch (const std::invalid_argument& e) {
    throw UnsupportedProblem(e.what());
  }
  launch_options.multiprocessors = device.multiprocessors();
  launch_options.classify.B = sz.B;
  launch_options.classify.H = sz.H;
  launch_options.classify.D = sz.D;
  // A mask that reads run-time tensors (document's segment ids) is classified from the values this call holds.
  if (ir::uses_tensors(pattern.mask)) launch_options.classify.load_bounds = analysis::make_load_bounds(tensors.views);
  const LaunchPlan plan = make_launch_plan(pattern, sz, shapes, launch_options);

  KernelConfig config;
  config.head_dim = sz.D;
  config.value_dim = sz.Dv;
  config.block_m = launch_options.schedule.block_m;
  config.block_n = launch_options.schedule.block_n;
  config.element = options.element;
  const KernelSource source = attention_source(pattern, plan, config);
  device.load(source);

  auto q = upload(device, device_elements(*inputs.q, options.element));
  auto k = upload(device, device_elements(*inputs.k, options.element));
  auto v = upload(device, device_elements(*inputs.v, options.element));
  std::vector<std::unique_ptr<DeviceMemory>> tensor_memory;
  tessera_cuda::PatternArgs pattern_args;
  pattern_args.H = static_cast<int32_t>(sz.H);
  pattern_args.D = static_cast<int32_t>(sz.D);
  pattern_args.scale = static_cast<float>(scale);
  int slot = 0;
  for (const auto& [name, view] : tensors.views) {  // ordered by name, as the functors index them
    if (view.shape.size() > static_cast<size_t>(tessera_cuda::kMaxTensorRank))
      throw UnsupportedProblem(fmt::format("the CUDA target takes run-time tensors of rank <= {}; '{}' has rank {}",
                                           tessera_cuda::kMaxTensorRank, name, view.shape.size()));
    int64_t count = 1;
    for (size_t d = 0; d < view.shape.size(); ++d) {
      pattern_args.shapes[slot][d] = static_cast<int32_t>(view.shape[d]);
      count *= view.shape[d];
    }
    auto memory = device.allocate(static_cast<size_t>(std::max<int64_t>(1, count)) * 4);
    if (count > 0) memory->upload(view.data, static_cast<size_t>(count) * 4);
    pattern_args.tensors[slot] = memory->address();
    tensor_memory.push_back(std::move(memory));
    ++slot;
  }

  const int64_t rows = sz.B * sz.H * sz.N;
  const int64_t out_elements = rows * sz.Dv;
  const bool merged = plan.slots > 1;
  auto result = device.allocate(static_cast<size_t>(out_elements) * sizeof(float));
  std::unique_ptr<DeviceMemory> slot_out, slot_lse;
  if (merged) {
    slot_out = device.allocate(static_cast<size_t>(out_elements * plan.slots) * sizeof(float));
    slot_lse = device.allocate(static_cast<size_t>(rows * plan.slots) * sizeof(float));
    const long long lse_count = static_cast<long long>(rows * plan.slots);
    device.launch_fill(static_cast<unsigned>((lse_count + tessera_cuda::kFillThreads - 1) / tessera_cuda::kFillThreads),
                       static_cast<float*>(slot_lse->address()), lse_count, tessera_cuda::minus_infinity());
  } else {
    // Rows no view covers stay zero.
    device.launch_fill(
        static_cast<unsigned>((out_elements + tessera_cuda::kFillThreads - 1) / tessera_cuda::kFillThreads),
        static_cast<float*>(result->address()), out_elements, 0.0f);
  }

  std::vector<std::unique_ptr<DeviceMemory>> tables;
  for (size_t c = 0; c < plan.components.size(); ++c) {
    const ComponentLaunch& component = plan.components[c];
    if (component.blocks.empty()) continue;
    if (component.symbols.size() > static_cast<size_t>(tessera_cuda::kMaxPatternSymbols))
      throw UnsupportedProblem("the pattern reads more symbols than the CUDA kernels take");
    tessera_cuda::KernelParams params;
    params.q = q->address();
    params.k = k->address();
    params.v = v->address();
    params.out = static_cast<float*>(merged ? slot_out->address() : result->address());
    params.lse = merged ? static_cast<float*>(slot_lse->address()) : nullptr;
    params.out_slot_stride = out_elements;
    params.lse_slot_stride = rows;
    params.write_lse = merged ? 1 : 0;
    params.B = static_cast<int32_t>(sz.B);
    params.H = static_cast<int32_t>(sz.H);
    params.Hkv = static_cast<int32_t>(sz.Hkv);
    params.N = static_cast<int32_t>(sz.N);
    params.M = static_cast<int32_t>(sz.M);
    params.scale = static_cast<float>(scale);
    params.pattern = pattern_args;
    for (size_t s = 0; s < component.symbol_values.size(); ++s) params.pattern.symbols[s] = component.symbol_values[s];
    params.query_origin_symbol = component.query_origin_symbol;
    params.key_origin_symbol = component.key_origin_symbol;
    tables.push_back(upload(device, component.views));
    params.views = static_cast<const tessera_cuda::ViewDesc*>(tables.back()->address());
    tables.push_back(upload(device, component.blocks));
    params.blocks = static_cast<const tessera_cuda::BlockDesc*>(tables.back()->address());
    tables.push_back(upload(device, component.tiles));
    params.tiles = static_cast<const int32_t*>(tables.back()->address());
    device.launch_attention(source.kernels[c], static_cast<unsigned>(component.blocks.size()),
                            static_cast<unsigned>(sz.B * sz.H), static_cast<unsigned>(kernel_threads(config)),
                            static_cast<size_t>(kernel_shared_bytes(config)), params);
  }
  if (merged) {
    tessera_cuda::MergeParams merge;
    merge.slots_out = static_cast<const float*>(slot_out->address());
    merge.slots_lse = static_cast<const float*>(slot_lse->address());
    merge.out = static_cast<float*>(result->address());
    merge.rows = rows;
    merge.slots = plan.slots;
    merge.value_dim = static_cast<int32_t>(sz.Dv);
    merge.out_slot_stride = out_elements;
    merge.lse_slot_stride = rows;
    device.launch_merge(static_cast<unsigned>(rows), merge);
  }
  device.synchronize();
  result->download(out.data<float>(), static_cast<size_t>(out_elements) * sizeof(float));
  return out;
}

}  // namespace tessera::cuda
