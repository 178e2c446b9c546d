#include "compiler/sema/expression_elaboration.h"

#include <fmt/format.h>

#include "compiler/sema/spelling.h"

namespace tessera::sema {

namespace {

using dsl::SourceRange;
namespace ast = dsl::ast;

struct BuiltinVar {
  const char* name;
  ir::Var var;
};
constexpr BuiltinVar kBuiltinVars[] = {
    {"q", ir::Var::Q},     {"k", ir::Var::K},    {"i", ir::Var::I},     {"j", ir::Var::J},
    {"b", ir::Var::Batch}, {"h", ir::Var::Head}, {"H", ir::Var::Heads}, {"N", ir::Var::N},
    {"M", ir::Var::M},     {"D", ir::Var::D},    {"s", ir::Var::Score}, {"scale", ir::Var::Scale},
};

constexpr const char* kFunctionNames[] = {"min",    "max",   "abs",  "clamp",  "select",     "tanh",
                                          "exp",    "log",   "exp2", "sqrt",   "pow",        "floor",
                                          "ceil",   "float", "int",  "bitand", "bitor",      "bitxor",
                                          "bitnot", "shl",   "shr",  "dot",    "log_bucket", "hash_uniform"};

const BuiltinVar* find_builtin(const std::string& name) {
  for (const auto& v : kBuiltinVars) {
    if (name == v.name) return &v;
  }
  return nullptr;
}

bool numeric(ir::Type t) { return t == ir::Type::Int || t == ir::Type::Float; }

ir::BinaryOp lower(ast::BinaryOp op) {
  switch (op) {
    case ast::BinaryOp::Or: return ir::BinaryOp::Or;
    case ast::BinaryOp::And: return ir::BinaryOp::And;
    case ast::BinaryOp::Eq: return ir::BinaryOp::Eq;
    case ast::BinaryOp::Ne: return ir::BinaryOp::Ne;
    case ast::BinaryOp::Lt: return ir::BinaryOp::Lt;
    case ast::BinaryOp::Le: return ir::BinaryOp::Le;
    case ast::BinaryOp::Gt: return ir::BinaryOp::Gt;
    case ast::BinaryOp::Ge: return ir::BinaryOp::Ge;
    case ast::BinaryOp::Add: return ir::BinaryOp::Add;
    case ast::BinaryOp::Sub: return ir::BinaryOp::Sub;
    case ast::BinaryOp::Mul: return ir::BinaryOp::Mul;
    case ast::BinaryOp::Div: return ir::BinaryOp::Div;
    case ast::BinaryOp::Mod: return ir::BinaryOp::Mod;
  }
  return ir::BinaryOp::Add;
}

std::string plural(size_t n, const char* one, const char* many) { return fmt::format("{} {}", n, n == 1 ? one : many); }

class Elaborator {
 public:
  Elaborator(const Scope& scope, dsl::Diagnostics& diags) : scope_(scope), diags_(diags) {}

  ir::Expr expr(const ast::Expr& e) {
    switch (e.kind) {
      case ast::ExprKind::IntLit: return ir::int_imm(e.int_value, e.where);
      case ast::ExprKind::FloatLit: return ir::float_imm(e.float_value, e.where);
      case ast::ExprKind::BoolLit: return ir::bool_imm(e.bool_value, e.where);
      case ast::ExprKind::Name: return name(e);
      case ast::ExprKind::Unary: return unary(e);
      case ast::ExprKind::Binary: return binary(e);
      case ast::ExprKind::Call: return e.name == "dot" ? dot(e) : call(e);
      case ast::ExprKind::Index: return index(e);
    }
    return nullptr;
  }

 private:
  ir::Expr fail(const SourceRange& where, std::string message) {
    diags_.error(where, std::move(message));
    return nullptr;
  }

  ir::Expr forbidden(const SourceRange& where, const std::string& what) {
    return fail(where, fmt::format("{} cannot be used in {} (it must be a constant expression)", what,
                                   scope_.constant_context));
  }

  std::vector<std::string> visible_names() const {
    std::vector<std::string> names;
    for (const auto& [n, _] : scope_.lets) names.push_back(n);
    for (const auto& [n, _] : scope_.params) names.push_back(n);
    if (scope_.allow_run_time_values) {
      for (const auto& v : kBuiltinVars) names.emplace_back(v.name);
      if (scope_.dimension_symbols) {
        for (const auto& [n, _] : *scope_.dimension_symbols) names.push_back(n);
      }
    }
    return names;
  }

