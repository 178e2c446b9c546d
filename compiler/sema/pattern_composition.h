// Combining instantiated patterns with `&`, `|` and `-`, and the canonical names of the results.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "dsl/ast.h"

namespace tessera::sema {

// Additive scoring replaces the query vectors by their projections (of another length than D), so nothing may read
// q_vec alongside it: whether a pattern with these parts does, an error, and its message.
inline bool additive_reads_query(ir::Scoring scoring, const ir::Expr& mask, const ir::Expr& score,
                                 const ir::Expr& weight) {
  return scoring == ir::Scoring::Additive &&
         (ir::reads_query_vector(mask) || ir::reads_query_vector(score) || ir::reads_query_vector(weight));
}
std::string additive_query_conflict_message(const std::string& pattern_name);

// One instantiated pattern expression, before it becomes an ir::Pattern.
struct Instance {
  std::string name;  // canonical source form
  // How tightly `name` binds, to parenthesise it as an operand: 2 for a single pattern, 1 for `&`, 0 for `|`/`-`.
  int precedence = 2;
  ir::Expr mask;                         // Bool
  ir::Expr score;                        // Float, an expression of s
  ir::Expr weight = ir::float_imm(1.0);  // Float
  ir::Normalizer normalizer = ir::Normalizer::Softmax;
  ir::Scoring scoring = ir::Scoring::ScaledDot;
  std::string query_projection;                                    // see ir::Pattern
  ir::AdditiveScoring additive;                                    // see ir::Pattern
  dsl::SourceRange weight_where, normalizer_where, scoring_where;  // the statements that set them, for diagnostics
  // Set by compose(): both operands chose a scoring function other than the default, and not the same one.
  bool scoring_conflict = false;

  bool chooses_scoring() const { return scoring != ir::Scoring::ScaledDot || !query_projection.empty(); }

  bool has_additive_query_conflict() const { return additive_reads_query(scoring, mask, score, weight); }

  // A weight under hardmax: an error (see pattern_library.cpp).
  bool has_weight_conflict() const {
    return normalizer == ir::Normalizer::Hardmax && !(weight->kind == ir::Kind::FloatImm && weight->float_value == 1.0);
  }
};

// a & b: both masks, score = b.score(a.score(s)), weight a.weight * b.weight, the normaliser and the scoring
// function either one sets.
// a | b: either mask, score, weight and normaliser as for `&`.
// a - b: a's mask and not b's, a's score, weight and normaliser. Trivially constant masks, identity scores and
// unit weights are folded away. Two different normalisers other than softmax are the caller's error to report.
Instance compose(dsl::ast::PatternExprKind kind, const Instance& lhs, const Instance& rhs);

// Every tensor read by `mask`, then `score`, then `weight`, in first-use order, as declared in `tensors`.
std::vector<ir::TensorDecl> collect_inputs(const ir::Expr& mask, const ir::Expr& score, const ir::Expr& weight,
                                           const std::map<std::string, ir::TensorDecl>& tensors);

}  // namespace tessera::sema
