// Elaboration of one DSL expression: name resolution, type checking with int-to-float promotion, and lowering
// to the expression IR.
#pragma once

#include <map>
#include <set>
#include <string>

#include "compiler/ir/expr.h"
#include "compiler/ir/pattern.h"
#include "dsl/ast.h"
#include "dsl/diagnostics.h"

namespace tessera::sema {

// A name bound to an IR value: a parameter (a Symbol while unbound, a constant once bound) or a `let`.
struct Binding {
  ir::Expr value;
  dsl::SourceRange where;  // the declaration
};

// What an expression may refer to.
struct Scope {
  const std::map<std::string, ir::TensorDecl>* tensors = nullptr;              // every declared run-time tensor
  const std::map<std::string, dsl::SourceRange>* dimension_symbols = nullptr;  // like R: Int symbols
  std::map<std::string, Binding> params;
  std::map<std::string, Binding> lets;
  // Whether the built-in variables (q, k, ..., s, scale), q_vec, tensors and dimension symbols are visible.
  // When not, using one is an error naming `constant_context`, e.g. "a pattern argument".
  bool allow_run_time_values = true;
  std::string constant_context;
  // Names whose declaration had an error: uses are not reported again (the expression just fails).
  std::set<std::string> poisoned;
};

// Whether `name` is a built-in variable (q, k, i, j, b, h, H, N, M, D, s, scale) or q_vec.
bool is_builtin_name(const std::string& name);

// Returns the IR of `e`, or null after reporting its errors into `diags` (one error per faulty subexpression;
// an operand's error is not repeated by the expression using it).
ir::Expr elaborate_expression(const dsl::ast::Expr& e, const Scope& scope, dsl::Diagnostics& diags);

// The first node of `e` (pre-order) that only a score may read: the logit `s` or dot(q_vec, ...). Null if none.
const ir::Node* find_score_only_value(const ir::Expr& e);
// The first node of `e` that varies with the attention position: a built-in variable, tensor read or dimension
// symbol (anything but parameters and constants). Null if none.
const ir::Node* find_run_time_value(const ir::Expr& e, const std::map<std::string, Binding>& params);

// `e` converted to float if it is an int (an explicit float(e) node, as the IR requires).
ir::Expr promote_to_float(const ir::Expr& e);

}  // namespace tessera::sema
