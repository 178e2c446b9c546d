// Model elaboration: walks a `model` declaration's statements in order, binding names to graph nodes.
//
// Scopes: the model's top level, and one scope per layer of a stack (its carried value and its bindings), which
// also sees the top-level names bound before the stack. A stack is unrolled: its body is elaborated once per
// layer, with weight names prefixed "STACK.i.". Layers differ only in the pattern a pattern list picks for
// them, so the unrolling stops after the first layer with errors (later ones would only repeat them), and every
// entry of a pattern list is elaborated (and checked) the first time the list is met.
#include "compiler/sema/model_elaboration.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

#include "compiler/analysis/causal_in_time.h"
#include "compiler/sema/constant_folding.h"
#include "compiler/sema/expression_elaboration.h"
#include "compiler/sema/model_operators.h"
#include "compiler/sema/spelling.h"
#include "dsl/ast.h"

namespace tessera::sema {

namespace {

namespace ast = dsl::ast;
using dsl::Diagnostics;
using dsl::SourceRange;
using graph::Node;
using graph::OpKind;
using graph::ValueKind;

// Bounds that keep every size product (heads * head_dim, vocab * width) far from int64 overflow, and unrolling
// finite.
constexpr int64_t kMaxSize = INT32_MAX;
constexpr int64_t kMaxLayers = 4096;

// A name bound in a model: the node holding its value, or -1 when that value had errors (uses of the name are
// then not reported again).
struct NameBinding {
  int node = -1;
  SourceRange where;
};

// One scope: the model's top level, or one layer of a stack.
struct Frame {
  std::map<std::string, NameBinding> bound;
  // Every name the scope binds anywhere (first binding), to tell "used before it is bound" from "unknown".
  std::map<std::string, SourceRange> declared;
  std::string prefix;  // of weight names: "" at top level, "layer.3." in layer 3 of stack `layer`
  int layer = -1;      // the layer's index; -1 at top level
};

// The named arguments of one operator call, elaborated.
struct CallArgs {
  std::map<std::string, ir::Value> values;
  std::map<std::string, SourceRange> where;      // every argument given, by name
  const ast::ModelArgument* pattern = nullptr;   // `pattern = ...`
  std::vector<const ast::ModelArgument*> extra;  // attention: names not in its signature (sizes like R)
  bool has(const std::string& name) const { return values.count(name) != 0; }
};

// "token ids", "a sequence (seq[B, N, 384])", "pooled (pooled[B, 384])".
std::string describe(const Node& node) {
  switch (node.kind) {
    case ValueKind::TokenIds: return "token ids";
    case ValueKind::Sequence: return fmt::format("a sequence (seq[B, N, {}])", node.width);
    case ValueKind::Pooled: return fmt::format("pooled (pooled[B, {}])", node.width);
  }
  return "?";
}

std::string shape(const Node& node) {
  switch (node.kind) {
    case ValueKind::TokenIds: return "ids[B, N]";
    case ValueKind::Sequence: return fmt::format("seq[B, N, {}]", node.width);
    case ValueKind::Pooled: return fmt::format("pooled[B, {}]", node.width);
  }
  return "?";
}

// The source text of a value, for messages: `word + position`; "this value" when it spans lines or is long.
std::string text_of(const SourceRange& where) {
  if (!where.valid() || where.end <= where.begin) return "this value";
  std::string text = where.file->text().substr(where.begin, where.end - where.begin);
  if (text.find('\n') != std::string::npos || text.size() > 60) return "this value";
  return text;
}

class ModelElaborator {
 public:
  ModelElaborator(const PatternLibrary& library, const ast::ModelDecl& decl, std::map<std::string, ir::Value> params,
                  Diagnostics& diags)
      : library_(library), decl_(decl), params_(std::move(params)), diags_(diags) {
    param_scope_.allow_run_time_values = false;
    param_scope_.constant_context = "a model argument";
    for (const auto& p : decl_.params) {
      if (auto it = params_.find(p.name); it != params_.end()) {
        // No source range on the value: an error about it (a zero divisor) points at the use, not the declaration.
        param_scope_.params[p.name] = {constant_expr(it->second), p.where};
      }
    }
  }

  std::optional<graph::Graph> run() {
    int errors_before = diags_.error_count();
    graph_.name = decl_.name;
    graph_.where = decl_.where;
    collect_names();
    create_inputs();
    for (const auto& s : decl_.body) {
      switch (s.kind) {
        case ast::ModelStatementKind::Input: input(s); break;
        case ast::ModelStatementKind::Bind: bind(s, top_); break;
        case ast::ModelStatementKind::Stack: stack(s); break;
        case ast::ModelStatementKind::Output: output(s); break;
        case ast::ModelStatementKind::Return: break;  // the parser allows it only in a stack
      }
    }
    if (graph_.inputs.empty()) {
      diags_.error(decl_.name_where,
                   fmt::format("model '{}' has no input; declare one with `input tokens;`", decl_.name));
    }
    if (!output_statement_) {
      diags_.error(decl_.name_where, fmt::format("model '{}' has no output; end it with `output VALUE;`", decl_.name));
    }
    if (diags_.error_count() > errors_before) return std::nullopt;
    return std::move(graph_);
  }

 private:
  // ---- names ----

  void collect_names() {
    for (const auto& s : decl_.body) {
      if (s.kind == ast::ModelStatementKind::Output || s.kind == ast::ModelStatementKind::Return) continue;
      top_.declared.emplace(s.name, s.name_where);
      if (s.kind != ast::ModelStatementKind::Stack) continue;
      std::map<std::string, SourceRange>& inner = stack_declared_[&s];
      inner.emplace(s.carried, s.carried_where);
      for (const auto& b : s.body) {
        if (b.kind == ast::ModelStatementKind::Bind) inner.emplace(b.name, b.name_where);
      }
      for (const auto& [name, _] : inner) stack_members_.emplace(name, s.name);
    }
  }

