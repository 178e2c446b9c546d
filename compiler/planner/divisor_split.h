// Floor division and modulo by a constant D of a sum with terms that are multiples of D: x = D * a + b gives
// x / D == a + b / D and x % D == b % D. Re-indexing writes positions as origin + P * (x / g) + x % g; split this
// way, `position % P` becomes `(origin + x % g) % P`, which interval analysis bounds by the view's own columns,
// and which costs a kernel fewer divisions per pair.
#pragma once

#include "compiler/analysis/interval.h"
#include "compiler/ir/expr.h"

namespace tessera::planner {

// `e` with every Div and Mod by a positive constant split as above, where the dividend is a sum of integer terms
// (anything that is not a sum, difference, negation or product by a constant is one term). The identities hold in
// exact integers; a dividend whose bounds over `ranges` are not finite, which could wrap, is left alone.
ir::Expr split_by_divisors(const ir::Expr& e, const analysis::VarRanges& ranges);

}  // namespace tessera::planner
