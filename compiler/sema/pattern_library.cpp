// The pattern library: declarations from the prelude and spec files, checked when added, and instantiation of
// pattern expressions ("causal & sliding_window(window=256)") into ir::Pattern.
#include "compiler/sema/pattern_library.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <stdexcept>

#include "compiler/ir/printer.h"
#include "compiler/ir/simplify.h"
#include "compiler/sema/constant_folding.h"
#include "compiler/sema/expression_elaboration.h"
#include "compiler/sema/pattern_composition.h"
#include "compiler/sema/spelling.h"
#include "dsl/parser.h"
#include "dsl/prelude.h"

namespace tessera::sema {

namespace {

namespace ast = dsl::ast;
using dsl::Diagnostics;
using dsl::SourceRange;

struct Bound {
  ir::BinaryOp op;  // Ge, Gt, Le or Lt: `value op bound` must hold
  ir::Value bound;
};

struct Requirement {
  ir::Expr condition;  // Bool over the parameters
  std::string message;
  SourceRange where;
};

// What instantiation needs beyond the public Declaration.
struct DeclarationDetail {
  std::vector<std::vector<Bound>> bounds;  // per parameter
  std::vector<Requirement> requirements;
  const ast::PatternExpr* alias = nullptr;  // the alias form's expression (owned by a module the library keeps)
  dsl::SourceRange weight_where, normalizer_where, scoring_where;  // the body's `weight:`, `normalize:`, `scoring:`
  bool valid = true;
};

std::optional<ir::Type> parse_type(const std::string& name) {
  if (name == "int") return ir::Type::Int;
  if (name == "float") return ir::Type::Float;
  if (name == "bool") return ir::Type::Bool;
  return std::nullopt;
}

ir::BinaryOp lower_comparison(ast::BinaryOp op) {
  switch (op) {
    case ast::BinaryOp::Gt: return ir::BinaryOp::Gt;
    case ast::BinaryOp::Le: return ir::BinaryOp::Le;
    case ast::BinaryOp::Lt: return ir::BinaryOp::Lt;
    default: return ir::BinaryOp::Ge;
  }
}

bool satisfies(const ir::Value& v, const Bound& b) {
  auto holds = [&](auto x, auto y) {
    switch (b.op) {
      case ir::BinaryOp::Gt: return x > y;
      case ir::BinaryOp::Le: return x <= y;
      case ir::BinaryOp::Lt: return x < y;
      default: return x >= y;
    }
  };
  // Ints compare exactly; a float parameter's bound may have been written as an int.
  if (v.type == ir::Type::Int && b.bound.type == ir::Type::Int) return holds(v.i, b.bound.i);
  double x = v.type == ir::Type::Float ? v.f : static_cast<double>(v.i);
  double y = b.bound.type == ir::Type::Float ? b.bound.f : static_cast<double>(b.bound.i);
  return holds(x, y);
}

std::string bound_text(const Bound& b) { return fmt::format("{} {}", ir::op_symbol(b.op), format_value(b.bound)); }

// "strided(stride: int >= 1)": how a declaration is called, for messages.
std::string signature(const Declaration& d) {
  std::vector<std::string> params;
  for (const auto& p : d.params) {
    std::string s = fmt::format("{}: {}", p.name, ir::type_name(p.type));
    if (!p.constraint.empty()) s += " " + p.constraint;
    if (p.default_value) s += " = " + format_value(*p.default_value);
    params.push_back(s);
  }
  return fmt::format("{}({})", d.name, fmt::join(params, ", "));
}

// Replaces parameter symbols by their values; each copy keeps the symbol's source range so later diagnostics
// point at the use in the declaration.
ir::Expr bind(const ir::Expr& e, const std::map<std::string, ir::Expr>& values) {
  if (e->kind == ir::Kind::Symbol) {
    auto it = values.find(e->name);
    if (it == values.end()) return e;
    auto copy = std::make_shared<ir::Node>(*it->second);
    copy->where = e->where;
    return copy;
  }
  bool changed = false;
  std::vector<ir::Expr> operands;
  for (const auto& o : e->operands) {
    operands.push_back(bind(o, values));
    changed |= operands.back() != o;
  }
  if (!changed) return e;
  auto copy = std::make_shared<ir::Node>(*e);
  copy->operands = std::move(operands);
  return copy;
}

void first_symbol(const ir::Expr& e, const std::map<std::string, ir::Expr>& values, std::string* out) {
  if (!out->empty()) return;
  if (e->kind == ir::Kind::Symbol && values.count(e->name)) {
    *out = e->name;
    return;
  }
  for (const auto& o : e->operands) first_symbol(o, values, out);
}

// Copies `from` into `to`, adding `note` after each error's own notes.
void forward(const Diagnostics& from, Diagnostics& to, const SourceRange& note_where, const std::string& note) {
  const auto& all = from.all();
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& d = all[i];
    if (d.severity == dsl::Severity::Error)
      to.error(d.where, d.message);
    else if (d.severity == dsl::Severity::Warning)
      to.warning(d.where, d.message);
    else
      to.note(d.where, d.message);
    bool last_of_group = i + 1 == all.size() || all[i + 1].severity != dsl::Severity::Note;
    if (last_of_group && !note.empty()) to.note(note_where, note);
  }
}

// The tensors the scoring function reads (bilinear's W; additive's Wq, Wk and v) join the pattern's inputs.
void add_scoring_inputs(ir::Pattern& p, const std::map<std::string, ir::TensorDecl>& tensors) {
  auto add = [&](const std::string& name) {
    if (!name.empty() && !p.input(name)) p.inputs.push_back(tensors.at(name));
  };
  add(p.query_projection);
  add(p.additive.query_weight);
  add(p.additive.key_weight);
  add(p.additive.vector);
}

ir::Pattern finish(const Instance& instance, const std::map<std::string, ir::TensorDecl>& tensors) {
  // Every division by zero was reported when its operand was instantiated; this pass only folds.
  ir::Pattern p;
  p.name = instance.name;
  p.mask = ir::simplify(instance.mask);
  p.score = ir::simplify(instance.score);
  p.weight = ir::simplify(instance.weight);
  p.normalizer = instance.normalizer;
  p.scoring = instance.scoring;
  p.query_projection = instance.query_projection;
  p.additive = instance.additive;
  if (p.mask->kind == ir::Kind::BoolImm && p.mask->bool_value) p.mask = ir::bool_imm(true);
  if (p.score->kind == ir::Kind::Var && p.score->var == ir::Var::Score) p.score = ir::var(ir::Var::Score);
  if (!p.has_weight()) p.weight = ir::float_imm(1.0);
  p.inputs = collect_inputs(p.mask, p.score, p.weight, tensors);
  add_scoring_inputs(p, tensors);
  return p;
}

}  // namespace

