#include "targets/cpu/cpu_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>

#include "compiler/analysis/tensor_value_bounds.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/simplify.h"
#include "compiler/planner/sparsity_plan.h"
#include "targets/common/tensor_index_bounds.h"
#include "targets/cpu/attention_driver.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/compiled_kernel.h"
#include "targets/cpu/execution_plan.h"
#include "targets/cpu/hardmax_attention.h"
#include "targets/cpu/tuned_schedules.h"

namespace tessera::cpu {

namespace {

using runtime::Tensor;

std::map<std::string, std::vector<int64_t>> tensor_shapes(const targets::RuntimeTensorViews& tensors) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, view] : tensors.views) shapes[name] = view.shape;
  return shapes;
}

}  // namespace

std::string halide_target_string() {
  static const std::string target = cpu_target().to_string();
  return target;
}

CpuSchedule default_schedule(const std::string& halide_target) {
  CpuSchedule schedule;
  if (halide_target.find("avx512") == std::string::npos) {
    schedule.block_q = 64;
    schedule.vector_width = 8;
    schedule.row_vectors = 2;
    schedule.qk_tile = 12;
    schedule.pv_tile = 8;
  }
  return schedule;
}

const CpuSchedule& host_default_schedule() {
  static const CpuSchedule schedule = default_schedule(halide_target_string());
  return schedule;
}

int64_t* schedule_field(CpuSchedule& schedule, std::string_view name) {
  for (const ScheduleField& f : kScheduleFields) {
    if (name == f.name) return &(schedule.*f.member);
  }
  return nullptr;
}

CpuSchedule parse_schedule(const std::string& text, const CpuSchedule& base) {
  CpuSchedule schedule = base;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    size_t eq = item.find('=');
    int64_t* field = eq == std::string::npos ? nullptr : schedule_field(schedule, item.substr(0, eq));
    if (!field) {
      std::string names;
      for (const ScheduleField& f : kScheduleFields) names += fmt::format("{}{}", names.empty() ? "" : ", ", f.name);
      throw std::invalid_argument(
          fmt::format("bad schedule item '{}': expected NAME=VALUE with NAME one of {}", item, names));
    }
    try {
      size_t used = 0;
      *field = std::stoll(item.substr(eq + 1), &used);
      const int64_t least = field == &schedule.reindex ? 0 : 1;
      if (used != item.size() - eq - 1 || *field < least || (least == 0 && *field > 1)) {
        throw std::invalid_argument("");
      }
    } catch (const std::exception&) {
      throw std::invalid_argument(fmt::format("bad schedule value in '{}': expected {}", item,
                                              item.rfind("reindex", 0) == 0 ? "0 or 1" : "a positive integer"));
    }
  }
  return schedule;
}

std::string describe(const CpuSchedule& s) {
  std::string text;
  for (const ScheduleField& f : kScheduleFields)
    text += fmt::format("{}{}={}", text.empty() ? "" : ",", f.name, s.*f.member);
  return text;
}

void validate_schedule(const CpuSchedule& sched) {
  if (sched.block_q < 1 || sched.min_block_q < 1 || sched.block_k < 1 || sched.vector_width < 1 || sched.chunk_k < 1 ||
      sched.chunk_k % sched.block_k != 0 || sched.chunk_k % sched.vector_width != 0 || sched.reindex < 0 ||
      sched.reindex > 1 || sched.row_vectors < 1 || sched.qk_tile < 1 || sched.pv_tile < 1 || sched.grain < 1 ||
      sched.kv_splits < 1) {
    throw std::invalid_argument(
        fmt::format("bad CPU schedule ({}): sizes must be >= 1, chunk_k a multiple of block_k and of vector_width, "
                    "reindex 0 or 1",
                    describe(sched)));
  }
  // Halide 14's simplifier rewrites a two-lane vector built from two scalars a, b (as a tile's rows become when
  // the mask cannot be vectorised across them) as ramp(a, b - a, 2). For floats that is wrong: a masked -inf
  // score gives -inf + inf = NaN in the other lane, and finite ones round. Four lanes or more need equal steps
  // between lanes, which it cannot prove of floats.
  if (sched.vector_width == 2) {
    throw std::invalid_argument(fmt::format(
        "bad CPU schedule ({}): vector_width 2 is not supported (Halide 14 miscompiles two-lane float vectors); "
        "use 1, 4 or more",
        describe(sched)));
  }
}

runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                          const CpuOptions& options) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs, targets::OperandTypes::Float32OrBFloat16);
  Tensor out(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  attention_into(pattern, inputs, out, options);
  return out;
}

namespace {

// The pattern with D bound to `head_dim`: additive scoring's kernels see the projections' length as D.
ir::Pattern with_head_dim(ir::Pattern pattern, int64_t head_dim) {
  const ir::Expr d = ir::int_imm(head_dim);
  pattern.mask = ir::simplify(ir::substitute(pattern.mask, ir::Var::D, d));
  pattern.score = ir::simplify(ir::substitute(pattern.score, ir::Var::D, d));
  pattern.weight = ir::simplify(ir::substitute(pattern.weight, ir::Var::D, d));
  return pattern;
}

// Additive scoring's per-pair tanh(q + k) is 1 - 2 / (e^(2q) e^(2k) + 1): with Q and K replaced by e^(2q), e^(2k)
// once per row, a pair costs a product and a division instead of an exp (4x faster at N=4096, A=D=64, on the
// AVX2 VM of bench/RESULTS.md). Exact only while the product stays a normal float, so only when every projected
// value lies within +-20 (e^80 < FLT_MAX, e^-80 > FLT_MIN); otherwise (or with a NaN) the kernels take the exp
// per pair. Returns whether it exponentiated.
bool exponentiate_additive_projections(targets::AdditiveProjection& projected) {
  constexpr float kLimit = 20.0f;
  for (Tensor* t : {&projected.q, &projected.k}) {
    const float* x = t->data<float>();
    for (int64_t e = 0; e < t->numel(); ++e) {
      if (!(std::abs(x[e]) <= kLimit)) return false;
    }
  }
  for (Tensor* t : {&projected.q, &projected.k}) {
    float* x = t->data<float>();
    for (int64_t e = 0; e < t->numel(); ++e) x[e] = static_cast<float>(std::exp(2.0 * static_cast<double>(x[e])));
  }
  return true;
}

// Throws TensorError naming `out` unless it is float32 [B, H, N, Dv].
void check_output(const Tensor& out, const ir::AttentionSizes& sz) {
  const std::vector<int64_t> out_shape{sz.B, sz.H, sz.N, sz.Dv};
  if (out.dtype() != runtime::DType::Float32 || out.shape() != out_shape) {
    throw runtime::TensorError(
        fmt::format("attention output is {}, expected float32{}", out.type_string(), runtime::shape_string(out_shape)));
  }
}

// Whether the fused softmax kernels read Q, K and V where they lie (a KV cache's rows, strided operands): when
// nothing projects them first and they are stored as the kernels read them (float32 operands with float32 storage,
// bf16 with bf16). Hardmax, additive or bilinear scoring and operands to be rounded read dense (converted or
// projected) copies.
bool reads_operands_in_place(const ir::Pattern& pattern, const CpuOptions& options, runtime::DType operands) {
  return pattern.normalizer == ir::Normalizer::Softmax && pattern.scoring != ir::Scoring::Additive &&
         pattern.query_projection.empty() &&
         (options.storage == StorageType::BFloat16) == (operands == runtime::DType::BFloat16);
}

// A dense [B, heads, rows, width] copy of `shape`'s rows of t (float32 or bf16) laid out as `strides` say (zero:
// t's own dense layout, whose row count may exceed rows, as a KV cache's capacity does).
Tensor dense_copy(const Tensor& t, const std::vector<int64_t>& shape, const RowStrides& strides) {
  const std::vector<int64_t>& own = t.shape();
  const RowStrides from = strides.or_dense(own[1], own[2], own[3]);
  Tensor dense(t.dtype(), shape);
  const size_t element = runtime::dtype_size(t.dtype());
  const auto* in = static_cast<const char*>(t.raw_data());
  auto* copy = static_cast<char*>(dense.raw_data());
  for (int64_t b = 0; b < shape[0]; ++b)
    for (int64_t h = 0; h < shape[1]; ++h)
      for (int64_t r = 0; r < shape[2]; ++r)
        std::memcpy(copy + static_cast<size_t>((b * shape[1] + h) * shape[2] + r) * shape[3] * element,
                    in + static_cast<size_t>(from.offset(b, h, r)) * element, static_cast<size_t>(shape[3]) * element);
  return dense;
}

void run_kernels(const ir::Pattern& pattern, const targets::AttentionInputs& projected, const ir::AttentionSizes& sz,
                 double scale, const targets::RuntimeTensorViews& tensors,
                 const std::map<std::string, std::vector<int64_t>>& shapes, Tensor& out, const CpuOptions& options,
                 bool additive_exponentials = false, int64_t key_rows = 0, const OperandStrides& strides = {}) {
  const CpuSchedule sched =
      options.tuned ? options.tuned->choose(pattern, sz, options.storage, options.schedule).schedule : options.schedule;
  validate_schedule(sched);
  for (int64_t size : {sz.B * sz.H, sz.N, sz.M, sz.D, sz.Dv}) {
    if (size > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("the CPU target needs sizes < 2^31");
  }

  const Tensor* q = projected.q;
  const Tensor* k = projected.k;
  const Tensor* v = projected.v;
  const bool bf16 = options.storage == StorageType::BFloat16;
  // A KV cache view (rows past `M` in each head are not keys) is read in place: never rounded whole, nor read densely.
  if (key_rows > 0 &&
      ((bf16 && k->dtype() != runtime::DType::BFloat16) || pattern.normalizer == ir::Normalizer::Hardmax))
    throw std::logic_error("tessera internal error: a KV cache view reaches a kernel that reads dense K and V");
  // bf16 storage: Q, K, V rounded to bfloat16 (runtime::to_bfloat16) unless given so; the kernels widen them by a
  // shift and accumulate in float32.
  Tensor q_rounded, k_rounded, v_rounded;
  auto as_bf16 = [bf16](const Tensor* t, Tensor& rounded) {
    if (!bf16 || t->dtype() == runtime::DType::BFloat16) return t;
    rounded = runtime::to_bfloat16(*t);
    return static_cast<const Tensor*>(&rounded);
  };
  const Tensor& q_bf16 = *as_bf16(q, q_rounded);
  const Tensor& k_bf16 = *as_bf16(k, k_rounded);
  const Tensor& v_bf16 = *as_bf16(v, v_rounded);
  check_output(out, sz);
  if (sz.N == 0 || sz.M == 0) {  // no queries, or nothing to attend to: zeros
    const RowStrides o = strides.out.or_dense(sz.H, sz.N, sz.Dv);
    for (int64_t b = 0; b < sz.B; ++b)
      for (int64_t h = 0; h < sz.H; ++h)
        for (int64_t i = 0; i < sz.N; ++i) std::fill_n(out.data<float>() + o.offset(b, h, i), sz.Dv, 0.0f);
    return;
  }
  analysis::ClassifyOptions classify;
  classify.B = sz.B;
  classify.H = sz.H;
  classify.D = sz.D;
  // A mask that reads run-time tensors (document's segment ids) is classified per call from the values the
  // tensors hold over each tile, e.g. tiles whose query and key segment ids cannot meet are EMPTY.
  const bool per_call_tiles = ir::uses_tensors(pattern.mask);
  if (per_call_tiles) classify.load_bounds = analysis::make_load_bounds(tensors.views);
  if (pattern.normalizer == ir::Normalizer::Hardmax) {
    hardmax_attention_into(pattern, sz, scale, bf16 ? q_bf16 : *q, bf16 ? k_bf16 : *k, bf16 ? v_bf16 : *v, tensors,
                           classify, options.storage, out);
    return;
  }

  // A mask that reads run-time tensors is planned and tiled once from the mask alone (every tile the values could
  // fill is PARTIAL), then classified per call with those tiles: the kernels compiled for them serve every call.
  const std::shared_ptr<const ExecutionPlan> call_plan = call_execution_plan(pattern, sz, sched, classify);
  const ExecutionPlan& execution = *call_plan;
  const std::vector<tessera_cpu_driver::ComponentPlan> components = driver_components(execution, pattern, sz, shapes);

  bool values_finite = true;
  if (options.values_finite) {
    // known to the caller
  } else if (key_rows > 0) {
    // Each head's first M rows of the cache, in either element type.
    const auto keys_finite = [&](const auto* values) {
      bool finite = true;
      for (int64_t head = 0; head < sz.B * sz.Hkv && finite; ++head)
        finite = tessera_cpu_driver::all_finite(values + head * key_rows * sz.Dv, sz.M * sz.Dv);
      return finite;
    };
    values_finite = bf16 ? keys_finite(v_bf16.data<uint16_t>()) : keys_finite(v->data<float>());
  } else if (bf16) {
    values_finite = tessera_cpu_driver::all_finite(v_bf16.data<uint16_t>(), v_bf16.numel());
  } else if (!strides.v.dense()) {
    for (int64_t b = 0; b < sz.B && values_finite; ++b)
      for (int64_t h = 0; h < sz.Hkv && values_finite; ++h)
        for (int64_t j = 0; j < sz.M && values_finite; ++j)
          values_finite = tessera_cpu_driver::all_finite(v->data<float>() + strides.v.offset(b, h, j), sz.Dv);
  } else {
    values_finite = tessera_cpu_driver::all_finite(v->data<float>(), v->numel());
  }
  std::vector<tessera_cpu_driver::Kernel> kernels;
  for (size_t c = 0; c < execution.plan.components.size(); ++c) {
    AttentionPipelineKey key =
        component_kernel_key(execution, c, pattern, sz, sched, options.storage, halide_target_string(), !values_finite);
    if (options.storage == StorageType::BFloat16) {
      static const std::string dot_target = bf16_dot_target().to_string();
      AttentionPipelineKey dot_key = key;
      dot_key.target = dot_target;
      if (bf16_dot_applies(dot_key, execution.plan.components[c].local)) key = std::move(dot_key);
    }
    key.additive_exponentials = additive_exponentials;
    kernels.push_back(driver_kernel(compiled_kernel(execution.plan.components[c].local, key)));
  }

  // Run-time tensors as Halide sees them: dimensions innermost first, ordered by name like the kernels' inputs.
  std::vector<tessera_cpu_driver::Buffer> tensor_buffers;
  for (const auto& [name, view] : tensors.views) {
    tensor_buffers.push_back(
        tessera_cpu_driver::Buffer::dense(const_cast<void*>(view.data),
                                          view.elem_type == ir::ElemType::Int32 ? halide_type_t(halide_type_int, 32)
                                                                                : halide_type_t(halide_type_float, 32),
                                          std::vector<int64_t>(view.shape.rbegin(), view.shape.rend())));
  }

  tessera_cpu_driver::Problem problem;
  if (bf16) {
    problem.q = q_bf16.data<uint16_t>();
    problem.k = k_bf16.data<uint16_t>();
    problem.v = v_bf16.data<uint16_t>();
    problem.qkv_type = halide_type_t(halide_type_uint, 16);
  } else {
    problem.q = q->data<float>();
    problem.k = k->data<float>();
    problem.v = v->data<float>();
  }
  problem.out = out.data<float>();
  problem.B = sz.B;
  problem.H = sz.H;
  problem.Hkv = sz.Hkv;
  problem.N = sz.N;
  problem.M = sz.M;
  problem.D = sz.D;
  problem.Dv = sz.Dv;
  problem.key_rows = key_rows;
  problem.q_strides = strides.q;
  problem.k_strides = strides.k;
  problem.v_strides = strides.v;
  problem.out_strides = strides.out;
  problem.scale = static_cast<float>(scale);
  for (const tessera_cpu_driver::Buffer& b : tensor_buffers) problem.tensors.push_back(&b.buf);
  problem.max_tiles_per_call = sched.grain;
  problem.kv_splits = sched.kv_splits;
  problem.threads = sched.threads;
  if (int code = tessera_cpu_driver::run(problem, components, kernels); code != 0) {
    throw std::runtime_error(fmt::format("tessera internal error: a CPU kernel failed with Halide error {}", code));
  }
}

// attention_into with the sizes given: K and V hold key_rows >= sz.M rows per head, the first sz.M of them keys
// (0: exactly sz.M).
void attention_into_sizes(const ir::Pattern& pattern, const targets::AttentionInputs& given,
                          const ir::AttentionSizes& sz, int64_t key_rows, Tensor& out, const CpuOptions& options) {
  const double scale = targets::attention_scale(pattern, given, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, given);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  Tensor projected_q;  // bilinear scoring: the kernels read the projected queries
  const targets::AttentionInputs projected = targets::project_queries(pattern, given, sz, projected_q);
  const std::map<std::string, std::vector<int64_t>> shapes = tensor_shapes(tensors);
  if (projected.q->dtype() == runtime::DType::BFloat16) {
    if (!targets::tensor_indices_proven(pattern, sz, shapes)) {
      const Tensor q = runtime::bfloat16_to_float32(*projected.q);
      targets::check_tensor_indices(pattern, sz, shapes, evaluator, q.data<float>());
    }
  } else {
    targets::check_tensor_indices(pattern, sz, shapes, evaluator, projected.q->data<float>());
  }
  if (pattern.scoring == ir::Scoring::Additive) {
    // The kernels read Q and K projected once per row and run with D = A and Hkv = H; the D the pattern's
    // expressions may read stays the caller's.
    targets::AdditiveProjection additive;
    targets::project_for_additive(pattern, given, sz, additive);
    // The hardmax kernel scores with the exp per pair.
    const bool exponentials =
        pattern.normalizer == ir::Normalizer::Softmax && exponentiate_additive_projections(additive);
    if (key_rows > 0)
      throw std::logic_error("tessera internal error: additive scoring projects dense K, not a KV cache view");
    run_kernels(with_head_dim(pattern, sz.D), additive.inputs, additive.sizes, scale, tensors, shapes, out, options,
                exponentials);
  } else {
    run_kernels(pattern, projected, sz, scale, tensors, shapes, out, options, false, key_rows);
  }
}

}  // namespace

void attention_into(const ir::Pattern& pattern, const targets::AttentionInputs& given, Tensor& out,
                    const CpuOptions& options) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(given, targets::OperandTypes::Float32OrBFloat16);
  if (given.q->dtype() != runtime::DType::BFloat16) return attention_into_sizes(pattern, given, sz, 0, out, options);
  if (options.storage != StorageType::BFloat16) {
    throw runtime::TensorError(
        fmt::format("bfloat16 Q, K and V need bf16 storage (--dtype bf16), got Q {}", given.q->type_string()));
  }
  // The kernels read bf16 operands as they are; what projects Q or K first (additive and bilinear scoring) reads
  // float32, widened exactly.
  if (pattern.scoring != ir::Scoring::Additive && pattern.query_projection.empty()) {
    return attention_into_sizes(pattern, given, sz, 0, out, options);
  }
  const targets::ConvertedOperands widened(given, runtime::bfloat16_to_float32);
  attention_into_sizes(pattern, widened.inputs, sz, 0, out, options);
}

