#include "dsl/parser.h"

#include <gtest/gtest.h>

#include <random>

#include "dsl/lexer.h"
#include "dsl/prelude.h"

namespace tessera::dsl {
namespace {

struct Parsed {
  std::unique_ptr<ast::Module> module;
  Diagnostics diags;
};

Parsed parse(const std::string& text) {
  Parsed out;
  out.module = parse_module(std::make_shared<const SourceFile>("t.attn", text), out.diags);
  return out;
}

std::string roundtrip(const std::string& text) {
  auto p = parse(text);
  EXPECT_FALSE(p.diags.has_errors()) << p.diags.str();
  return ast::dump(*p.module);
}

std::string errors_of(const std::string& text) { return parse(text).diags.str(); }

const ast::PatternDecl& pattern_at(const ast::Module& m, size_t i) {
  return std::get<ast::PatternDecl>(m.declarations[i]);
}

TEST(Parser, PrecedenceIsVisibleInTheDump) {
  EXPECT_EQ(roundtrip("pattern p { mask: a || b && c == d < e + f * -g; }"),
            "pattern p {\n  mask: (a || (b && (c == (d < (e + (f * (-g)))))));\n}\n");
  EXPECT_EQ(roundtrip("pattern p { mask: a - b - c == 0 && !x; }"),
            "pattern p {\n  mask: ((((a - b) - c) == 0) && (!x));\n}\n");
  EXPECT_EQ(roundtrip("pattern p { score: (s + 1.5) * clamp(q, 0, R - 1) / rel[h, 2]; }"),
            "pattern p {\n  score: (((s + 1.5) * clamp(q, 0, (R - 1))) / rel[h, 2]);\n}\n");
}

TEST(Parser, DeclarationsRoundTrip) {
  const char* text =
      "tensor segments: int32[B, M];\n"
      "pattern full {\n}\n"
      "pattern w(window: int >= 1 <= 4096 = 128, cap: float > 0.0, on: bool = true) {\n"
      "  let d = (q - k);\n"
      "  require (window > 2) : \"too \\\"small\\\"\";\n"
      "  require on;\n"
      "  mask: (d < window);\n"
      "  score: (cap * tanh((s / cap)));\n"
      "}\n"
      "pattern a(x: int) = ((causal & w(window=x, cap=2.5)) | (full - causal));\n"
      "pattern e() = full;\n";
  EXPECT_EQ(roundtrip(text), text);
  // And the dump parses back to itself.
  EXPECT_EQ(roundtrip(roundtrip(text)), text);
}

TEST(Parser, PreludeParsesAndRoundTrips) {
  std::string once = roundtrip(prelude_text());
  EXPECT_EQ(roundtrip(once), once);
}

TEST(Parser, PatternCompositionPrecedence) {
  Diagnostics diags;
  auto e = parse_pattern_expression(std::make_shared<const SourceFile>("<pattern>", "a | b & c - d & (e | f)"), diags);
  ASSERT_TRUE(e) << diags.str();
  EXPECT_EQ(ast::dump(*e), "((a | (b & c)) - (d & (e | f)))");
}

TEST(Parser, PatternArguments) {
  Diagnostics diags;
  auto e = parse_pattern_expression(
      std::make_shared<const SourceFile>("<pattern>", "fixed(64, summary=2*4) & causal()"), diags);
  ASSERT_TRUE(e) << diags.str();
  ASSERT_EQ(e->kind, ast::PatternExprKind::Intersect);
  const auto& fixed = *e->lhs;
  ASSERT_EQ(fixed.args.size(), 2u);
  EXPECT_TRUE(fixed.args[0].name.empty());
  EXPECT_EQ(fixed.args[1].name, "summary");
  EXPECT_EQ(ast::dump(*fixed.args[1].value), "(2 * 4)");
  EXPECT_EQ(e->rhs->name, "causal");
  EXPECT_TRUE(e->rhs->args.empty());
}

TEST(Parser, SourceRangesCoverTheConstruct) {
  auto p = parse("pattern p(w: int >= 1) {\n  mask: k <= q + w;\n}\n");
  ASSERT_FALSE(p.diags.has_errors());
  const auto& decl = pattern_at(*p.module, 0);
  const auto& mask = *decl.body[0].value;
  auto [line, col] = mask.where.file->line_col(mask.where.begin);
  EXPECT_EQ(line, 2);
  EXPECT_EQ(col, 9);
  EXPECT_EQ(mask.where.end - mask.where.begin, std::string("k <= q + w").size());
  EXPECT_EQ(decl.params[0].constraints[0].where.end - decl.params[0].constraints[0].where.begin, 4u);
}

TEST(Parser, MissingSemicolon) {
  EXPECT_EQ(errors_of("pattern p {\n  mask: k <= q\n}\n"),
            "t.attn:2:15: error: expected ';' at the end of the statement, got '}'\n  mask: k <= q\n              ^\n");
}

TEST(Parser, UnknownStatement) {
  EXPECT_EQ(errors_of("pattern p {\n  mask k <= q;\n}"),
            "t.attn:2:8: error: expected ':' after 'mask', got identifier 'k'\n  mask k <= q;\n       ^\n");
  EXPECT_EQ(
      errors_of("pattern p { bogus; }"),
      "t.attn:1:13: error: expected 'let', 'require', 'mask:', 'score:', 'weight:', 'normalize:' or 'scoring:' in "
      "a pattern body, got identifier 'bogus'\npattern p { bogus; }\n            ^~~~~\n");
  EXPECT_EQ(errors_of("pattern p {\n  weight 2.0;\n}"),
            "t.attn:2:10: error: expected ':' after 'weight', got '2.0'\n  weight 2.0;\n         ^~~\n");
}

TEST(Parser, MissingOperand) {
  EXPECT_EQ(
      errors_of("pattern p { mask: k <= ; }"),
      "t.attn:1:24: error: expected an expression, got ';'\npattern p { mask: k <= ; }\n                       ^\n");
}

TEST(Parser, BadTopLevel) {
  EXPECT_EQ(
      errors_of("mask: q;\npattern p {}"),
      "t.attn:1:1: error: expected a declaration ('pattern' or 'tensor'), got identifier 'mask'\nmask: q;\n^~~~\n");
}

TEST(Parser, BadParameter) {
  EXPECT_EQ(errors_of("pattern p(w int) {}"),
            "t.attn:1:13: error: expected ':' after the parameter name, got identifier 'int'\npattern p(w int) {}\n"
            "            ^~~\n");
  EXPECT_EQ(errors_of("pattern p(w: int >= ) {}"),
            "t.attn:1:21: error: expected an expression, got ')'\npattern p(w: int >= ) {}\n                    ^\n");
}

TEST(Parser, BadTensor) {
  EXPECT_EQ(errors_of("tensor t: float32[B, ];"),
            "t.attn:1:22: error: expected a dimension name (B, H, Hkv, N, M, D, Dv or a new name), got ']'\n"
            "tensor t: float32[B, ];\n                     ^\n");
}

TEST(Parser, MissingBody) {
  EXPECT_EQ(errors_of("pattern p;"),
            "t.attn:1:10: error: expected '{' or '=' after the pattern's name and parameters, got ';'\npattern p;\n"
            "         ^\n");
}

TEST(Parser, UnclosedBody) {
  EXPECT_EQ(errors_of("pattern p {\n  mask: q >= k;\npattern r {}"),
            "t.attn:3:1: error: expected '}' at the end of the pattern body, got 'pattern'\npattern r {}\n^~~~~~~\n");
}

TEST(Parser, RequireMessageMustBeAString) {
  EXPECT_EQ(errors_of("pattern p(x: int) { require x > 0 : oops; }"),
            "t.attn:1:37: error: expected a message string after 'require ... :', got identifier 'oops'\n"
            "pattern p(x: int) { require x > 0 : oops; }\n                                    ^~~~\n");
}

TEST(Parser, RecoversAndReportsEveryError) {
  auto p = parse(
      "pattern a {\n"
      "  mask: k <= ;\n"     // error 1
      "  score: s * 2.0;\n"  // fine, parsing resumes here
      "  let = 3;\n"         // error 2
      "}\n"
      "pattern b { mask: q >= k; }\n"  // a good declaration between bad ones
      "tensor t: [B];\n"               // error 3
      "pattern c(x: int = ) = b;\n"    // error 4
      "pattern d = b & ;\n");          // error 5
  EXPECT_EQ(p.diags.error_count(), 5) << p.diags.str();
  ASSERT_EQ(p.module->declarations.size(), 1u);
  EXPECT_EQ(pattern_at(*p.module, 0).name, "b");
  std::vector<std::string> invalid;
  for (const auto& d : p.module->invalid_patterns) invalid.push_back(d.name);
  EXPECT_EQ(invalid, (std::vector<std::string>{"a", "c", "d"}));
  const std::string all = p.diags.str();
  EXPECT_NE(all.find("t.attn:2:14: error: expected an expression, got ';'"), std::string::npos);
  EXPECT_NE(all.find("t.attn:4:7: error: expected a name after 'let', got '='"), std::string::npos);
  EXPECT_NE(all.find("t.attn:7:11: error: expected an element type (int32 or float32), got '['"), std::string::npos);
  EXPECT_NE(all.find("t.attn:8:20: error: expected an expression, got ')'"), std::string::npos);
  EXPECT_NE(all.find("t.attn:9:17: error: expected a pattern name, got ';'"), std::string::npos);
}

TEST(Parser, PatternExpressionErrors) {
  auto errors = [](const std::string& text) {
    Diagnostics diags;
    auto e = parse_pattern_expression(std::make_shared<const SourceFile>("<pattern>", text), diags);
    EXPECT_FALSE(e);
    return diags.str();
  };
  EXPECT_EQ(errors(""), "<pattern>:1:1: error: expected a pattern name, got end of file\n\n^\n");
  EXPECT_EQ(errors("causal sliding_window"),
            "<pattern>:1:8: error: expected '&', '|' or '-' between patterns, got identifier 'sliding_window'\n"
            "causal sliding_window\n       ^~~~~~~~~~~~~~\n");
  EXPECT_EQ(errors("strided(stride=4"),
            "<pattern>:1:17: error: expected ')' after the pattern's arguments, got end of file\nstrided(stride=4\n"
            "                ^\n");
  EXPECT_EQ(errors("(causal"),
            "<pattern>:1:8: error: expected ')' to close the parenthesis, got end of file\n(causal\n       ^\n");
}

TEST(Parser, DeepNestingIsAnErrorNotACrash) {
  std::string deep = "pattern p { mask: " + std::string(100000, '(') + "q" + std::string(100000, ')') + "; }";
  auto p = parse(deep);
  EXPECT_EQ(p.diags.error_count(), 1);
  EXPECT_NE(p.diags.str().find("expression is nested too deeply"), std::string::npos);
  auto u = parse("pattern p { mask: " + std::string(100000, '!') + "q; }");
  EXPECT_EQ(u.diags.error_count(), 1);
  Diagnostics diags;
  EXPECT_FALSE(
      parse_pattern_expression(std::make_shared<const SourceFile>("<pattern>", std::string(50000, '(') + "a"), diags));
  EXPECT_EQ(diags.error_count(), 1);
}

// Fuzz: random bytes and random token soups must terminate, never crash, and report an error whenever the
// result is not a clean parse.
TEST(Parser, FuzzRandomBytesAndTokenSoups) {
  std::mt19937 rng(42);
  const std::vector<std::string> words = {
      "pattern", "tensor", "let",     "require", "mask",  "score", ":", ";",      "{",  "}",  "(",  ")",
      "[",       "]",      ",",       "=",       "==",    "!=",    "<", "<=",     ">",  ">=", "+",  "-",
      "*",       "/",      "%",       "!",       "&&",    "||",    "&", "|",      "q",  "k",  "s",  "1",
      "2.5",     "true",   "\"msg\"", "int",     "float", "int32", "x", "causal", "/*", "*/", "//", "\n"};
  for (int n = 0; n < 3000; ++n) {
    std::string text;
    if (n % 2 == 0) {
      size_t len = rng() % 80;
      for (size_t i = 0; i < len; ++i) text += static_cast<char>(rng() % 256);
    } else {
      size_t len = rng() % 60;
      for (size_t i = 0; i < len; ++i) text += words[rng() % words.size()] + " ";
    }
    auto p = parse(text);
    ASSERT_TRUE(p.module);
    if (!p.module->invalid_patterns.empty()) {
      EXPECT_TRUE(p.diags.has_errors()) << text;
    }
    Diagnostics diags;
    auto e = parse_pattern_expression(std::make_shared<const SourceFile>("<pattern>", text), diags);
    EXPECT_EQ(e == nullptr, diags.has_errors()) << text;
    // Every diagnostic formats (positions inside the file).
    for (const auto& d : p.diags.all()) EXPECT_LE(d.where.end, text.size());
    (void)p.diags.str();
  }
}

}  // namespace
}  // namespace tessera::dsl
