// The stable textual form of the IR, printed by `--emit=ir` and pinned by lit tests.
#pragma once

#include <string>

#include "compiler/ir/expr.h"
#include "compiler/ir/pattern.h"

namespace tessera::ir {

// One-line form with minimal, precedence-correct parentheses, e.g. "k <= q && (q - k) % 128 == 0".
std::string to_string(const Expr& e);
// The multi-line form of a whole pattern (name, inputs, mask, score).
std::string to_string(const Pattern& p);

}  // namespace tessera::ir