  // Rebinds a let or parameter value to this use; the value keeps its own source ranges.
  ir::Expr name(const ast::Expr& e) {
    if (scope_.poisoned.count(e.name)) return nullptr;
    if (auto it = scope_.lets.find(e.name); it != scope_.lets.end()) return it->second.value;
    if (auto it = scope_.params.find(e.name); it != scope_.params.end()) {
      const ir::Expr& v = it->second.value;
      if (v->kind == ir::Kind::Symbol) return ir::symbol(v->name, v->type, e.where);
      return v;
    }
    if (const BuiltinVar* builtin = find_builtin(e.name)) {
      if (!scope_.allow_run_time_values) {
        if (builtin->var == ir::Var::Score) return fail(e.where, "'s' (the logit) is only available in score:");
        return forbidden(e.where, fmt::format("'{}'", e.name));
      }
      return ir::var(builtin->var, e.where);
    }
    if (e.name == "q_vec") return fail(e.where, "'q_vec' can only be used as dot(q_vec, T[...])");
    if (scope_.dimension_symbols && scope_.dimension_symbols->count(e.name)) {
      if (!scope_.allow_run_time_values) return forbidden(e.where, fmt::format("'{}'", e.name));
      return ir::symbol(e.name, ir::Type::Int, e.where);
    }
    if (scope_.tensors && scope_.tensors->count(e.name)) {
      return fail(e.where, fmt::format("tensor '{}' must be indexed, as in {}[...]", e.name, e.name));
    }
    return fail(e.where, fmt::format("unknown name '{}'{}", e.name, did_you_mean(e.name, visible_names())));
  }

  ir::Expr unary(const ast::Expr& e) {
    ir::Expr a = expr(*e.operands[0]);
    if (!a) return nullptr;
    if (e.unary_op == ast::UnaryOp::Not) {
      if (a->type != ir::Type::Bool) {
        return fail(e.where, fmt::format("operand of '!' must be bool, got {}", ir::type_name(a->type)));
      }
      return ir::unary(ir::UnaryOp::Not, a, e.where);
    }
    if (!numeric(a->type)) {
      return fail(e.where, fmt::format("operand of unary '-' must be int or float, got {}", ir::type_name(a->type)));
    }
    return ir::unary(ir::UnaryOp::Neg, a, e.where);
  }

  ir::Expr binary(const ast::Expr& e) {
    ir::Expr a = expr(*e.operands[0]);
    ir::Expr b = expr(*e.operands[1]);
    if (!a || !b) return nullptr;
    const char* op = ast::op_symbol(e.binary_op);
    auto mismatch = [&](const char* requirement) {
      return fail(e.where, fmt::format("operands of '{}' must be {}, got {} and {}", op, requirement,
                                       ir::type_name(a->type), ir::type_name(b->type)));
    };
    switch (e.binary_op) {
      case ast::BinaryOp::And:
      case ast::BinaryOp::Or:
        if (a->type != ir::Type::Bool || b->type != ir::Type::Bool) return mismatch("bool");
        break;
      case ast::BinaryOp::Eq:
      case ast::BinaryOp::Ne:
        if (numeric(a->type) && numeric(b->type)) {
          promote(a, b);
        } else if (a->type != b->type) {
          return mismatch("of the same type");
        }
        break;
      default:
        if (!numeric(a->type) || !numeric(b->type)) return mismatch("int or float");
        promote(a, b);
        break;
    }
    return ir::binary(lower(e.binary_op), a, b, e.where);
  }

  static void promote(ir::Expr& a, ir::Expr& b) {
    if (a->type == ir::Type::Float) b = promote_to_float(b);
    if (b->type == ir::Type::Float) a = promote_to_float(a);
  }

