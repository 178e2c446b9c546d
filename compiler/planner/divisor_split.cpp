#include "compiler/planner/divisor_split.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/ir/printer.h"

namespace tessera::planner {

namespace {

using ir::Expr;

// An integer expression as sum(coefficient * term) + constant in exact integers, terms by their printed form.
struct Linear {
  std::map<std::string, std::pair<Expr, int64_t>> terms;
  int64_t constant = 0;
};

std::optional<Linear> scaled(Linear l, int64_t factor) {
  for (auto& [key, term] : l.terms) {
    if (__builtin_mul_overflow(term.second, factor, &term.second)) return std::nullopt;
  }
  if (__builtin_mul_overflow(l.constant, factor, &l.constant)) return std::nullopt;
  return l;
}

std::optional<Linear> sum(Linear a, const Linear& b) {
  for (const auto& [key, term] : b.terms) {
    auto [it, inserted] = a.terms.try_emplace(key, term.first, 0);
    if (__builtin_add_overflow(it->second.second, term.second, &it->second.second)) return std::nullopt;
  }
  if (__builtin_add_overflow(a.constant, b.constant, &a.constant)) return std::nullopt;
  return a;
}

std::optional<Linear> linear(const Expr& e) {
  if (e->kind == ir::Kind::IntImm) return Linear{{}, e->int_value};
  const bool neg = e->kind == ir::Kind::Unary && e->unary_op == ir::UnaryOp::Neg;
  const bool arith =
      e->kind == ir::Kind::Binary &&
      (e->binary_op == ir::BinaryOp::Add || e->binary_op == ir::BinaryOp::Sub || e->binary_op == ir::BinaryOp::Mul);
  if (neg) {
    auto a = linear(e->operands[0]);
    return a ? scaled(*a, -1) : std::nullopt;
  }
  if (arith) {
    auto a = linear(e->operands[0]);
    auto b = linear(e->operands[1]);
    if (!a || !b) return std::nullopt;
    switch (e->binary_op) {
      case ir::BinaryOp::Add: return sum(*a, *b);
      case ir::BinaryOp::Sub: {
        auto negated = scaled(*b, -1);
        return negated ? sum(*a, *negated) : std::nullopt;
      }
      default:
        if (a->terms.empty()) return scaled(*b, a->constant);
        if (b->terms.empty()) return scaled(*a, b->constant);
        break;  // a product of two terms is one term
    }
  }
  Linear l;
  l.terms.emplace(ir::to_string(e), std::pair{e, int64_t{1}});
  return l;
}

Expr expression(const Linear& l) {
  Expr e;
  for (const auto& [key, term] : l.terms) {
    const auto& [t, c] = term;
    if (c == 0) continue;
    // A negative coefficient after the first term is subtracted: `x - n`, not `x + n * -1`.
    const bool subtract = e && c < 0 && c != INT64_MIN;
    const int64_t magnitude = subtract ? -c : c;
    Expr scaled_term = magnitude == 1 ? t : ir::binary(ir::BinaryOp::Mul, t, ir::int_imm(magnitude));
    e = !e ? scaled_term : ir::binary(subtract ? ir::BinaryOp::Sub : ir::BinaryOp::Add, e, scaled_term);
  }
  if (!e) return ir::int_imm(l.constant);
  return l.constant == 0 ? e : ir::binary(ir::BinaryOp::Add, e, ir::int_imm(l.constant));
}

}  // namespace

Expr split_by_divisors(const Expr& e, const analysis::VarRanges& ranges) {
  bool changed = false;
  std::vector<Expr> operands;
  for (const Expr& o : e->operands) {
    operands.push_back(split_by_divisors(o, ranges));
    changed |= operands.back() != o;
  }
  Expr node = e;
  if (changed) {
    auto copy = std::make_shared<ir::Node>(*e);
    copy->operands = std::move(operands);
    node = copy;
  }
  const bool div = node->kind == ir::Kind::Binary && node->binary_op == ir::BinaryOp::Div;
  const bool mod = node->kind == ir::Kind::Binary && node->binary_op == ir::BinaryOp::Mod;
  if (!(div || mod) || node->type != ir::Type::Int || node->operands[1]->kind != ir::Kind::IntImm ||
      node->operands[1]->int_value <= 0) {
    return node;
  }
  const int64_t D = node->operands[1]->int_value;
  const std::optional<Linear> x = linear(node->operands[0]);
  if (!x) return node;
  Linear whole, rest;
  for (const auto& [key, term] : x->terms) {
    if (term.second % D == 0) {
      if (term.second != 0) whole.terms.emplace(key, std::pair{term.first, term.second / D});
    } else {
      rest.terms.emplace(key, term);
    }
  }
  whole.constant = ir::floor_div(x->constant, D);
  rest.constant = ir::floor_mod(x->constant, D);
  if (whole.terms.empty() && whole.constant == 0) return node;
  const analysis::IntInterval bounds = analysis::int_bounds(node->operands[0], ranges);
  if (!bounds.lo_finite() || !bounds.hi_finite()) return node;
  Expr remainder = ir::binary(node->binary_op, expression(rest), ir::int_imm(D));
  return mod ? remainder : ir::binary(ir::BinaryOp::Add, expression(whole), remainder);
}

}  // namespace tessera::planner
