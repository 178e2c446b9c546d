#include "compiler/sema/pattern_composition.h"

#include <fmt/format.h>

namespace tessera::sema {

namespace {

using Kind = dsl::ast::PatternExprKind;

bool is_bool(const ir::Expr& e, bool value) { return e->kind == ir::Kind::BoolImm && e->bool_value == value; }
bool is_identity_score(const ir::Expr& e) { return e->kind == ir::Kind::Var && e->var == ir::Var::Score; }

ir::Expr mask_and(const ir::Expr& a, const ir::Expr& b) {
  if (is_bool(a, true) || is_bool(b, false)) return b;
  if (is_bool(b, true) || is_bool(a, false)) return a;
  return ir::binary(ir::BinaryOp::And, a, b);
}

ir::Expr mask_or(const ir::Expr& a, const ir::Expr& b) {
  if (is_bool(a, true) || is_bool(b, false)) return a;
  if (is_bool(b, true) || is_bool(a, false)) return b;
  return ir::binary(ir::BinaryOp::Or, a, b);
}

ir::Expr mask_not(const ir::Expr& a) {
  if (a->kind == ir::Kind::BoolImm) return ir::bool_imm(!a->bool_value);
  return ir::unary(ir::UnaryOp::Not, a);
}

// `outer` applied to the result of `inner`: outer.score with s := inner.score.
ir::Expr chain_scores(const ir::Expr& inner, const ir::Expr& outer) {
  if (is_identity_score(outer)) return inner;
  if (is_identity_score(inner)) return outer;
  return ir::substitute(outer, ir::Var::Score, inner);
}

bool is_unit(const ir::Expr& e) { return e->kind == ir::Kind::FloatImm && e->float_value == 1.0; }

ir::Expr weight_product(const ir::Expr& a, const ir::Expr& b) {
  if (is_unit(a)) return b;
  if (is_unit(b)) return a;
  return ir::binary(ir::BinaryOp::Mul, a, b);
}

int precedence(Kind kind) { return kind == Kind::Intersect ? 1 : 0; }

void collect(const ir::Expr& e, const std::map<std::string, ir::TensorDecl>& tensors,
             std::vector<ir::TensorDecl>& out) {
  if (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ) {
    bool seen = false;
    for (const auto& t : out) seen |= t.name == e->name;
    auto it = tensors.find(e->name);
    if (!seen && it != tensors.end()) out.push_back(it->second);
  }
  for (const auto& o : e->operands) collect(o, tensors, out);
}

}  // namespace

std::string additive_query_conflict_message(const std::string& pattern_name) {
  return fmt::format(
      "'{}' reads q_vec with additive scoring, which replaces the query vectors by their "
      "projections; additive scoring cannot be combined with dot(q_vec, ...) terms",
      pattern_name);
}

Instance compose(Kind kind, const Instance& lhs, const Instance& rhs) {
  // `-` keeps everything of A but its mask; `&` and `|` combine the rest below.
  Instance out = kind == Kind::Difference || kind == Kind::Ref ? lhs : Instance{};
  out.precedence = precedence(kind);
  // Left-associative: a right operand at the same level keeps its parentheses, so the name keeps the tree.
  std::string left = lhs.precedence < out.precedence ? "(" + lhs.name + ")" : lhs.name;
  std::string right = rhs.precedence <= out.precedence ? "(" + rhs.name + ")" : rhs.name;
  out.name = fmt::format("{} {} {}", left, dsl::ast::op_symbol(kind), right);
  if (kind == Kind::Difference || kind == Kind::Ref) {
    out.mask = mask_and(lhs.mask, mask_not(rhs.mask));
    return out;
  }
  out.mask = kind == Kind::Intersect ? mask_and(lhs.mask, rhs.mask) : mask_or(lhs.mask, rhs.mask);
  out.score = chain_scores(lhs.score, rhs.score);
  out.weight = weight_product(lhs.weight, rhs.weight);
  out.weight_where = is_unit(lhs.weight) ? rhs.weight_where : lhs.weight_where;
  const Instance& normalizing = rhs.normalizer != ir::Normalizer::Softmax ? rhs : lhs;
  out.normalizer = normalizing.normalizer;
  out.normalizer_where = normalizing.normalizer_where;
  const Instance& scorer = rhs.chooses_scoring() ? rhs : lhs;
  out.scoring = scorer.scoring;
  out.query_projection = scorer.query_projection;
  out.additive = scorer.additive;
  out.scoring_where = scorer.scoring_where;
  out.scoring_conflict =
      lhs.scoring_conflict || rhs.scoring_conflict ||
      (lhs.chooses_scoring() && rhs.chooses_scoring() &&
       (lhs.scoring != rhs.scoring || lhs.query_projection != rhs.query_projection || lhs.additive != rhs.additive));
  return out;
}

std::vector<ir::TensorDecl> collect_inputs(const ir::Expr& mask, const ir::Expr& score, const ir::Expr& weight,
                                           const std::map<std::string, ir::TensorDecl>& tensors) {
  std::vector<ir::TensorDecl> out;
  collect(mask, tensors, out);
  collect(score, tensors, out);
  collect(weight, tensors, out);
  return out;
}

}  // namespace tessera::sema
