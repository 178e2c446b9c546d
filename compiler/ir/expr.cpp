#include "compiler/ir/expr.h"

#include <fmt/format.h>

#include <stdexcept>

namespace tessera::ir {

namespace {

[[noreturn]] void internal_error(const std::string& message) {
  throw std::logic_error("tessera internal error: " + message);
}

std::shared_ptr<Node> make(Kind kind, Type type, dsl::SourceRange where) {
  auto node = std::make_shared<Node>();
  node->kind = kind;
  node->type = type;
  node->where = std::move(where);
  return node;
}

struct FnInfo {
  Fn fn;
  const char* name;
  int arity;
  const char* form;
};

constexpr FnInfo kFunctions[] = {
    {Fn::Min, "min", 2, "min(a, b)"},
    {Fn::Max, "max", 2, "max(a, b)"},
    {Fn::Abs, "abs", 1, "abs(x)"},
    {Fn::Clamp, "clamp", 3, "clamp(x, lo, hi)"},
    {Fn::Select, "select", 3, "select(cond: bool, if_true, if_false)"},
    {Fn::Tanh, "tanh", 1, "tanh(x: float)"},
    {Fn::Exp, "exp", 1, "exp(x: float)"},
    {Fn::Log, "log", 1, "log(x: float)"},
    {Fn::Exp2, "exp2", 1, "exp2(x: float)"},
    {Fn::Sqrt, "sqrt", 1, "sqrt(x: float)"},
    {Fn::Pow, "pow", 2, "pow(x: float, y: float)"},
    {Fn::Floor, "floor", 1, "floor(x: float)"},
    {Fn::Ceil, "ceil", 1, "ceil(x: float)"},
    {Fn::ToFloat, "float", 1, "float(x: int)"},
    {Fn::ToInt, "int", 1, "int(x: float)"},
    {Fn::BitAnd, "bitand", 2, "bitand(a: int, b: int)"},
    {Fn::BitOr, "bitor", 2, "bitor(a: int, b: int)"},
    {Fn::BitXor, "bitxor", 2, "bitxor(a: int, b: int)"},
    {Fn::BitNot, "bitnot", 1, "bitnot(a: int)"},
    {Fn::Shl, "shl", 2, "shl(a: int, bits: int)"},
    {Fn::Shr, "shr", 2, "shr(a: int, bits: int)"},
    {Fn::LogBucket, "log_bucket", 4, "log_bucket(n: int, exact: int, max_distance: int, buckets: int)"},
    {Fn::HashUniform, "hash_uniform", 5, "hash_uniform(seed: int, a: int, b: int, c: int, d: int)"},
};

const FnInfo& info(Fn fn) {
  for (const auto& f : kFunctions) {
    if (f.fn == fn) return f;
  }
  internal_error("unknown function");
}

}  // namespace

const char* type_name(Type type) {
  switch (type) {
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
  }
  return "?";
}

const char* var_name(Var v) {
  switch (v) {
    case Var::Q: return "q";
    case Var::K: return "k";
    case Var::I: return "i";
    case Var::J: return "j";
    case Var::Batch: return "b";
    case Var::Head: return "h";
    case Var::Heads: return "H";
    case Var::N: return "N";
    case Var::M: return "M";
    case Var::D: return "D";
    case Var::Score: return "s";
    case Var::Scale: return "scale";
  }
  return "?";
}

Type var_type(Var v) { return v == Var::Score || v == Var::Scale ? Type::Float : Type::Int; }

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "+";
    case BinaryOp::Sub: return "-";
    case BinaryOp::Mul: return "*";
    case BinaryOp::Div: return "/";
    case BinaryOp::Mod: return "%";
    case BinaryOp::Lt: return "<";
    case BinaryOp::Le: return "<=";
    case BinaryOp::Gt: return ">";
    case BinaryOp::Ge: return ">=";
    case BinaryOp::Eq: return "==";
    case BinaryOp::Ne: return "!=";
    case BinaryOp::And: return "&&";
    case BinaryOp::Or: return "||";
  }
  return "?";
}

const char* fn_name(Fn fn) { return info(fn).name; }

const char* elem_type_name(ElemType type) { return type == ElemType::Int32 ? "int32" : "float32"; }

Signature function_signature(Fn fn) { return {info(fn).arity, info(fn).form}; }

bool function_by_name(const std::string& name, Fn* fn) {
  for (const auto& f : kFunctions) {
    if (name == f.name) {
      *fn = f.fn;
      return true;
    }
  }
  return false;
}