void attention_over_cache_into(const ir::Pattern& pattern, const targets::AttentionInputs& inputs, int64_t keys,
                               Tensor& out, const CpuOptions& options) {
  // M: the cache's capacity
  ir::AttentionSizes sz = targets::validate_attention_inputs(inputs, targets::OperandTypes::Float32OrBFloat16);
  if (keys < 0 || keys > sz.M) {
    throw runtime::TensorError(fmt::format("a KV cache of {} rows per head (k{}) cannot hold {} keys", sz.M,
                                           runtime::shape_string(inputs.k->shape()), keys));
  }
  if (keys == sz.M) return attention_into(pattern, inputs, out, options);
  if (inputs.k->dtype() == runtime::DType::BFloat16 && options.storage != StorageType::BFloat16) {
    throw runtime::TensorError(
        fmt::format("a bfloat16 KV cache needs bf16 storage (--dtype bf16), got K {}", inputs.k->type_string()));
  }
  if (!reads_operands_in_place(pattern, options, inputs.k->dtype())) {
    const auto first_rows = [&](const Tensor& t) {  // each head's first `keys` rows, densely
      return dense_copy(t, {t.dim(0), t.dim(1), keys, t.dim(3)}, {});
    };
    const Tensor k = first_rows(*inputs.k), v = first_rows(*inputs.v);
    targets::AttentionInputs dense = inputs;
    dense.k = &k;
    dense.v = &v;
    return attention_into(pattern, dense, out, options);
  }
  const int64_t capacity = sz.M;
  sz.M = keys;
  attention_into_sizes(pattern, inputs, sz, capacity, out, options);
}

