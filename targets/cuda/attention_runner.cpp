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

// The rows of a float32 tensor (its last dimension) as 16-bit halves of their bits, low half first, zero-padded to
// `width` floats: what the kernels' Q and K tiles hold for additive scoring.
std::vector<uint16_t> padded_float_halves(const Tensor& t, int64_t width) {
  const int64_t columns = t.shape().back();
  const int64_t rows = columns == 0 ? 0 : t.numel() / columns;
  std::vector<uint16_t> halves(static_cast<size_t>(2 * rows * width), 0);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&halves[static_cast<size_t>(2 * r * width)], t.data<float>() + r * columns,
                static_cast<size_t>(columns) * sizeof(float));
  if constexpr (std::endian::native != std::endian::little) {
    for (size_t n = 0; n < halves.size(); n += 2) std::swap(halves[n], halves[n + 1]);
  }
  return halves;
}

// V's elements with Inf and NaN replaced by 0, and a flag per row (key) that held one: what kernels instantiated
// with guard_values read. Empty when every element is finite.
struct GuardedValues {
  std::vector<uint16_t> finite;
  std::vector<unsigned char> flags;
};

GuardedValues guard_nonfinite_values(const std::vector<uint16_t>& bits, Element element, int64_t row_length) {
  const uint16_t exponent = element == Element::BFloat16 ? 0x7f80u : 0x7c00u;
  GuardedValues guarded;
  const size_t rows = row_length == 0 ? 0 : bits.size() / static_cast<size_t>(row_length);
  for (size_t r = 0; r < rows; ++r) {
    for (size_t e = r * row_length; e < (r + 1) * row_length; ++e) {
      if ((bits[e] & exponent) != exponent) continue;
      if (guarded.flags.empty()) {
        guarded.flags.assign(rows, 0);
        guarded.finite = bits;
      }
      guarded.flags[r] = 1;
      guarded.finite[e] = 0;
    }
  }
  return guarded;
}

