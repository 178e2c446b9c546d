// Constant folding and simple algebraic simplification of expression IR.
#pragma once

#include "compiler/ir/expr.h"
#include "dsl/diagnostics.h"

namespace tessera::ir {

// Returns an equivalent, simplified expression (same value at every point, same type). Folds constants,
// applies identities (x + 0, x * 1, x * 0 for ints, true && x, !!x, select(true, a, b), min(x, x), ...).
// When `diags` is given, an integer `/` or `%` whose divisor folds to the constant 0 is reported there as
// "division by zero" at the divisor's source range (the expression is still returned, with Tessera's
// run-time semantics: the result is 0).
Expr simplify(const Expr& e, dsl::Diagnostics* diags = nullptr);

}  // namespace tessera::ir