  ir::Expr call(const ast::Expr& e) {
    ir::Fn fn;
    if (!ir::function_by_name(e.name, &fn)) {
      std::vector<std::string> names(std::begin(kFunctionNames), std::end(kFunctionNames));
      return fail(e.name_where, fmt::format("unknown function '{}'{}", e.name, did_you_mean(e.name, names)));
    }
    ir::Signature sig = ir::function_signature(fn);
    if (static_cast<int>(e.operands.size()) != sig.arity) {
      return fail(e.where, fmt::format("{} expects {} ({}), got {}", e.name,
                                       plural(static_cast<size_t>(sig.arity), "argument", "arguments"), sig.form,
                                       e.operands.size()));
    }
    std::vector<ir::Expr> args;
    bool ok = true;
    for (const auto& o : e.operands) {
      args.push_back(expr(*o));
      ok &= args.back() != nullptr;
    }
    if (!ok) return nullptr;
    if (fn == ir::Fn::LogBucket) {
      // Its thresholds are decided at compile time.
      static const char* const kConstantOperands[] = {"exact", "max_distance", "buckets"};
      for (size_t i = 1; i < args.size(); ++i) {
        if (const ir::Node* n = find_run_time_value(args[i], scope_.params)) {
          std::string what = n->kind == ir::Kind::Var ? ir::var_name(n->var) : n->name;
          return fail(e.operands[i]->where, fmt::format("log_bucket's {} must be a parameter or constant, not '{}'",
                                                        kConstantOperands[i - 1], what));
        }
      }
    }
    coerce_arguments(fn, args);
    // float(x) of a float and int(x) of an int are the identity.
    if ((fn == ir::Fn::ToFloat && args[0]->type == ir::Type::Float) ||
        (fn == ir::Fn::ToInt && args[0]->type == ir::Type::Int)) {
      return args[0];
    }
    std::vector<ir::Type> types;
    for (const auto& a : args) types.push_back(a->type);
    ir::Type result;
    if (!ir::function_result_type(fn, types, &result)) {
      std::vector<std::string> names;
      for (auto t : types) names.emplace_back(ir::type_name(t));
      return fail(e.where, fmt::format("{} expects {}, got {}({})", e.name, sig.form, e.name, fmt::join(names, ", ")));
    }
    return ir::call(fn, std::move(args), e.where);
  }

  // Int-to-float promotion where a function computes in float: mixed numeric operands of min/max/clamp and
  // select's branches, and every argument of the float-only functions.
  static void coerce_arguments(ir::Fn fn, std::vector<ir::Expr>& args) {
    size_t first = 0;
    switch (fn) {
      case ir::Fn::Min:
      case ir::Fn::Max:
      case ir::Fn::Clamp: break;
      case ir::Fn::Select: first = 1; break;
      case ir::Fn::Tanh:
      case ir::Fn::Exp:
      case ir::Fn::Log:
      case ir::Fn::Exp2:
      case ir::Fn::Sqrt:
      case ir::Fn::Pow:
      case ir::Fn::Floor:
      case ir::Fn::Ceil:
        for (auto& a : args) a = promote_to_float(a);
        return;
      default: return;
    }
    bool any_float = false, all_numeric = true;
    for (size_t i = first; i < args.size(); ++i) {
      any_float |= args[i]->type == ir::Type::Float;
      all_numeric &= numeric(args[i]->type);
    }
    if (!any_float || !all_numeric) return;
    for (size_t i = first; i < args.size(); ++i) args[i] = promote_to_float(args[i]);
  }

  const ir::TensorDecl* tensor(const ast::Expr& e) {
    if (scope_.tensors) {
      if (auto it = scope_.tensors->find(e.name); it != scope_.tensors->end()) return &it->second;
    }
    bool is_value = scope_.lets.count(e.name) || scope_.params.count(e.name) || find_builtin(e.name) ||
                    (scope_.dimension_symbols && scope_.dimension_symbols->count(e.name));
    if (is_value) {
      fail(e.name_where, fmt::format("'{}' is not a tensor and cannot be indexed", e.name));
    } else {
      std::vector<std::string> names;
      if (scope_.tensors) {
        for (const auto& [n, _] : *scope_.tensors) names.push_back(n);
      }
      fail(e.name_where, fmt::format("unknown tensor '{}'{}", e.name, did_you_mean(e.name, names)));
    }
    return nullptr;
  }

  std::optional<std::vector<ir::Expr>> indices(const ast::Expr& e) {
    std::vector<ir::Expr> out;
    bool ok = true;
    for (size_t i = 0; i < e.operands.size(); ++i) {
      ir::Expr index = expr(*e.operands[i]);
      if (index && index->type != ir::Type::Int) {
        fail(e.operands[i]->where,
             fmt::format("index {} of tensor '{}' must be int, got {}", i + 1, e.name, ir::type_name(index->type)));
        index = nullptr;
      }
      ok &= index != nullptr;
      out.push_back(index);
    }
    if (!ok) return std::nullopt;
    return out;
  }

