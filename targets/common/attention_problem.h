// What every target receives: Q, K, V, the run-time tensors a pattern reads, and the scale — validated once,
// the same way, so every target reports bad input with the same messages.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "compiler/tuner/tune_cache.h"
#include "runtime/tensor.h"

namespace tessera::targets {

struct AttentionInputs {
  const runtime::Tensor* q = nullptr;  // float32 [B, H, N, D]
  const runtime::Tensor* k = nullptr;  // float32 [B, Hkv, M, D]
  const runtime::Tensor* v = nullptr;  // float32 [B, Hkv, M, Dv]
  // Run-time inputs by name ("segments", "rel", ...). int64 tensors are accepted where the pattern reads
  // int32 (numpy's default integer type); their values must fit in int32.
  std::map<std::string, const runtime::Tensor*> tensors;
  std::optional<double> scale;  // 1/sqrt(D) unless given
};

// `inputs` with Q, K and V converted element-wise (runtime::to_bfloat16, runtime::bfloat16_to_float32), the run-time
// tensors and scale kept. `inputs` points into the object itself, which therefore neither copies nor moves.
struct ConvertedOperands {
  ConvertedOperands(const AttentionInputs& given,
                    const std::function<runtime::Tensor(const runtime::Tensor&)>& convert);
  ConvertedOperands(const ConvertedOperands&) = delete;
  ConvertedOperands& operator=(const ConvertedOperands&) = delete;

  runtime::Tensor q, k, v;
  AttentionInputs inputs;
};

// The element types a target takes Q, K and V in: float32, or (the CPU target with bf16 storage) all three bf16.
enum class OperandTypes { Float32, Float32OrBFloat16 };

// Checks Q, K and V against each other (rank, dtype, B, D, Hkv, M, H % Hkv) and returns the sizes they define.
// Throws runtime::TensorError naming the tensor and the shapes.
ir::AttentionSizes validate_attention_inputs(const AttentionInputs& inputs, OperandTypes types = OperandTypes::Float32);

// The scale a pattern's logits take unless the caller gives one: 1 for `dot` and `additive` scoring, else
// 1/sqrt(D).
double natural_scale(const ir::Pattern& pattern, int64_t D);

// The logit scale: the given one (which must be finite), else natural_scale.
double attention_scale(const ir::Pattern& pattern, const AttentionInputs& inputs, const ir::AttentionSizes& sizes);

// The queries the kernels read: `inputs` itself, or, for a pattern with a query projection (bilinear scoring),
// the same inputs with q_vec := q_vec . W[h] (float64 sums, rounded to float32) in `projected`, which the result
// points to. Call it after ir::PatternEvaluator has validated the run-time tensors (W among them).
AttentionInputs project_queries(const ir::Pattern& pattern, const AttentionInputs& inputs,
                                const ir::AttentionSizes& sizes, runtime::Tensor& projected);

// What the kernels of a pattern with additive scoring read: Q and K projected once per row, q := Wq[h] . q and
// k := Wk[h] . k (every query head projects the keys of its KV head with its own Wk, so K gets H heads), V
// repeated over each KV group to match, and `sizes` with D = A and Hkv = H. Float32 products (OpenBLAS); the
// reference projects in float64 on its own. Call it after ir::PatternEvaluator has validated the run-time
// tensors (Wq, Wk among them). `inputs` points into this object: keep it alive and in place while they are used.
struct AdditiveProjection {
  runtime::Tensor q, k, v;  // v stays empty when no KV head is shared (Hkv = H): inputs.v is then the given V
  AttentionInputs inputs;
  ir::AttentionSizes sizes;
};
void project_for_additive(const ir::Pattern& pattern, const AttentionInputs& inputs, const ir::AttentionSizes& sizes,
                          AdditiveProjection& projected);

// Views of the run-time tensors `pattern` reads (others are ignored), with int64 ones narrowed to int32 copies
// owned here. A tensor the pattern needs but was not given is reported later by ir::PatternEvaluator.
struct RuntimeTensorViews {
  std::map<std::string, runtime::Tensor> narrowed;
  std::map<std::string, ir::TensorView> views;
};
RuntimeTensorViews runtime_tensor_views(const ir::Pattern& pattern, const AttentionInputs& inputs);

// The tuning cache's shape bucket of an attention problem (every target keys its schedules by it).
tuner::Shape attention_tune_bucket(const ir::AttentionSizes& sz);

}  // namespace tessera::targets
