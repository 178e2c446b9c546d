// The float64 naive attention executor: the numerical oracle every other target is checked against.
//
// It materialises every logit, evaluates the pattern's mask and score through the IR interpreter
// (ir::PatternEvaluator) and does the softmax in double precision. Slow by design; correctness only.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"

namespace tessera::reference {

using AttentionInputs = targets::AttentionInputs;

// Output [B, H, N, Dv] in C order, float64. Query row i sits at key position q = i + M - N; query head h reads
// kv head h / (H / Hkv). A row with no allowed key, or whose largest score is -inf, is all zeros.
// Throws runtime::TensorError for bad Q/K/V shapes or dtypes, ir::EvalError for a missing or mis-shaped
// run-time tensor or an out-of-bounds index the pattern computes.
std::vector<double> attention_f64(const ir::Pattern& pattern, const AttentionInputs& inputs);

// The same, rounded to a float32 tensor [B, H, N, Dv].
runtime::Tensor attention(const ir::Pattern& pattern, const AttentionInputs& inputs);

}  // namespace tessera::reference