struct PatternLibrary::Impl {
  std::unique_ptr<ast::Module> prelude_module;
  std::vector<std::unique_ptr<ast::Module>> modules;
  std::map<std::string, ir::TensorDecl> tensors;
  std::map<std::string, SourceRange> dimension_symbols;
  std::vector<Declaration> declarations;
  std::vector<DeclarationDetail> details;  // parallel to `declarations`
  std::map<std::string, size_t> index;
  std::map<std::string, SourceRange> invalid;  // patterns whose declaration had errors
  bool loading_prelude = false;

  struct Model {
    const ast::ModelDecl* decl = nullptr;  // owned by a module the library keeps
    std::vector<Parameter> params;
    std::vector<std::vector<Bound>> bounds;  // per parameter
    bool valid = true;                       // its parameters had no errors
  };
  std::vector<Model> models;  // in declaration order
  std::map<std::string, size_t> model_index;

  Scope base_scope() const {
    Scope scope;
    scope.tensors = &tensors;
    scope.dimension_symbols = &dimension_symbols;
    return scope;
  }

  // ---- add_file ----

  void add_tensor(const ast::TensorDecl& t, Diagnostics& diags) {
    ir::TensorDecl decl;
    decl.name = t.name;
    decl.where = t.where;
    if (t.elem_type == "int32") {
      decl.elem_type = ir::ElemType::Int32;
    } else if (t.elem_type == "float32") {
      decl.elem_type = ir::ElemType::Float32;
    } else {
      diags.error(t.elem_type_where, fmt::format("unknown element type '{}'; expected int32 or float32", t.elem_type));
      return;
    }
    for (const auto& d : t.dims) {
      if (is_builtin_name(d.name) && !ir::is_attention_size(d.name)) {
        diags.error(d.where, fmt::format("dimension name '{}' is a built-in variable; use an attention size "
                                         "(B, H, Hkv, N, M, D, Dv) or a new name",
                                         d.name));
        return;
      }
      decl.dims.push_back(d.name);
    }
    if (auto it = tensors.find(t.name); it != tensors.end()) {
      if (it->second.elem_type != decl.elem_type || it->second.dims != decl.dims) {
        diags.error(t.where, fmt::format("tensor '{}' redeclared as {}[{}]", t.name, ir::elem_type_name(decl.elem_type),
                                         fmt::join(decl.dims, ", ")));
        diags.note(it->second.where,
                   fmt::format("previously declared as {}[{}] here", ir::elem_type_name(it->second.elem_type),
                               fmt::join(it->second.dims, ", ")));
      }
      return;
    }
    for (const auto& d : t.dims) {
      if (!ir::is_attention_size(d.name)) dimension_symbols.emplace(d.name, d.where);
    }
    tensors.emplace(t.name, std::move(decl));
  }

  // A constant expression of `type` (an int is accepted for a float), for defaults and bounds.
  std::optional<ir::Value> constant(const ast::Expr& e, ir::Type type, const std::string& context,
                                    const std::string& what, Diagnostics& diags) {
    Scope scope = base_scope();
    scope.allow_run_time_values = false;
    scope.constant_context = context;
    ir::Expr value = elaborate_expression(e, scope, diags);
    if (!value) return std::nullopt;
    if (type == ir::Type::Float) value = promote_to_float(value);
    if (value->type != type) {
      diags.error(e.where, fmt::format("{} must be {}, got {}", what, ir::type_name(type), ir::type_name(value->type)));
      return std::nullopt;
    }
    if (report_constant_division_by_zero(value, diags)) return std::nullopt;
    return constant_value(value);
  }

  std::optional<Parameter> parameter(const ast::Param& p, std::vector<Bound>* bounds, Diagnostics& diags) {
    Parameter out;
    out.name = p.name;
    out.where = p.where;
    auto type = parse_type(p.type);
    if (!type) {
      diags.error(p.type_where, fmt::format("unknown parameter type '{}'; expected int, float or bool{}", p.type,
                                            did_you_mean(p.type, {"int", "float", "bool"})));
      return std::nullopt;
    }
    out.type = *type;
    if (is_builtin_name(p.name)) {
      diags.error(p.name_where, fmt::format("parameter '{}' would hide the built-in variable '{}'", p.name, p.name));
      return std::nullopt;
    }
    bool ok = true;
    std::vector<std::string> texts;
    for (const auto& c : p.constraints) {
      if (out.type == ir::Type::Bool) {
        diags.error(c.where, fmt::format("bool parameter '{}' cannot have a range constraint", p.name));
        ok = false;
        continue;
      }
      auto bound = constant(*c.bound, out.type, "a constraint", fmt::format("the bound of '{}'", p.name), diags);
      if (!bound) {
        ok = false;
        continue;
      }
      bounds->push_back({lower_comparison(c.op), *bound});
      texts.push_back(bound_text(bounds->back()));
    }
    out.constraint = fmt::format("{}", fmt::join(texts, " "));
    if (p.default_value) {
      auto value = constant(*p.default_value, out.type, "a default value",
                            fmt::format("the default value of '{}'", p.name), diags);
      if (!value) return std::nullopt;
      for (const auto& b : *bounds) {
        if (!satisfies(*value, b)) {
          diags.error(p.default_value->where, fmt::format("the default value of '{}' must be {}, got {}", p.name,
                                                          bound_text(b), format_value(*value)));
          ok = false;
        }
      }
      out.default_value = value;
    }
    if (!ok) return std::nullopt;
    return out;
  }

  // Elaborates a declaration's parameter list into `params` and their `bounds`; false if any had errors.
  bool declare_parameters(const std::vector<ast::Param>& list, std::vector<Parameter>* params,
                          std::vector<std::vector<Bound>>* bounds, Diagnostics& diags) {
    bool ok = true;
    std::map<std::string, SourceRange> seen;
    for (const auto& param : list) {
      if (auto it = seen.find(param.name); it != seen.end()) {
        diags.error(param.name_where, fmt::format("duplicate parameter '{}'", param.name));
        diags.note(it->second, fmt::format("'{}' was first declared here", param.name));
        ok = false;
        continue;
      }
      seen.emplace(param.name, param.name_where);
      std::vector<Bound> param_bounds;
      auto elaborated = parameter(param, &param_bounds, diags);
      if (!elaborated) {
        ok = false;
        continue;
      }
      params->push_back(std::move(*elaborated));
      bounds->push_back(std::move(param_bounds));
    }
    return ok;
  }

