#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"
#include "compiler/sema/pattern_library.h"

namespace tessera::sema {
namespace {

// "file:line:col: severity: message" of every diagnostic (the exact text and position, without the source
// excerpt).
std::vector<std::string> headers(const dsl::Diagnostics& diags) {
  std::vector<std::string> out;
  for (const auto& d : diags.all()) {
    std::string text = dsl::format_diagnostic(d);
    out.push_back(text.substr(0, text.find('\n')));
  }
  return out;
}

using Lines = std::vector<std::string>;

struct Fixture {
  PatternLibrary lib;
  dsl::Diagnostics diags;

  bool add(const std::string& text, const std::string& name = "u.attn") {
    return lib.add_file(std::make_shared<const dsl::SourceFile>(name, text), diags);
  }
  std::optional<ir::Pattern> inst(const std::string& expr) { return lib.instantiate(expr, diags); }
};

Lines check_errors(const std::string& text) {
  Fixture f;
  EXPECT_FALSE(f.add(text));
  return headers(f.diags);
}

Lines instantiate_errors(const std::string& expr, const std::string& spec = "") {
  Fixture f;
  if (!spec.empty()) {
    EXPECT_TRUE(f.add(spec)) << f.diags.str();
  }
  EXPECT_FALSE(f.inst(expr).has_value());
  return headers(f.diags);
}

// Attention sizes and (optional) run-time tensors for evaluating patterns.
struct Point {
  int64_t b, h, i, j;
};

ir::AttentionSizes sizes(int64_t N, int64_t M, int64_t H = 2) {
  ir::AttentionSizes s;
  s.B = 1;
  s.H = H;
  s.Hkv = H;
  s.N = N;
  s.M = M;
  s.D = 4;
  s.Dv = 4;
  return s;
}

// ---- typing ----

TEST(SemaTyping, IntFloatPromotionInsertsExplicitCasts) {
  Fixture f;
  ASSERT_TRUE(f.add("pattern p(c: float = 2) { mask: q - k < c; score: s * 2 + h; }")) << f.diags.str();
  const Declaration* d = f.lib.find("p");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->params[0].type, ir::Type::Float);
  ASSERT_TRUE(d->params[0].default_value.has_value());
  EXPECT_EQ(d->params[0].default_value->type, ir::Type::Float);
  EXPECT_EQ(d->params[0].default_value->f, 2.0);
  // The comparison is float: the int side is wrapped in float(...).
  const ir::Expr& mask = d->body.mask;
  ASSERT_EQ(mask->kind, ir::Kind::Binary);
  EXPECT_EQ(mask->operands[0]->type, ir::Type::Float);
  EXPECT_EQ(mask->operands[0]->kind, ir::Kind::Call);
  EXPECT_EQ(mask->operands[0]->fn, ir::Fn::ToFloat);
  EXPECT_EQ(d->body.score->type, ir::Type::Float);
  auto p = f.inst("p(c=1.5)");
  ASSERT_TRUE(p) << f.diags.str();
  ir::PatternEvaluator ev(*p, sizes(8, 8), {}, 1.0);
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(ev.allowed(0, 1, i, j), static_cast<double>(i - j) < 1.5);
  }
  EXPECT_DOUBLE_EQ(ev.score(0, 1, 3, 2, 0.25, nullptr), 0.25 * 2 + 1);
}

TEST(SemaTyping, IntScoreIsPromotedAndIntegerDivisionFloors) {
  Fixture f;
  ASSERT_TRUE(f.add("pattern p { mask: (k - q) / 3 == -1 && (k - q) % 3 == 2; score: q - k; }")) << f.diags.str();
  auto p = f.inst("p");
  ASSERT_TRUE(p) << f.diags.str();
  EXPECT_EQ(p->score->type, ir::Type::Float);
  ir::PatternEvaluator ev(*p, sizes(6, 6), {}, 1.0);
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t j = 0; j < 6; ++j) {
      // Floor semantics: (k - q) = -1 is the only value with floor(x/3) == -1 and x mod 3 == 2.
      EXPECT_EQ(ev.allowed(0, 0, i, j), j - i == -1) << i << "," << j;
    }
  }
  EXPECT_DOUBLE_EQ(ev.score(0, 0, 4, 1, 0.0, nullptr), 3.0);
}

