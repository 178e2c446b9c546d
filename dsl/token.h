// The tokens of the spec language.
#pragma once

#include <cstdint>
#include <string>

#include "dsl/source.h"

namespace tessera::dsl {

enum class TokenKind : uint8_t {
  EndOfFile,
  Identifier,
  IntLiteral,
  FloatLiteral,
  StringLiteral,
  // Keywords. `mask`, `score`, the type names and element types are contextual (plain identifiers), so a
  // future declaration keyword such as `model` can be added the same way without reserving more names.
  KwTensor,
  KwPattern,
  KwLet,
  KwRequire,
  KwTrue,
  KwFalse,
  // Punctuation and operators.
  LParen,
  RParen,
  LBracket,
  RBracket,
  LBrace,
  RBrace,
  Comma,
  Semicolon,
  Colon,
  Assign,        // =
  EqualEqual,    // ==
  NotEqual,      // !=
  Less,          // <
  LessEqual,     // <=
  Greater,       // >
  GreaterEqual,  // >=
  Plus,
  Minus,
  Star,
  Slash,
  Percent,
  Bang,      // !
  AmpAmp,    // &&
  PipePipe,  // ||
  Amp,       // &  (pattern composition)
  Pipe,      // |  (pattern composition)
};

// How a token kind is spelled in messages: "';'", "identifier", "end of file".
const char* token_kind_name(TokenKind kind);

struct Token {
  TokenKind kind = TokenKind::EndOfFile;
  SourceRange where;
  std::string text;          // the exact source text
  int64_t int_value = 0;     // IntLiteral
  double float_value = 0;    // FloatLiteral
  std::string string_value;  // StringLiteral, escapes decoded
};

}  // namespace tessera::dsl