  // Input nodes come first in the graph, in declaration order; each name is bound at its own statement.
  void create_inputs() {
    for (const auto& s : decl_.body) {
      if (s.kind != ast::ModelStatementKind::Input || input_nodes_.count(s.name)) continue;
      Node node;
      node.op = OpKind::Input;
      node.name = s.name;
      node.input_name = s.name;
      node.kind = ValueKind::TokenIds;
      node.where = s.where;
      input_nodes_[s.name] = add_node(std::move(node));
    }
  }

  // Reports a duplicate binding of `name` in `frame`; returns whether it was one.
  bool duplicate(const Frame& frame, const std::string& name, const SourceRange& where) {
    auto it = frame.bound.find(name);
    if (it == frame.bound.end()) return false;
    diags_.error(where, fmt::format("duplicate binding '{}': names are bound once in a scope", name));
    diags_.note(it->second.where, fmt::format("'{}' was first bound here", name));
    return true;
  }

  std::optional<int> lookup(const std::string& name, const SourceRange& where, const Frame& frame) {
    std::vector<const Frame*> scopes{&frame};
    if (&frame != &top_) scopes.push_back(&top_);
    for (const Frame* f : scopes) {
      if (auto it = f->bound.find(name); it != f->bound.end()) {
        if (it->second.node < 0) return std::nullopt;  // its value had errors, already reported
        return it->second.node;
      }
    }
    for (const Frame* f : scopes) {
      if (auto it = f->declared.find(name); it != f->declared.end()) {
        diags_.error(where, fmt::format("'{}' is used before it is bound", name));
        diags_.note(it->second, fmt::format("'{}' is bound here", name));
        return std::nullopt;
      }
    }
    if (auto it = stack_members_.find(name); it != stack_members_.end()) {
      diags_.error(where, fmt::format("unknown name '{}': it is bound inside stack '{}' and not visible here (after "
                                      "the stack, '{}' names its last layer's result)",
                                      name, it->second, it->second));
      return std::nullopt;
    }
    if (params_.count(name)) {
      diags_.error(where, fmt::format("'{}' is a parameter of model '{}', not a value; parameters are used in named "
                                      "arguments, as in `out = {}`",
                                      name, decl_.name, name));
      return std::nullopt;
    }
    if (find_operator(name)) {
      diags_.error(where, fmt::format("'{}' is an operator, not a value; call it, as in `{}(x)`", name, name));
      return std::nullopt;
    }
    std::vector<std::string> visible;
    for (const Frame* f : scopes) {
      for (const auto& [n, _] : f->bound) visible.push_back(n);
    }
    diags_.error(where, fmt::format("unknown name '{}'{}", name, did_you_mean(name, visible)));
    return std::nullopt;
  }

  // ---- statements ----

  void input(const ast::ModelStatement& s) {
    if (duplicate(top_, s.name, s.name_where)) return;
    top_.bound[s.name] = {input_nodes_.at(s.name), s.name_where};
    graph_.inputs.push_back(s.name);
  }

  void bind(const ast::ModelStatement& s, Frame& frame) {
    if (duplicate(frame, s.name, s.name_where)) {
      value(*s.value, frame, frame.prefix + s.name);  // its own errors are still worth reporting
      return;
    }
    auto node = value(*s.value, frame, frame.prefix + s.name);
    frame.bound[s.name] = {node.value_or(-1), s.name_where};
  }

  void output(const ast::ModelStatement& s) {
    if (output_statement_) {
      diags_.error(s.where, fmt::format("model '{}' has more than one output", decl_.name));
      diags_.note(output_statement_->where, "the first output is here");
      return;
    }
    output_statement_ = &s;
    auto node = value(*s.value, top_, "");
    if (!node) return;
    if (graph_.nodes[static_cast<size_t>(*node)].kind == ValueKind::TokenIds) {
      diags_.error(s.value->where, fmt::format("the output of model '{}' is token ids; a model outputs a sequence or "
                                               "a pooled value",
                                               decl_.name));
      return;
    }
    graph_.output = *node;
  }

  void stack(const ast::ModelStatement& s) {
    if (s.body.empty() || s.body.back().kind != ast::ModelStatementKind::Return) return;  // the parser ensures it
    bool is_duplicate = duplicate(top_, s.name, s.name_where);
    int errors_before = diags_.error_count();
    auto count = constant(*s.count, ir::Type::Int, fmt::format("the layer count of stack '{}'", s.name));
    if (count && count->i < 1) {
      diags_.error(s.count->where, fmt::format("stack '{}' needs at least 1 layer, got {}", s.name, count->i));
      count.reset();
    } else if (count && count->i > kMaxLayers) {
      diags_.error(s.count->where,
                   fmt::format("stack '{}' has {} layers; at most {} are supported", s.name, count->i, kMaxLayers));
      count.reset();
    }
    auto initial = value(*s.value, top_, "");
    // With a faulty count, one layer is still elaborated to report the body's own errors.
    int64_t layers = count ? count->i : 1;
    int current = initial.value_or(-1);
    const ast::ModelStatement* result_statement = &s.body.back();
    for (int64_t i = 0; i < layers; ++i) {
      Frame frame;
      frame.prefix = fmt::format("{}.{}.", s.name, i);
      frame.layer = static_cast<int>(i);
      frame.declared = stack_declared_.at(&s);
      frame.bound[s.carried] = {current, s.carried_where};
      int result = -1;
      for (const auto& b : s.body) {
        if (b.kind == ast::ModelStatementKind::Bind) bind(b, frame);
        if (b.kind == ast::ModelStatementKind::Return) result = value(*b.value, frame, "").value_or(-1);
      }
      if (i == 0 && result >= 0 && current >= 0) {
        const Node& in = graph_.nodes[static_cast<size_t>(current)];
        const Node& out = graph_.nodes[static_cast<size_t>(result)];
        if (in.kind != out.kind || in.width != out.width) {
          diags_.error(result_statement->value->where,
                       fmt::format("stack '{}' returns {} but its carried value '{}' starts as {}; each layer must "
                                   "return what the next one takes",
                                   s.name, shape(out), s.carried, shape(in)));
        }
      }
      current = result;
      if (diags_.error_count() > errors_before) break;
    }
    if (!is_duplicate) {
      bool ok = diags_.error_count() == errors_before;
      top_.bound[s.name] = {ok ? current : -1, s.name_where};
    }
  }