TEST(SemaTyping, TypeErrors) {
  EXPECT_EQ(check_errors("pattern p { mask: k < q && 1; }"),
            Lines{"u.attn:1:19: error: operands of '&&' must be bool, got bool and int"});
  EXPECT_EQ(check_errors("pattern p { mask: q && k <= q; }"),
            Lines{"u.attn:1:19: error: operands of '&&' must be bool, got int and bool"});
  EXPECT_EQ(check_errors("pattern p { mask: (k < q) + 1 > 0; }"),
            Lines{"u.attn:1:20: error: operands of '+' must be int or float, got bool and int"});
  EXPECT_EQ(check_errors("pattern p { mask: !q; }"), Lines{"u.attn:1:19: error: operand of '!' must be bool, got int"});
  EXPECT_EQ(check_errors("pattern p { mask: -(k < q); }"),
            Lines{"u.attn:1:19: error: operand of unary '-' must be int or float, got bool"});
  EXPECT_EQ(check_errors("pattern p { mask: (k < q) == 1; }"),
            Lines{"u.attn:1:20: error: operands of '==' must be of the same type, got bool and int"});
  EXPECT_EQ(check_errors("pattern p { mask: q - k; }"), Lines{"u.attn:1:19: error: mask must be bool, got int"});
  EXPECT_EQ(check_errors("pattern p { score: s > 0.0; }"), Lines{"u.attn:1:20: error: score must be float, got bool"});
  EXPECT_EQ(check_errors("pattern p { score: tanh(k < q); }"),
            Lines{"u.attn:1:20: error: tanh expects tanh(x: float), got tanh(bool)"});
  EXPECT_EQ(check_errors("pattern p { mask: segments[b, 1.5] == 0; }"),
            Lines{"u.attn:1:31: error: index 2 of tensor 'segments' must be int, got float"});
}

TEST(SemaTyping, FunctionArityAndNames) {
  EXPECT_EQ(check_errors("pattern p { mask: clamp(q, 0) < k; }"),
            Lines{"u.attn:1:19: error: clamp expects 3 arguments (clamp(x, lo, hi)), got 2"});
  EXPECT_EQ(check_errors("pattern p { mask: abs(q, k) < 1; }"),
            Lines{"u.attn:1:19: error: abs expects 1 argument (abs(x)), got 2"});
  EXPECT_EQ(check_errors("pattern p { mask: clmp(q, 0, 1) < k; }"),
            Lines{"u.attn:1:19: error: unknown function 'clmp'; did you mean 'clamp'?"});
  EXPECT_EQ(check_errors("pattern p {\n  mask: k <= qq;\n}"),
            Lines{"u.attn:2:14: error: unknown name 'qq'; did you mean 'q'?"});
  EXPECT_EQ(check_errors("pattern p { mask: k <= zzzzzz; }"), Lines{"u.attn:1:24: error: unknown name 'zzzzzz'"});
  EXPECT_EQ(check_errors("pattern p { mask: segment[b, q] == 0; }"),
            Lines{"u.attn:1:19: error: unknown tensor 'segment'; did you mean 'segments'?"});
  EXPECT_EQ(check_errors("pattern p { mask: segments == 0; }"),
            Lines{"u.attn:1:19: error: tensor 'segments' must be indexed, as in segments[...]"});
}

TEST(SemaTyping, LogitOnlyInScore) {
  const std::string message = "error: 's' (the logit) is only available in score:";
  EXPECT_EQ(check_errors("pattern p { mask: s > 0.0; }"), Lines{"u.attn:1:19: " + message});
  // Through a let used by the mask: reported at the `s` inside the let.
  EXPECT_EQ(check_errors("pattern p {\n  let t = s * 2.0;\n  mask: t > 0.0;\n}"), Lines{"u.attn:2:11: " + message});
  // A let using s is fine when only the score uses it.
  Fixture f;
  EXPECT_TRUE(f.add("pattern p { let t = s * 2.0; score: t; }")) << f.diags.str();
  EXPECT_EQ(check_errors("pattern p(x: int) { require s > 0.0; }"), Lines{"u.attn:1:29: " + message});
  EXPECT_EQ(check_errors("pattern p { mask: dot(q_vec, rel[h, 0]) > 0.0; }"),
            Lines{"u.attn:1:19: error: dot(q_vec, ...) is only available in score:"});
}

