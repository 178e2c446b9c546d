#include "compiler/sema/constant_folding.h"

#include <fmt/format.h>

namespace tessera::sema {

bool is_closed(const ir::Expr& e) {
  switch (e->kind) {
    case ir::Kind::Var:
    case ir::Kind::Symbol:
    case ir::Kind::Load:
    case ir::Kind::DotQ: return false;
    default: break;
  }
  for (const auto& o : e->operands) {
    if (!is_closed(o)) return false;
  }
  return true;
}

std::optional<ir::Value> constant_value(const ir::Expr& e) {
  if (!is_closed(e)) return std::nullopt;
  return ir::evaluate(e, ir::EvalEnv{});
}

ir::Expr constant_expr(const ir::Value& value, dsl::SourceRange where) {
  switch (value.type) {
    case ir::Type::Int: return ir::int_imm(value.i, std::move(where));
    case ir::Type::Float: return ir::float_imm(value.f, std::move(where));
    case ir::Type::Bool: return ir::bool_imm(value.b, std::move(where));
  }
  return ir::bool_imm(false);
}

std::string format_value(const ir::Value& value) {
  switch (value.type) {
    case ir::Type::Int: return std::to_string(value.i);
    case ir::Type::Bool: return value.b ? "true" : "false";
    case ir::Type::Float: {
      std::string s = fmt::format("{}", value.f);
      if (s.find_first_of(".eEn") == std::string::npos) s += ".0";  // keep it a float literal ("inf"/"nan" have n)
      return s;
    }
  }
  return "?";
}

bool report_constant_division_by_zero(const ir::Expr& e, dsl::Diagnostics& diags) {
  bool found = false;
  for (const auto& o : e->operands) found |= report_constant_division_by_zero(o, diags);
  if (e->kind == ir::Kind::Binary && e->type == ir::Type::Int &&
      (e->binary_op == ir::BinaryOp::Div || e->binary_op == ir::BinaryOp::Mod)) {
    auto divisor = constant_value(e->operands[1]);
    if (divisor && divisor->i == 0) {
      diags.error(e->operands[1]->where.valid() ? e->operands[1]->where : e->where,
                  e->binary_op == ir::BinaryOp::Mod ? "modulo by zero" : "division by zero");
      found = true;
    }
  }
  return found;
}

}  // namespace tessera::sema