  // ---- values ----

  int add_node(Node node) {
    graph_.nodes.push_back(std::move(node));
    return static_cast<int>(graph_.nodes.size()) - 1;
  }

  const Node& node_at(int index) const { return graph_.nodes[static_cast<size_t>(index)]; }

  // The node computing `v`. `binding` is the weight prefix when `v` is the whole right-hand side of a binding
  // (a new node takes it as its name), empty otherwise.
  std::optional<int> value(const ast::ModelValue& v, const Frame& frame, const std::string& binding) {
    switch (v.kind) {
      case ast::ModelValueKind::Name: return lookup(v.name, v.where, frame);
      case ast::ModelValueKind::Number:
        diags_.error(v.where, "a number is not a value on its own; numbers scale values, as in `2.0 * x`");
        return std::nullopt;
      case ast::ModelValueKind::Add:
      case ast::ModelValueKind::Mul: return binary(v, frame, binding);
      case ast::ModelValueKind::Call: return call(v, frame, binding);
    }
    return std::nullopt;
  }

  // A constant of `type` (an int is accepted for a float) over the model's parameters.
  std::optional<ir::Value> constant(const ast::Expr& e, ir::Type type, const std::string& what) {
    ir::Expr value = elaborate_expression(e, param_scope_, diags_);
    if (!value) return std::nullopt;
    if (type == ir::Type::Float) value = promote_to_float(value);
    if (value->type != type) {
      diags_.error(e.where,
                   fmt::format("{} must be {}, got {}", what, ir::type_name(type), ir::type_name(value->type)));
      return std::nullopt;
    }
    if (report_constant_division_by_zero(value, diags_)) return std::nullopt;
    auto result = constant_value(value);
    if (!result) {
      diags_.error(e.where, fmt::format("{} must be a constant expression", what));
      return std::nullopt;
    }
    if (result->type == ir::Type::Float && !std::isfinite(result->f)) {
      diags_.error(e.where, fmt::format("{} must be finite, got {}", what, format_value(*result)));
      return std::nullopt;
    }
    return result;
  }

  // Reports a value of a kind `op` cannot take; returns whether `node` is one of `allowed`.
  bool expect_kind(int node, std::initializer_list<ValueKind> allowed, const char* op, const ast::ModelValue& v) {
    const Node& n = node_at(node);
    if (std::find(allowed.begin(), allowed.end(), n.kind) != allowed.end()) return true;
    bool ids = std::find(allowed.begin(), allowed.end(), ValueKind::TokenIds) != allowed.end();
    bool seq = std::find(allowed.begin(), allowed.end(), ValueKind::Sequence) != allowed.end();
    bool pooled = std::find(allowed.begin(), allowed.end(), ValueKind::Pooled) != allowed.end();
    std::string needs = ids && seq      ? "token ids or a sequence"
                        : ids           ? "token ids"
                        : seq && pooled ? "a sequence or a pooled value"
                                        : "a sequence";
    std::string actual = describe(n);
    if (n.kind == ValueKind::Pooled && !pooled && !ids) actual = fmt::format("already pooled (pooled[B, {}])", n.width);
    diags_.error(v.where, fmt::format("{} needs {}, but `{}` is {}", op, needs, text_of(v.where), actual));
    return false;
  }

  int new_node(OpKind op, std::vector<int> inputs, ValueKind kind, int64_t width, const std::string& name,
               const SourceRange& where) {
    Node node;
    node.op = op;
    node.inputs = std::move(inputs);
    node.kind = kind;
    node.width = width;
    node.name = name;
    node.where = where;
    return add_node(std::move(node));
  }

  std::optional<int> binary(const ast::ModelValue& v, const Frame& frame, const std::string& binding) {
    const ast::ModelValue& lhs = *v.operands[0];
    const ast::ModelValue& rhs = *v.operands[1];
    bool is_add = v.kind == ast::ModelValueKind::Add;
    bool lhs_number = lhs.kind == ast::ModelValueKind::Number;
    bool rhs_number = rhs.kind == ast::ModelValueKind::Number;
    if (!is_add && lhs_number && rhs_number) {
      diags_.error(v.where, "'*' of two numbers: one side must be a value (numbers scale values, as in `2.0 * x`)");
      return std::nullopt;
    }
    if (!is_add && (lhs_number || rhs_number))
      return scale(lhs_number ? lhs : rhs, lhs_number ? rhs : lhs, frame, v, binding);
    const char* symbol = is_add ? "+" : "*";
    auto a = value(lhs, frame, "");
    auto b = value(rhs, frame, "");
    if (!a || !b) return std::nullopt;
    std::string needs = fmt::format("'{}'", symbol);
    if (!expect_kind(*a, {ValueKind::Sequence, ValueKind::Pooled}, needs.c_str(), lhs) ||
        !expect_kind(*b, {ValueKind::Sequence, ValueKind::Pooled}, needs.c_str(), rhs)) {
      return std::nullopt;
    }
    const Node& x = node_at(*a);
    const Node& y = node_at(*b);
    if (x.kind != y.kind) {
      diags_.error(v.where, fmt::format("operands of '{}' must both be sequences or both be pooled, but `{}` is {} "
                                        "and `{}` is {}",
                                        symbol, text_of(lhs.where), shape(x), text_of(rhs.where), shape(y)));
      return std::nullopt;
    }
    if (x.width != y.width) {
      diags_.error(v.where, fmt::format("width mismatch in '{}': `{}` has width {} and `{}` has width {}", symbol,
                                        text_of(lhs.where), x.width, text_of(rhs.where), y.width));
      return std::nullopt;
    }
    return new_node(is_add ? OpKind::Add : OpKind::Mul, {*a, *b}, x.kind, x.width, binding, v.where);
  }