TEST(SemaTyping, RequireOnlyUsesParameters) {
  EXPECT_EQ(check_errors("pattern p(x: int) { require x < q; }"),
            Lines{"u.attn:1:33: error: require can only use parameters and constants, not 'q'"});
  EXPECT_EQ(check_errors("pattern p(x: int) { require x + 1; }"),
            Lines{"u.attn:1:29: error: require needs a bool condition, got int"});
}

TEST(SemaTyping, DotProductChecks) {
  Fixture f;
  ASSERT_TRUE(
      f.add("tensor emb: float32[H, D];\ntensor ids: int32[N];\n"
            "pattern e { score: s + dot(q_vec, emb[h]); }"))
      << f.diags.str();
  auto p = f.inst("e");
  ASSERT_TRUE(p) << f.diags.str();
  ASSERT_EQ(p->score->operands[1]->kind, ir::Kind::DotQ);
  EXPECT_EQ(check_errors("tensor ids: int32[N, D];\npattern e { score: dot(q_vec, ids[0]); }"),
            Lines{"u.attn:2:31: error: dot(q_vec, ...) needs a float32 tensor whose last dimension is D, but 'ids' "
                  "is int32[N, D]"});
  EXPECT_EQ(check_errors("pattern e { score: dot(q_vec, rel[h, 0, 1]); }"),
            Lines{"u.attn:1:31: error: dot(q_vec, rel[...]) needs 2 indices (every dimension of float32[H, R, D] but "
                  "the last), got 3"});
  EXPECT_EQ(check_errors("pattern e { score: dot(k, rel[h, 0]); }"),
            Lines{"u.attn:1:24: error: the first argument of dot must be q_vec (dot(q_vec, T[...]))"});
  EXPECT_EQ(check_errors("pattern e { score: s + q_vec; }"),
            Lines{"u.attn:1:24: error: 'q_vec' can only be used as dot(q_vec, T[...])"});
}

TEST(SemaTyping, DimensionSymbolsAreInts) {
  Fixture f;
  ASSERT_TRUE(f.add("tensor table: int32[T, N];\npattern p { mask: k < R && q < T; }")) << f.diags.str();
  const ir::Expr& mask = f.lib.find("p")->body.mask;
  EXPECT_EQ(mask->operands[0]->operands[1]->kind, ir::Kind::Symbol);
  EXPECT_EQ(mask->operands[0]->operands[1]->name, "R");
}

// ---- declarations ----

TEST(SemaDeclarations, DuplicatePatternsAndTensors) {
  EXPECT_EQ(check_errors("pattern causal { mask: k < q; }"),
            (Lines{"u.attn:1:9: error: redefinition of pattern 'causal'",
                   "<prelude>:13:9: note: 'causal' was first defined here"}));
  EXPECT_EQ(check_errors("pattern a {}\npattern a {}"),
            (Lines{"u.attn:2:9: error: redefinition of pattern 'a'", "u.attn:1:9: note: 'a' was first defined here"}));
  EXPECT_EQ(check_errors("tensor segments: int32[B, N];"),
            (Lines{"u.attn:1:1: error: tensor 'segments' redeclared as int32[B, N]",
                   "<prelude>:7:1: note: previously declared as int32[B, M] here"}));
  Fixture f;
  EXPECT_TRUE(f.add("tensor segments: int32[B, M];")) << f.diags.str();  // the same declaration again is fine
}

