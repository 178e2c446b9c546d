// Constant folding and local algebraic rewrites.
//
// Soundness rules every rewrite below respects:
//  - Constants are folded by calling ir::evaluate itself, so folding can never disagree with the reference
//    semantics (floor division, division by zero = 0, wrapping integers, clamp = min(max)).
//  - Integer rewrites hold under 64-bit wrapping arithmetic (a ring), never only over the mathematical integers.
//  - Float rewrites are limited to identities that hold bit for bit for NaN, infinities and signed zeros
//    (x * 1.0, x / 1.0, x - 0.0); x * 0 and x + 0.0 are not among them.
//  - A rewrite that drops a subexpression only drops one that reads no run-time tensor, because evaluating a
//    load can fail (out-of-bounds index) and that failure must not silently disappear.
#include "compiler/ir/simplify.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/log_bucket.h"

namespace tessera::ir {

namespace {

bool is_bool_const(const Expr& e, bool value) { return e->kind == Kind::BoolImm && e->bool_value == value; }
bool is_float_const(const Expr& e, double value) {
  return e->kind == Kind::FloatImm && e->float_value == value && !std::signbit(e->float_value) == !std::signbit(value);
}
bool is_int(const Expr& e) { return e->type == Type::Int; }

// Whether dropping `e` (not evaluating it) cannot hide a run-time failure.
bool droppable(const Expr& e) { return !uses_tensors(e); }

// A copy of `original` (kind, operator, source range) with new operands.
Expr rebuild(const Expr& original, std::vector<Expr> operands) {
  bool changed = false;
  for (size_t i = 0; i < operands.size(); ++i) changed |= operands[i] != original->operands[i];
  if (!changed) return original;
  auto copy = std::make_shared<Node>(*original);
  copy->operands = std::move(operands);
  return copy;
}

Expr constant_of(const Value& v, const dsl::SourceRange& where) {
  switch (v.type) {
    case Type::Int: return int_imm(v.i, where);
    case Type::Float: return float_imm(v.f, where);
    case Type::Bool: return bool_imm(v.b, where);
  }
  throw std::logic_error("tessera internal error: unknown value type");
}

// Folds a node whose operands are all constants by asking the reference interpreter.
Expr fold(const Expr& e) {
  EvalEnv env;
  return constant_of(evaluate(e, env), e->where);
}

std::optional<std::pair<Expr, int64_t>> split_offset(const Expr& e);

// `x + c` for an integer constant c, printed as `x - |c|` when c is negative (and representable); merges into
// an existing offset of x and folds a constant x.
Expr add_const(const Expr& x, int64_t c, const dsl::SourceRange& where) {
  if (c == 0) return x;
  if (x->kind == Kind::IntImm) return int_imm(wrapping_add(x->int_value, c), where);
  if (auto inner = split_offset(x)) return add_const(inner->first, wrapping_add(inner->second, c), where);
  if (c < 0 && c != INT64_MIN) return binary(BinaryOp::Sub, x, int_imm(-c), where);
  return binary(BinaryOp::Add, x, int_imm(c), where);
}

// If `e` is `x + c` or `x - c` with an integer constant c, returns x and the signed offset.
std::optional<std::pair<Expr, int64_t>> split_offset(const Expr& e) {
  if (e->kind != Kind::Binary || !is_int(e) || e->operands[1]->kind != Kind::IntImm) return std::nullopt;
  int64_t c = e->operands[1]->int_value;
  if (e->binary_op == BinaryOp::Add) return std::make_pair(e->operands[0], c);
  if (e->binary_op == BinaryOp::Sub) return std::make_pair(e->operands[0], wrapping_sub(0, c));
  return std::nullopt;
}

Expr simplify_node(const Expr& e);

Expr make_not(const Expr& a, const dsl::SourceRange& where) { return simplify_node(unary(UnaryOp::Not, a, where)); }

Expr simplify_unary(const Expr& e) {
  const Expr& a = e->operands[0];
  if (is_const(a)) return fold(e);
  // --x == x and !!x == x hold for wrapping ints and for floats alike.
  if (a->kind == Kind::Unary && a->unary_op == e->unary_op) return a->operands[0];
  if (e->unary_op == UnaryOp::Not && a->kind == Kind::Binary) {
    const Expr& l = a->operands[0];
    const Expr& r = a->operands[1];
    // Negating an ordering is only sound without NaN, i.e. for ints; == / != also for bools.
    bool no_nan = l->type != Type::Float;
    auto flipped = [&](BinaryOp op) { return binary(op, l, r, a->where); };
    switch (a->binary_op) {
      case BinaryOp::Lt:
        if (no_nan) return flipped(BinaryOp::Ge);
        break;
      case BinaryOp::Le:
        if (no_nan) return flipped(BinaryOp::Gt);
        break;
      case BinaryOp::Gt:
        if (no_nan) return flipped(BinaryOp::Le);
        break;
      case BinaryOp::Ge:
        if (no_nan) return flipped(BinaryOp::Lt);
        break;
      case BinaryOp::Eq:
        if (no_nan) return flipped(BinaryOp::Ne);
        break;
      case BinaryOp::Ne:
        if (no_nan) return flipped(BinaryOp::Eq);
        break;
      default: break;
    }
  }
  return e;
}

Expr simplify_int_arith(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  switch (e->binary_op) {
    case BinaryOp::Add: {
      if (is_int_const(b, 0)) return a;
      if (is_int_const(a, 0)) return b;
      // Constants go right so that offsets can merge: c + x == x + c.
      if (a->kind == Kind::IntImm) return simplify_node(binary(BinaryOp::Add, b, a, e->where));
      if (b->kind == Kind::IntImm) {
        if (auto inner = split_offset(a))
          return add_const(inner->first, wrapping_add(inner->second, b->int_value), e->where);
      }
      // (x + c1) + (y + c2) == (x + y) + (c1 + c2).
      if (auto left = split_offset(a), right = split_offset(b); left || right) {
        Expr x = left ? left->first : a;
        Expr y = right ? right->first : b;
        int64_t c = wrapping_add(left ? left->second : 0, right ? right->second : 0);
        return add_const(simplify_node(binary(BinaryOp::Add, x, y, e->where)), c, e->where);
      }
      // x + (-y) == x - y.
      if (b->kind == Kind::Unary && b->unary_op == UnaryOp::Neg)
        return simplify_node(binary(BinaryOp::Sub, a, b->operands[0], e->where));
      break;
    }
    case BinaryOp::Sub: {
      if (is_int_const(b, 0)) return a;
      if (is_int_const(a, 0)) return simplify_node(unary(UnaryOp::Neg, b, e->where));
      if (structurally_equal(a, b) && droppable(a)) return int_imm(0, e->where);
      if (b->kind == Kind::IntImm) {
        int64_t c = wrapping_sub(0, b->int_value);
        if (auto inner = split_offset(a)) return add_const(inner->first, wrapping_add(inner->second, c), e->where);
        if (b->int_value < 0 && b->int_value != INT64_MIN) return add_const(a, c, e->where);
      }
      // (x + c) - x == c and x - (x + c) == -c.
      if (auto inner = split_offset(a); inner && structurally_equal(inner->first, b) && droppable(b)) {
        return int_imm(inner->second, e->where);
      }
      if (auto inner = split_offset(b); inner && structurally_equal(inner->first, a) && droppable(a)) {
        return int_imm(wrapping_sub(0, inner->second), e->where);
      }
      // (x + c1) - (y + c2) == (x - y) + (c1 - c2): keeps offsets outermost so they can merge further.
      if (auto left = split_offset(a), right = split_offset(b); left || right) {
        Expr x = left ? left->first : a;
        Expr y = right ? right->first : b;
        int64_t c = wrapping_sub(left ? left->second : 0, right ? right->second : 0);
        return add_const(simplify_node(binary(BinaryOp::Sub, x, y, e->where)), c, e->where);
      }
      if (b->kind == Kind::Unary && b->unary_op == UnaryOp::Neg)
        return simplify_node(binary(BinaryOp::Add, a, b->operands[0], e->where));
      break;
    }
    case BinaryOp::Mul: {
      if (is_int_const(b, 1)) return a;
      if (is_int_const(a, 1)) return b;
      if (is_int_const(b, 0) && droppable(a)) return int_imm(0, e->where);
      if (is_int_const(a, 0) && droppable(b)) return int_imm(0, e->where);
      if (a->kind == Kind::IntImm) return simplify_node(binary(BinaryOp::Mul, b, a, e->where));
      // (x * c1) * c2 == x * (c1 * c2): wrapping multiplication is associative.
      if (b->kind == Kind::IntImm && a->kind == Kind::Binary && a->binary_op == BinaryOp::Mul &&
          a->operands[1]->kind == Kind::IntImm) {
        return simplify_node(binary(BinaryOp::Mul, a->operands[0],
                                    int_imm(wrapping_mul(a->operands[1]->int_value, b->int_value)), e->where));
      }
      break;
    }
    case BinaryOp::Div: {
      if (is_int_const(b, 1)) return a;
      if (is_int_const(b, 0) && droppable(a)) return int_imm(0, e->where);
      // floor(floor(x / c1) / c2) == floor(x / (c1 * c2)) for positive c1, c2.
      if (b->kind == Kind::IntImm && b->int_value > 0 && a->kind == Kind::Binary && a->binary_op == BinaryOp::Div &&
          a->operands[1]->kind == Kind::IntImm && a->operands[1]->int_value > 0) {
        __extension__ __int128 product = static_cast<__int128>(a->operands[1]->int_value) * b->int_value;
        if (product <= INT64_MAX) {
          return binary(BinaryOp::Div, a->operands[0], int_imm(static_cast<int64_t>(product)), e->where);
        }
      }
      break;
    }
    case BinaryOp::Mod: {
      if ((is_int_const(b, 1) || is_int_const(b, -1) || is_int_const(b, 0)) && droppable(a))
        return int_imm(0, e->where);
      // (x % c) % c == x % c.
      if (b->kind == Kind::IntImm && a->kind == Kind::Binary && a->binary_op == BinaryOp::Mod &&
          is_int_const(a->operands[1], b->int_value)) {
        return a;
      }
      break;
    }
    default: break;
  }
  return e;
}

Expr simplify_float_arith(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  switch (e->binary_op) {
    case BinaryOp::Mul:
      if (is_float_const(b, 1.0)) return a;
      if (is_float_const(a, 1.0)) return b;
      break;
    case BinaryOp::Div:
      if (is_float_const(b, 1.0)) return a;
      break;
    case BinaryOp::Sub:
      if (is_float_const(b, 0.0)) return a;
      break;
    default: break;
  }
  return e;
}

Expr simplify_comparison(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  // x op x is decided for ints and bools; a float x may be NaN.
  if (a->type != Type::Float && structurally_equal(a, b) && droppable(a)) {
    switch (e->binary_op) {
      case BinaryOp::Le:
      case BinaryOp::Ge:
      case BinaryOp::Eq: return bool_imm(true, e->where);
      case BinaryOp::Lt:
      case BinaryOp::Gt:
      case BinaryOp::Ne: return bool_imm(false, e->where);
      default: break;
    }
  }
  if (a->type == Type::Bool) {
    // x == true is x, x == false is !x (and the mirror images for !=).
    for (int side = 0; side < 2; ++side) {
      const Expr& c = side == 0 ? b : a;
      const Expr& x = side == 0 ? a : b;
      if (c->kind != Kind::BoolImm) continue;
      bool keep = (e->binary_op == BinaryOp::Eq) == c->bool_value;
      return keep ? x : make_not(x, e->where);
    }
  }
  // (x + c1) op c2 is NOT rewritten to x op (c2 - c1): with wrapping ints the two differ near overflow.
  return e;
}

// The comparison that is true exactly where `op` is false, for operands that cannot be NaN.
std::optional<BinaryOp> negated_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::Lt: return BinaryOp::Ge;
    case BinaryOp::Le: return BinaryOp::Gt;
    case BinaryOp::Gt: return BinaryOp::Le;
    case BinaryOp::Ge: return BinaryOp::Lt;
    case BinaryOp::Eq: return BinaryOp::Ne;
    case BinaryOp::Ne: return BinaryOp::Eq;
    default: return std::nullopt;
  }
}

