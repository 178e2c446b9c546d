// Pattern IR: what one attention pattern means after elaboration, independent of any target.
//
// For query row i and key column j of batch b and head h, the pair (i, j) takes part in attention iff `mask`
// evaluates to true; its logit s = scale * (q_vec . k_vec) is then replaced by `score` (an expression of s).
// A row with no allowed key outputs zeros.
#pragma once

#include <string>
#include <vector>

#include "compiler/ir/expr.h"

namespace tessera::ir {

// A run-time tensor a pattern reads, e.g. `tensor segments: int32[B, M]`. Each dimension is either one of the
// attention sizes ("B", "H", "Hkv", "N", "M", "D", "Dv"), checked against the actual Q/K/V shapes, or a new
// name (like "R") that is bound from the tensor's shape at run time and visible to expressions as a Symbol.
struct TensorDecl {
  std::string name;
  ElemType elem_type = ElemType::Float32;
  std::vector<std::string> dims;
  dsl::SourceRange where;
};

bool is_attention_size(const std::string& dim_name);  // B, H, Hkv, N, M, D, Dv

struct Pattern {
  std::string name;                // canonical source form, e.g. "causal & sliding_window(window=256)"
  Expr mask;                       // Bool; bool_imm(true) when the pattern restricts nothing ("all keys")
  Expr score;                      // Float; var(Var::Score) when the pattern does not modify the logit
  std::vector<TensorDecl> inputs;  // every run-time tensor that mask or score reads, in first-use order

  bool has_mask() const;   // mask is not the constant true
  bool has_score() const;  // score is not just `s`
  const TensorDecl* input(const std::string& tensor_name) const;
};

}  // namespace tessera::ir