TEST(SemaDeclarations, ParameterErrors) {
  EXPECT_EQ(check_errors("pattern p(x: integer) {}"),
            Lines{"u.attn:1:14: error: unknown parameter type 'integer'; expected int, float or bool"});
  EXPECT_EQ(check_errors("pattern p(x: int, x: int) {}"),
            (Lines{"u.attn:1:19: error: duplicate parameter 'x'", "u.attn:1:11: note: 'x' was first declared here"}));
  EXPECT_EQ(check_errors("pattern p(x: int >= 1.5) {}"),
            Lines{"u.attn:1:21: error: the bound of 'x' must be int, got float"});
  EXPECT_EQ(check_errors("pattern p(x: int = q) {}"),
            Lines{"u.attn:1:20: error: 'q' cannot be used in a default value (it must be a constant expression)"});
  EXPECT_EQ(check_errors("pattern p(x: int >= 1 = 0) {}"),
            Lines{"u.attn:1:25: error: the default value of 'x' must be >= 1, got 0"});
  EXPECT_EQ(check_errors("pattern p(q: int) {}"),
            Lines{"u.attn:1:11: error: parameter 'q' would hide the built-in variable 'q'"});
  EXPECT_EQ(check_errors("pattern p(on: bool > 0) {}"),
            Lines{"u.attn:1:20: error: bool parameter 'on' cannot have a range constraint"});
}

TEST(SemaDeclarations, BodyErrors) {
  EXPECT_EQ(
      check_errors("pattern p { mask: k < q; mask: k > q; }"),
      (Lines{"u.attn:1:26: error: pattern 'p' has more than one 'mask:'", "u.attn:1:13: note: the first one is here"}));
  EXPECT_EQ(check_errors("pattern p { let d = 1; let d = 2; }"),
            (Lines{"u.attn:1:28: error: redefinition of 'd'", "u.attn:1:17: note: 'd' was first defined here"}));
  EXPECT_EQ(check_errors("pattern p(w: int) { let w = 1; }"),
            (Lines{"u.attn:1:25: error: 'w' is already a parameter of this pattern",
                   "u.attn:1:11: note: the parameter is declared here"}));
  // A failed let is not reported again where it is used.
  EXPECT_EQ(check_errors("pattern p { let d = nope; mask: d > 0; }"), Lines{"u.attn:1:21: error: unknown name 'nope'"});
}

TEST(SemaDeclarations, ConstantDivisionByZeroAtCheckTime) {
  EXPECT_EQ(check_errors("pattern p { mask: q % 0 == 1; }"), Lines{"u.attn:1:23: error: modulo by zero"});
  // Only when visible without parameters.
  Fixture f;
  EXPECT_TRUE(f.add("pattern p(a: int) { mask: q % a == 1; }")) << f.diags.str();
}

TEST(SemaDeclarations, AllErrorsOfAFileAndGoodDeclarationsKept) {
  Fixture f;
  EXPECT_FALSE(
      f.add("pattern bad1 { mask: qq; }\npattern good { mask: k < q; }\npattern bad2 { score: 1 < 2; }\n"
            "pattern bad3 = good & nothere;"));
  EXPECT_EQ(f.diags.error_count(), 3) << f.diags.str();
  EXPECT_NE(f.lib.find("good"), nullptr);
  EXPECT_EQ(f.lib.find("bad1"), nullptr);
  EXPECT_EQ(f.lib.find("bad3"), nullptr);
  dsl::Diagnostics d;
  EXPECT_FALSE(f.lib.instantiate("bad1", d));
  EXPECT_EQ(headers(d),
            Lines{"<pattern>:1:1: error: pattern 'bad1' cannot be used because its declaration has errors"});
}

TEST(SemaDeclarations, AliasesAreCheckedAndExpand) {
  Fixture f;
  ASSERT_TRUE(
      f.add("pattern band(w: int >= 1 = 3) = causal & sliding_window(window=w * 2);\n"
            "pattern twice = band(2) | band(w=1);"))
      << f.diags.str();
  auto p = f.inst("band");
  ASSERT_TRUE(p) << f.diags.str();
  EXPECT_EQ(p->name, "band(w=3)");
  ir::PatternEvaluator ev(*p, sizes(10, 10), {}, 1.0);
  for (int64_t i = 0; i < 10; ++i) {
    for (int64_t j = 0; j < 10; ++j) EXPECT_EQ(ev.allowed(0, 0, i, j), j <= i && i - j < 6);
  }
  EXPECT_EQ(
      check_errors("pattern a = b;\npattern b = a;"),
      (Lines{"u.attn:2:13: error: pattern 'a' refers to itself", "u.attn:1:13: note: in the instantiation of 'b' here",
             // b's check finds a already rejected.
             "u.attn:2:13: error: pattern 'a' cannot be used because its declaration has errors"}));
  EXPECT_EQ(check_errors("pattern a(w: int) = sliding_window(window=q);"),
            Lines{"u.attn:1:43: error: 'q' cannot be used in a pattern argument (it must be a constant expression)"});
  EXPECT_EQ(check_errors("pattern a = sliding_window(window=0);"),
            (Lines{"u.attn:1:28: error: argument 'window' of sliding_window must be >= 1, got 0",
                   "<prelude>:18:24: note: parameter 'window' is declared here"}));
}