  // Registers the declaration (name and parameters); returns its index, or nullopt if it could not be.
  std::optional<size_t> declare(const ast::PatternDecl& p, Diagnostics& diags) {
    auto previous = index.find(p.name);
    if (previous != index.end() || invalid.count(p.name)) {
      const SourceRange& first =
          previous != index.end() ? declarations[previous->second].where : invalid.find(p.name)->second;
      diags.error(p.name_where, fmt::format("redefinition of pattern '{}'", p.name));
      diags.note(first, fmt::format("'{}' was first defined here", p.name));
      return std::nullopt;
    }
    if (auto model = model_index.find(p.name); model != model_index.end()) {
      diags.error(p.name_where, fmt::format("pattern '{}' has the name of a model (patterns and models share one "
                                            "namespace)",
                                            p.name));
      diags.note(models[model->second].decl->name_where, fmt::format("model '{}' is defined here", p.name));
      return std::nullopt;
    }
    Declaration decl;
    decl.name = p.name;
    decl.where = p.name_where;
    decl.from_prelude = loading_prelude;
    DeclarationDetail detail;
    detail.alias = p.alias.get();
    detail.valid = declare_parameters(p.params, &decl.params, &detail.bounds, diags);
    index.emplace(p.name, declarations.size());
    declarations.push_back(std::move(decl));
    details.push_back(std::move(detail));
    return declarations.size() - 1;
  }

  // Registers a model (its name, in the namespace it shares with patterns, and its parameters).
  void declare_model(const ast::ModelDecl& m, Diagnostics& diags) {
    if (auto previous = model_index.find(m.name); previous != model_index.end()) {
      diags.error(m.name_where, fmt::format("redefinition of model '{}'", m.name));
      diags.note(models[previous->second].decl->name_where, fmt::format("'{}' was first defined here", m.name));
      return;
    }
    auto pattern = index.find(m.name);
    if (pattern != index.end() || invalid.count(m.name)) {
      const SourceRange& first =
          pattern != index.end() ? declarations[pattern->second].where : invalid.find(m.name)->second;
      diags.error(m.name_where, fmt::format("model '{}' has the name of a pattern (patterns and models share one "
                                            "namespace)",
                                            m.name));
      diags.note(first, fmt::format("pattern '{}' is defined here", m.name));
      return;
    }
    Model model;
    model.decl = &m;
    model.valid = declare_parameters(m.params, &model.params, &model.bounds, diags);
    model_index.emplace(m.name, models.size());
    models.push_back(std::move(model));
  }

  Scope parameter_scope(const Declaration& decl) const {
    Scope scope = base_scope();
    for (const auto& p : decl.params) scope.params[p.name] = {ir::symbol(p.name, p.type, p.where), p.where};
    return scope;
  }

  // Reports `s`/dot(q_vec, ...) outside score: and returns whether there was one.
  static bool check_score_only(const ir::Expr& e, Diagnostics& diags) {
    const ir::Node* n = find_score_only_value(e);
    if (!n) return false;
    diags.error(n->where, n->kind == ir::Kind::DotQ ? "dot(q_vec, ...) is only available in score:"
                                                    : "'s' (the logit) is only available in score:");
    return true;
  }

  // Simplifies and reports constant division by zero (through simplify, or our own scan if it found none).
  static ir::Expr simplify_checked(const ir::Expr& e, Diagnostics& diags, bool* ok) {
    Diagnostics found;
    ir::Expr simplified = ir::simplify(e, &found);
    if (!found.has_errors()) report_constant_division_by_zero(e, found);
    if (found.has_errors()) *ok = false;
    forward(found, diags, {}, "");
    return simplified;
  }

  // Elaborates a body declaration's lets, requires, mask and score with its parameters as symbols.
  bool elaborate_body(const ast::PatternDecl& p, size_t i, Diagnostics& diags) {
    Declaration& decl = declarations[i];
    Scope scope = parameter_scope(decl);
    for (const auto& param : p.params) {
      if (!scope.params.count(param.name)) scope.poisoned.insert(param.name);
    }
    bool ok = true;
    std::map<std::string, SourceRange> lets;
    // The first statement of each field kind, to report a second one.
    std::map<ast::StatementKind, const ast::Statement*> fields;
    ir::Expr mask = ir::bool_imm(true), score = ir::var(ir::Var::Score), weight = ir::float_imm(1.0);
    ir::Normalizer normalizer = ir::Normalizer::Softmax;
    ir::Scoring scoring = ir::Scoring::ScaledDot;
    std::string projection;
    ir::AdditiveScoring additive;
    std::vector<Requirement> requirements;
    for (const auto& s : p.body) {
      switch (s.kind) {
        case ast::StatementKind::Let: ok &= let(s, scope, lets, diags); break;
        case ast::StatementKind::Require: {
          auto r = requirement(s, scope, diags);
          if (r) requirements.push_back(std::move(*r));
          ok &= r.has_value();
          break;
        }
        case ast::StatementKind::Mask:
        case ast::StatementKind::Score:
        case ast::StatementKind::Weight:
        case ast::StatementKind::Normalize:
        case ast::StatementKind::Scoring: {
          auto [first, inserted] = fields.emplace(s.kind, &s);
          if (!inserted) {
            diags.error(s.where, fmt::format("pattern '{}' has more than one '{}:'", p.name, field_word(s.kind)));
            diags.note(first->second->where, "the first one is here");
            ok = false;
            break;
          }
          if (s.kind == ast::StatementKind::Normalize) {
            auto chosen = normalizer_value(s, diags);
            if (chosen) normalizer = *chosen;
            ok &= chosen.has_value();
            break;
          }
          if (s.kind == ast::StatementKind::Scoring) {
            ok &= scoring_value(s, diags, &scoring, &projection, &additive);
            break;
          }
          ir::Expr value = s.kind == ast::StatementKind::Mask    ? mask_value(s, scope, diags)
                           : s.kind == ast::StatementKind::Score ? score_value(s, scope, diags)
                                                                 : weight_value(s, scope, diags);
          if (!value) {
            ok = false;
            break;
          }
          value = simplify_checked(value, diags, &ok);
          (s.kind == ast::StatementKind::Mask ? mask : s.kind == ast::StatementKind::Score ? score : weight) = value;
          break;
        }
      }
    }
    if (!ok) return false;
    auto weight_statement = fields.find(ast::StatementKind::Weight);
    auto normalize_statement = fields.find(ast::StatementKind::Normalize);
    if (weight_statement != fields.end() && normalizer == ir::Normalizer::Hardmax) {
      report_weight_with_hardmax(weight_statement->second->where, normalize_statement->second->where, diags);
      return false;
    }
    if (additive_reads_query(scoring, mask, score, weight)) {
      diags.error(fields.at(ast::StatementKind::Scoring)->where, additive_query_conflict_message(p.name));
      return false;
    }
    decl.body =
        ir::Pattern{p.name,  mask,       score,   collect_inputs(mask, score, weight, tensors), weight, normalizer,
                    scoring, projection, additive};
    add_scoring_inputs(decl.body, tensors);
    if (weight_statement != fields.end()) details[i].weight_where = weight_statement->second->where;
    if (normalize_statement != fields.end()) details[i].normalizer_where = normalize_statement->second->where;
    if (auto it = fields.find(ast::StatementKind::Scoring); it != fields.end()) {
      details[i].scoring_where = it->second->where;
    }
    details[i].requirements = std::move(requirements);
    return true;
  }

