// Random well-typed expression IR and random evaluation points, for the randomized tests of the simplifier,
// the printer, the interval analysis and the tile classifier.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/expr.h"

namespace tessera::testing {

struct GeneratorConfig {
  std::vector<ir::Var> int_vars = {ir::Var::Q, ir::Var::K, ir::Var::I, ir::Var::J, ir::Var::N, ir::Var::M};
  bool floats = true;             // float subexpressions (s, scale, float functions)
  bool bitwise = true;            // bitand ... shr
  bool loads = false;             // loads from the int32 tensor "t" of shape [4] (indices unguarded)
  bool extreme_constants = true;  // occasionally INT64_MIN, INT64_MAX, 2^62, infinities, NaN
  bool nan_constants = true;
  int64_t small_constant = 10;  // ordinary constants lie in [-small_constant, small_constant]
};

class ExprGenerator {
 public:
  ExprGenerator(uint64_t seed, GeneratorConfig config) : rng_(seed), config_(std::move(config)) {}

  std::mt19937_64& rng() { return rng_; }

  ir::Expr make(ir::Type type, int depth) {
    switch (type) {
      case ir::Type::Int: return make_int(depth);
      case ir::Type::Float: return make_float(depth);
      case ir::Type::Bool: return make_bool(depth);
    }
    return nullptr;
  }

  int64_t pick(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  bool chance(int percent) { return pick(1, 100) <= percent; }

  int64_t int_constant() {
    if (config_.extreme_constants && chance(5)) {
      const int64_t extremes[] = {INT64_MIN,           INT64_MAX,        INT64_MIN + 1, int64_t{1} << 62,
                                  -(int64_t{1} << 62), int64_t{1} << 40, 1000000007};
      return extremes[pick(0, 6)];
    }
    return pick(-config_.small_constant, config_.small_constant);
  }

  double float_constant() {
    if (config_.extreme_constants && chance(8)) {
      std::vector<double> extremes = {std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                                      -0.0, 1e300, -1e-300};
      if (config_.nan_constants) extremes.push_back(std::numeric_limits<double>::quiet_NaN());
      return extremes[static_cast<size_t>(pick(0, static_cast<int64_t>(extremes.size()) - 1))];
    }
    const double ordinary[] = {0.0, 1.0, -1.0, 0.5, 2.0, -3.25, 0.1, 1e-6, 123456.0, 3.0};
    return ordinary[pick(0, 9)];
  }

 private:
  ir::Expr int_leaf() {
    if (chance(45) || config_.int_vars.empty()) return ir::int_imm(int_constant());
    return ir::var(config_.int_vars[static_cast<size_t>(pick(0, static_cast<int64_t>(config_.int_vars.size()) - 1))]);
  }

  ir::Expr make_int(int depth) {
    if (depth <= 0 || chance(20)) return int_leaf();
    int choice = static_cast<int>(pick(0, 15));
    using ir::BinaryOp;
    switch (choice) {
      case 0:
      case 1: {
        const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod};
        BinaryOp op = ops[pick(0, 4)];
        ir::Expr a = make_int(depth - 1);
        // Sharing a subtree exercises x - x, x / x and friends.
        ir::Expr b = chance(15) ? a : make_int(depth - 1);
        return ir::binary(op, a, b);
      }
      case 2:
      case 3: {
        // Offsets and small constant divisors, the shapes masks are made of.
        const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Div, BinaryOp::Mod, BinaryOp::Mul};
        return ir::binary(ops[pick(0, 4)], make_int(depth - 1), ir::int_imm(pick(-4, 9)));
      }
      case 4: return ir::unary(ir::UnaryOp::Neg, make_int(depth - 1));
      case 5: return ir::call(ir::Fn::Min, {make_int(depth - 1), make_int(depth - 1)});
      case 6: return ir::call(ir::Fn::Max, {make_int(depth - 1), make_int(depth - 1)});
      case 7: return ir::call(ir::Fn::Abs, {make_int(depth - 1)});
      case 8: return ir::call(ir::Fn::Clamp, {make_int(depth - 1), make_int(depth - 1), make_int(depth - 1)});
      case 9: return ir::call(ir::Fn::Select, {make_bool(depth - 1), make_int(depth - 1), make_int(depth - 1)});
      case 10:
        if (config_.floats) return ir::call(ir::Fn::ToInt, {make_float(depth - 1)});
        return int_leaf();
      case 11:
        if (config_.bitwise) {
          const ir::Fn fns[] = {ir::Fn::BitAnd, ir::Fn::BitOr, ir::Fn::BitXor, ir::Fn::Shl, ir::Fn::Shr};
          ir::Fn fn = fns[pick(0, 4)];
          ir::Expr b =
              (fn == ir::Fn::Shl || fn == ir::Fn::Shr) && chance(70) ? ir::int_imm(pick(-1, 64)) : make_int(depth - 1);
          return ir::call(fn, {make_int(depth - 1), b});
        }
        return int_leaf();
      case 12:
        if (config_.bitwise) return ir::call(ir::Fn::BitNot, {make_int(depth - 1)});
        return int_leaf();
      case 13:
        if (config_.loads) return ir::load("t", ir::ElemType::Int32, {make_int(depth - 1)});
        return int_leaf();
      default: {
        // (x + c1) + c2 style chains for the re-association rules.
        ir::Expr x = make_int(depth - 1);
        ir::Expr inner = ir::binary(chance(50) ? BinaryOp::Add : BinaryOp::Sub, x, ir::int_imm(pick(-5, 5)));
        return ir::binary(chance(50) ? BinaryOp::Add : BinaryOp::Sub, inner, chance(50) ? ir::int_imm(pick(-5, 5)) : x);
      }
    }
  }