// ---- instantiation errors ----

TEST(SemaInstantiate, ArgumentErrors) {
  EXPECT_EQ(instantiate_errors("casual"),
            Lines{"<pattern>:1:1: error: unknown pattern 'casual'; did you mean 'causal'?"});
  EXPECT_EQ(instantiate_errors("causal(1)"),
            Lines{"<pattern>:1:8: error: too many arguments for causal(): expected 0, got 1"});
  EXPECT_EQ(instantiate_errors("strided(strid=2)"),
            Lines{"<pattern>:1:9: error: strided has no parameter 'strid'; did you mean 'stride'?"});
  EXPECT_EQ(instantiate_errors("strided(2, stride=3)"),
            (Lines{"<pattern>:1:12: error: duplicate argument 'stride' of strided",
                   "<pattern>:1:9: note: it was first given here"}));
  EXPECT_EQ(instantiate_errors("strided"),
            Lines{"<pattern>:1:1: error: missing argument 'stride' of strided(stride: int >= 1)"});
  EXPECT_EQ(instantiate_errors("softcap(cap=true)"),
            Lines{"<pattern>:1:13: error: argument 'cap' of softcap must be float, got bool"});
  EXPECT_EQ(instantiate_errors("strided(stride=1.5)"),
            Lines{"<pattern>:1:16: error: argument 'stride' of strided must be int, got float"});
  EXPECT_EQ(instantiate_errors("strided(stride=0)"),
            (Lines{"<pattern>:1:9: error: argument 'stride' of strided must be >= 1, got 0",
                   "<prelude>:29:17: note: parameter 'stride' is declared here"}));
  EXPECT_EQ(instantiate_errors("fixed(summary=1, 2)"),
            Lines{"<pattern>:1:18: error: positional argument after a named argument"});
  EXPECT_EQ(instantiate_errors("fixed(4, 8)"),
            (Lines{"<pattern>:1:1: error: requirement failed: summary must not exceed block",
                   "<prelude>:36:3: note: required here"}));
  EXPECT_EQ(
      instantiate_errors("sliding_window(window=k)"),
      Lines{"<pattern>:1:23: error: 'k' cannot be used in a pattern argument (it must be a constant expression)"});
  // Errors in both operands are reported.
  EXPECT_EQ(instantiate_errors("casual & strided"),
            (Lines{"<pattern>:1:1: error: unknown pattern 'casual'; did you mean 'causal'?",
                   "<pattern>:1:10: error: missing argument 'stride' of strided(stride: int >= 1)"}));
}

TEST(SemaInstantiate, DivisionByZeroAfterBinding) {
  EXPECT_EQ(instantiate_errors("p(a=2)", "pattern p(a: int) { mask: q / (a - 2) == 0; }"),
            (Lines{"<pattern>:1:3: error: division by zero: 'a' makes a divisor zero",
                   "u.attn:1:32: note: the divisor is here"}));
  EXPECT_EQ(instantiate_errors("strided(stride=1 / 0)"), Lines{"<pattern>:1:20: error: division by zero"});
}

TEST(SemaInstantiate, ConstantArgumentsFold) {
  Fixture f;
  auto p = f.inst("causal & sliding_window(window=2*128)");
  ASSERT_TRUE(p) << f.diags.str();
  EXPECT_EQ(p->name, "causal & sliding_window(window=256)");
  auto c = f.inst("softcap(30)");
  ASSERT_TRUE(c) << f.diags.str();
  EXPECT_EQ(c->name, "softcap(cap=30.0)");
  auto d = f.inst("softcap(cap=0.1) | fixed(summary=2, block=8)");
  ASSERT_TRUE(d) << f.diags.str();
  EXPECT_EQ(d->name, "softcap(cap=0.1) | fixed(block=8, summary=2)");
}