// `op` with its operands swapped: a < b is b > a.
BinaryOp mirrored_comparison(BinaryOp op) {
  switch (op) {
    case BinaryOp::Lt: return BinaryOp::Gt;
    case BinaryOp::Le: return BinaryOp::Ge;
    case BinaryOp::Gt: return BinaryOp::Lt;
    case BinaryOp::Ge: return BinaryOp::Le;
    default: return op;
  }
}

// Whether `d` is the negation of `c`: x and !x, or comparisons of the same int or bool operands (in either order)
// with complementary operators. Floats are left alone: with a NaN operand x < y and x >= y are both false.
bool complementary(const Expr& c, const Expr& d) {
  for (int side = 0; side < 2; ++side) {
    const Expr& x = side == 0 ? c : d;
    const Expr& y = side == 0 ? d : c;
    if (y->kind == Kind::Unary && y->unary_op == UnaryOp::Not && structurally_equal(x, y->operands[0])) return true;
  }
  if (c->kind != Kind::Binary || d->kind != Kind::Binary) return false;
  const std::optional<BinaryOp> negated = negated_comparison(c->binary_op);
  if (!negated || !negated_comparison(d->binary_op) || c->operands[0]->type == Type::Float) return false;
  const Expr &c0 = c->operands[0], &c1 = c->operands[1], &d0 = d->operands[0], &d1 = d->operands[1];
  if (d->binary_op == *negated && structurally_equal(c0, d0) && structurally_equal(c1, d1)) return true;
  return d->binary_op == mirrored_comparison(*negated) && structurally_equal(c0, d1) && structurally_equal(c1, d0);
}