  std::optional<int> scale(const ast::ModelValue& number, const ast::ModelValue& operand, const Frame& frame,
                           const ast::ModelValue& v, const std::string& binding) {
    auto factor = constant(*number.number, ir::Type::Float, "a scale factor");
    auto x = value(operand, frame, "");
    if (!factor || !x) return std::nullopt;
    if (!expect_kind(*x, {ValueKind::Sequence, ValueKind::Pooled}, "'*'", operand)) return std::nullopt;
    int node = new_node(OpKind::Scale, {*x}, node_at(*x).kind, node_at(*x).width, binding, v.where);
    graph_.nodes[static_cast<size_t>(node)].factor = factor->f;
    return node;
  }

  // ---- operator calls ----

  std::optional<int> call(const ast::ModelValue& v, const Frame& frame, const std::string& binding) {
    const OperatorSignature* sig = find_operator(v.name);
    if (!sig) {
      diags_.error(v.name_where,
                   fmt::format("unknown operator '{}'{}", v.name, did_you_mean(v.name, operator_names())));
      return std::nullopt;
    }
    bool ok = true;
    if (sig->has_weights && binding.empty()) {
      diags_.error(v.where,
                   fmt::format("`{}` has weights and must be bound to a name, e.g. `proj = {}(...)`", v.name, v.name));
      ok = false;
    }
    std::vector<int> inputs;
    std::vector<const ast::ModelValue*> input_values;
    bool named_seen = false;
    for (const auto& arg : v.args) {
      if (arg.kind != ast::ModelArgumentKind::Positional) {
        named_seen = true;
        continue;
      }
      if (named_seen) {
        diags_.error(arg.where, "positional argument after a named argument");
        ok = false;
        continue;
      }
      input_values.push_back(arg.value.get());
      auto node = value(*arg.value, frame, "");
      ok &= node.has_value();
      inputs.push_back(node.value_or(-1));
    }
    if (input_values.size() < sig->min_values || input_values.size() > sig->max_values) {
      std::string expected = sig->min_values == sig->max_values
                                 ? fmt::format("{}", sig->min_values)
                                 : fmt::format("{} or {}", sig->min_values, sig->max_values);
      diags_.error(v.where, fmt::format("{} takes {} value{} ({}), got {}", v.name, expected,
                                        sig->max_values == 1 ? "" : "s", sig->form, input_values.size()));
      ok = false;
    }
    auto args = named_args(v, *sig);
    if (!ok || !args) return std::nullopt;
    switch (sig->op) {
      case OpKind::Embedding: return embedding(v, inputs, *args, binding);
      case OpKind::LearnedPositions:
      case OpKind::SinusoidalPositions: return positions(v, *sig, inputs, *args, binding);
      case OpKind::SegmentEmbedding: return segment_embedding(v, inputs, *args, binding);
      case OpKind::LayerNorm:
      case OpKind::RMSNorm: return norm(v, *sig, inputs, *args, binding);
      case OpKind::Linear: return linear(v, inputs, *args, binding);
      case OpKind::Attention: return attention(v, frame, inputs, *args, binding);
      case OpKind::MeanPool:
      case OpKind::ClsPool:
        if (!expect_kind(inputs[0], {ValueKind::Sequence}, sig->name, *input_values[0])) return std::nullopt;
        return new_node(sig->op, inputs, ValueKind::Pooled, node_at(inputs[0]).width, binding, v.where);
      case OpKind::Unembed: return unembed(v, inputs, binding);
      default:  // elementwise: relu, gelu, gelu_tanh, silu, normalize
        if (!expect_kind(inputs[0], {ValueKind::Sequence, ValueKind::Pooled}, sig->name, *input_values[0])) {
          return std::nullopt;
        }
        return new_node(sig->op, inputs, node_at(inputs[0]).kind, node_at(inputs[0]).width, binding, v.where);
    }
  }

  std::optional<CallArgs> named_args(const ast::ModelValue& v, const OperatorSignature& sig) {
    CallArgs args;
    bool ok = true;
    std::vector<std::string> names;
    for (const auto& a : sig.args) names.emplace_back(a.name);
    for (const auto& arg : v.args) {
      if (arg.kind == ast::ModelArgumentKind::Positional) continue;
      auto spec =
          std::find_if(sig.args.begin(), sig.args.end(), [&](const OperatorArg& a) { return arg.name == a.name; });
      if (auto first = args.where.find(arg.name); first != args.where.end()) {
        diags_.error(arg.where, fmt::format("duplicate argument '{}' of {}", arg.name, sig.name));
        diags_.note(first->second, "it was first given here");
        ok = false;
        continue;
      }
      args.where[arg.name] = arg.where;
      if (spec == sig.args.end()) {
        if (sig.op == OpKind::Attention && arg.kind == ast::ModelArgumentKind::Named) {
          args.extra.push_back(&arg);  // a size its pattern's tensors may need; checked with the pattern
          continue;
        }
        diags_.error(arg.name_where,
                     fmt::format("{} has no argument '{}'{}", sig.name, arg.name, did_you_mean(arg.name, names)));
        ok = false;
        continue;
      }
      if (spec->type == OperatorArgType::Pattern) {
        args.pattern = &arg;
        continue;
      }
      ir::Type type = spec->type == OperatorArgType::Int     ? ir::Type::Int
                      : spec->type == OperatorArgType::Float ? ir::Type::Float
                                                             : ir::Type::Bool;
      auto value = constant(*arg.expr, type, fmt::format("argument '{}' of {}", arg.name, sig.name));
      if (!value) {
        ok = false;
        continue;
      }
      args.values[arg.name] = *value;
    }
    for (const auto& a : sig.args) {
      if (a.required && !args.where.count(a.name)) {
        diags_.error(v.where, fmt::format("missing argument '{}' of {}", a.name, sig.form));
        ok = false;
      }
    }
    if (!ok) return std::nullopt;
    return args;
  }