TEST(SemaInstantiate, CanonicalNamesKeepTheTree) {
  Fixture f;
  ASSERT_TRUE(f.add("pattern x(on: bool = true) {}"));
  auto name = [&](const std::string& e) {
    auto p = f.inst(e);
    EXPECT_TRUE(p) << f.diags.str();
    return p ? p->name : "";
  };
  EXPECT_EQ(name("(causal)"), "causal");
  EXPECT_EQ(name("full | causal & local(3)"), "full | causal & local(window=3)");
  EXPECT_EQ(name("(full | causal) & local(3)"), "(full | causal) & local(window=3)");
  EXPECT_EQ(name("full - (causal - full)"), "full - (causal - full)");
  EXPECT_EQ(name("(full - causal) - full"), "full - causal - full");
  EXPECT_EQ(name("x"), "x(on=true)");
}

TEST(SemaInstantiate, TrivialResultsAreCanonical) {
  Fixture f;
  auto p = f.inst("full & full");
  ASSERT_TRUE(p);
  EXPECT_FALSE(p->has_mask());
  EXPECT_FALSE(p->has_score());
  auto u = f.inst("full | causal");
  ASSERT_TRUE(u);
  EXPECT_FALSE(u->has_mask());
  auto c = f.inst("causal");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->has_mask());
  EXPECT_FALSE(c->has_score());
  EXPECT_TRUE(c->inputs.empty());
}

TEST(SemaInstantiate, InputsInFirstUseOrder) {
  Fixture f;
  auto p = f.inst("relative & document");
  ASSERT_TRUE(p) << f.diags.str();
  ASSERT_EQ(p->inputs.size(), 2u);
  EXPECT_EQ(p->inputs[0].name, "segments");  // the mask is read first
  EXPECT_EQ(p->inputs[0].elem_type, ir::ElemType::Int32);
  EXPECT_EQ(p->inputs[0].dims, (std::vector<std::string>{"B", "M"}));
  EXPECT_EQ(p->inputs[1].name, "rel");
  EXPECT_EQ(p->inputs[1].dims, (std::vector<std::string>{"H", "R", "D"}));
}

// ---- composition semantics ----

struct Operands {
  std::function<bool(int64_t, int64_t)> a, b;
};

void expect_mask(const ir::Pattern& p, int64_t N, int64_t M, const std::function<bool(int64_t, int64_t)>& want) {
  ir::PatternEvaluator ev(p, sizes(N, M), {}, 1.0);
  for (int64_t i = 0; i < N; ++i) {
    for (int64_t j = 0; j < M; ++j) {
      EXPECT_EQ(ev.allowed(0, 0, i, j), want(i + M - N, j)) << p.name << " at i=" << i << " j=" << j;
    }
  }
}

TEST(SemaComposition, MasksCombineAsSetOperations) {
  Fixture f;
  auto causal = [](int64_t q, int64_t k) { return k <= q; };
  auto local = [](int64_t q, int64_t k) { return std::abs(q - k) < 3; };
  auto strided = [](int64_t q, int64_t k) { return k <= q && (q - k < 4 || (q - k) % 4 == 0); };
  for (auto [N, M] : {std::pair<int64_t, int64_t>{12, 12}, {5, 17}, {17, 5}}) {
    auto p = f.inst("causal & local(3)");
    ASSERT_TRUE(p) << f.diags.str();
    expect_mask(*p, N, M, [&](int64_t q, int64_t k) { return causal(q, k) && local(q, k); });
    p = f.inst("local(3) | strided(4)");
    ASSERT_TRUE(p);
    expect_mask(*p, N, M, [&](int64_t q, int64_t k) { return local(q, k) || strided(q, k); });
    p = f.inst("strided(4) - local(3)");
    ASSERT_TRUE(p);
    expect_mask(*p, N, M, [&](int64_t q, int64_t k) { return strided(q, k) && !local(q, k); });
    p = f.inst("local(3) | strided(4) & causal - local(1)");
    ASSERT_TRUE(p);
    expect_mask(*p, N, M, [&](int64_t q, int64_t k) {
      return (local(q, k) || (strided(q, k) && causal(q, k))) && !(std::abs(q - k) < 1);
    });
  }
}

