// Recursive-descent parser for spec files and pattern expressions.
#pragma once

#include <memory>

#include "dsl/ast.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"

namespace tessera::dsl {

// Parses a whole spec file. Syntax errors are reported into `diags` and the parser recovers (skipping to the
// next `;`, `}` or declaration keyword), so every error of the file is found. A pattern declaration with a
// syntax error is left out of the module and its name listed in Module::invalid_patterns.
// Never returns null.
std::unique_ptr<ast::Module> parse_module(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags);

// Parses a file holding exactly one pattern expression (what `--pattern` gets), e.g.
// "causal & sliding_window(window=2*128)". Returns null after reporting errors.
ast::PatternExprPtr parse_pattern_expression(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags);

}  // namespace tessera::dsl
