#include "compiler/analysis/interval.h"

#include <gtest/gtest.h>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"
#include "test/unit/random_expressions.h"

namespace tessera::analysis {
namespace {

using ir::BinaryOp;
using ir::Expr;
using ir::Fn;
using ir::Var;

Expr q() { return ir::var(Var::Q); }
Expr k() { return ir::var(Var::K); }
Expr c(int64_t v) { return ir::int_imm(v); }
Expr bin(BinaryOp op, Expr a, Expr b) { return ir::binary(op, a, b); }

VarRanges qk(int64_t q_lo, int64_t q_hi, int64_t k_lo, int64_t k_hi) {
  VarRanges r;
  r[Var::Q] = IntInterval::range(q_lo, q_hi);
  r[Var::K] = IntInterval::range(k_lo, k_hi);
  return r;
}

IntInterval ints(const Expr& e, const VarRanges& r) { return int_bounds(e, r); }
BoolInterval bools(const Expr& e, const VarRanges& r) { return bool_bounds(e, r); }

TEST(Interval, ModuloAndDivisionByConstants) {
  VarRanges r;
  r[Var::Q] = IntInterval::range(5, 7);
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(8)), r), IntInterval::range(5, 7));
  r[Var::Q] = IntInterval::range(6, 9);
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(8)), r), IntInterval::range(0, 7));
  r[Var::Q] = IntInterval::range(-3, -1);
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(8)), r), IntInterval::range(5, 7));  // floor modulo
  EXPECT_EQ(ints(bin(BinaryOp::Div, q(), c(8)), r), IntInterval::single(-1));   // floor division
  r[Var::Q] = IntInterval::range(9, 12);
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(-8)), r), IntInterval::range(-7, -4));
  r[Var::Q] = IntInterval::range(-17, 17);
  EXPECT_EQ(ints(bin(BinaryOp::Div, q(), c(4)), r), IntInterval::range(-5, 4));
  EXPECT_EQ(ints(bin(BinaryOp::Div, q(), c(0)), r), IntInterval::single(0));
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(0)), r), IntInterval::single(0));
}

TEST(Interval, DivisionByRangesIncludesZeroWhenTheDivisorCanBeZero) {
  VarRanges r = qk(10, 20, -2, 3);
  IntInterval d = ints(bin(BinaryOp::Div, q(), k()), r);
  EXPECT_TRUE(d.contains(0));
  EXPECT_EQ(d, IntInterval::range(-20, 20));  // 20 / -1
  r = qk(10, 20, 1, 3);
  EXPECT_EQ(ints(bin(BinaryOp::Div, q(), k()), r), IntInterval::range(3, 20));
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), k()), r), IntInterval::range(0, 2));
  r = qk(0, 2, 4, 9);
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), k()), r), IntInterval::range(0, 2));  // x < y: x % y == x
}

TEST(Interval, PositionMasksAreExact) {
  // Query rows 100..163 against keys 0..63: causal is always true, a window of 32 always false.
  VarRanges r = qk(100, 163, 0, 63);
  EXPECT_TRUE(bools(bin(BinaryOp::Le, k(), q()), r).always_true());
  Expr d = bin(BinaryOp::Sub, q(), k());
  EXPECT_EQ(ints(d, r), IntInterval::range(37, 163));
  EXPECT_TRUE(bools(bin(BinaryOp::Lt, d, c(37)), r).always_false());
  EXPECT_FALSE(bools(bin(BinaryOp::Lt, d, c(38)), r).always_false());
  EXPECT_TRUE(bools(bin(BinaryOp::Lt, d, c(164)), r).always_true());
  EXPECT_TRUE(bools(bin(BinaryOp::Lt, ir::call(Fn::Abs, {d}), c(37)), r).always_false());
  r = qk(0, 63, 64, 127);
  EXPECT_TRUE(bools(bin(BinaryOp::Le, k(), q()), r).always_false());
  EXPECT_EQ(ints(ir::call(Fn::Abs, {bin(BinaryOp::Sub, q(), k())}), r), IntInterval::range(1, 127));
  // Touching ranges: k in [63, 70] <= q in [0, 63] can only hold at 63.
  r = qk(0, 63, 63, 70);
  BoolInterval touching = bools(bin(BinaryOp::Le, k(), q()), r);
  EXPECT_TRUE(touching.can_be_true && touching.can_be_false);
  EXPECT_TRUE(bools(bin(BinaryOp::Lt, q(), k()), qk(0, 62, 63, 70)).always_true());
  // Same block / different block of 64.
  Expr same_block = bin(BinaryOp::Eq, bin(BinaryOp::Div, k(), c(64)), bin(BinaryOp::Div, q(), c(64)));
  EXPECT_TRUE(bools(same_block, qk(128, 191, 128, 191)).always_true());
  EXPECT_TRUE(bools(same_block, qk(128, 191, 0, 127)).always_false());
  BoolInterval straddling = bools(same_block, qk(128, 191, 100, 140));
  EXPECT_TRUE(straddling.can_be_true && straddling.can_be_false);
}