TEST(SemaComposition, ScoresChainLeftThenRight) {
  Fixture f;
  ASSERT_TRUE(
      f.add("pattern plus1 { score: s + 1.0; }\npattern times3 { score: s * 3.0; }\n"
            "pattern half { mask: k * 2 <= q; score: s / 2.0; }"));
  auto check = [&](const std::string& e, const std::function<double(double)>& want) {
    auto p = f.inst(e);
    ASSERT_TRUE(p) << f.diags.str();
    ir::PatternEvaluator ev(*p, sizes(4, 4), {}, 1.0);
    for (double s : {-2.0, 0.0, 0.5, 7.0}) EXPECT_DOUBLE_EQ(ev.score(0, 0, 3, 1, s, nullptr), want(s)) << e;
  };
  check("plus1 & times3", [](double s) { return (s + 1) * 3; });
  check("times3 & plus1", [](double s) { return s * 3 + 1; });
  check("times3 | plus1", [](double s) { return s * 3 + 1; });
  check("plus1 - times3", [](double s) { return s + 1; });
  check("half & softcap(2.0)", [](double s) { return 2.0 * std::tanh((s / 2) / 2.0); });
  auto p = f.inst("plus1 - half");
  ASSERT_TRUE(p);
  expect_mask(*p, 6, 6, [](int64_t q, int64_t k) { return !(k * 2 <= q); });
}

TEST(SemaDeclarations, BodyIsCheckedEvenWhenAParameterIsNot) {
  EXPECT_EQ(check_errors("pattern p(x: nat, y: int) { mask: k < x + y + zz; }"),
            (Lines{"u.attn:1:14: error: unknown parameter type 'nat'; expected int, float or bool",
                   "u.attn:1:47: error: unknown name 'zz'"}));
  EXPECT_EQ(check_errors("pattern p(x: nat) { mask: k < x; }"),
            Lines{"u.attn:1:14: error: unknown parameter type 'nat'; expected int, float or bool"});
}

TEST(SemaAst, DumpShowsUserFilesOnly) {
  Fixture f;
  ASSERT_TRUE(
      f.add("pattern p(w: int >= 1) = causal & local(window=w + 1);\npattern r { mask: k <= q - 1; }", "a.attn"));
  EXPECT_EQ(f.lib.ast_dump(),
            "// a.attn\npattern p(w: int >= 1) = (causal & local(window=(w + 1)));\npattern r {\n  mask: (k <= (q - "
            "1));\n}\n");
}

// Random but plausible spec text and pattern expressions: the library must never throw or crash, and must
// report an error whenever it rejects something.
TEST(SemaFuzz, RandomSpecsAndExpressions) {
  std::mt19937 rng(7);
  const std::vector<std::string> words = {
      "pattern", "p",   "r",        "tensor",  "t",     ":",     "int32",  "float32", "[",       "]",       "B",
      "R",       "let", "d",        "require", "mask",  "score", ":",      ";",       "{",       "}",       "(",
      ")",       ",",   "=",        "==",      "<",     "<=",    ">=",     "+",       "-",       "*",       "/",
      "%",       "!",   "&&",       "||",      "&",     "|",     "q",      "k",       "s",       "h",       "0",
      "1",       "2.5", "true",     "int",     "float", "bool",  "x",      "causal",  "strided", "softcap", "dot",
      "q_vec",   "rel", "segments", "clamp",   "tanh",  "float", "select", "\"m\""};
  int rejected = 0;
  for (int n = 0; n < 3000; ++n) {
    std::string text;
    size_t len = rng() % 40;
    for (size_t i = 0; i < len; ++i) text += words[rng() % words.size()] + " ";
    Fixture f;
    bool ok = true;
    EXPECT_NO_THROW(ok = f.add(text)) << text;
    EXPECT_EQ(ok, !f.diags.has_errors()) << text;
    std::string expr;
    size_t elen = 1 + rng() % 8;
    for (size_t i = 0; i < elen; ++i) expr += words[rng() % words.size()] + " ";
    dsl::Diagnostics d;
    std::optional<ir::Pattern> p;
    EXPECT_NO_THROW(p = f.lib.instantiate(expr, d)) << expr;
    EXPECT_EQ(p.has_value(), !d.has_errors()) << expr << "\n" << d.str();
    rejected += !p.has_value();
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace tessera::sema