  static const char* field_word(ast::StatementKind kind) {
    switch (kind) {
      case ast::StatementKind::Mask: return "mask";
      case ast::StatementKind::Score: return "score";
      case ast::StatementKind::Weight: return "weight";
      case ast::StatementKind::Normalize: return "normalize";
      case ast::StatementKind::Scoring: return "scoring";
      default: return "?";
    }
  }

  // A weight scales probabilities that add up to 1; hardmax's single 1 has nothing to spread over.
  static void report_weight_with_hardmax(const SourceRange& weight_where, const SourceRange& normalizer_where,
                                         Diagnostics& diags) {
    diags.error(weight_where, "'weight:' cannot be used with the hardmax normaliser (it puts all weight on one key)");
    diags.note(normalizer_where, "hardmax is chosen here");
  }

  // A tensor named by a scoring function, declared float32 with the dimensions `dims` ("?" matches any one,
  // which must then be the same dimension in every "?" of the call: *free).
  bool scoring_tensor(const ast::Expr& arg, const char* function, const std::vector<std::string>& dims,
                      const char* form, std::string* free, Diagnostics& diags) const {
    if (arg.kind != ast::ExprKind::Name) {
      diags.error(arg.where, fmt::format("{} takes tensor names; expected {}", function, form));
      return false;
    }
    auto it = tensors.find(arg.name);
    if (it == tensors.end()) {
      diags.error(arg.where, fmt::format("unknown tensor '{}' in {}(...)", arg.name, function));
      return false;
    }
    const ir::TensorDecl& decl = it->second;
    bool fits = decl.elem_type == ir::ElemType::Float32 && decl.dims.size() == dims.size();
    for (size_t d = 0; fits && d < dims.size(); ++d) {
      if (dims[d] != "?") {
        fits = decl.dims[d] == dims[d];
      } else if (free->empty()) {
        *free = decl.dims[d];
      } else {
        fits = decl.dims[d] == *free;
      }
    }
    if (!fits) {
      diags.error(arg.where, fmt::format("{} needs {}; '{}' is {}[{}]", function, form, arg.name,
                                         ir::elem_type_name(decl.elem_type), fmt::join(decl.dims, ", ")));
      diags.note(decl.where, fmt::format("'{}' is declared here", arg.name));
      return false;
    }
    return true;
  }

  // scoring: scaled_dot | dot | bilinear(W) | additive(WQ, WK, V), the tensors declared as float32 W[H, D, D],
  // WQ[H, A, D], WK[H, A, D] and V[H, A] for one dimension A.
  bool scoring_value(const ast::Statement& s, Diagnostics& diags, ir::Scoring* scoring, std::string* projection,
                     ir::AdditiveScoring* additive) const {
    const ast::Expr& e = *s.value;
    if (e.kind == ast::ExprKind::Call && e.name == "additive") {
      constexpr const char* form = "float32 tensors WQ[H, A, D], WK[H, A, D] and V[H, A] with the same A";
      if (e.operands.size() != 3) {
        diags.error(e.where, fmt::format("additive takes three arguments, additive(WQ, WK, V): {}", form));
        return false;
      }
      std::string a;
      bool ok = scoring_tensor(*e.operands[0], "additive", {"H", "?", "D"}, form, &a, diags) &&
                scoring_tensor(*e.operands[1], "additive", {"H", "?", "D"}, form, &a, diags) &&
                scoring_tensor(*e.operands[2], "additive", {"H", "?"}, form, &a, diags);
      if (!ok) return false;
      *scoring = ir::Scoring::Additive;
      *additive = ir::AdditiveScoring{e.operands[0]->name, e.operands[1]->name, e.operands[2]->name};
      return true;
    }
    if (e.kind == ast::ExprKind::Name) {
      for (auto kind : {ir::Scoring::ScaledDot, ir::Scoring::Dot}) {
        if (e.name == ir::scoring_name(kind)) {
          *scoring = kind;
          return true;
        }
      }
    }
    if (e.kind == ast::ExprKind::Call && e.name == "bilinear") {
      if (e.operands.size() != 1) {
        diags.error(e.where, "bilinear takes one argument, a tensor declared as float32[H, D, D]");
        return false;
      }
      std::string unused;
      if (!scoring_tensor(*e.operands[0], "bilinear", {"H", "D", "D"}, "a float32[H, D, D] tensor", &unused, diags)) {
        return false;
      }
      const ast::Expr& arg = *e.operands[0];
      *scoring = ir::Scoring::ScaledDot;  // the rewrite: project the queries, then the usual scaled dot product
      *projection = arg.name;
      return true;
    }
    diags.error(e.where, fmt::format("unknown scoring function '{}': expected scaled_dot, dot, bilinear(W) or "
                                     "additive(WQ, WK, V)",
                                     ast::dump(e)));
    return false;
  }