  // An int argument that is a size: at least 1 (and small enough that products of sizes cannot overflow).
  std::optional<int64_t> size_arg(const CallArgs& args, const std::string& name, const char* op) {
    int64_t value = args.values.at(name).i;
    if (value >= 1 && value <= kMaxSize) return value;
    diags_.error(args.where.at(name),
                 value < 1 ? fmt::format("argument '{}' of {} must be >= 1, got {}", name, op, value)
                           : fmt::format("argument '{}' of {} must be at most {}, got {}", name, op, kMaxSize, value));
    return std::nullopt;
  }

  static const ast::ModelValue& input_value(const ast::ModelValue& call, size_t i) {
    size_t seen = 0;
    for (const auto& arg : call.args) {
      if (arg.kind != ast::ModelArgumentKind::Positional) continue;
      if (seen++ == i) return *arg.value;
    }
    return call;
  }

  Node& node_ref(int index) { return graph_.nodes[static_cast<size_t>(index)]; }

  std::optional<int> embedding(const ast::ModelValue& v, const std::vector<int>& inputs, const CallArgs& args,
                               const std::string& binding) {
    bool ok = expect_kind(inputs[0], {ValueKind::TokenIds}, "embedding", input_value(v, 0));
    auto vocab = size_arg(args, "vocab", "embedding");
    auto width = size_arg(args, "width", "embedding");
    if (!ok || !vocab || !width) return std::nullopt;
    int node = new_node(OpKind::Embedding, inputs, ValueKind::Sequence, *width, binding, v.where);
    node_ref(node).vocab = *vocab;
    node_ref(node).weights = {{binding + ".weight", {*vocab, *width}}};
    return node;
  }

  // learned_positions and sinusoidal_positions: token ids or a sequence (only its length matters) in, a table of
  // positions out; `width` is required for ids and defaults to the sequence's width.
  std::optional<int> positions(const ast::ModelValue& v, const OperatorSignature& sig, const std::vector<int>& inputs,
                               const CallArgs& args, const std::string& binding) {
    bool ok = expect_kind(inputs[0], {ValueKind::TokenIds, ValueKind::Sequence}, sig.name, input_value(v, 0));
    std::optional<int64_t> width;
    if (args.has("width")) {
      width = size_arg(args, "width", sig.name);
      ok &= width.has_value();
    } else if (ok && node_at(inputs[0]).kind == ValueKind::TokenIds) {
      diags_.error(v.where, fmt::format("{} of token ids needs `width = INT`: `{}` has no width to take", sig.name,
                                        text_of(input_value(v, 0).where)));
      ok = false;
    } else if (ok) {
      width = node_at(inputs[0]).width;
    }
    std::optional<int64_t> length;
    if (sig.op == OpKind::LearnedPositions) {
      length = size_arg(args, "length", sig.name);
      ok &= length.has_value();
    }
    if (!ok) return std::nullopt;
    int node = new_node(sig.op, inputs, ValueKind::Sequence, *width, binding, v.where);
    if (length) {
      node_ref(node).length = *length;
      node_ref(node).weights = {{binding + ".weight", {*length, *width}}};
    }
    return node;
  }

  std::optional<int> segment_embedding(const ast::ModelValue& v, const std::vector<int>& inputs, const CallArgs& args,
                                       const std::string& binding) {
    bool ok = expect_kind(inputs[0], {ValueKind::TokenIds}, "segment_embedding", input_value(v, 0));
    auto types = size_arg(args, "types", "segment_embedding");
    auto width = size_arg(args, "width", "segment_embedding");
    if (!ok || !types || !width) return std::nullopt;
    int node = new_node(OpKind::SegmentEmbedding, inputs, ValueKind::Sequence, *width, binding, v.where);
    node_ref(node).types = *types;
    node_ref(node).weights = {{binding + ".weight", {*types, *width}}};
    return node;
  }

  std::optional<int> norm(const ast::ModelValue& v, const OperatorSignature& sig, const std::vector<int>& inputs,
                          const CallArgs& args, const std::string& binding) {
    if (!expect_kind(inputs[0], {ValueKind::Sequence, ValueKind::Pooled}, sig.name, input_value(v, 0))) {
      return std::nullopt;
    }
    bool layer_norm = sig.op == OpKind::LayerNorm;
    double eps = args.has("eps") ? args.values.at("eps").f : layer_norm ? 1e-5 : 1e-6;
    if (eps < 0) {
      diags_.error(args.where.at("eps"), fmt::format("argument 'eps' of {} must be >= 0, got {}", sig.name,
                                                     format_value(args.values.at("eps"))));
      return std::nullopt;
    }
    // Copied: new_node may move every node (a reference into the graph would dangle).
    const ValueKind kind = node_at(inputs[0]).kind;
    const int64_t width = node_at(inputs[0]).width;
    int node = new_node(sig.op, inputs, kind, width, binding, v.where);
    node_ref(node).eps = eps;
    node_ref(node).weights.push_back({binding + ".weight", {width}});
    if (layer_norm) node_ref(node).weights.push_back({binding + ".bias", {width}});
    return node;
  }

