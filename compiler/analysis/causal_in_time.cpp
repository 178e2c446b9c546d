#include "compiler/analysis/causal_in_time.h"

#include <cstdint>
#include <cstdlib>
#include <optional>

namespace tessera::analysis {

namespace {

// a*q + b*k + c over integers. Coefficients stay far from int64's limits (anything larger gives up), so the
// IR's wrap-around arithmetic cannot differ from this exact form at any realistic position.
struct Affine {
  int64_t a = 0, b = 0, c = 0;
};

constexpr int64_t kLimit = int64_t{1} << 31;

bool small(const Affine& f) {
  return std::llabs(f.a) <= kLimit && std::llabs(f.b) <= kLimit && std::llabs(f.c) <= kLimit;
}

std::optional<Affine> checked(Affine f) { return small(f) ? std::optional(f) : std::nullopt; }

std::optional<Affine> affine(const ir::Expr& e) {
  if (e->type != ir::Type::Int) return std::nullopt;
  switch (e->kind) {
    case ir::Kind::IntImm: return checked({0, 0, e->int_value});
    case ir::Kind::Var:
      if (e->var == ir::Var::Q) return Affine{1, 0, 0};
      if (e->var == ir::Var::K) return Affine{0, 1, 0};
      return std::nullopt;
    case ir::Kind::Unary: {
      auto x = affine(e->operands[0]);
      if (!x || e->unary_op != ir::UnaryOp::Neg) return std::nullopt;
      return Affine{-x->a, -x->b, -x->c};
    }
    case ir::Kind::Binary: {
      auto x = affine(e->operands[0]);
      auto y = affine(e->operands[1]);
      if (!x || !y) return std::nullopt;
      switch (e->binary_op) {
        case ir::BinaryOp::Add: return checked({x->a + y->a, x->b + y->b, x->c + y->c});
        case ir::BinaryOp::Sub: return checked({x->a - y->a, x->b - y->b, x->c - y->c});
        case ir::BinaryOp::Mul: {
          // Affine only when one side is a constant.
          if (x->a == 0 && x->b == 0) std::swap(x, y);
          if (y->a != 0 || y->b != 0) return std::nullopt;
          __extension__ using Wide = __int128;
          Wide k = y->c;
          Wide a = k * x->a, b = k * x->b, c = k * x->c;
          auto fits = [](Wide v) { return v >= -Wide{kLimit} && v <= Wide{kLimit}; };
          if (!fits(a) || !fits(b) || !fits(c)) return std::nullopt;
          return Affine{static_cast<int64_t>(a), static_cast<int64_t>(b), static_cast<int64_t>(c)};
        }
        default: return std::nullopt;
      }
    }
    default: return std::nullopt;
  }
}

// Whether no integer d <= -1 has alpha*d + c >= 0.
bool never_nonnegative_before(int64_t alpha, int64_t c) {
  if (alpha > 0) return c - alpha < 0;  // the largest value over d <= -1 is at d = -1
  if (alpha < 0) return false;          // grows without bound as d decreases
  return c < 0;
}

// Whether comparison `e` (lhs OP rhs) is false for every pair with k > q.
bool comparison_implies_causal(const ir::Expr& e) {
  auto lhs = affine(e->operands[0]);
  auto rhs = affine(e->operands[1]);
  if (!lhs || !rhs) return false;
  // f = lhs - rhs = alpha * (q - k) + c when the q and k coefficients cancel.
  Affine f{lhs->a - rhs->a, lhs->b - rhs->b, lhs->c - rhs->c};
  if (f.a != -f.b) return false;
  int64_t alpha = f.a, c = f.c;
  switch (e->binary_op) {
    case ir::BinaryOp::Ge: return never_nonnegative_before(alpha, c);        // f >= 0
    case ir::BinaryOp::Gt: return never_nonnegative_before(alpha, c - 1);    // f >= 1
    case ir::BinaryOp::Le: return never_nonnegative_before(-alpha, -c);      // -f >= 0
    case ir::BinaryOp::Lt: return never_nonnegative_before(-alpha, -c - 1);  // -f >= 1
    case ir::BinaryOp::Eq:
      if (alpha == 0) return c != 0;
      // The only solution d = -c / alpha must not be an integer <= -1.
      return c % alpha != 0 || -c / alpha >= 0;
    default: return false;
  }
}

}  // namespace

bool proves_causal_in_time(const ir::Expr& mask) {
  switch (mask->kind) {
    case ir::Kind::BoolImm: return !mask->bool_value;  // nothing is ever allowed
    case ir::Kind::Binary:
      switch (mask->binary_op) {
        case ir::BinaryOp::And:
          return proves_causal_in_time(mask->operands[0]) || proves_causal_in_time(mask->operands[1]);
        case ir::BinaryOp::Or:
          return proves_causal_in_time(mask->operands[0]) && proves_causal_in_time(mask->operands[1]);
        case ir::BinaryOp::Lt:
        case ir::BinaryOp::Le:
        case ir::BinaryOp::Gt:
        case ir::BinaryOp::Ge:
        case ir::BinaryOp::Eq: return comparison_implies_causal(mask);
        default: return false;
      }
    default: return false;
  }
}

}  // namespace tessera::analysis