  // normalize: softmax | hardmax
  static std::optional<ir::Normalizer> normalizer_value(const ast::Statement& s, Diagnostics& diags) {
    const ast::Expr& e = *s.value;
    if (e.kind == ast::ExprKind::Name) {
      for (auto n : {ir::Normalizer::Softmax, ir::Normalizer::Hardmax}) {
        if (e.name == ir::normalizer_name(n)) return n;
      }
    }
    diags.error(e.where, fmt::format("unknown normaliser '{}': expected softmax or hardmax", ast::dump(e)));
    return std::nullopt;
  }

  static ir::Expr weight_value(const ast::Statement& s, const Scope& scope, Diagnostics& diags) {
    ir::Expr value = float_value(s, "weight", scope, diags);
    if (value && check_score_only(value, diags)) return nullptr;
    return value;
  }

  bool let(const ast::Statement& s, Scope& scope, std::map<std::string, SourceRange>& lets, Diagnostics& diags) {
    auto fail = [&] {
      scope.poisoned.insert(s.name);
      return false;
    };
    if (auto it = lets.find(s.name); it != lets.end()) {
      diags.error(s.name_where, fmt::format("redefinition of '{}'", s.name));
      diags.note(it->second, fmt::format("'{}' was first defined here", s.name));
      return false;  // the first definition stays usable
    }
    if (auto it = scope.params.find(s.name); it != scope.params.end()) {
      diags.error(s.name_where, fmt::format("'{}' is already a parameter of this pattern", s.name));
      diags.note(it->second.where, "the parameter is declared here");
      return false;
    }
    lets.emplace(s.name, s.name_where);
    if (is_builtin_name(s.name)) {
      diags.error(s.name_where, fmt::format("'{}' would hide the built-in variable '{}'", s.name, s.name));
      return fail();
    }
    ir::Expr value = elaborate_expression(*s.value, scope, diags);
    if (!value) return fail();
    scope.lets[s.name] = {value, s.name_where};
    return true;
  }

  std::optional<Requirement> requirement(const ast::Statement& s, const Scope& scope, Diagnostics& diags) {
    ir::Expr value = elaborate_expression(*s.value, scope, diags);
    if (!value) return std::nullopt;
    if (value->type != ir::Type::Bool) {
      diags.error(s.value->where, fmt::format("require needs a bool condition, got {}", ir::type_name(value->type)));
      return std::nullopt;
    }
    if (check_score_only(value, diags)) return std::nullopt;
    if (const ir::Node* n = find_run_time_value(value, scope.params)) {
      std::string what = n->kind == ir::Kind::Var ? ir::var_name(n->var) : n->name;
      diags.error(n->where, fmt::format("require can only use parameters and constants, not '{}'", what));
      return std::nullopt;
    }
    bool ok = true;
    value = simplify_checked(value, diags, &ok);
    if (!ok) return std::nullopt;
    std::string message = s.has_message ? s.message : fmt::format("requirement {} is not met", ast::dump(*s.value));
    return Requirement{value, message, s.where};
  }

  static ir::Expr mask_value(const ast::Statement& s, const Scope& scope, Diagnostics& diags) {
    ir::Expr value = elaborate_expression(*s.value, scope, diags);
    if (!value) return nullptr;
    if (value->type != ir::Type::Bool) {
      diags.error(s.value->where, fmt::format("mask must be bool, got {}", ir::type_name(value->type)));
      return nullptr;
    }
    if (check_score_only(value, diags)) return nullptr;
    return value;
  }

  static ir::Expr score_value(const ast::Statement& s, const Scope& scope, Diagnostics& diags) {
    return float_value(s, "score", scope, diags);
  }

  // A `score:` or `weight:` value: any number, as a float.
  static ir::Expr float_value(const ast::Statement& s, const char* field, const Scope& scope, Diagnostics& diags) {
    ir::Expr value = elaborate_expression(*s.value, scope, diags);
    if (!value) return nullptr;
    if (value->type == ir::Type::Bool) {
      diags.error(s.value->where, fmt::format("{} must be float, got bool", field));
      return nullptr;
    }
    return promote_to_float(value);
  }

  bool check_alias(size_t i, Diagnostics& diags) {
    const Declaration& decl = declarations[i];
    Scope scope = parameter_scope(decl);
    scope.allow_run_time_values = false;
    scope.constant_context = "a pattern argument";
    std::vector<size_t> expanding{i};
    auto instance = expand(*details[i].alias, scope, diags, expanding);
    if (!instance) return false;
    instance->name = decl.name;
    declarations[i].body = finish(*instance, tensors);
    return true;
  }

  bool add_file(const std::shared_ptr<const dsl::SourceFile>& file, Diagnostics& diags) {
    int errors_before = diags.error_count();
    auto module = dsl::parse_module(file, diags);
    for (const auto& name : module->invalid_patterns) {
      if (!index.count(name.name)) invalid.emplace(name.name, name.where);
    }
    for (const auto& d : module->declarations) {
      if (const auto* t = std::get_if<ast::TensorDecl>(&d)) add_tensor(*t, diags);
    }
    std::vector<std::pair<const ast::PatternDecl*, size_t>> aliases;
    for (const auto& d : module->declarations) {
      if (const auto* m = std::get_if<ast::ModelDecl>(&d)) {
        declare_model(*m, diags);
        continue;
      }
      const auto* p = std::get_if<ast::PatternDecl>(&d);
      if (!p) continue;
      auto i = declare(*p, diags);
      if (!i) continue;
      if (p->alias) {
        if (details[*i].valid) aliases.emplace_back(p, *i);
      } else {
        // Also with faulty parameters (left out of scope, uses not reported), to report the body's own errors.
        bool body_ok = elaborate_body(*p, *i, diags);
        details[*i].valid = details[*i].valid && body_ok;
      }
    }
    for (const auto& [p, i] : aliases) details[i].valid = check_alias(i, diags);
    drop_invalid();
    if (loading_prelude) {
      prelude_module = std::move(module);
    } else {
      modules.push_back(std::move(module));
    }
    return diags.error_count() == errors_before;
  }

  void drop_invalid() {
    std::vector<Declaration> kept;
    std::vector<DeclarationDetail> kept_details;
    for (size_t i = 0; i < declarations.size(); ++i) {
      if (details[i].valid) {
        kept.push_back(std::move(declarations[i]));
        kept_details.push_back(std::move(details[i]));
      } else {
        invalid.emplace(declarations[i].name, declarations[i].where);
      }
    }
    declarations = std::move(kept);
    details = std::move(kept_details);
    index.clear();
    for (size_t i = 0; i < declarations.size(); ++i) index.emplace(declarations[i].name, i);
  }