  std::optional<int> linear(const ast::ModelValue& v, const std::vector<int>& inputs, const CallArgs& args,
                            const std::string& binding) {
    bool ok = expect_kind(inputs[0], {ValueKind::Sequence, ValueKind::Pooled}, "linear", input_value(v, 0));
    auto out = size_arg(args, "out", "linear");
    if (!ok || !out) return std::nullopt;
    const int64_t in_width = node_at(inputs[0]).width;
    int node = new_node(OpKind::Linear, inputs, node_at(inputs[0]).kind, *out, binding, v.where);
    Node& n = node_ref(node);
    n.has_bias = args.has("bias") ? args.values.at("bias").b : true;
    n.weights.push_back({binding + ".weight", {*out, in_width}});
    if (n.has_bias) n.weights.push_back({binding + ".bias", {*out}});
    return node;
  }

  std::optional<int> unembed(const ast::ModelValue& v, const std::vector<int>& inputs, const std::string& binding) {
    const ast::ModelValue& table_value = input_value(v, 1);
    bool ok = expect_kind(inputs[0], {ValueKind::Sequence, ValueKind::Pooled}, "unembed", input_value(v, 0));
    const Node& table = node_at(inputs[1]);
    if (table.op != OpKind::Embedding) {
      diags_.error(table_value.where,
                   fmt::format("unembed needs an `embedding` binding as its second argument (its table is the output "
                               "matrix), but `{}` is {}",
                               text_of(table_value.where),
                               table.op == OpKind::Input ? std::string("an input")
                                                         : fmt::format("computed by `{}`", graph::op_name(table.op))));
      return std::nullopt;
    }
    if (!ok) return std::nullopt;
    const Node& x = node_at(inputs[0]);
    if (x.width != table.width) {
      diags_.error(v.where,
                   fmt::format("unembed: `{}` has width {} but the table of `{}` has width {}",
                               text_of(input_value(v, 0).where), x.width, text_of(table_value.where), table.width));
      return std::nullopt;
    }
    const int64_t vocab = table.vocab;
    int node = new_node(OpKind::Unembed, {inputs[0]}, x.kind, vocab, binding, v.where);
    node_ref(node).vocab = vocab;
    node_ref(node).tied = inputs[1];
    return node;
  }

  // ---- attention ----

  // The patterns `arg` gives (one, or one per entry of a list), elaborated once per call site.
  const std::vector<std::optional<ir::Pattern>>& patterns_of(const ast::ModelArgument* arg) {
    auto cached = patterns_.find(arg);
    if (cached != patterns_.end()) return cached->second;
    std::vector<std::optional<ir::Pattern>>& out = patterns_[arg];
    if (!arg) {
      out.push_back(library_.instantiate(std::string("full"), diags_));
    } else {
      for (const auto& p : arg->patterns) out.push_back(library_.instantiate(*p, params_, diags_));
    }
    return out;
  }

  // The shape of weight `tensor` (a float tensor a pattern reads) with its dimensions bound, or nullopt after
  // reporting a dimension that cannot be bound.
  std::optional<std::vector<int64_t>> tensor_weight_shape(const ir::TensorDecl& tensor, const ir::Pattern& pattern,
                                                          int64_t heads, int64_t kv_heads, int64_t head_dim,
                                                          const std::map<std::string, int64_t>& sizes,
                                                          const ast::ModelValue& v) {
    std::vector<int64_t> shape;
    std::string declared = fmt::format("{}[{}]", ir::elem_type_name(tensor.elem_type), fmt::join(tensor.dims, ", "));
    for (const auto& d : tensor.dims) {
      if (d == "H") {
        shape.push_back(heads);
      } else if (d == "Hkv") {
        shape.push_back(kv_heads);
      } else if (d == "D" || d == "Dv") {
        shape.push_back(head_dim);
      } else if (ir::is_attention_size(d)) {
        diags_.error(v.where, fmt::format("pattern '{}' reads the float tensor '{}' ({}), which would be a weight of "
                                          "this attention, but its dimension {} is a run-time size; a weight's sizes "
                                          "must be fixed (H, Hkv, D, Dv or a named size such as R)",
                                          pattern.name, tensor.name, declared, d));
        return std::nullopt;
      } else if (auto it = sizes.find(d); it != sizes.end()) {
        shape.push_back(it->second);
      } else {
        diags_.error(v.where, fmt::format("attention with pattern '{}' needs `{} = INT`: the size {} of its weight "
                                          "'{}' ({})",
                                          pattern.name, d, d, tensor.name, declared));
        return std::nullopt;
      }
    }
    return shape;
  }