  ir::Expr make_float(int depth) {
    if (!config_.floats) return nullptr;
    if (depth <= 0 || chance(20)) {
      int leaf = static_cast<int>(pick(0, 3));
      if (leaf == 0) return ir::var(ir::Var::Score);
      if (leaf == 1) return ir::var(ir::Var::Scale);
      return ir::float_imm(float_constant());
    }
    using ir::BinaryOp;
    switch (pick(0, 8)) {
      case 0:
      case 1: {
        const BinaryOp ops[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod};
        ir::Expr a = make_float(depth - 1);
        ir::Expr b = chance(10) ? a : make_float(depth - 1);
        return ir::binary(ops[pick(0, 4)], a, b);
      }
      case 2: return ir::unary(ir::UnaryOp::Neg, make_float(depth - 1));
      case 3: {
        const ir::Fn fns[] = {ir::Fn::Tanh, ir::Fn::Exp,   ir::Fn::Log,  ir::Fn::Exp2,
                              ir::Fn::Sqrt, ir::Fn::Floor, ir::Fn::Ceil, ir::Fn::Abs};
        return ir::call(fns[pick(0, 7)], {make_float(depth - 1)});
      }
      case 4: {
        const ir::Fn fns[] = {ir::Fn::Min, ir::Fn::Max, ir::Fn::Pow};
        return ir::call(fns[pick(0, 2)], {make_float(depth - 1), make_float(depth - 1)});
      }
      case 5: return ir::call(ir::Fn::Clamp, {make_float(depth - 1), make_float(depth - 1), make_float(depth - 1)});
      case 6: return ir::call(ir::Fn::ToFloat, {make_int(depth - 1)});
      case 7: return ir::call(ir::Fn::Select, {make_bool(depth - 1), make_float(depth - 1), make_float(depth - 1)});
      default:
        return ir::binary(chance(50) ? BinaryOp::Mul : BinaryOp::Div, make_float(depth - 1),
                          ir::float_imm(chance(50) ? 1.0 : 0.0));
    }
  }

  ir::Expr make_bool(int depth) {
    if (depth <= 0 || chance(10)) return ir::bool_imm(chance(50));
    using ir::BinaryOp;
    const BinaryOp comparisons[] = {BinaryOp::Lt, BinaryOp::Le, BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Eq, BinaryOp::Ne};
    switch (pick(0, 7)) {
      case 0:
      case 1:
      case 2: {
        ir::Expr a = make_int(depth - 1);
        ir::Expr b = chance(10) ? a : make_int(depth - 1);
        return ir::binary(comparisons[pick(0, 5)], a, b);
      }
      case 3:
        if (config_.floats) return ir::binary(comparisons[pick(0, 5)], make_float(depth - 1), make_float(depth - 1));
        return ir::binary(comparisons[pick(0, 5)], make_int(depth - 1), make_int(depth - 1));
      case 4: {
        ir::Expr a = make_bool(depth - 1);
        return ir::binary(chance(50) ? BinaryOp::And : BinaryOp::Or, a, chance(10) ? a : make_bool(depth - 1));
      }
      case 5: return ir::unary(ir::UnaryOp::Not, make_bool(depth - 1));
      case 6: return ir::binary(chance(50) ? BinaryOp::Eq : BinaryOp::Ne, make_bool(depth - 1), make_bool(depth - 1));
      default: return ir::call(ir::Fn::Select, {make_bool(depth - 1), make_bool(depth - 1), make_bool(depth - 1)});
    }
  }

  std::mt19937_64 rng_;
  GeneratorConfig config_;
};

// Bitwise-equal values (NaN equals NaN; 0.0 and -0.0 differ).
inline bool same_value(const ir::Value& a, const ir::Value& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case ir::Type::Int: return a.i == b.i;
    case ir::Type::Bool: return a.b == b.b;
    case ir::Type::Float:
      if (std::isnan(a.f) || std::isnan(b.f)) return std::isnan(a.f) && std::isnan(b.f);
      return a.f == b.f && std::signbit(a.f) == std::signbit(b.f);
  }
  return false;
}

inline std::string value_text(const ir::Value& v) {
  switch (v.type) {
    case ir::Type::Int: return std::to_string(v.i);
    case ir::Type::Bool: return v.b ? "true" : "false";
    case ir::Type::Float: return std::to_string(v.f);
  }
  return "?";
}

// Random masks the CUDA functor tests emit at build time (test/tools/emit_pattern_functors.cpp) and check at run
// time (cuda_device_expression_test.cpp): integer masks only, since float32 and float64 comparisons of computed
// floats may legitimately differ. Constants stay small so that most points compute in 32 bits what the reference
// computes in 64 (the test skips the points where an intermediate leaves the 32-bit range).
inline GeneratorConfig functor_mask_config() {
  GeneratorConfig config;
  config.int_vars = {ir::Var::Q, ir::Var::K,     ir::Var::I,    ir::Var::J,     ir::Var::N,
                     ir::Var::M, ir::Var::Batch, ir::Var::Head, ir::Var::Heads, ir::Var::D};
  config.floats = false;
  config.loads = true;
  config.extreme_constants = false;
  return config;
}

}  // namespace tessera::testing
