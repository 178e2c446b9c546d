// Pattern IR: what one attention pattern means after elaboration, independent of any target.
//
// For query row i and key column j of batch b and head h, the pair (i, j) takes part in attention iff `mask`
// evaluates to true; its logit s = scale * (q_vec . k_vec) is then replaced by `score` (an expression of s).
// The normaliser turns a row's scores into probabilities p (softmax by default), and the output row is
// sum_j p_ij * weight_ij * v_j: the weight multiplies the probabilities without renormalising them.
// A row with no allowed key outputs zeros.
#pragma once

#include <optional>
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

// How a logit is computed from the query and key vectors, before `score` modifies it.
enum class Scoring : uint8_t {
  ScaledDot,  // s = scale * (q_vec . k_vec), scale = 1/sqrt(D) unless the caller gives one
  Dot,        // s = q_vec . k_vec: the scale is 1 unless the caller gives one
  Additive,   // s = v[h] . tanh(q_vec + k_vec) over projected vectors (see AdditiveScoring); the scale is 1 unless
              // the caller gives one
};
const char* scoring_name(Scoring scoring);  // "scaled_dot", "dot", "additive"

// Additive (Bahdanau, Luong's "concat") scoring v^T tanh(Wq q + Wk k), as elaboration rewrites it: each query
// and each key is projected once, q_vec := Wq[h] . q_vec and k_vec := Wk[h] . k_vec (Wq, Wk float32 [H, A, D],
// the same A), and each pair scores v[h] . tanh(q_vec + k_vec) (v float32 [H, A]): A tanh per pair, never an
// N x M x A buffer. The names are tensors among the pattern's inputs; all empty unless scoring is Additive.
struct AdditiveScoring {
  std::string query_weight, key_weight, vector;

  bool empty() const { return vector.empty(); }
  bool operator==(const AdditiveScoring&) const = default;
};

// How a row's scores become probabilities.
enum class Normalizer : uint8_t {
  Softmax,  // exp(s - max) / sum over the allowed keys
  Hardmax,  // 1 for the highest-scoring allowed key (the lowest key index among equal scores), 0 elsewhere
};
const char* normalizer_name(Normalizer normalizer);  // "softmax", "hardmax"

struct Pattern {
  std::string name;                // canonical source form, e.g. "causal & sliding_window(window=256)"
  Expr mask;                       // Bool; bool_imm(true) when the pattern restricts nothing ("all keys")
  Expr score;                      // Float; var(Var::Score) when the pattern does not modify the logit
  std::vector<TensorDecl> inputs;  // every run-time tensor that mask, score or weight reads, in first-use order
  Expr weight = float_imm(1.0);    // Float, never reads s; float_imm(1) when the probabilities are not weighted
  Normalizer normalizer = Normalizer::Softmax;
  Scoring scoring = Scoring::ScaledDot;
  // Bilinear scoring q_vec . W[h] . k_vec, as elaboration rewrites it: every query vector is first projected,
  // q_vec := q_vec . W[h] with W this float32 [H, D, D] tensor (one of `inputs`), and then scored as `scoring`
  // says. Empty when the queries are used as given.
  std::string query_projection;
  AdditiveScoring additive;

  bool has_mask() const;    // mask is not the constant true
  bool has_score() const;   // score is not just `s`
  bool has_weight() const;  // weight is not the constant 1
  const TensorDecl* input(const std::string& tensor_name) const;
};

// What makes `pattern` more than softmax over (scaled or plain) dot products of the given queries and keys, as
// a noun phrase ("weight:", "hardmax normaliser", "bilinear scoring", "additive scoring"), or nullopt: what the
// targets and layers that know only that plain form name when they refuse a pattern.
std::optional<std::string> beyond_dot_product_softmax(const Pattern& pattern);

}  // namespace tessera::ir
