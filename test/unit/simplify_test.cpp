#include "compiler/ir/simplify.h"

#include <gtest/gtest.h>

#include <memory>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"
#include "test/unit/random_expressions.h"

namespace tessera::ir {
namespace {

using testing::ExprGenerator;
using testing::GeneratorConfig;

Expr q() { return var(Var::Q); }
Expr k() { return var(Var::K); }
Expr s() { return var(Var::Score); }
Expr c(int64_t v) { return int_imm(v); }

TEST(Simplify, FoldsConstantsWithFloorSemantics) {
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Mul, binary(BinaryOp::Add, c(3), c(4)), c(2))), 14));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Div, c(-7), c(2))), -4));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Mod, c(-7), c(2))), 1));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Mod, c(7), c(-2))), -1));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Div, c(5), c(0))), 0));
  // Wrapping: INT64_MAX + 1 is INT64_MIN, as in the evaluator.
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Add, c(INT64_MAX), c(1))), INT64_MIN));
  EXPECT_TRUE(is_int_const(simplify(call(Fn::Clamp, {c(9), c(5), c(3)})), 3));  // lo > hi gives hi
  EXPECT_TRUE(is_int_const(simplify(call(Fn::Min, {c(9), c(-5)})), -5));
  Expr f = simplify(call(Fn::Exp2, {float_imm(3.0)}));
  ASSERT_EQ(f->kind, Kind::FloatImm);
  EXPECT_EQ(f->float_value, 8.0);
  Expr b = simplify(binary(BinaryOp::And, binary(BinaryOp::Lt, c(1), c(2)), binary(BinaryOp::Ne, c(3), c(3))));
  ASSERT_EQ(b->kind, Kind::BoolImm);
  EXPECT_FALSE(b->bool_value);
}

TEST(Simplify, AppliesIdentities) {
  EXPECT_EQ(simplify(binary(BinaryOp::Add, q(), c(0)))->kind, Kind::Var);
  EXPECT_EQ(simplify(binary(BinaryOp::Add, c(0), q()))->kind, Kind::Var);
  EXPECT_EQ(simplify(binary(BinaryOp::Mul, c(1), q()))->kind, Kind::Var);
  EXPECT_EQ(simplify(binary(BinaryOp::Div, q(), c(1)))->kind, Kind::Var);
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Mul, q(), c(0))), 0));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Mod, q(), c(1))), 0));
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Sub, q(), q())), 0));
  EXPECT_EQ(simplify(unary(UnaryOp::Neg, unary(UnaryOp::Neg, q())))->kind, Kind::Var);
  Expr lt = binary(BinaryOp::Lt, q(), k());
  EXPECT_EQ(to_string(simplify(unary(UnaryOp::Not, lt))), "q >= k");
  EXPECT_EQ(to_string(simplify(unary(UnaryOp::Not, unary(UnaryOp::Not, lt)))), "q < k");
  EXPECT_EQ(to_string(simplify(unary(UnaryOp::Not, unary(UnaryOp::Not, binary(BinaryOp::Lt, s(), s()))))), "s < s");
  EXPECT_EQ(simplify(binary(BinaryOp::And, bool_imm(true), lt)), lt);
  EXPECT_TRUE(simplify(binary(BinaryOp::Or, lt, bool_imm(true)))->bool_value);
  EXPECT_FALSE(simplify(binary(BinaryOp::And, bool_imm(false), lt))->bool_value);
  EXPECT_EQ(simplify(binary(BinaryOp::And, lt, lt)), lt);
  EXPECT_EQ(simplify(call(Fn::Select, {bool_imm(true), q(), k()}))->var, Var::Q);
  EXPECT_EQ(simplify(call(Fn::Select, {lt, k(), k()}))->var, Var::K);
  EXPECT_EQ(simplify(call(Fn::Select, {lt, bool_imm(true), bool_imm(false)})), lt);
  Expr eq = simplify(binary(BinaryOp::Eq, q(), q()));
  ASSERT_EQ(eq->kind, Kind::BoolImm);
  EXPECT_TRUE(eq->bool_value);
}

