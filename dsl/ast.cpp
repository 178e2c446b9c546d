#include "dsl/ast.h"

#include <fmt/format.h>

namespace tessera::dsl::ast {

const char* op_symbol(UnaryOp op) { return op == UnaryOp::Neg ? "-" : "!"; }

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::Or: return "||";
    case BinaryOp::And: return "&&";
    case BinaryOp::Eq: return "==";
    case BinaryOp::Ne: return "!=";
    case BinaryOp::Lt: return "<";
    case BinaryOp::Le: return "<=";
    case BinaryOp::Gt: return ">";
    case BinaryOp::Ge: return ">=";
    case BinaryOp::Add: return "+";
    case BinaryOp::Sub: return "-";
    case BinaryOp::Mul: return "*";
    case BinaryOp::Div: return "/";
    case BinaryOp::Mod: return "%";
  }
  return "?";
}

const char* op_symbol(PatternExprKind kind) {
  switch (kind) {
    case PatternExprKind::Ref: return "";
    case PatternExprKind::Intersect: return "&";
    case PatternExprKind::Union: return "|";
    case PatternExprKind::Difference: return "-";
  }
  return "?";
}

namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  return out + "\"";
}

std::string dump_list(const std::vector<ExprPtr>& operands) {
  std::string out;
  for (size_t i = 0; i < operands.size(); ++i) out += (i ? ", " : "") + dump(*operands[i]);
  return out;
}

std::string dump_param(const Param& p) {
  std::string out = fmt::format("{}: {}", p.name, p.type);
  for (const auto& c : p.constraints) out += fmt::format(" {} {}", op_symbol(c.op), dump(*c.bound));
  if (p.default_value) out += " = " + dump(*p.default_value);
  return out;
}

std::string dump_params(const std::vector<Param>& params) {
  std::string out = "(";
  for (size_t i = 0; i < params.size(); ++i) out += (i ? ", " : "") + dump_param(params[i]);
  return out + ")";
}

std::string dump_statement(const Statement& s) {
  switch (s.kind) {
    case StatementKind::Let: return fmt::format("let {} = {};", s.name, dump(*s.value));
    case StatementKind::Require:
      return s.has_message ? fmt::format("require {} : {};", dump(*s.value), quoted(s.message))
                           : fmt::format("require {};", dump(*s.value));
    case StatementKind::Mask: return fmt::format("mask: {};", dump(*s.value));
    case StatementKind::Score: return fmt::format("score: {};", dump(*s.value));
    case StatementKind::Weight: return fmt::format("weight: {};", dump(*s.value));
    case StatementKind::Normalize: return fmt::format("normalize: {};", dump(*s.value));
    case StatementKind::Scoring: return fmt::format("scoring: {};", dump(*s.value));
  }
  return "";
}

std::string dump_decl(const TensorDecl& t) {
  std::string dims;
  for (size_t i = 0; i < t.dims.size(); ++i) dims += (i ? ", " : "") + t.dims[i].name;
  return fmt::format("tensor {}: {}[{}];\n", t.name, t.elem_type, dims);
}

std::string dump_decl(const PatternDecl& p) {
  std::string out = "pattern " + p.name;
  if (p.has_param_list) out += dump_params(p.params);
  if (p.alias) return out + " = " + dump(*p.alias) + ";\n";
  out += " {\n";
  for (const auto& s : p.body) out += "  " + dump_statement(s) + "\n";
  return out + "}\n";
}

std::string dump_model_argument(const ModelArgument& a) {
  switch (a.kind) {
    case ModelArgumentKind::Positional: return dump(*a.value);
    case ModelArgumentKind::Named: return a.name + "=" + dump(*a.expr);
    case ModelArgumentKind::Pattern: return a.name + "=" + dump(*a.patterns[0]);
    case ModelArgumentKind::PatternList: {
      std::string out = a.name + "=[";
      for (size_t i = 0; i < a.patterns.size(); ++i) out += (i ? ", " : "") + dump(*a.patterns[i]);
      return out + "]";
    }
  }
  return "?";
}

std::string dump_model_statement(const ModelStatement& s, const std::string& indent) {
  switch (s.kind) {
    case ModelStatementKind::Input: return fmt::format("{}input {};\n", indent, s.name);
    case ModelStatementKind::Bind: return fmt::format("{}{} = {};\n", indent, s.name, dump(*s.value));
    case ModelStatementKind::Output: return fmt::format("{}output {};\n", indent, dump(*s.value));
    case ModelStatementKind::Return: return fmt::format("{}return {};\n", indent, dump(*s.value));
    case ModelStatementKind::Stack: {
      std::string out =
          fmt::format("{}stack {}[{}]({} = {}) {{\n", indent, s.name, dump(*s.count), s.carried, dump(*s.value));
      for (const auto& inner : s.body) out += dump_model_statement(inner, indent + "  ");
      return out + indent + "}\n";
    }
  }
  return "";
}

std::string dump_decl(const ModelDecl& m) {
  std::string out = "model " + m.name;
  if (m.has_param_list) out += dump_params(m.params);
  out += " {\n";
  for (const auto& s : m.body) out += dump_model_statement(s, "  ");
  return out + "}\n";
}

}  // namespace

std::string dump(const ModelValue& v) {
  switch (v.kind) {
    case ModelValueKind::Name: return v.name;
    case ModelValueKind::Number: return dump(*v.number);
    case ModelValueKind::Add:
    case ModelValueKind::Mul:
      return fmt::format("({} {} {})", dump(*v.operands[0]), v.kind == ModelValueKind::Add ? "+" : "*",
                         dump(*v.operands[1]));
    case ModelValueKind::Call: {
      std::string out = v.name + "(";
      for (size_t i = 0; i < v.args.size(); ++i) out += (i ? ", " : "") + dump_model_argument(v.args[i]);
      return out + ")";
    }
  }
  return "?";
}

std::string dump(const Expr& e) {
  switch (e.kind) {
    case ExprKind::IntLit: return std::to_string(e.int_value);
    case ExprKind::FloatLit: return e.text;
    case ExprKind::BoolLit: return e.bool_value ? "true" : "false";
    case ExprKind::Name: return e.name;
    case ExprKind::Unary: return fmt::format("({}{})", op_symbol(e.unary_op), dump(*e.operands[0]));
    case ExprKind::Binary:
      return fmt::format("({} {} {})", dump(*e.operands[0]), op_symbol(e.binary_op), dump(*e.operands[1]));
    case ExprKind::Call: return fmt::format("{}({})", e.name, dump_list(e.operands));
    case ExprKind::Index: return fmt::format("{}[{}]", e.name, dump_list(e.operands));
  }
  return "?";
}

std::string dump(const PatternExpr& e) {
  if (e.kind != PatternExprKind::Ref) {
    return fmt::format("({} {} {})", dump(*e.lhs), op_symbol(e.kind), dump(*e.rhs));
  }
  if (e.args.empty()) return e.name;
  std::string out = e.name + "(";
  for (size_t i = 0; i < e.args.size(); ++i) {
    if (i) out += ", ";
    if (!e.args[i].name.empty()) out += e.args[i].name + "=";
    out += dump(*e.args[i].value);
  }
  return out + ")";
}

std::string dump(const Module& module) {
  std::string out;
  for (const auto& decl : module.declarations) {
    out += std::visit([](const auto& d) { return dump_decl(d); }, decl);
  }
  return out;
}

}  // namespace tessera::dsl::ast
