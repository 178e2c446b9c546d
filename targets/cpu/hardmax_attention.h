// The CPU kernel of patterns whose normaliser is hardmax: each query row takes the value row of its
// highest-scoring allowed key (the lowest key index among equal scores), zeros when no key is allowed or every
// allowed score is -inf, NaN when an allowed score is NaN (as the reference).
//
// One JIT-compiled Halide pipeline per (pattern, head dimensions, storage, target), cached: per block of query
// rows it walks the keys once, keeping (best score, its key, whether a NaN was seen) per row in registers, then
// gathers the winning value rows. No N x M buffer exists. Each block of rows reads only the keys from its first
// to its last non-empty key tile (classified per call), so a banded mask pays for its band; the planner's
// re-indexing (strided, fixed) is not applied to hardmax, since ties must be broken in key order.
#pragma once

#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

// `q`, `k`, `v` hold float32, or bf16 bits (uint16) when `storage` is BFloat16; `tensors` are the pattern's
// run-time tensors, already validated and index-checked by the caller; `classify` classifies this call's tiles
// (the softmax kernels' options, load bounds included); `out` is float32 [B, H, N, Dv].
void hardmax_attention_into(const ir::Pattern& pattern, const ir::AttentionSizes& sz, double scale,
                            const runtime::Tensor& q, const runtime::Tensor& k, const runtime::Tensor& v,
                            const targets::RuntimeTensorViews& tensors, const analysis::ClassifyOptions& classify,
                            StorageType storage, runtime::Tensor& out);

}  // namespace tessera::cpu