TEST(Simplify, ReassociatesConstantOffsets) {
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Add, binary(BinaryOp::Add, q(), c(1)), c(2)))), "q + 3");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Sub, binary(BinaryOp::Add, q(), c(3)), c(3)))), "q");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Sub, binary(BinaryOp::Add, q(), c(1)), c(4)))), "q - 3");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Add, c(5), q()))), "q + 5");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Sub, binary(BinaryOp::Add, q(), c(7)), q()))), "7");
  // (q + 2) - (k + 5) keeps the offset outermost.
  EXPECT_EQ(
      to_string(simplify(binary(BinaryOp::Sub, binary(BinaryOp::Add, q(), c(2)), binary(BinaryOp::Add, k(), c(5))))),
      "q - k - 3");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Mul, binary(BinaryOp::Mul, q(), c(3)), c(4)))), "q * 12");
  EXPECT_EQ(to_string(simplify(binary(BinaryOp::Div, binary(BinaryOp::Div, q(), c(3)), c(4)))), "q / 12");
}

// Differences of patterns with a common part: causal - causal is k <= q && !(k <= q).
TEST(Simplify, FoldsAConditionAndItsNegation) {
  auto is_false = [](const Expr& e) { return e->kind == Kind::BoolImm && !e->bool_value; };
  auto is_true = [](const Expr& e) { return e->kind == Kind::BoolImm && e->bool_value; };
  Expr le = binary(BinaryOp::Le, k(), q());
  Expr window = binary(BinaryOp::Lt, binary(BinaryOp::Sub, q(), k()), c(4));
  EXPECT_TRUE(is_false(simplify(binary(BinaryOp::And, le, unary(UnaryOp::Not, le)))));
  // Deep in a chain, and with the operands swapped: k <= q && (window && q < k).
  EXPECT_TRUE(
      is_false(simplify(binary(BinaryOp::And, le, binary(BinaryOp::And, window, binary(BinaryOp::Lt, q(), k()))))));
  EXPECT_TRUE(
      is_true(simplify(binary(BinaryOp::Or, binary(BinaryOp::Or, le, window), binary(BinaryOp::Gt, k(), q())))));
  Expr eq = binary(BinaryOp::Eq, binary(BinaryOp::Mod, q(), c(2)), binary(BinaryOp::Mod, k(), c(2)));
  EXPECT_TRUE(is_false(simplify(binary(BinaryOp::And, eq, unary(UnaryOp::Not, eq)))));
  // Not complementary: k <= q && k >= q is k == q.
  EXPECT_EQ(simplify(binary(BinaryOp::And, le, binary(BinaryOp::Ge, k(), q())))->kind, Kind::Binary);
  // Floats: s < 1.0 && s >= 1.0 is false, but s < 1.0 || s >= 1.0 is false for NaN too: neither is folded.
  Expr s_lt = binary(BinaryOp::Lt, s(), float_imm(1.0));
  Expr s_ge = binary(BinaryOp::Ge, s(), float_imm(1.0));
  EXPECT_EQ(simplify(binary(BinaryOp::Or, s_lt, s_ge))->kind, Kind::Binary);
  // A load could fail: a chain that reads a tensor is kept.
  Expr t = binary(BinaryOp::Eq, load("t", ElemType::Int32, {q()}), c(0));
  EXPECT_EQ(simplify(binary(BinaryOp::And, t, binary(BinaryOp::And, le, unary(UnaryOp::Not, le))))->kind, Kind::Binary);
}

TEST(Simplify, KeepsFloatRewritesThatNaNWouldBreak) {
  // s * 0.0 is NaN for s = inf, s + 0.0 turns -0.0 into 0.0, s == s is false for NaN, !(s < 1.0) is true for NaN.
  EXPECT_EQ(simplify(binary(BinaryOp::Mul, s(), float_imm(0.0)))->kind, Kind::Binary);
  EXPECT_EQ(simplify(binary(BinaryOp::Add, s(), float_imm(0.0)))->kind, Kind::Binary);
  EXPECT_EQ(simplify(binary(BinaryOp::Eq, s(), s()))->kind, Kind::Binary);
  Expr not_lt = simplify(unary(UnaryOp::Not, binary(BinaryOp::Lt, s(), float_imm(1.0))));
  EXPECT_EQ(not_lt->kind, Kind::Unary);
  // But s * 1.0 is s bit for bit.
  EXPECT_EQ(simplify(binary(BinaryOp::Mul, s(), float_imm(1.0)))->kind, Kind::Var);
}

TEST(Simplify, KeepsLoadsThatCouldFail) {
  Expr t = load("t", ElemType::Int32, {q()});
  // Dropping t[q] would hide an out-of-bounds error.
  EXPECT_EQ(simplify(binary(BinaryOp::Mul, t, c(0)))->kind, Kind::Binary);
  EXPECT_EQ(simplify(binary(BinaryOp::Sub, t, t))->kind, Kind::Binary);
}