bool function_result_type(Fn fn, const std::vector<Type>& t, Type* result) {
  if (static_cast<int>(t.size()) != info(fn).arity) return false;
  auto numeric = [](Type x) { return x == Type::Int || x == Type::Float; };
  switch (fn) {
    case Fn::Min:
    case Fn::Max:
      if (!numeric(t[0]) || t[0] != t[1]) return false;
      *result = t[0];
      return true;
    case Fn::Abs:
      if (!numeric(t[0])) return false;
      *result = t[0];
      return true;
    case Fn::Clamp:
      if (!numeric(t[0]) || t[0] != t[1] || t[0] != t[2]) return false;
      *result = t[0];
      return true;
    case Fn::Select:
      if (t[0] != Type::Bool || t[1] != t[2]) return false;
      *result = t[1];
      return true;
    case Fn::Tanh:
    case Fn::Exp:
    case Fn::Log:
    case Fn::Exp2:
    case Fn::Sqrt:
    case Fn::Floor:
    case Fn::Ceil:
      if (t[0] != Type::Float) return false;
      *result = Type::Float;
      return true;
    case Fn::Pow:
      if (t[0] != Type::Float || t[1] != Type::Float) return false;
      *result = Type::Float;
      return true;
    case Fn::ToFloat:
      if (t[0] != Type::Int) return false;
      *result = Type::Float;
      return true;
    case Fn::ToInt:
      if (t[0] != Type::Float) return false;
      *result = Type::Int;
      return true;
    case Fn::BitAnd:
    case Fn::BitOr:
    case Fn::BitXor:
    case Fn::Shl:
    case Fn::Shr:
      if (t[0] != Type::Int || t[1] != Type::Int) return false;
      *result = Type::Int;
      return true;
    case Fn::BitNot:
      if (t[0] != Type::Int) return false;
      *result = Type::Int;
      return true;
    case Fn::LogBucket:
    case Fn::HashUniform:
      for (Type operand : t) {
        if (operand != Type::Int) return false;
      }
      *result = fn == Fn::HashUniform ? Type::Float : Type::Int;
      return true;
  }
  return false;
}

Expr int_imm(int64_t value, dsl::SourceRange where) {
  auto n = make(Kind::IntImm, Type::Int, std::move(where));
  n->int_value = value;
  return n;
}

Expr float_imm(double value, dsl::SourceRange where) {
  auto n = make(Kind::FloatImm, Type::Float, std::move(where));
  n->float_value = value;
  return n;
}

Expr bool_imm(bool value, dsl::SourceRange where) {
  auto n = make(Kind::BoolImm, Type::Bool, std::move(where));
  n->bool_value = value;
  return n;
}

Expr var(Var v, dsl::SourceRange where) {
  auto n = make(Kind::Var, var_type(v), std::move(where));
  n->var = v;
  return n;
}

Expr symbol(std::string name, Type type, dsl::SourceRange where) {
  auto n = make(Kind::Symbol, type, std::move(where));
  n->name = std::move(name);
  return n;
}

Expr unary(UnaryOp op, Expr a, dsl::SourceRange where) {
  if (!a) internal_error("unary: null operand");
  if (op == UnaryOp::Not && a->type != Type::Bool) internal_error("'!' needs bool");
  if (op == UnaryOp::Neg && a->type == Type::Bool) internal_error("unary '-' needs a number");
  auto n = make(Kind::Unary, a->type, std::move(where));
  n->unary_op = op;
  n->operands = {std::move(a)};
  return n;
}

Expr binary(BinaryOp op, Expr a, Expr b, dsl::SourceRange where) {
  if (!a || !b) internal_error("binary: null operand");
  Type result = Type::Bool;
  switch (op) {
    case BinaryOp::Add:
    case BinaryOp::Sub:
    case BinaryOp::Mul:
    case BinaryOp::Div:
    case BinaryOp::Mod:
      if (a->type == Type::Bool || a->type != b->type)
        internal_error(fmt::format("'{}' on {} and {}", op_symbol(op), type_name(a->type), type_name(b->type)));
      result = a->type;
      break;
    case BinaryOp::Lt:
    case BinaryOp::Le:
    case BinaryOp::Gt:
    case BinaryOp::Ge:
      if (a->type == Type::Bool || a->type != b->type)
        internal_error(fmt::format("'{}' on {} and {}", op_symbol(op), type_name(a->type), type_name(b->type)));
      result = Type::Bool;
      break;
    case BinaryOp::Eq:
    case BinaryOp::Ne:
      if (a->type != b->type)
        internal_error(fmt::format("'{}' on {} and {}", op_symbol(op), type_name(a->type), type_name(b->type)));
      result = Type::Bool;
      break;
    case BinaryOp::And:
    case BinaryOp::Or:
      if (a->type != Type::Bool || b->type != Type::Bool)
        internal_error(fmt::format("'{}' on {} and {}", op_symbol(op), type_name(a->type), type_name(b->type)));
      result = Type::Bool;
      break;
  }
  auto n = make(Kind::Binary, result, std::move(where));
  n->binary_op = op;
  n->operands = {std::move(a), std::move(b)};
  return n;
}

Expr call(Fn fn, std::vector<Expr> args, dsl::SourceRange where) {
  std::vector<Type> types;
  for (const auto& a : args) {
    if (!a) internal_error("call: null operand");
    types.push_back(a->type);
  }
  Type result = Type::Bool;
  if (!function_result_type(fn, types, &result)) internal_error(fmt::format("bad operands for {}", fn_name(fn)));
  auto n = make(Kind::Call, result, std::move(where));
  n->fn = fn;
  n->operands = std::move(args);
  return n;
}

