// Splitting floor division and modulo by a constant over sums: exact wherever the dividend cannot wrap, and
// what lets interval analysis see a re-indexed view's columns.
#include "compiler/planner/divisor_split.h"

#include <gtest/gtest.h>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"

namespace tessera::planner {
namespace {

using ir::BinaryOp;
using ir::Expr;

Expr q() { return ir::var(ir::Var::Q); }
Expr k() { return ir::var(ir::Var::K); }
Expr imm(int64_t v) { return ir::int_imm(v); }
Expr bin(BinaryOp op, Expr a, Expr b) { return ir::binary(op, std::move(a), std::move(b)); }

analysis::VarRanges positions(int64_t lo, int64_t hi) {
  analysis::VarRanges r;
  r[ir::Var::Q] = analysis::IntInterval::range(lo, hi);
  r[ir::Var::K] = analysis::IntInterval::range(lo, hi);
  return r;
}

// The split expression equals the original at every point of the ranges (negative values included: floor).
void expect_same_values(const Expr& original, const Expr& split, int64_t lo, int64_t hi) {
  for (int64_t a = lo; a <= hi; ++a) {
    for (int64_t b = lo; b <= hi; ++b) {
      ir::EvalEnv env;
      env.set(ir::Var::Q, a);
      env.set(ir::Var::K, b);
      ASSERT_EQ(ir::evaluate(original, env).i, ir::evaluate(split, env).i)
          << ir::to_string(original) << " vs " << ir::to_string(split) << " at q=" << a << " k=" << b;
    }
  }
}

TEST(DivisorSplit, MultiplesOfTheDivisorLeaveModuloAndDivision) {
  // (64 k + q + 70) % 64 == (q + 6) % 64 and (64 k + q + 70) / 64 == k + 1 + (q + 6) / 64.
  const Expr sum = bin(BinaryOp::Add, bin(BinaryOp::Add, bin(BinaryOp::Mul, imm(64), k()), q()), imm(70));
  const analysis::VarRanges r = positions(-150, 150);
  const Expr mod = split_by_divisors(bin(BinaryOp::Mod, sum, imm(64)), r);
  EXPECT_FALSE(ir::uses_var(mod, ir::Var::K)) << ir::to_string(mod);
  EXPECT_EQ(ir::to_string(mod), "(q + 6) % 64");
  expect_same_values(bin(BinaryOp::Mod, sum, imm(64)), mod, -150, 150);
  const Expr div = split_by_divisors(bin(BinaryOp::Div, sum, imm(64)), r);
  expect_same_values(bin(BinaryOp::Div, sum, imm(64)), div, -150, 150);
  // Differences and negated multiples, and a divisor of the coefficient rather than equal to it.
  const Expr diff = bin(BinaryOp::Sub, q(), bin(BinaryOp::Mul, k(), imm(96)));
  for (BinaryOp op : {BinaryOp::Div, BinaryOp::Mod}) {
    const Expr e = bin(op, diff, imm(32));
    const Expr split = split_by_divisors(e, r);
    EXPECT_NE(ir::to_string(split), ir::to_string(e));
    expect_same_values(e, split, -150, 150);
  }
}

TEST(DivisorSplit, NestedTermsAreKeptWhole) {
  // A view's row: origin + 64 (x / 8) + x % 8, with x / 8 and x % 8 terms of their own.
  const Expr row =
      bin(BinaryOp::Add, bin(BinaryOp::Add, imm(16), bin(BinaryOp::Mul, imm(64), bin(BinaryOp::Div, q(), imm(8)))),
          bin(BinaryOp::Mod, q(), imm(8)));
  const Expr column = split_by_divisors(bin(BinaryOp::Mod, row, imm(64)), positions(0, 4000));
  EXPECT_EQ(ir::to_string(column), "(q % 8 + 16) % 64");
  analysis::VarRanges r = positions(0, 4000);
  EXPECT_EQ(analysis::int_bounds(column, r), analysis::IntInterval::range(16, 23)) << "the view's 8 columns";
  expect_same_values(bin(BinaryOp::Mod, row, imm(64)), column, 0, 200);
}

TEST(DivisorSplit, WhatCouldWrapOrHasNothingToSplitIsLeftAlone) {
  const Expr sum = bin(BinaryOp::Add, bin(BinaryOp::Mul, imm(64), k()), q());
  const Expr e = bin(BinaryOp::Mod, sum, imm(64));
  EXPECT_EQ(split_by_divisors(e, analysis::VarRanges{}), e) << "unbounded positions";
  const Expr plain = bin(BinaryOp::Mod, bin(BinaryOp::Add, bin(BinaryOp::Mul, imm(3), k()), q()), imm(64));
  EXPECT_EQ(split_by_divisors(plain, positions(0, 100)), plain);
}

}  // namespace
}  // namespace tessera::planner