  // ---- instantiation ----

  // Elaborates a pattern expression. Arguments are elaborated in `arg_scope`: constants only for --pattern,
  // the alias's parameters inside an alias.
  std::optional<Instance> expand(const ast::PatternExpr& e, const Scope& arg_scope, Diagnostics& diags,
                                 std::vector<size_t>& expanding) const {
    if (e.kind == ast::PatternExprKind::Ref) return expand_ref(e, arg_scope, diags, expanding);
    auto lhs = expand(*e.lhs, arg_scope, diags, expanding);
    auto rhs = expand(*e.rhs, arg_scope, diags, expanding);  // also when lhs failed, to report its errors too
    if (!lhs || !rhs) return std::nullopt;
    Instance out = compose(e.kind, *lhs, *rhs);
    if (out.scoring_conflict && !lhs->scoring_conflict && !rhs->scoring_conflict) {
      diags.error(e.where, fmt::format("'{}' chooses two different scoring functions", out.name));
      diags.note(lhs->scoring_where, "one is chosen here");
      diags.note(rhs->scoring_where, "the other here");
      return std::nullopt;
    }
    if (out.has_additive_query_conflict() && !lhs->has_additive_query_conflict() &&
        !rhs->has_additive_query_conflict()) {
      diags.error(e.where, additive_query_conflict_message(out.name));
      diags.note(out.scoring_where, "additive scoring is chosen here");
      return std::nullopt;
    }
    if (out.has_weight_conflict()) {
      diags.error(e.where, fmt::format("'{}' combines a weight with the hardmax normaliser", out.name));
      diags.note(out.weight_where, "the weight is set here");
      diags.note(out.normalizer_where, "hardmax is chosen here");
      return std::nullopt;
    }
    return out;
  }

  std::optional<size_t> lookup(const ast::PatternExpr& e, Diagnostics& diags) const {
    if (auto it = index.find(e.name); it != index.end() && details[it->second].valid) return it->second;
    if (index.count(e.name) || invalid.count(e.name)) {
      diags.error(e.name_where, fmt::format("pattern '{}' cannot be used because its declaration has errors", e.name));
      return std::nullopt;
    }
    std::vector<std::string> names;
    for (const auto& d : declarations) names.push_back(d.name);
    diags.error(e.name_where, fmt::format("unknown pattern '{}'{}", e.name, did_you_mean(e.name, names)));
    return std::nullopt;
  }

  struct Argument {
    ir::Expr value;
    SourceRange where;  // the argument as written; invalid for a default
  };