Expr load(std::string tensor, ElemType elem_type, std::vector<Expr> indices, dsl::SourceRange where) {
  for (const auto& i : indices) {
    if (!i || i->type != Type::Int) internal_error("load: indices must be int");
  }
  auto n = make(Kind::Load, elem_type == ElemType::Int32 ? Type::Int : Type::Float, std::move(where));
  n->name = std::move(tensor);
  n->elem_type = elem_type;
  n->operands = std::move(indices);
  return n;
}

Expr dot_q(std::string tensor, std::vector<Expr> indices, dsl::SourceRange where) {
  for (const auto& i : indices) {
    if (!i || i->type != Type::Int) internal_error("dot_q: indices must be int");
  }
  auto n = make(Kind::DotQ, Type::Float, std::move(where));
  n->name = std::move(tensor);
  n->elem_type = ElemType::Float32;
  n->operands = std::move(indices);
  return n;
}

bool is_const(const Expr& e) {
  return e->kind == Kind::IntImm || e->kind == Kind::FloatImm || e->kind == Kind::BoolImm;
}

bool is_int_const(const Expr& e, int64_t value) { return e->kind == Kind::IntImm && e->int_value == value; }

bool uses_var(const Expr& e, Var v) {
  if (e->kind == Kind::Var && e->var == v) return true;
  for (const auto& o : e->operands) {
    if (uses_var(o, v)) return true;
  }
  return false;
}

bool uses_tensors(const Expr& e) {
  if (e->kind == Kind::Load || e->kind == Kind::DotQ) return true;
  for (const auto& o : e->operands) {
    if (uses_tensors(o)) return true;
  }
  return false;
}

bool reads_query_vector(const Expr& e) {
  if (e->kind == Kind::DotQ) return true;
  for (const auto& o : e->operands) {
    if (reads_query_vector(o)) return true;
  }
  return false;
}

bool structurally_equal(const Expr& a, const Expr& b) {
  if (a == b) return true;
  if (a->kind != b->kind || a->type != b->type || a->operands.size() != b->operands.size()) return false;
  switch (a->kind) {
    case Kind::IntImm:
      if (a->int_value != b->int_value) return false;
      break;
    case Kind::FloatImm:
      if (a->float_value != b->float_value) return false;
      break;
    case Kind::BoolImm:
      if (a->bool_value != b->bool_value) return false;
      break;
    case Kind::Var:
      if (a->var != b->var) return false;
      break;
    case Kind::Symbol:
    case Kind::Load:
    case Kind::DotQ:
      if (a->name != b->name) return false;
      break;
    case Kind::Unary:
      if (a->unary_op != b->unary_op) return false;
      break;
    case Kind::Binary:
      if (a->binary_op != b->binary_op) return false;
      break;
    case Kind::Call:
      if (a->fn != b->fn) return false;
      break;
  }
  for (size_t i = 0; i < a->operands.size(); ++i) {
    if (!structurally_equal(a->operands[i], b->operands[i])) return false;
  }
  return true;
}

namespace {

template <typename Match>
Expr replace_where(const Expr& e, const Match& match, const Expr& replacement) {
  if (match(*e)) return replacement;
  bool changed = false;
  std::vector<Expr> operands;
  operands.reserve(e->operands.size());
  for (const auto& o : e->operands) {
    operands.push_back(replace_where(o, match, replacement));
    changed |= operands.back() != o;
  }
  if (!changed) return e;
  auto copy = std::make_shared<Node>(*e);
  copy->operands = std::move(operands);
  return copy;
}

}  // namespace

Expr substitute(const Expr& e, Var v, const Expr& replacement) {
  return replace_where(
      e, [v](const Node& n) { return n.kind == Kind::Var && n.var == v; }, replacement);
}

Expr substitute_vars(const Expr& e, const std::map<Var, Expr>& replacements) {
  if (e->kind == Kind::Var) {
    auto it = replacements.find(e->var);
    return it == replacements.end() ? e : it->second;
  }
  bool changed = false;
  std::vector<Expr> operands;
  operands.reserve(e->operands.size());
  for (const auto& o : e->operands) {
    operands.push_back(substitute_vars(o, replacements));
    changed |= operands.back() != o;
  }
  if (!changed) return e;
  auto copy = std::make_shared<Node>(*e);
  copy->operands = std::move(operands);
  return copy;
}

void collect_symbols(const Expr& e, std::set<std::string>* names) {
  if (e->kind == Kind::Symbol) names->insert(e->name);
  for (const auto& o : e->operands) collect_symbols(o, names);
}

Expr substitute_symbol(const Expr& e, const std::string& name, const Expr& replacement) {
  return replace_where(
      e, [&name](const Node& n) { return n.kind == Kind::Symbol && n.name == name; }, replacement);
}

int64_t wrapping_add(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}
int64_t wrapping_sub(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) - static_cast<uint64_t>(b));
}
int64_t wrapping_mul(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) return 0;
  if (b == -1) return a == INT64_MIN ? a : -a;  // avoid the one overflowing case
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == 0) return 0;
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

}  // namespace tessera::ir