  static std::string shape(const ir::TensorDecl& t) {
    return fmt::format("{}[{}]", ir::elem_type_name(t.elem_type), fmt::join(t.dims, ", "));
  }

  ir::Expr index(const ast::Expr& e) {
    if (!scope_.allow_run_time_values) return forbidden(e.where, fmt::format("tensor '{}'", e.name));
    const ir::TensorDecl* t = tensor(e);
    if (!t) return nullptr;
    if (e.operands.size() != t->dims.size()) {
      return fail(e.where, fmt::format("tensor '{}' ({}) needs {}, got {}", e.name, shape(*t),
                                       plural(t->dims.size(), "index", "indices"), e.operands.size()));
    }
    auto idx = indices(e);
    if (!idx) return nullptr;
    return ir::load(e.name, t->elem_type, std::move(*idx), e.where);
  }

  // dot(q_vec, T[i1, ..., i_{r-1}]): T float32 with last dimension D, all but the last dimension indexed.
  ir::Expr dot(const ast::Expr& e) {
    constexpr const char* form = "dot(q_vec, T[...])";
    if (e.operands.size() != 2) {
      return fail(e.where, fmt::format("dot expects 2 arguments ({}), got {}", form, e.operands.size()));
    }
    if (!scope_.allow_run_time_values) return forbidden(e.where, "dot(q_vec, ...)");
    const ast::Expr& first = *e.operands[0];
    if (first.kind != ast::ExprKind::Name || first.name != "q_vec") {
      return fail(first.where, fmt::format("the first argument of dot must be q_vec ({})", form));
    }
    const ast::Expr& row = *e.operands[1];
    if (row.kind != ast::ExprKind::Index) {
      return fail(row.where, fmt::format("the second argument of dot must be a row of a tensor, as in {}", form));
    }
    const ir::TensorDecl* t = tensor(row);
    if (!t) return nullptr;
    if (t->elem_type != ir::ElemType::Float32 || t->dims.back() != "D") {
      return fail(row.name_where, fmt::format("dot(q_vec, ...) needs a float32 tensor whose last dimension is D, "
                                              "but '{}' is {}",
                                              row.name, shape(*t)));
    }
    if (row.operands.size() + 1 != t->dims.size()) {
      return fail(row.where,
                  fmt::format("dot(q_vec, {}[...]) needs {} (every dimension of {} but the last), got {}", row.name,
                              plural(t->dims.size() - 1, "index", "indices"), shape(*t), row.operands.size()));
    }
    auto idx = indices(row);
    if (!idx) return nullptr;
    return ir::dot_q(row.name, std::move(*idx), e.where);
  }

  const Scope& scope_;
  dsl::Diagnostics& diags_;
};

}  // namespace

bool is_builtin_name(const std::string& name) { return find_builtin(name) != nullptr || name == "q_vec"; }

ir::Expr promote_to_float(const ir::Expr& e) {
  if (e->type != ir::Type::Int) return e;
  return ir::call(ir::Fn::ToFloat, {e}, e->where);
}

ir::Expr elaborate_expression(const dsl::ast::Expr& e, const Scope& scope, dsl::Diagnostics& diags) {
  return Elaborator(scope, diags).expr(e);
}

const ir::Node* find_score_only_value(const ir::Expr& e) {
  if ((e->kind == ir::Kind::Var && e->var == ir::Var::Score) || e->kind == ir::Kind::DotQ) return e.get();
  for (const auto& o : e->operands) {
    if (const ir::Node* n = find_score_only_value(o)) return n;
  }
  return nullptr;
}

const ir::Node* find_run_time_value(const ir::Expr& e, const std::map<std::string, Binding>& params) {
  switch (e->kind) {
    case ir::Kind::Var:
    case ir::Kind::Load:
    case ir::Kind::DotQ: return e.get();
    case ir::Kind::Symbol:
      if (!params.count(e->name)) return e.get();
      break;
    default: break;
  }
  for (const auto& o : e->operands) {
    if (const ir::Node* n = find_run_time_value(o, params)) return n;
  }
  return nullptr;
}

}  // namespace tessera::sema
