// Turns spec text into tokens.
#pragma once

#include <memory>
#include <vector>

#include "dsl/diagnostics.h"
#include "dsl/source.h"
#include "dsl/token.h"

namespace tessera::dsl {

// Returns every token of `file`, always ending with one EndOfFile token. Lexical errors (an unexpected
// character, an unterminated comment or string, an integer literal too large for 64 bits, a malformed
// exponent) are reported into `diags`; lexing continues after them so a file reports all its errors.
std::vector<Token> lex(const std::shared_ptr<const SourceFile>& file, Diagnostics& diags);

}  // namespace tessera::dsl