// The operands of a chain of one logical operator: a && (b && c) gives a, b, c.
void collect_terms(const Expr& e, BinaryOp op, std::vector<Expr>& terms) {
  if (e->kind == Kind::Binary && e->binary_op == op) {
    for (const Expr& operand : e->operands) collect_terms(operand, op, terms);
  } else {
    terms.push_back(e);
  }
}

Expr simplify_logic(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  bool is_and = e->binary_op == BinaryOp::And;
  // The absorbing constant: false for &&, true for ||.
  bool absorbing = !is_and;
  if (a->kind == Kind::BoolImm) return a->bool_value == absorbing ? bool_imm(absorbing, e->where) : b;
  if (b->kind == Kind::BoolImm) {
    if (b->bool_value != absorbing) return a;
    if (droppable(a)) return bool_imm(absorbing, e->where);
  }
  if (structurally_equal(a, b)) return a;
  // x && ... && !x is false and x || ... || !x true, as a difference of two patterns with a common part makes
  // (causal - causal is k <= q && k > q). Folded only when nothing in the chain reads a tensor (droppable).
  if (droppable(e)) {
    std::vector<Expr> terms;
    collect_terms(e, e->binary_op, terms);
    for (size_t i = 0; i < terms.size(); ++i)
      for (size_t j = i + 1; j < terms.size(); ++j)
        if (complementary(terms[i], terms[j])) return bool_imm(absorbing, e->where);
  }
  return e;
}