template <typename T>
std::unique_ptr<DeviceMemory> upload(AttentionDevice& device, const std::vector<T>& host) {
  auto memory = device.allocate(std::max<size_t>(1, host.size() * sizeof(T)));
  if (!host.empty()) memory->upload(host.data(), host.size() * sizeof(T));
  return memory;
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

PreparedAttention::PreparedAttention(AttentionDevice& device, const ir::Pattern& pattern,
                                     const targets::AttentionInputs& given, const CudaAttentionOptions& options)
    : device_(device) {
  sz_ = targets::validate_attention_inputs(given);
  const ir::AttentionSizes& sz = sz_;
  const double scale = targets::attention_scale(pattern, given, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, given);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  runtime::Tensor projected_q;  // bilinear scoring: the kernels read the projected queries
  const targets::AttentionInputs inputs = targets::project_queries(pattern, given, sz, projected_q);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, view] : tensors.views) shapes[name] = view.shape;
  targets::check_tensor_indices(pattern, sz, shapes, evaluator, inputs.q->data<float>());

  // What the kernels read: for additive scoring Q and K projected by Wq and Wk, with every query head's own keys,
  // as float32 bit patterns zero-padded to a multiple of 32 floats: the kernel's Q and K rows of 16-bit elements
  // are twice as long (flash_attention.cuh, additive_scores).
  ir::AttentionSizes kernel_sizes = sz;
  targets::AttentionInputs kernel_inputs = inputs;
  targets::AdditiveProjection additive;
  const bool additive_scoring = pattern.scoring == ir::Scoring::Additive;
  if (additive_scoring) {
    targets::project_for_additive(pattern, given, sz, additive);
    const int64_t A = additive.sizes.D;
    const int64_t width = (A + 31) / 32 * 32;
    if (A < 1 || !supported_head_dim(2 * width)) {
      throw UnsupportedProblem(
          fmt::format("the CUDA target supports additive scoring with 1 to 128 hidden units; '{}' of '{}' has A = {}",
                      pattern.additive.vector, pattern.name, A));
    }
    kernel_sizes = additive.sizes;
    kernel_sizes.D = 2 * width;
    kernel_inputs = additive.inputs;
  }
  if (auto why = unsupported_dims(kernel_sizes)) throw UnsupportedProblem(*why);
  if (tensors.views.size() > static_cast<size_t>(tessera_cuda::kMaxPatternTensors))
    throw UnsupportedProblem(
        fmt::format("the CUDA target takes at most {} run-time tensors per pattern", tessera_cuda::kMaxPatternTensors));
  if (kernel_sizes.N == 0 || kernel_sizes.M == 0 || kernel_sizes.B * kernel_sizes.H == 0)
    return;  // nothing to attend to: zeros

  LaunchOptions launch_options;
  try {
    launch_options.schedule = resolve_schedule(options.schedule, kernel_sizes.D, kernel_sizes.Dv, device.wgmma());
  } catch (const std::invalid_argument& e) {
    throw UnsupportedProblem(e.what());
  }
  launch_options.multiprocessors = device.multiprocessors();
  launch_options.classify.B = kernel_sizes.B;
  launch_options.classify.H = kernel_sizes.H;
  launch_options.classify.D = kernel_sizes.D;
  // A mask that reads run-time tensors (document's segment ids) is classified from the values this call holds.
  if (ir::uses_tensors(pattern.mask)) launch_options.classify.load_bounds = analysis::make_load_bounds(tensors.views);
  plan_ = make_launch_plan(pattern, kernel_sizes, shapes, launch_options);
  const LaunchPlan& plan = plan_;

  std::vector<uint16_t> v_bits = device_elements(*kernel_inputs.v, options.element);
  const GuardedValues guarded = guard_nonfinite_values(v_bits, options.element, kernel_sizes.Dv);
  config_ = kernel_config(kernel_sizes, launch_options.schedule, options.element, device.wgmma());
  config_.guard_values = !guarded.flags.empty();
  source_ = attention_source(pattern, plan, config_);
  device.load(source_);

  // Additive scoring's rows of 16-bit elements hold kernel_sizes.D / 2 floats.
  memory_.push_back(upload(device, additive_scoring ? padded_float_halves(*kernel_inputs.q, kernel_sizes.D / 2)
                                                    : device_elements(*kernel_inputs.q, options.element)));
  const void* q = memory_.back()->address();
  memory_.push_back(upload(device, additive_scoring ? padded_float_halves(*kernel_inputs.k, kernel_sizes.D / 2)
                                                    : device_elements(*kernel_inputs.k, options.element)));
  const void* k = memory_.back()->address();
  memory_.push_back(upload(device, config_.guard_values ? guarded.finite : v_bits));
  const void* v = memory_.back()->address();
  const void* v_raw = nullptr;
  const unsigned char* value_flags = nullptr;
  if (config_.guard_values) {
    memory_.push_back(upload(device, v_bits));
    v_raw = memory_.back()->address();
    memory_.push_back(upload(device, guarded.flags));
    value_flags = static_cast<const unsigned char*>(memory_.back()->address());
  }
  tessera_cuda::PatternArgs pattern_args;
  pattern_args.H = static_cast<int32_t>(kernel_sizes.H);
  pattern_args.D = static_cast<int32_t>(kernel_sizes.D);
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
    memory_.push_back(std::move(memory));
    ++slot;
  }

  rows_ = kernel_sizes.B * kernel_sizes.H * kernel_sizes.N;
  out_elements_ = rows_ * kernel_sizes.Dv;
  const bool merged = plan.slots > 1;
  result_ = device.allocate(static_cast<size_t>(out_elements_) * sizeof(float));
  float* slot_out = nullptr;
  float* slot_lse = nullptr;
  if (merged) {
    memory_.push_back(device.allocate(static_cast<size_t>(out_elements_ * plan.slots) * sizeof(float)));
    slot_out = static_cast<float*>(memory_.back()->address());
    memory_.push_back(device.allocate(static_cast<size_t>(rows_ * plan.slots) * sizeof(float)));
    slot_lse = static_cast<float*>(memory_.back()->address());
  }
  fill_target_ = merged ? slot_lse : static_cast<float*>(result_->address());
  fill_count_ = merged ? rows_ * plan.slots : out_elements_;
  // The slots' log-sum-exp start at -inf; a single-slot output starts at zero (rows no view covers).
  fill_value_ = merged ? tessera_cuda::minus_infinity() : 0.0f;

  for (size_t c = 0; c < plan.components.size(); ++c) {
    const ComponentLaunch& component = plan.components[c];
    if (component.blocks.empty()) continue;
    if (component.symbols.size() > static_cast<size_t>(tessera_cuda::kMaxPatternSymbols))
      throw UnsupportedProblem("the pattern reads more symbols than the CUDA kernels take");
    tessera_cuda::KernelParams params = tessera_cuda::launch_params(
        q, k, v, merged ? slot_out : static_cast<float*>(result_->address()), slot_lse, plan.slots,
        static_cast<int32_t>(kernel_sizes.B), static_cast<int32_t>(kernel_sizes.H),
        static_cast<int32_t>(kernel_sizes.Hkv), static_cast<int32_t>(kernel_sizes.N),
        static_cast<int32_t>(kernel_sizes.M), static_cast<int32_t>(kernel_sizes.Dv), static_cast<float>(scale));
    params.pattern = pattern_args;
    params.v_raw = v_raw;
    params.value_flags = value_flags;
    for (size_t s = 0; s < component.symbol_values.size(); ++s) params.pattern.symbols[s] = component.symbol_values[s];
    params.query_origin_symbol = component.query_origin_symbol;
    params.key_origin_symbol = component.key_origin_symbol;
    memory_.push_back(upload(device, component.views));
    params.views = static_cast<const tessera_cuda::ViewDesc*>(memory_.back()->address());
    memory_.push_back(upload(device, component.blocks));
    params.blocks = static_cast<const tessera_cuda::BlockDesc*>(memory_.back()->address());
    memory_.push_back(upload(device, component.tiles));
    params.tiles = static_cast<const int32_t*>(memory_.back()->address());
    launches_.push_back({source_.kernels[c], static_cast<unsigned>(component.blocks.size()), params});
  }
  if (merged) {
    merge_ = tessera_cuda::merge_params(slot_out, slot_lse, static_cast<float*>(result_->address()), plan.slots, rows_,
                                        static_cast<int32_t>(kernel_sizes.Dv));
  }
}