void attention_strided_into(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                            const OperandStrides& strides, Tensor& out, const CpuOptions& options) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs);
  if (strides.q.dense() && strides.k.dense() && strides.v.dense() && strides.out.dense()) {
    return attention_into(pattern, inputs, out, options);
  }
  check_output(out, sz);
  const double scale = targets::attention_scale(pattern, inputs, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, inputs);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  const std::map<std::string, std::vector<int64_t>> shapes = tensor_shapes(tensors);
  const bool in_place = reads_operands_in_place(pattern, options, inputs.q->dtype()) &&
                        targets::tensor_indices_proven(pattern, sz, shapes, nullptr);
  if (in_place) return run_kernels(pattern, inputs, sz, scale, tensors, shapes, out, options, false, 0, strides);

  // The other cases read dense operands: gather them, compute, scatter the output.
  const Tensor q = dense_copy(*inputs.q, inputs.q->shape(), strides.q);
  const Tensor k = dense_copy(*inputs.k, inputs.k->shape(), strides.k);
  const Tensor v = dense_copy(*inputs.v, inputs.v->shape(), strides.v);
  targets::AttentionInputs dense = inputs;
  dense.q = &q;
  dense.k = &k;
  dense.v = &v;
  Tensor result(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  attention_into(pattern, dense, result, options);
  const RowStrides to = strides.out.or_dense(sz.H, sz.N, sz.Dv);
  for (int64_t b = 0; b < sz.B; ++b)
    for (int64_t h = 0; h < sz.H; ++h)
      for (int64_t i = 0; i < sz.N; ++i)
        std::copy_n(result.data<float>() + ((b * sz.H + h) * sz.N + i) * sz.Dv, sz.Dv,
                    out.data<float>() + to.offset(b, h, i));
}

CpuSchedule few_query_schedule(CpuSchedule schedule, int64_t queries) {
  if (queries >= schedule.block_q) return schedule;
  const auto rows = static_cast<int64_t>(std::bit_ceil(static_cast<uint64_t>(std::max<int64_t>(queries, 1))));
  if (queries <= 4) {
    // Two rows would make two-lane vectors, which validate_schedule refuses: two queries take one-row tiles (the
    // single-row kernel; 2 queries x 4096 keys, causal, measured no slower than a 2- or 4-row tile).
    schedule.block_q = rows == 2 ? 1 : rows;
    schedule.vector_width = schedule.block_q;
  } else if (queries <= 16) {
    schedule.block_q = std::min<int64_t>(schedule.block_q, 16);
    schedule.vector_width = std::min(schedule.vector_width, schedule.block_q);
  } else {
    schedule.block_q = std::min(schedule.block_q, std::max(schedule.vector_width, rows));
  }
  return schedule;
}

}  // namespace tessera::cpu
