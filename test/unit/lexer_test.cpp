#include "dsl/lexer.h"

#include <gtest/gtest.h>

#include <random>

namespace tessera::dsl {
namespace {

struct Lexed {
  std::vector<Token> tokens;
  Diagnostics diags;
};

Lexed lex_text(const std::string& text) {
  Lexed out;
  out.tokens = lex(std::make_shared<const SourceFile>("t.attn", text), out.diags);
  return out;
}

std::vector<TokenKind> kinds(const std::vector<Token>& tokens) {
  std::vector<TokenKind> out;
  for (const auto& t : tokens) out.push_back(t.kind);
  return out;
}

std::pair<int, int> position(const Token& t) { return t.where.file->line_col(t.where.begin); }

TEST(Lexer, DeclarationTokensAndKeywords) {
  auto r = lex_text("pattern causal {\n  mask: k <= q;\n}");
  ASSERT_FALSE(r.diags.has_errors()) << r.diags.str();
  using K = TokenKind;
  EXPECT_EQ(kinds(r.tokens),
            (std::vector<K>{K::KwPattern, K::Identifier, K::LBrace, K::Identifier, K::Colon, K::Identifier,
                            K::LessEqual, K::Identifier, K::Semicolon, K::RBrace, K::EndOfFile}));
  EXPECT_EQ(r.tokens[1].text, "causal");
  EXPECT_EQ(r.tokens[3].text, "mask");  // contextual, not reserved
}

TEST(Lexer, LocationsAreOneBasedLineAndColumn) {
  auto r = lex_text("tensor x: int32[B];\n  let  y = 10;");
  ASSERT_FALSE(r.diags.has_errors());
  EXPECT_EQ(position(r.tokens[0]), std::make_pair(1, 1));
  EXPECT_EQ(position(r.tokens[1]), std::make_pair(1, 8));
  const Token& let = r.tokens[8];
  EXPECT_EQ(let.kind, TokenKind::KwLet);
  EXPECT_EQ(position(let), std::make_pair(2, 3));
  const Token& ten = r.tokens[11];
  EXPECT_EQ(ten.kind, TokenKind::IntLiteral);
  EXPECT_EQ(position(ten), std::make_pair(2, 12));
  EXPECT_EQ(ten.where.end - ten.where.begin, 2u);
}

TEST(Lexer, OperatorsTakeTheLongestMatch) {
  auto r = lex_text("== = != ! <= < >= > && & || | + - * / % ( ) [ ] { } , ; :");
  ASSERT_FALSE(r.diags.has_errors());
  using K = TokenKind;
  EXPECT_EQ(
      kinds(r.tokens),
      (std::vector<K>{K::EqualEqual, K::Assign, K::NotEqual, K::Bang,      K::LessEqual, K::Less,     K::GreaterEqual,
                      K::Greater,    K::AmpAmp, K::Amp,      K::PipePipe,  K::Pipe,      K::Plus,     K::Minus,
                      K::Star,       K::Slash,  K::Percent,  K::LParen,    K::RParen,    K::LBracket, K::RBracket,
                      K::LBrace,     K::RBrace, K::Comma,    K::Semicolon, K::Colon,     K::EndOfFile}));
}

TEST(Lexer, NumberLiterals) {
  auto r = lex_text("0 42 1.0 .5 1e-3 2. 3E+2 9223372036854775807");
  ASSERT_FALSE(r.diags.has_errors()) << r.diags.str();
  using K = TokenKind;
  EXPECT_EQ(kinds(r.tokens),
            (std::vector<K>{K::IntLiteral, K::IntLiteral, K::FloatLiteral, K::FloatLiteral, K::FloatLiteral,
                            K::FloatLiteral, K::FloatLiteral, K::IntLiteral, K::EndOfFile}));
  EXPECT_EQ(r.tokens[1].int_value, 42);
  EXPECT_DOUBLE_EQ(r.tokens[2].float_value, 1.0);
  EXPECT_DOUBLE_EQ(r.tokens[3].float_value, 0.5);
  EXPECT_DOUBLE_EQ(r.tokens[4].float_value, 1e-3);
  EXPECT_DOUBLE_EQ(r.tokens[5].float_value, 2.0);
  EXPECT_DOUBLE_EQ(r.tokens[6].float_value, 300.0);
  EXPECT_EQ(r.tokens[7].int_value, INT64_MAX);
}

TEST(Lexer, CommentsAreSkipped) {
  auto r = lex_text("a // line comment ; ;\n/* block\n comment */ b /**/ c");
  ASSERT_FALSE(r.diags.has_errors());
  ASSERT_EQ(r.tokens.size(), 4u);
  EXPECT_EQ(r.tokens[1].text, "b");
  EXPECT_EQ(position(r.tokens[1]), std::make_pair(3, 13));
  EXPECT_EQ(r.tokens[2].text, "c");
}

TEST(Lexer, StringLiteralsDecodeEscapes) {
  auto r = lex_text(R"("a \"b\" \\ c")");
  ASSERT_FALSE(r.diags.has_errors());
  ASSERT_EQ(r.tokens[0].kind, TokenKind::StringLiteral);
  EXPECT_EQ(r.tokens[0].string_value, "a \"b\" \\ c");
}

TEST(Lexer, UnexpectedCharacter) {
  auto r = lex_text("mask: q # k;");
  EXPECT_EQ(r.diags.str(), "t.attn:1:9: error: unexpected character '#'\nmask: q # k;\n        ^\n");
  // Lexing goes on after the error.
  EXPECT_EQ(r.tokens.size(), 6u);
}

TEST(Lexer, UnterminatedComment) {
  auto r = lex_text("a /* never closed\n b");
  EXPECT_EQ(r.diags.str(), "t.attn:1:3: error: unterminated comment\na /* never closed\n  ^~\n");
  EXPECT_EQ(r.tokens.size(), 2u);
}

TEST(Lexer, UnterminatedString) {
  auto r = lex_text("require x : \"oops\nmask: q;");
  EXPECT_EQ(r.diags.str(), "t.attn:1:13: error: unterminated string literal\nrequire x : \"oops\n            ^\n");
  // The next line lexes normally.
  EXPECT_EQ(r.tokens[r.tokens.size() - 5].text, "mask");
}

TEST(Lexer, IntegerTooLarge) {
  auto r = lex_text("x = 99999999999999999999;");
  EXPECT_EQ(r.diags.str(),
            "t.attn:1:5: error: integer literal 99999999999999999999 is too large (the largest is "
            "9223372036854775807)\nx = 99999999999999999999;\n    ^~~~~~~~~~~~~~~~~~~~\n");
}

TEST(Lexer, MalformedExponent) {
  auto r = lex_text("1e+ x");
  EXPECT_EQ(r.diags.str(), "t.attn:1:2: error: expected digits in the exponent of a float literal\n1e+ x\n ^~\n");
}

TEST(Lexer, RandomBytesNeverCrashAndAlwaysEndWithEof) {
  std::mt19937 rng(1234);
  for (int n = 0; n < 2000; ++n) {
    std::string text(rng() % 64, ' ');
    for (auto& c : text) c = static_cast<char>(rng() % 256);
    auto r = lex_text(text);
    ASSERT_FALSE(r.tokens.empty());
    EXPECT_EQ(r.tokens.back().kind, TokenKind::EndOfFile);
    for (const auto& t : r.tokens) {
      EXPECT_LE(t.where.begin, t.where.end);
      EXPECT_LE(t.where.end, text.size());
    }
  }
}

}  // namespace
}  // namespace tessera::dsl