  // `rotary = true` (with optional rotary_base > 0 and an even rotary_dims <= head_dim): see graph::Node::rotary.
  bool rotary_embedding(Node& n, const CallArgs& args, bool cross) {
    n.rotary = args.has("rotary") && args.values.at("rotary").b;
    for (const char* name : {"rotary_base", "rotary_dims"}) {
      if (args.has(name) && !n.rotary) {
        diags_.error(args.where.at(name),
                     fmt::format("'{}' is an argument of rotary position embeddings: it needs `rotary = true`", name));
        return false;
      }
    }
    if (!n.rotary) return true;
    if (cross) {
      // A query and a key are rotated by their positions in one sequence; an encoder's keys have positions in
      // another, and the rotation would relate positions that do not share an origin.
      diags_.error(args.where.at("rotary"),
                   "rotary position embeddings need self-attention: cross-attention's keys "
                   "come from another sequence");
      return false;
    }
    n.rotary_dims = n.head_dim;
    if (args.has("rotary_dims")) {
      const int64_t dims = args.values.at("rotary_dims").i;
      if (dims < 2 || dims > n.head_dim || dims % 2 != 0) {
        diags_.error(args.where.at("rotary_dims"),
                     fmt::format("rotary_dims must be even and between 2 and head_dim ({}), got {}", n.head_dim, dims));
        return false;
      }
      n.rotary_dims = dims;
    } else if (n.head_dim % 2 != 0) {
      diags_.error(args.where.at("rotary"),
                   fmt::format("rotary position embeddings rotate feature pairs: head_dim ({}) is odd; give an even "
                               "rotary_dims",
                               n.head_dim));
      return false;
    }
    if (args.has("rotary_base")) {
      const double base = args.values.at("rotary_base").f;
      if (!(base > 0.0) || !std::isfinite(base)) {
        diags_.error(args.where.at("rotary_base"),
                     fmt::format("rotary_base must be positive and finite, got {}", base));
        return false;
      }
      n.rotary_base = base;
    }
    return true;
  }

  // `evolving = true` (with optional alpha, beta in [0, 1]): the node's kind, its weights and the earlier evolving
  // layer of the same kind whose map it takes.
  bool evolving_layer(int node, const CallArgs& args, bool cross) {
    const bool evolving = args.has("evolving") && args.values.at("evolving").b;
    for (const char* name : {"alpha", "beta"}) {
      if (args.has(name) && !evolving) {
        diags_.error(args.where.at(name), fmt::format("'{}' is an argument of evolving attention: it needs "
                                                      "`evolving = true`",
                                                      name));
        return false;
      }
    }
    if (!evolving) return true;
    Node& n = node_ref(node);
    n.evolving = cross              ? graph::EvolvingKind::Cross
                 : n.causal_in_time ? graph::EvolvingKind::Decoder
                                    : graph::EvolvingKind::Encoder;
    for (const char* name : {"alpha", "beta"}) {
      if (!args.has(name)) continue;
      const double value = args.values.at(name).f;
      if (!(value >= 0.0 && value <= 1.0)) {
        diags_.error(args.where.at(name), fmt::format("{} must be between 0 and 1, got {}", name, value));
        return false;
      }
      (std::string(name) == "alpha" ? n.evolving_alpha : n.evolving_beta) = value;
    }
    if (ir::beyond_dot_product_softmax(*n.pattern)) {
      diags_.error(args.where.at("evolving"), fmt::format("evolving attention runs softmax attention with scaled or "
                                                          "plain dot-product scoring; pattern '{}' is not one",
                                                          n.pattern->name));
      return false;
    }
    n.weights.push_back({n.name + ".evolving.weight", {n.heads, n.heads, 3, 3}});
    n.weights.push_back({n.name + ".evolving.bias", {n.heads}});
    for (int earlier = node - 1; earlier >= 0; --earlier) {
      const Node& e = graph_.nodes[static_cast<size_t>(earlier)];
      if (e.op != OpKind::Attention || e.evolving != n.evolving) continue;
      if (e.heads != n.heads) {
        diags_.error(args.where.at("evolving"),
                     fmt::format("this {} evolving attention has {} heads but the one before it ({}) has {}: the "
                                 "maps handed from layer to layer must have the same heads",
                                 graph::evolving_kind_name(*n.evolving), n.heads, e.name, e.heads));
        return false;
      }
      n.evolving_previous = earlier;
      break;
    }
    return true;
  }