TEST(Simplify, KeepsSourceRangesOfKeptNodes) {
  auto file = std::make_shared<dsl::SourceFile>("spec.attn", "mask: k <= q + 0;");
  dsl::SourceRange k_at{file, 6, 7};
  dsl::SourceRange le_at{file, 6, 16};
  Expr e = binary(BinaryOp::Le, var(Var::K, k_at), binary(BinaryOp::Add, q(), c(0)), le_at);
  Expr r = simplify(e);
  EXPECT_EQ(to_string(r), "k <= q");
  EXPECT_EQ(r->where.begin, 6u);
  EXPECT_EQ(r->where.end, 16u);
  EXPECT_EQ(r->operands[0]->where.end, 7u);
}

TEST(Simplify, ReportsDivisionByZeroOncePerNode) {
  auto file = std::make_shared<dsl::SourceFile>("spec.attn", "mask: q / (2 - 2) == k % 0;");
  dsl::SourceRange divisor_at{file, 10, 17};
  dsl::SourceRange mod_at{file, 21, 26};
  Expr div = binary(BinaryOp::Div, q(), binary(BinaryOp::Sub, c(2), c(2), divisor_at));
  Expr mod = binary(BinaryOp::Mod, k(), c(0), mod_at);  // the divisor has no range: the node's is used
  dsl::Diagnostics diags;
  Expr r = simplify(binary(BinaryOp::Eq, div, mod), &diags);
  ASSERT_EQ(diags.all().size(), 2u);
  EXPECT_EQ(diags.all()[0].message, "division by zero");
  EXPECT_EQ(diags.all()[0].where.begin, 10u);
  EXPECT_EQ(diags.all()[1].message, "modulo by zero");
  EXPECT_EQ(diags.all()[1].where.begin, 21u);
  // The result keeps Tessera's run-time meaning: both sides are 0.
  ASSERT_EQ(r->kind, Kind::BoolImm);
  EXPECT_TRUE(r->bool_value);
  // Float division by zero is IEEE, not an error.
  dsl::Diagnostics none;
  simplify(binary(BinaryOp::Div, s(), float_imm(0.0)), &none);
  EXPECT_FALSE(none.has_errors());
  // Without diagnostics it still simplifies.
  EXPECT_TRUE(is_int_const(simplify(binary(BinaryOp::Div, q(), c(0))), 0));
}

// The simplifier must agree with the evaluator at every point, for every expression.
TEST(Simplify, RandomExpressionsAgreeWithEvaluate) {
  GeneratorConfig config;
  config.loads = true;
  ExprGenerator gen(20240601, config);
  const int32_t tensor_data[4] = {3, -1, 7, 0};
  std::map<std::string, TensorView> tensors{{"t", TensorView{ElemType::Int32, {4}, tensor_data}}};
  int changed = 0;
  for (int n = 0; n < 6000; ++n) {
    ir::Type type = static_cast<ir::Type>(gen.pick(0, 2));
    Expr e = gen.make(type, static_cast<int>(gen.pick(1, 6)));
    Expr r = simplify(e);
    ASSERT_EQ(r->type, e->type) << to_string(e);
    changed += r != e;
    for (int p = 0; p < 12; ++p) {
      EvalEnv env;
      for (size_t v = 0; v < env.ints.size(); ++v) {
        env.ints[v] = gen.chance(90) ? gen.pick(-6, 6) : gen.int_constant();
      }
      env.s = gen.float_constant();
      env.scale = gen.float_constant();
      env.tensors = &tensors;
      bool original_failed = false;
      Value expected;
      try {
        expected = evaluate(e, env);
      } catch (const EvalError&) {
        original_failed = true;
      }
      if (original_failed) {
        // A failing load must not disappear.
        EXPECT_THROW(evaluate(r, env), EvalError) << to_string(e) << "  =>  " << to_string(r);
        continue;
      }
      Value actual = evaluate(r, env);
      ASSERT_TRUE(testing::same_value(expected, actual))
          << to_string(e) << "  =>  " << to_string(r) << "\n expected " << testing::value_text(expected) << " got "
          << testing::value_text(actual) << " at q=" << env.ints[0] << " k=" << env.ints[1] << " i=" << env.ints[2]
          << " j=" << env.ints[3] << " N=" << env.ints[7] << " M=" << env.ints[8] << " s=" << env.s;
    }
  }
  // The generator makes plenty of simplifiable trees; a simplifier that changes nothing would pass vacuously.
  EXPECT_GT(changed, 3000);
}

}  // namespace
}  // namespace tessera::ir