  // Matches the arguments of `e` to the parameters of `decl`, elaborated and type-checked.
  std::optional<std::vector<Argument>> bind_arguments(const ast::PatternExpr& e, const Declaration& decl,
                                                      const Scope& arg_scope, Diagnostics& diags) const {
    std::vector<std::optional<Argument>> bound(decl.params.size());
    bool ok = true, named_seen = false;
    size_t next_positional = 0;
    for (const auto& arg : e.args) {
      size_t p = 0;
      if (arg.name.empty()) {
        if (named_seen) {
          diags.error(arg.where, "positional argument after a named argument");
          ok = false;
          continue;
        }
        if (next_positional >= decl.params.size()) {
          diags.error(arg.where, fmt::format("too many arguments for {}: expected {}, got {}", signature(decl),
                                             decl.params.size(), e.args.size()));
          ok = false;
          break;
        }
        p = next_positional++;
      } else {
        named_seen = true;
        auto it = std::find_if(decl.params.begin(), decl.params.end(),
                               [&](const Parameter& param) { return param.name == arg.name; });
        if (it == decl.params.end()) {
          std::vector<std::string> names;
          for (const auto& param : decl.params) names.push_back(param.name);
          diags.error(arg.name_where,
                      fmt::format("{} has no parameter '{}'{}", decl.name, arg.name, did_you_mean(arg.name, names)));
          ok = false;
          continue;
        }
        p = static_cast<size_t>(it - decl.params.begin());
      }
      const Parameter& param = decl.params[p];
      if (bound[p]) {
        diags.error(arg.where, fmt::format("duplicate argument '{}' of {}", param.name, decl.name));
        diags.note(bound[p]->where, "it was first given here");
        ok = false;
        continue;
      }
      auto value = argument_value(arg, param, decl, arg_scope, diags);
      if (!value) {
        ok = false;
        continue;
      }
      bound[p] = Argument{value, arg.where};
    }
    std::vector<Argument> out;
    for (size_t p = 0; p < bound.size(); ++p) {
      if (bound[p]) {
        out.push_back(*bound[p]);
      } else if (decl.params[p].default_value) {
        out.push_back({constant_expr(*decl.params[p].default_value, decl.params[p].where), {}});
      } else if (ok) {
        diags.error(e.where, fmt::format("missing argument '{}' of {}", decl.params[p].name, signature(decl)));
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return out;
  }

  static ir::Expr argument_value(const ast::Argument& arg, const Parameter& param, const Declaration& decl,
                                 const Scope& arg_scope, Diagnostics& diags) {
    ir::Expr value = elaborate_expression(*arg.value, arg_scope, diags);
    if (!value) return nullptr;
    if (param.type == ir::Type::Float) value = promote_to_float(value);
    if (value->type != param.type) {
      diags.error(arg.value->where, fmt::format("argument '{}' of {} must be {}, got {}", param.name, decl.name,
                                                ir::type_name(param.type), ir::type_name(value->type)));
      return nullptr;
    }
    if (report_constant_division_by_zero(value, diags)) return nullptr;
    if (auto c = constant_value(value)) return constant_expr(*c, arg.value->where);
    return value;
  }

  bool check_bounds(const Declaration& decl, const DeclarationDetail& detail, const std::vector<Argument>& args,
                    const SourceRange& call, Diagnostics& diags) const {
    bool ok = true;
    for (size_t p = 0; p < args.size(); ++p) {
      auto value = constant_value(args[p].value);
      if (!value) continue;  // a parameter of an enclosing alias: checked when the alias is instantiated
      for (const auto& b : detail.bounds[p]) {
        if (satisfies(*value, b)) continue;
        diags.error(args[p].where.valid() ? args[p].where : call,
                    fmt::format("argument '{}' of {} must be {}, got {}", decl.params[p].name, decl.name, bound_text(b),
                                format_value(*value)));
        diags.note(decl.params[p].where, fmt::format("parameter '{}' is declared here", decl.params[p].name));
        ok = false;
      }
    }
    return ok;
  }

  static std::string canonical_name(const Declaration& decl, const std::vector<Argument>& args) {
    if (decl.params.empty()) return decl.name;
    std::vector<std::string> parts;
    for (size_t p = 0; p < args.size(); ++p) {
      auto value = constant_value(args[p].value);
      parts.push_back(decl.params[p].name + "=" + (value ? format_value(*value) : ir::to_string(args[p].value)));
    }
    return fmt::format("{}({})", decl.name, fmt::join(parts, ", "));
  }

  std::optional<Instance> expand_ref(const ast::PatternExpr& e, const Scope& arg_scope, Diagnostics& diags,
                                     std::vector<size_t>& expanding) const {
    auto i = lookup(e, diags);
    if (!i) return std::nullopt;
    const Declaration& decl = declarations[*i];
    const DeclarationDetail& detail = details[*i];
    auto args = bind_arguments(e, decl, arg_scope, diags);
    if (!args || !check_bounds(decl, detail, *args, e.where, diags)) return std::nullopt;
    std::map<std::string, ir::Expr> values;
    for (size_t p = 0; p < args->size(); ++p) values[decl.params[p].name] = (*args)[p].value;
    Instance instance;
    instance.name = canonical_name(decl, *args);
    std::string context = fmt::format("in the instantiation of '{}' here", instance.name);
    if (detail.alias) {
      if (std::find(expanding.begin(), expanding.end(), *i) != expanding.end()) {
        diags.error(e.name_where, fmt::format("pattern '{}' refers to itself", decl.name));
        return std::nullopt;
      }
      Scope scope = base_scope();
      scope.allow_run_time_values = false;
      scope.constant_context = "a pattern argument";
      for (const auto& [name, value] : values) scope.params[name] = {value, {}};
      Diagnostics nested;
      expanding.push_back(*i);
      auto inner = expand(*detail.alias, scope, nested, expanding);
      expanding.pop_back();
      forward(nested, diags, e.where, context);
      if (!inner) return std::nullopt;
      Instance named = *inner;  // the alias's expression under the alias's own name
      named.name = instance.name;
      named.precedence = instance.precedence;
      return named;
    }
    if (!check_requirements(detail, values, e.where, diags)) return std::nullopt;
    bool ok = true;
    instance.mask = bind_checked(decl.body.mask, values, *args, e.where, context, diags, &ok);
    instance.score = bind_checked(decl.body.score, values, *args, e.where, context, diags, &ok);
    instance.weight = bind_checked(decl.body.weight, values, *args, e.where, context, diags, &ok);
    instance.normalizer = decl.body.normalizer;
    instance.weight_where = detail.weight_where;
    instance.normalizer_where = detail.normalizer_where;
    instance.scoring = decl.body.scoring;
    instance.query_projection = decl.body.query_projection;
    instance.additive = decl.body.additive;
    instance.scoring_where = detail.scoring_where;
    if (!ok) return std::nullopt;
    return instance;
  }

  static bool check_requirements(const DeclarationDetail& detail, const std::map<std::string, ir::Expr>& values,
                                 const SourceRange& call, Diagnostics& diags) {
    bool ok = true;
    for (const auto& r : detail.requirements) {
      auto value = constant_value(bind(r.condition, values));
      if (!value || value->b) continue;
      diags.error(call, fmt::format("requirement failed: {}", r.message));
      diags.note(r.where, "required here");
      ok = false;
    }
    return ok;
  }

  // Binds parameters in a body expression and simplifies it. A divisor that becomes zero is reported at the
  // argument responsible (the pattern expression), with a note at the division in the declaration.
  ir::Expr bind_checked(const ir::Expr& body, const std::map<std::string, ir::Expr>& values,
                        const std::vector<Argument>& args, const SourceRange& call, const std::string& context,
                        Diagnostics& diags, bool* ok) const {
    bool found = false;
    report_zero_divisors(body, values, args, call, diags, &found);
    ir::Expr bound = bind(body, values);
    Diagnostics simplifier;
    ir::Expr simplified = ir::simplify(bound, &simplifier);
    if (!found && simplifier.has_errors()) {
      forward(simplifier, diags, call, context);
      found = true;
    }
    if (found) *ok = false;
    return simplified;
  }

  void report_zero_divisors(const ir::Expr& e, const std::map<std::string, ir::Expr>& values,
                            const std::vector<Argument>& args, const SourceRange& call, Diagnostics& diags,
                            bool* found) const {
    for (const auto& o : e->operands) report_zero_divisors(o, values, args, call, diags, found);
    if (e->kind != ir::Kind::Binary || e->type != ir::Type::Int ||
        (e->binary_op != ir::BinaryOp::Div && e->binary_op != ir::BinaryOp::Mod)) {
      return;
    }
    auto divisor = constant_value(bind(e->operands[1], values));
    if (!divisor || divisor->i != 0) return;
    std::string param;
    first_symbol(e->operands[1], values, &param);
    SourceRange where = call;
    for (size_t p = 0; p < args.size(); ++p) {
      if (args[p].where.valid() && values.count(param) && values.at(param) == args[p].value) where = args[p].where;
    }
    const char* what = e->binary_op == ir::BinaryOp::Mod ? "modulo by zero" : "division by zero";
    diags.error(where, param.empty() ? what : fmt::format("{}: '{}' makes a divisor zero", what, param));
    diags.note(e->operands[1]->where, "the divisor is here");
    *found = true;
  }
};

PatternLibrary::PatternLibrary() : impl_(std::make_unique<Impl>()) {
  Diagnostics diags;
  impl_->loading_prelude = true;
  impl_->add_file(std::make_shared<const dsl::SourceFile>("<prelude>", dsl::prelude_text()), diags);
  impl_->loading_prelude = false;
  if (diags.has_errors()) throw std::logic_error("tessera internal error: the prelude has errors:\n" + diags.str());
}

PatternLibrary::~PatternLibrary() = default;
PatternLibrary::PatternLibrary(PatternLibrary&&) noexcept = default;
PatternLibrary& PatternLibrary::operator=(PatternLibrary&&) noexcept = default;

bool PatternLibrary::add_file(std::shared_ptr<const dsl::SourceFile> file, dsl::Diagnostics& diags) {
  return impl_->add_file(file, diags);
}

std::optional<ir::Pattern> PatternLibrary::instantiate(std::shared_ptr<const dsl::SourceFile> expression,
                                                       dsl::Diagnostics& diags) const {
  auto ast = dsl::parse_pattern_expression(expression, diags);
  if (!ast) return std::nullopt;
  Scope scope = impl_->base_scope();
  scope.allow_run_time_values = false;
  scope.constant_context = "a pattern argument";
  std::vector<size_t> expanding;
  auto instance = impl_->expand(*ast, scope, diags, expanding);
  if (!instance) return std::nullopt;
  return finish(*instance, impl_->tensors);
}

std::optional<ir::Pattern> PatternLibrary::instantiate(const std::string& expression, dsl::Diagnostics& diags) const {
  return instantiate(std::make_shared<const dsl::SourceFile>("<pattern>", expression), diags);
}

const std::vector<Declaration>& PatternLibrary::declarations() const { return impl_->declarations; }

const Declaration* PatternLibrary::find(const std::string& name) const {
  auto it = impl_->index.find(name);
  return it == impl_->index.end() ? nullptr : &impl_->declarations[it->second];
}

std::vector<std::string> PatternLibrary::model_names() const {
  std::vector<std::string> names;
  for (const auto& m : impl_->models) {
    if (m.valid) names.push_back(m.decl->name);
  }
  return names;
}

const dsl::ast::ModelDecl* PatternLibrary::find_model(const std::string& name) const {
  auto it = impl_->model_index.find(name);
  if (it == impl_->model_index.end() || !impl_->models[it->second].valid) return nullptr;
  return impl_->models[it->second].decl;
}

namespace {

// An override's text as a value of `type`: "2", "-1", "1e-6", "0.5", "true"; nullopt if it is not one.
std::optional<ir::Value> parse_override(const std::string& text, ir::Type type) {
  ir::Value value;
  value.type = type;
  if (type == ir::Type::Bool) {
    if (text != "true" && text != "false") return std::nullopt;
    value.b = text == "true";
    return value;
  }
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  if (type == ir::Type::Int) {
    long long parsed = std::strtoll(text.c_str(), &end, 10);
    if (*end != '\0' || errno == ERANGE) return std::nullopt;
    value.i = parsed;
    return value;
  }
  double parsed = std::strtod(text.c_str(), &end);
  if (*end != '\0' || errno == ERANGE || !std::isfinite(parsed)) return std::nullopt;
  value.f = parsed;
  return value;
}

}  // namespace

std::optional<std::map<std::string, ir::Value>> PatternLibrary::model_arguments(
    const std::string& name, const std::map<std::string, std::string>& overrides, dsl::Diagnostics& diags) const {
  auto it = impl_->model_index.find(name);
  if (it == impl_->model_index.end() || !impl_->models[it->second].valid) {
    diags.error({}, fmt::format("unknown model '{}'{}", name, did_you_mean(name, model_names())));
    return std::nullopt;
  }
  const Impl::Model& model = impl_->models[it->second];
  bool ok = true;
  std::vector<std::string> names;
  for (const auto& p : model.params) names.push_back(p.name);
  // Each override gets a one-line buffer "NAME=VALUE" so its errors point at the offending part.
  std::map<std::string, SourceRange> override_where;
  for (const auto& [param, text] : overrides) {
    auto file = std::make_shared<const dsl::SourceFile>("<--set>", param + "=" + text);
    auto name_end = static_cast<uint32_t>(param.size());
    if (std::find(names.begin(), names.end(), param) == names.end()) {
      diags.error({file, 0, name_end},
                  fmt::format("model '{}' has no parameter '{}'{}", name, param, did_you_mean(param, names)));
      ok = false;
      continue;
    }
    override_where[param] = {file, name_end + 1, static_cast<uint32_t>(file->text().size())};
  }
  std::map<std::string, ir::Value> values;
  for (size_t p = 0; p < model.params.size(); ++p) {
    const Parameter& param = model.params[p];
    std::optional<ir::Value> value;
    SourceRange where = param.where;
    if (auto o = overrides.find(param.name); o != overrides.end()) {
      where = override_where.at(param.name);
      value = parse_override(o->second, param.type);  // an int is a valid float
      if (!value) {
        diags.error(where, fmt::format("parameter '{}' of model '{}' must be {}, got '{}'", param.name, name,
                                       ir::type_name(param.type), o->second));
        diags.note(param.where, fmt::format("parameter '{}' is declared here", param.name));
        ok = false;
        continue;
      }
      for (const auto& b : model.bounds[p]) {
        if (satisfies(*value, b)) continue;
        diags.error(where, fmt::format("parameter '{}' of model '{}' must be {}, got {}", param.name, name,
                                       bound_text(b), format_value(*value)));
        diags.note(param.where, fmt::format("parameter '{}' is declared here", param.name));
        ok = false;
      }
    } else if (param.default_value) {
      value = param.default_value;
    } else {
      diags.error(model.decl->name_where, fmt::format("model '{}' needs a value for its parameter '{}' (it has no "
                                                      "default): give one with --set {}=VALUE",
                                                      name, param.name, param.name));
      ok = false;
      continue;
    }
    values[param.name] = *value;
  }
  if (!ok) return std::nullopt;
  return values;
}

std::optional<ir::Pattern> PatternLibrary::instantiate(const dsl::ast::PatternExpr& expression,
                                                       const std::map<std::string, ir::Value>& params,
                                                       dsl::Diagnostics& diags) const {
  Scope scope = impl_->base_scope();
  scope.allow_run_time_values = false;
  scope.constant_context = "a pattern argument";
  for (const auto& [name, value] : params) scope.params[name] = {constant_expr(value), {}};
  std::vector<size_t> expanding;
  auto instance = impl_->expand(expression, scope, diags, expanding);
  if (!instance) return std::nullopt;
  return finish(*instance, impl_->tensors);
}

std::string PatternLibrary::ast_dump() const {
  std::string out;
  for (const auto& m : impl_->modules) out += fmt::format("// {}\n{}", m->file->name(), dsl::ast::dump(*m));
  return out;
}

}  // namespace tessera::sema