Expr simplify_binary(const Expr& e) {
  const Expr& a = e->operands[0];
  const Expr& b = e->operands[1];
  BinaryOp op = e->binary_op;
  if (op == BinaryOp::And || op == BinaryOp::Or) return simplify_logic(e);
  if (is_const(a) && is_const(b)) return fold(e);
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Sub:
    case BinaryOp::Mul:
    case BinaryOp::Div:
    case BinaryOp::Mod: return is_int(e) ? simplify_int_arith(e) : simplify_float_arith(e);
    default: return simplify_comparison(e);
  }
}

Expr simplify_tree(const Expr& e, dsl::Diagnostics* diags);

Expr simplify_call(const Expr& e) {
  const auto& ops = e->operands;
  if (e->fn == Fn::Select) {
    const Expr& cond = ops[0];
    if (cond->kind == Kind::BoolImm) return cond->bool_value ? ops[1] : ops[2];
    if (structurally_equal(ops[1], ops[2]) && droppable(cond)) return ops[1];
    if (is_bool_const(ops[1], true) && is_bool_const(ops[2], false)) return cond;
    if (is_bool_const(ops[1], false) && is_bool_const(ops[2], true)) return make_not(cond, e->where);
    if (cond->kind == Kind::Unary && cond->unary_op == UnaryOp::Not) {
      return call(Fn::Select, {cond->operands[0], ops[2], ops[1]}, e->where);
    }
    return e;
  }
  bool all_const = true;
  for (const auto& o : ops) all_const &= is_const(o);
  if (all_const) return fold(e);
  // Backends never see log_bucket: once its parameters are constants it becomes comparisons.
  if (e->fn == Fn::LogBucket) {
    if (Expr expanded = expand_log_bucket(e)) return simplify_tree(expanded, nullptr);
  }
  switch (e->fn) {
    case Fn::Min:
    case Fn::Max:
      // fmin(x, x) == x even for NaN.
      if (structurally_equal(ops[0], ops[1])) return ops[0];
      break;
    case Fn::Abs:
      if (ops[0]->kind == Kind::Call && ops[0]->fn == Fn::Abs) return ops[0];
      break;
    default: break;
  }
  return e;
}

// Simplifies one node whose operands are already simplified.
Expr simplify_node(const Expr& e) {
  switch (e->kind) {
    case Kind::Unary: return simplify_unary(e);
    case Kind::Binary: return simplify_binary(e);
    case Kind::Call: return simplify_call(e);
    default: return e;
  }
}

Expr simplify_tree(const Expr& e, dsl::Diagnostics* diags) {
  if (e->operands.empty()) return e;
  std::vector<Expr> operands;
  operands.reserve(e->operands.size());
  for (const auto& o : e->operands) operands.push_back(simplify_tree(o, diags));
  Expr rebuilt = rebuild(e, std::move(operands));
  if (diags && rebuilt->kind == Kind::Binary && is_int(rebuilt) &&
      (rebuilt->binary_op == BinaryOp::Div || rebuilt->binary_op == BinaryOp::Mod) &&
      is_int_const(rebuilt->operands[1], 0)) {
    const dsl::SourceRange& divisor = e->operands[1]->where;
    diags->error(divisor.valid() ? divisor : e->where,
                 rebuilt->binary_op == BinaryOp::Div ? "division by zero" : "modulo by zero");
  }
  return simplify_node(rebuilt);
}

}  // namespace

Expr simplify(const Expr& e, dsl::Diagnostics* diags) { return simplify_tree(e, diags); }

}  // namespace tessera::ir