  std::optional<int> attention(const ast::ModelValue& v, const Frame& frame, const std::vector<int>& inputs,
                               const CallArgs& args, const std::string& binding) {
    bool ok = expect_kind(inputs[0], {ValueKind::Sequence}, "attention", input_value(v, 0));
    if (inputs.size() > 1) {
      const Node& context = node_at(inputs[1]);
      if (context.kind != ValueKind::Sequence) {
        const ast::ModelValue& c = input_value(v, 1);
        diags_.error(c.where,
                     context.kind == ValueKind::TokenIds
                         ? fmt::format("cross-attention needs an encoder output: `{}` is token ids", text_of(c.where))
                         : fmt::format("cross-attention needs an encoder output (a sequence): `{}` is {}",
                                       text_of(c.where), describe(context)));
        ok = false;
      }
    }
    auto heads = size_arg(args, "heads", "attention");
    std::optional<int64_t> kv_heads = heads;
    if (args.has("kv_heads")) kv_heads = size_arg(args, "kv_heads", "attention");
    std::optional<int64_t> head_dim;
    if (args.has("head_dim")) head_dim = size_arg(args, "head_dim", "attention");
    ok &= heads && kv_heads && (head_dim || !args.has("head_dim"));
    if (!ok) return std::nullopt;
    if (*heads % *kv_heads != 0) {
      diags_.error(args.where.at("kv_heads"),
                   fmt::format("kv_heads ({}) must divide heads ({}): each kv head serves a group of query heads",
                               *kv_heads, *heads));
      return std::nullopt;
    }
    const Node& x = node_at(inputs[0]);
    int64_t width = x.width;
    int64_t context_width = inputs.size() > 1 ? node_at(inputs[1]).width : width;
    if (!head_dim) {
      if (width % *heads != 0) {
        diags_.error(args.where.at("heads"), fmt::format("heads ({}) must divide the width ({}) when head_dim is not "
                                                         "given",
                                                         *heads, width));
        return std::nullopt;
      }
      head_dim = width / *heads;
    }

    // The pattern: one, or the entry of a list for this layer.
    if (args.pattern && args.pattern->kind == ast::ModelArgumentKind::PatternList && frame.layer < 0) {
      diags_.error(args.pattern->where,
                   "a pattern list gives one pattern per layer of a stack; outside a stack, give "
                   "one pattern");
      return std::nullopt;
    }
    const auto& entries = patterns_of(args.pattern);
    bool entries_ok = std::all_of(entries.begin(), entries.end(), [](const auto& p) { return p.has_value(); });
    if (!entries_ok) return std::nullopt;

    // Sizes the patterns' float tensors need (R = 64); any other extra argument is unknown.
    std::set<std::string> needed;
    for (const auto& p : entries) {
      for (const auto& t : p->inputs) {
        if (t.elem_type != ir::ElemType::Float32) continue;
        for (const auto& d : t.dims) {
          if (!ir::is_attention_size(d)) needed.insert(d);
        }
      }
    }
    std::map<std::string, int64_t> sizes;
    for (const ast::ModelArgument* extra : args.extra) {
      if (!needed.count(extra->name)) {
        std::vector<std::string> names(needed.begin(), needed.end());
        for (const auto& a : find_operator("attention")->args) names.emplace_back(a.name);
        diags_.error(extra->name_where,
                     fmt::format("attention has no argument '{}'{}", extra->name, did_you_mean(extra->name, names)));
        ok = false;
        continue;
      }
      auto value = constant(*extra->expr, ir::Type::Int, fmt::format("argument '{}' of attention", extra->name));
      if (!value) {
        ok = false;
        continue;
      }
      if (value->i < 1 || value->i > kMaxSize) {
        diags_.error(extra->where, fmt::format("argument '{}' of attention must be between 1 and {}, got {}",
                                               extra->name, kMaxSize, value->i));
        ok = false;
        continue;
      }
      sizes[extra->name] = value->i;
    }
    if (!ok) return std::nullopt;

    // Every entry's tensor weights are checked (the first time here), not just this layer's.
    std::vector<std::vector<graph::Weight>> tensor_weights(entries.size());
    for (size_t e = 0; e < entries.size(); ++e) {
      for (const auto& t : entries[e]->inputs) {
        if (t.elem_type != ir::ElemType::Float32) continue;
        auto weight_shape = tensor_weight_shape(t, *entries[e], *heads, *kv_heads, *head_dim, sizes, v);
        if (!weight_shape) {
          ok = false;
          continue;
        }
        tensor_weights[e].push_back({binding + "." + t.name, *weight_shape});
      }
    }
    if (!ok) return std::nullopt;
    size_t entry = frame.layer < 0 ? 0 : static_cast<size_t>(frame.layer) % entries.size();
    const ir::Pattern& pattern = *entries[entry];

    int node = new_node(OpKind::Attention, inputs, ValueKind::Sequence, width, binding, v.where);
    Node& n = node_ref(node);
    n.heads = *heads;
    n.kv_heads = *kv_heads;
    n.head_dim = *head_dim;
    n.has_bias = args.has("bias") ? args.values.at("bias").b : true;
    if (args.has("scale")) n.scale = args.values.at("scale").f;
    n.pattern = pattern;
    n.causal_in_time = analysis::proves_causal_in_time(pattern.mask);
    int64_t q_out = *heads * *head_dim;
    int64_t kv_out = *kv_heads * *head_dim;
    auto projection = [&](const char* part, int64_t out, int64_t in) {
      n.weights.push_back({fmt::format("{}.{}.weight", binding, part), {out, in}});
      if (n.has_bias) n.weights.push_back({fmt::format("{}.{}.bias", binding, part), {out}});
    };
    projection("query", q_out, width);
    projection("key", kv_out, context_width);
    projection("value", kv_out, context_width);
    projection("output", width, q_out);
    for (auto& w : tensor_weights[entry]) n.weights.push_back(std::move(w));
    if (!rotary_embedding(n, args, inputs.size() > 1)) return std::nullopt;
    if (!evolving_layer(node, args, inputs.size() > 1)) return std::nullopt;
    for (const auto& t : pattern.inputs) {
      if (t.elem_type != ir::ElemType::Int32) continue;
      bool seen = std::any_of(graph_.runtime_tensors.begin(), graph_.runtime_tensors.end(),
                              [&](const ir::TensorDecl& r) { return r.name == t.name; });
      if (!seen) graph_.runtime_tensors.push_back(t);
    }
    return node;
  }

  const PatternLibrary& library_;
  const ast::ModelDecl& decl_;
  std::map<std::string, ir::Value> params_;
  Diagnostics& diags_;
  Scope param_scope_;  // named arguments see the model's parameters, bound to their values
  graph::Graph graph_;
  Frame top_;
  std::map<std::string, int> input_nodes_;
  std::map<const ast::ModelStatement*, std::map<std::string, SourceRange>> stack_declared_;
  std::map<std::string, std::string> stack_members_;  // a name bound inside a stack -> the stack's name
  const ast::ModelStatement* output_statement_ = nullptr;
  std::map<const ast::ModelArgument*, std::vector<std::optional<ir::Pattern>>> patterns_;
};

}  // namespace

std::optional<graph::Graph> elaborate_model(const PatternLibrary& library, const std::string& name,
                                            const std::map<std::string, std::string>& overrides,
                                            dsl::Diagnostics& diags) {
  const dsl::ast::ModelDecl* decl = library.find_model(name);
  if (!decl) {
    std::vector<std::string> names = library.model_names();
    std::string known =
        names.empty() ? "the files declare no model" : fmt::format("the files declare: {}", fmt::join(names, ", "));
    diags.error({}, fmt::format("unknown model '{}'{} ({})", name, did_you_mean(name, names), known));
    return std::nullopt;
  }
  auto params = library.model_arguments(name, overrides, diags);
  if (!params) return std::nullopt;
  return ModelElaborator(library, *decl, std::move(*params), diags).run();
}

}  // namespace tessera::sema
