// Combining instantiated patterns with `&`, `|` and `-`, and the canonical names of the results.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "dsl/ast.h"

namespace tessera::sema {

// One instantiated pattern expression, before it becomes an ir::Pattern.
struct Instance {
  std::string name;  // canonical source form
  // How tightly `name` binds, to parenthesise it as an operand: 2 for a single pattern, 1 for `&`, 0 for `|`/`-`.
  int precedence = 2;
  ir::Expr mask;   // Bool
  ir::Expr score;  // Float, an expression of s
};

// a & b: both masks, score = b.score(a.score(s)).  a | b: either mask, score as for `&`.
// a - b: a's mask and not b's, a's score. Trivially constant masks and identity scores are folded away.
Instance compose(dsl::ast::PatternExprKind kind, const Instance& lhs, const Instance& rhs);

// Every tensor read by `mask` then `score`, in first-use order, as declared in `tensors`.
std::vector<ir::TensorDecl> collect_inputs(const ir::Expr& mask, const ir::Expr& score,
                                           const std::map<std::string, ir::TensorDecl>& tensors);

}  // namespace tessera::sema
