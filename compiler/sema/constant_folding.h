// Evaluation of expressions that read nothing at run time (argument values, defaults, constraint bounds,
// requires once parameters are bound).
#pragma once

#include <optional>
#include <string>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/expr.h"
#include "dsl/diagnostics.h"

namespace tessera::sema {

// True if `e` reads no variable, symbol or tensor, so it has one value everywhere.
bool is_closed(const ir::Expr& e);
// The value of a closed expression; nullopt if `e` is not closed.
std::optional<ir::Value> constant_value(const ir::Expr& e);
// An immediate holding `value`.
ir::Expr constant_expr(const ir::Value& value, dsl::SourceRange where = {});
// `value` as the DSL writes it: 256, true, 0.5, 30.0 (floats shortest round-trip, always with a '.' or 'e').
std::string format_value(const ir::Value& value);

// Reports every integer `/` or `%` whose divisor is closed and equals 0 ("division by zero" / "modulo by zero"
// at the divisor, as ir::simplify words it).
// Returns whether there was any. A safety net for when ir::simplify has not reported them.
bool report_constant_division_by_zero(const ir::Expr& e, dsl::Diagnostics& diags);

}  // namespace tessera::sema