TEST(Interval, SaturatesInsteadOfOverflowing) {
  VarRanges r;
  r[Var::Q] = IntInterval::range(0, (int64_t{1} << 61) + 5);
  IntInterval doubled = ints(bin(BinaryOp::Mul, q(), c(2)), r);
  EXPECT_EQ(doubled.lo, 0);
  EXPECT_FALSE(doubled.hi_finite());
  // 2^62 * 2 wraps to INT64_MIN: the result must then be everything.
  r[Var::Q] = IntInterval::range(0, IntInterval::kFiniteLimit);
  EXPECT_EQ(ints(bin(BinaryOp::Mul, q(), c(2)), r), IntInterval::everything());
  // Unbounded above: adding 1 could wrap around to INT64_MIN in the evaluator.
  r[Var::Q] = IntInterval{0, IntInterval::kPosInf};
  EXPECT_EQ(ints(bin(BinaryOp::Add, q(), c(1)), r), IntInterval::everything());
  EXPECT_EQ(ints(bin(BinaryOp::Mod, q(), c(7)), r), IntInterval::range(0, 6));
  EXPECT_TRUE(bools(bin(BinaryOp::Ge, q(), c(0)), r).always_true());
  EXPECT_EQ(to_string(IntInterval{IntInterval::kNegInf, 3}), "[-inf, 3]");
}

TEST(Interval, LogicSelectAndFunctions) {
  VarRanges r = qk(0, 9, 20, 29);
  Expr lt = bin(BinaryOp::Lt, q(), k());        // always true
  Expr unknown = bin(BinaryOp::Lt, q(), c(5));  // either
  EXPECT_TRUE(bools(bin(BinaryOp::And, lt, lt), r).always_true());
  EXPECT_TRUE(bools(ir::unary(ir::UnaryOp::Not, lt), r).always_false());
  EXPECT_TRUE(bools(bin(BinaryOp::Or, unknown, lt), r).always_true());
  EXPECT_TRUE(bools(bin(BinaryOp::And, unknown, ir::unary(ir::UnaryOp::Not, lt)), r).always_false());
  EXPECT_EQ(ints(ir::call(Fn::Select, {lt, q(), k()}), r), IntInterval::range(0, 9));
  EXPECT_EQ(ints(ir::call(Fn::Select, {unknown, q(), k()}), r), IntInterval::range(0, 29));
  EXPECT_EQ(ints(ir::call(Fn::Clamp, {q(), c(3), c(5)}), r), IntInterval::range(3, 5));
  EXPECT_EQ(ints(ir::call(Fn::Max, {q(), k()}), r), IntInterval::range(20, 29));
  EXPECT_EQ(ints(ir::call(Fn::BitAnd, {q(), c(12)}), r), IntInterval::range(0, 9));
  EXPECT_EQ(ints(ir::call(Fn::Shr, {k(), c(2)}), r), IntInterval::range(5, 7));
  Interval t = bounds(ir::call(Fn::Tanh, {ir::var(Var::Score)}), r);
  EXPECT_GE(t.f.lo, -1.0);
  EXPECT_LE(t.f.hi, 1.0);
  Interval e = bounds(ir::call(Fn::Exp, {ir::call(Fn::ToFloat, {q()})}), r);
  EXPECT_FALSE(e.f.maybe_nan);
  EXPECT_LE(e.f.lo, 1.0);
  EXPECT_GE(e.f.hi, std::exp(9.0));
  EXPECT_LT(e.f.hi, std::exp(9.0) * 1.000001);
  Interval loaded = bounds(ir::load("segments", ir::ElemType::Int32, {ir::var(Var::Batch), q()}), r);
  EXPECT_EQ(loaded.i, IntInterval::range(INT32_MIN, INT32_MAX));
}

// Draws a value inside an interval, favouring its ends and small values.
int64_t sample(testing::ExprGenerator& gen, const IntInterval& range) {
  int64_t lo = range.lo;
  int64_t hi = range.hi;
  switch (gen.pick(0, 4)) {
    case 0: return lo;
    case 1: return hi;
    case 2: {
      int64_t v = gen.pick(-8, 8);
      if (range.contains(v)) return v;
      return lo;
    }
    default: {
      // Near the low end (or near zero when unbounded).
      int64_t base = range.lo_finite() ? lo : (range.hi_finite() ? std::min<int64_t>(hi, 0) : 0);
      __extension__ __int128 v = static_cast<__int128>(base) + gen.pick(0, 20);
      if (v > hi) v = hi;
      return static_cast<int64_t>(v);
    }
  }
}

