// Infix printing with C precedence. Every binary operator is left-associative, so a right operand of the same
// precedence needs parentheses ("a - (b - c)") while a left one does not ("a - b - c").
#include "compiler/ir/printer.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>

namespace tessera::ir {

namespace {

enum Precedence : int {
  kOr = 1,
  kAnd = 2,
  kEquality = 3,
  kRelational = 4,
  kAdditive = 5,
  kMultiplicative = 6,
  kUnary = 7,
  kPrimary = 8,
};

int precedence(BinaryOp op) {
  switch (op) {
    case BinaryOp::Or: return kOr;
    case BinaryOp::And: return kAnd;
    case BinaryOp::Eq:
    case BinaryOp::Ne: return kEquality;
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge: return kRelational;
    case BinaryOp::Add:
    case BinaryOp::Sub: return kAdditive;
    case BinaryOp::Mul:
    case BinaryOp::Div:
    case BinaryOp::Mod: return kMultiplicative;
  }
  return kPrimary;
}

struct Printed {
  std::string text;
  int precedence;
};

std::string float_literal(double v) {
  // Infinities and NaN have no literal; these spellings evaluate to them under IEEE arithmetic.
  if (std::isnan(v)) return "(0.0 / 0.0)";
  if (std::isinf(v)) return v > 0 ? "(1.0 / 0.0)" : "(-1.0 / 0.0)";
  std::string text = fmt::format("{}", v);  // shortest form that round-trips
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

std::string int_literal(int64_t v) {
  // The magnitude of INT64_MIN is not a valid literal of its own.
  if (v == INT64_MIN) return "(-9223372036854775807 - 1)";
  return std::to_string(v);
}

Printed print(const Expr& e);

std::string operand(const Expr& e, int min_precedence) {
  Printed p = print(e);
  return p.precedence < min_precedence ? "(" + p.text + ")" : p.text;
}

std::string argument_list(const std::vector<Expr>& operands) {
  std::string out;
  for (size_t i = 0; i < operands.size(); ++i) {
    if (i) out += ", ";
    out += print(operands[i]).text;
  }
  return out;
}

Printed print(const Expr& e) {
  switch (e->kind) {
    case Kind::IntImm: return {int_literal(e->int_value), e->int_value < 0 ? kUnary : kPrimary};
    case Kind::FloatImm: {
      std::string text = float_literal(e->float_value);
      return {text, text[0] == '(' ? kPrimary : (std::signbit(e->float_value) ? kUnary : kPrimary)};
    }
    case Kind::BoolImm: return {e->bool_value ? "true" : "false", kPrimary};
    case Kind::Var: return {var_name(e->var), kPrimary};
    case Kind::Symbol: return {e->name, kPrimary};
    case Kind::Unary: {
      std::string inner = operand(e->operands[0], kUnary);
      // "--x" would read as a decrement in C-like syntax: parenthesize a nested sign.
      if (inner[0] == '-') inner = "(" + inner + ")";
      return {(e->unary_op == UnaryOp::Neg ? "-" : "!") + inner, kUnary};
    }
    case Kind::Binary: {
      int p = precedence(e->binary_op);
      return {operand(e->operands[0], p) + " " + op_symbol(e->binary_op) + " " + operand(e->operands[1], p + 1), p};
    }
    case Kind::Call: return {fmt::format("{}({})", fn_name(e->fn), argument_list(e->operands)), kPrimary};
    case Kind::Load: return {fmt::format("{}[{}]", e->name, argument_list(e->operands)), kPrimary};
    case Kind::DotQ: return {fmt::format("dot(q_vec, {}[{}])", e->name, argument_list(e->operands)), kPrimary};
  }
  return {"<?>", kPrimary};
}

}  // namespace

std::string to_string(const Expr& e) {
  if (!e) return "<null>";
  return print(e).text;
}

std::string to_string(const Pattern& p) {
  std::string out = "pattern " + p.name + "\n";
  if (!p.inputs.empty()) {
    out += "  inputs: ";
    for (size_t i = 0; i < p.inputs.size(); ++i) {
      const TensorDecl& t = p.inputs[i];
      out += fmt::format("{}{}: {}[{}]", i ? ", " : "", t.name, elem_type_name(t.elem_type), fmt::join(t.dims, ", "));
    }
    out += "\n";
  }
  if (!p.query_projection.empty()) out += fmt::format("  project: q_vec := q_vec . {}[h]\n", p.query_projection);
  if (!p.additive.empty()) {
    out += fmt::format("  project: q_vec := {}[h] . q_vec, k_vec := {}[h] . k_vec\n", p.additive.query_weight,
                       p.additive.key_weight);
    out += fmt::format("  scoring: additive, s := scale * ({}[h] . tanh(q_vec + k_vec))\n", p.additive.vector);
  } else if (p.scoring != Scoring::ScaledDot) {
    out += fmt::format("  scoring: {}\n", scoring_name(p.scoring));
  }
  out += "  mask:  " + (p.mask ? to_string(p.mask) : std::string("true")) + "\n";
  out += "  score: " + (p.score ? to_string(p.score) : std::string("s")) + "\n";
  // Printed only when not the default, so the IR of a plain softmax pattern reads as it always has.
  if (p.has_weight()) out += "  weight: " + to_string(p.weight) + "\n";
  if (p.normalizer != Normalizer::Softmax) out += fmt::format("  normalize: {}\n", normalizer_name(p.normalizer));
  return out;
}

}  // namespace tessera::ir