void PreparedAttention::enqueue() {
  if (!result_) return;
  device_.launch_fill(
      static_cast<unsigned>((fill_count_ + tessera_cuda::kFillThreads - 1) / tessera_cuda::kFillThreads), fill_target_,
      fill_count_, fill_value_);
  for (const Launch& launch : launches_) {
    device_.launch_attention(launch.kernel, launch.blocks, static_cast<unsigned>(sz_.B * sz_.H),
                             static_cast<unsigned>(kernel_threads(config_)),
                             static_cast<size_t>(kernel_shared_bytes(config_)), launch.params);
  }
  if (merge_) device_.launch_merge(static_cast<unsigned>(rows_), *merge_);
}

runtime::Tensor PreparedAttention::result() {
  Tensor out(runtime::DType::Float32, {sz_.B, sz_.H, sz_.N, sz_.Dv});
  if (!result_) return out;
  device_.synchronize();
  result_->download(out.data<float>(), static_cast<size_t>(out_elements_) * sizeof(float));
  return out;
}

runtime::Tensor element_values(const runtime::Tensor& t, Element element) {
  if (element == Element::BFloat16) return runtime::bfloat16_to_float32(runtime::to_bfloat16(t));
  Tensor out(runtime::DType::Float32, t.shape());
  for (int64_t e = 0; e < t.numel(); ++e)
    out.data<float>()[e] = tessera_cuda::f16_bits_to_float(float_to_f16_bits(t.data<float>()[e]));
  return out;
}

runtime::Tensor run_attention(AttentionDevice& device, const ir::Pattern& pattern,
                              const targets::AttentionInputs& inputs, const CudaAttentionOptions& options) {
  PreparedAttention prepared(device, pattern, inputs, options);
  prepared.enqueue();
  return prepared.result();
}

}  // namespace tessera::cuda