double sample(testing::ExprGenerator& gen, const FloatInterval& range) {
  if (range.maybe_nan && gen.chance(5)) return std::nan("");
  switch (gen.pick(0, 3)) {
    case 0: return range.lo;
    case 1: return range.hi;
    default: {
      double lo = std::max(range.lo, -1e6);
      double hi = std::min(range.hi, 1e6);
      if (lo > hi) return range.lo;
      return lo + (hi - lo) * std::uniform_real_distribution<double>(0, 1)(gen.rng());
    }
  }
}

IntInterval random_int_range(testing::ExprGenerator& gen) {
  switch (gen.pick(0, 5)) {
    case 0: return IntInterval::everything();
    case 1: return IntInterval{gen.pick(-10, 10), IntInterval::kPosInf};
    case 2: return IntInterval{IntInterval::kNegInf, gen.pick(-10, 10)};
    case 3: {
      int64_t a = gen.int_constant();
      int64_t b = gen.int_constant();
      return IntInterval::range(std::min(a, b), std::max(a, b));
    }
    default: {
      int64_t lo = gen.pick(-20, 20);
      return IntInterval::range(lo, lo + gen.pick(0, 12));
    }
  }
}

FloatInterval random_float_range(testing::ExprGenerator& gen) {
  if (gen.chance(20)) return FloatInterval::everything();
  double a = gen.float_constant();
  double b = gen.float_constant();
  if (std::isnan(a) || std::isnan(b)) return FloatInterval::everything();
  return {std::min(a, b), std::max(a, b), gen.chance(20)};
}

bool contains(const Interval& range, const ir::Value& v) {
  switch (v.type) {
    case ir::Type::Int: return range.i.contains(v.i);
    case ir::Type::Float: return range.f.contains(v.f);
    case ir::Type::Bool: return v.b ? range.b.can_be_true : range.b.can_be_false;
  }
  return false;
}

std::string text(const Interval& range) {
  switch (range.type) {
    case ir::Type::Int: return to_string(range.i);
    case ir::Type::Float: return to_string(range.f);
    case ir::Type::Bool: return to_string(range.b);
  }
  return "?";
}

// Soundness: every value an expression takes at a point inside the ranges lies in its interval.
TEST(Interval, RandomExpressionsAreSoundAgainstEvaluate) {
  testing::GeneratorConfig config;
  config.loads = true;
  config.int_vars = {Var::Q, Var::K, Var::I, Var::J, Var::N, Var::M, Var::Batch, Var::Head};
  testing::ExprGenerator gen(1234567, config);
  const int32_t tensor_data[4] = {INT32_MIN, -1, 7, INT32_MAX};
  std::map<std::string, ir::TensorView> tensors{{"t", ir::TensorView{ir::ElemType::Int32, {4}, tensor_data}}};
  int decided = 0;
  for (int n = 0; n < 4000; ++n) {
    Expr e = gen.make(static_cast<ir::Type>(gen.pick(0, 2)), static_cast<int>(gen.pick(1, 5)));
    VarRanges ranges;
    for (auto& range : ranges.ints) range = random_int_range(gen);
    ranges.s = random_float_range(gen);
    ranges.scale = random_float_range(gen);
    Interval result = bounds(e, ranges);
    ASSERT_EQ(result.type, e->type);
    if (result.type == ir::Type::Bool && (result.b.always_true() || result.b.always_false())) ++decided;
    if (result.type == ir::Type::Int && result.i.is_single()) ++decided;
    for (int p = 0; p < 25; ++p) {
      ir::EvalEnv env;
      for (size_t v = 0; v < env.ints.size(); ++v) env.ints[v] = sample(gen, ranges.ints[v]);
      env.s = sample(gen, ranges.s);
      env.scale = sample(gen, ranges.scale);
      env.tensors = &tensors;
      ir::Value value;
      try {
        value = ir::evaluate(e, env);
      } catch (const ir::EvalError&) {
        continue;  // an out-of-bounds load has no value to bound
      }
      ASSERT_TRUE(contains(result, value))
          << ir::to_string(e) << "\n value " << testing::value_text(value) << " outside " << text(result)
          << " at q=" << env.ints[0] << " k=" << env.ints[1] << " i=" << env.ints[2] << " j=" << env.ints[3]
          << " b=" << env.ints[4] << " h=" << env.ints[5] << " N=" << env.ints[7] << " M=" << env.ints[8]
          << " s=" << env.s << " scale=" << env.scale;
    }
  }
  // Sound but useless (everything unknown) would pass the loop above; the analysis must decide some.
  EXPECT_GT(decided, 400);
}

}  // namespace
}  // namespace tessera::analysis
