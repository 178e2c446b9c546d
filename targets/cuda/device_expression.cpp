#include "targets/cuda/device_expression.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "compiler/ir/printer.h"
#include "targets/cuda/kernel/pattern_args.cuh"

namespace tessera::cuda {

namespace {

const char* cpp_type(ir::Type type) {
  switch (type) {
    case ir::Type::Int: return "i32";
    case ir::Type::Float: return "float";
    case ir::Type::Bool: return "bool";
  }
  throw std::logic_error("tessera internal error: unknown IR type");
}

bool is_identifier(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

std::string int_literal(int64_t value) {
  // -2147483648 is not a literal in C++ but the negation of one that does not fit in int.
  if (value == std::numeric_limits<int32_t>::min()) return "(-2147483647 - 1)";
  return std::to_string(value);
}

// `value` rounded to float as IEEE does (and as the CPU target's cast does), without the cast's undefined
// behaviour for magnitudes beyond the float range.
float round_to_float(double value) {
  if (std::isnan(value)) return std::numeric_limits<float>::quiet_NaN();
  constexpr double kMax = std::numeric_limits<float>::max();
  // From FLT_MAX plus half an ulp (2^103) on, round-to-nearest gives infinity.
  constexpr double kOverflow = 0x1.ffffffp+127;
  if (std::fabs(value) >= kOverflow) return std::copysign(std::numeric_limits<float>::infinity(), value);
  if (std::fabs(value) > kMax) return std::copysign(std::numeric_limits<float>::max(), value);
  return static_cast<float>(value);
}

// A float literal whose value is exactly round_to_float(value).
std::string float_literal(double value) {
  const float f = round_to_float(value);
  if (std::isnan(f)) return "f32_nan()";
  if (std::isinf(f)) return f < 0 ? "-f32_inf()" : "f32_inf()";
  std::string text = fmt::format("{}", f);  // shortest text that reads back as f
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text + "f";
}

// One line of a comment: the IR's printed form, which could in principle hold a newline.
std::string comment_text(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

// Emits the body of one member function (mask or score): a statement per distinct subexpression.
class FunctionEmitter {
 public:
  FunctionEmitter(const ir::Pattern& pattern, const FunctorSpec& spec, bool is_score)
      : pattern_(pattern), spec_(spec), is_score_(is_score) {}

  // The C++ expression for `e` (a named constant, a literal or an argument), emitting what it needs.
  std::string value(const ir::Expr& e) {
    if (auto it = memo_.find(e.get()); it != memo_.end()) return it->second;
    std::string result = compute(*e);
    memo_.emplace(e.get(), result);
    return result;
  }

  // The statements the result needs, in order (a subexpression whose only use the emitter folded away, like
  // x in `x == x`, is dropped: compilers reject unused variables under -Werror), and which of the function's
  // arguments (a b h i j s q) they read.
  std::string finish(const std::string& result) {
    std::set<std::string> live = identifiers(result);
    std::vector<bool> keep(statements_.size(), false);
    for (size_t k = statements_.size(); k-- > 0;) {
      if (!live.count(statements_[k].name)) continue;
      keep[k] = true;
      for (const std::string& l : statements_[k].lines) live.merge(identifiers(l));
    }
    used_ = live;
    std::string body;
    for (size_t k = 0; k < statements_.size(); ++k) {
      if (!keep[k]) continue;
      for (const std::string& l : statements_[k].lines) body += "    " + l + "\n";
    }
    return body;
  }
  bool uses(char argument) const { return used_.count(std::string(1, argument)) > 0; }

 private:
  [[noreturn]] void unsupported(const std::string& what) const {
    throw UnsupportedExpression(
        fmt::format("cannot emit the CUDA functor {} for pattern '{}': {}", spec_.name, pattern_.name, what));
  }

  void begin(const std::string& name) { statements_.push_back({name, {}}); }
  void line(const std::string& text) { statements_.back().lines.push_back(text); }

  // The identifiers of a line of emitted code, without its comment and numbers (1e+30f is no identifier e).
  static std::set<std::string> identifiers(const std::string& code) {
    const std::string text = code.substr(0, code.find("//"));
    std::set<std::string> out;
    for (size_t k = 0; k < text.size();) {
      const unsigned char c = static_cast<unsigned char>(text[k]);
      if (std::isalpha(c) || c == '_' || std::isdigit(c)) {
        size_t end = k;
        while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_' ||
                                     (std::isdigit(c) && text[end] == '.'))) {
          ++end;
        }
        if (!std::isdigit(c)) out.insert(text.substr(k, end - k));
        k = end;
      } else {
        ++k;
      }
    }
    return out;
  }

  // A named constant holding `rhs`; structurally equal subexpressions give the same rhs text (their operands
  // are already shared constants), so they share one constant.
  std::string bind(ir::Type type, const std::string& rhs, const std::string& comment = {}) {
    if (auto it = by_rhs_.find(rhs); it != by_rhs_.end()) return it->second;
    std::string name = fresh();
    begin(name);
    line(fmt::format("const {} {} = {};{}", cpp_type(type), name, rhs, comment.empty() ? "" : "  // " + comment));
    by_rhs_.emplace(rhs, name);
    return name;
  }

  std::string fresh() { return fmt::format("t{}", next_++); }

  std::string compute(const ir::Node& n) {
    switch (n.kind) {
      case ir::Kind::IntImm:
        if (n.int_value < std::numeric_limits<int32_t>::min() || n.int_value > std::numeric_limits<int32_t>::max()) {
          unsupported(fmt::format("the constant {} does not fit in the 32-bit integers the CUDA target computes in",
                                  n.int_value));
        }
        return int_literal(n.int_value);
      case ir::Kind::FloatImm: return float_literal(n.float_value);
      case ir::Kind::BoolImm: return n.bool_value ? "true" : "false";
      case ir::Kind::Var: return variable(n.var);
      case ir::Kind::Symbol: return symbol(n);
      case ir::Kind::Unary: {
        std::string a = value(n.operands[0]);
        if (n.unary_op == ir::UnaryOp::Not) return bind(n.type, "!" + a);
        if (n.type == ir::Type::Int) return bind(n.type, fmt::format("neg_i32({})", a));
        return bind(n.type, a[0] == '-' ? fmt::format("-({})", a) : "-" + a);  // not "--2.5f", a decrement
      }
      case ir::Kind::Binary: return binary(n);
      case ir::Kind::Call: return call(n);
      case ir::Kind::Load: return load(n);
      case ir::Kind::DotQ: return dot_q(n);
    }
    throw std::logic_error("tessera internal error: unknown IR node");
  }

  std::string variable(ir::Var v) {
    switch (v) {
      case ir::Var::I: return "i";
      case ir::Var::J:
      case ir::Var::K: return "j";
      case ir::Var::Batch: return "b";
      case ir::Var::Head: return "h";
      case ir::Var::Heads: return "a.H";
      case ir::Var::N: return "a.N";
      case ir::Var::M: return "a.M";
      case ir::Var::D: return "a.D";
      case ir::Var::Scale: return "a.scale";
      case ir::Var::Q: return bind(ir::Type::Int, "add_i32(i, sub_i32(a.M, a.N))", "q");
      case ir::Var::Score:
        if (!is_score_) unsupported("the mask reads the score s, which only a score modifier has");
        return "s";
    }
    throw std::logic_error("tessera internal error: unknown variable");
  }

  std::string symbol(const ir::Node& n) {
    auto it = std::find(spec_.symbols.begin(), spec_.symbols.end(), n.name);
    if (it == spec_.symbols.end()) {
      unsupported(fmt::format("it reads the symbol '{}', which is not among the functor's symbols [{}]", n.name,
                              fmt::join(spec_.symbols, ", ")));
    }
    if (n.type != ir::Type::Int) {
      unsupported(
          fmt::format("the symbol '{}' is {}; PatternArgs holds integer symbols only", n.name, ir::type_name(n.type)));
    }
    return bind(ir::Type::Int, fmt::format("a.symbols[{}]", it - spec_.symbols.begin()), n.name);
  }

  std::string binary(const ir::Node& n) {
    std::string a = value(n.operands[0]);
    std::string b = value(n.operands[1]);
    const ir::Type operand_type = n.operands[0]->type;
    auto infix = [&](const char* op) { return bind(n.type, fmt::format("{} {} {}", a, op, b)); };
    auto helper = [&](const char* fn) { return bind(n.type, fmt::format("{}({}, {})", fn, a, b)); };
    if (a == b && operand_type != ir::Type::Float) {
      // Compilers reject `x == x` under -Werror (tautological comparison); the result is known. Floats keep
      // theirs: NaN != NaN.
      switch (n.binary_op) {
        case ir::BinaryOp::Lt:
        case ir::BinaryOp::Gt:
        case ir::BinaryOp::Ne: return "false";
        case ir::BinaryOp::Le:
        case ir::BinaryOp::Ge:
        case ir::BinaryOp::Eq: return "true";
        case ir::BinaryOp::And:
        case ir::BinaryOp::Or: return a;
        default: break;
      }
    }
    switch (n.binary_op) {
      case ir::BinaryOp::Add: return operand_type == ir::Type::Int ? helper("add_i32") : infix("+");
      case ir::BinaryOp::Sub: return operand_type == ir::Type::Int ? helper("sub_i32") : infix("-");
      case ir::BinaryOp::Mul: return operand_type == ir::Type::Int ? helper("mul_i32") : infix("*");
      case ir::BinaryOp::Div: return operand_type == ir::Type::Int ? helper("floor_div_i32") : infix("/");
      case ir::BinaryOp::Mod: return operand_type == ir::Type::Int ? helper("floor_mod_i32") : helper("mod_f32");
      case ir::BinaryOp::Lt: return infix("<");
      case ir::BinaryOp::Le: return infix("<=");
      case ir::BinaryOp::Gt: return infix(">");
      case ir::BinaryOp::Ge: return infix(">=");
      case ir::BinaryOp::Eq: return infix("==");
      case ir::BinaryOp::Ne: return infix("!=");
      case ir::BinaryOp::And: return infix("&&");
      case ir::BinaryOp::Or: return infix("||");
    }
    throw std::logic_error("tessera internal error: unknown binary operator");
  }

  std::string call(const ir::Node& n) {
    std::vector<std::string> args;
    for (const ir::Expr& o : n.operands) args.push_back(value(o));
    const bool is_int = !n.operands.empty() && n.operands[0]->type == ir::Type::Int;
    auto helper = [&](const char* fn) { return bind(n.type, fmt::format("{}({})", fn, fmt::join(args, ", "))); };
    switch (n.fn) {
      case ir::Fn::Min: return helper(is_int ? "min_i32" : "min_f32");
      case ir::Fn::Max: return helper(is_int ? "max_i32" : "max_f32");
      case ir::Fn::Abs: return helper(is_int ? "abs_i32" : "abs_f32");
      case ir::Fn::Clamp: return helper(is_int ? "clamp_i32" : "clamp_f32");
      case ir::Fn::Select: return bind(n.type, fmt::format("{} ? {} : {}", args[0], args[1], args[2]));
      case ir::Fn::Tanh: return helper("tanh_f32");
      case ir::Fn::Exp: return helper("exp_f32");
      case ir::Fn::Log: return helper("log_f32");
      case ir::Fn::Exp2: return helper("exp2_f32");
      case ir::Fn::Sqrt: return helper("sqrt_f32");
      case ir::Fn::Pow: return helper("pow_f32");
      case ir::Fn::Floor: return helper("floor_f32");
      case ir::Fn::Ceil: return helper("ceil_f32");
      case ir::Fn::ToFloat: return helper("to_f32");
      case ir::Fn::ToInt: return helper("to_i32");
      case ir::Fn::BitAnd: return helper("bitand_i32");
      case ir::Fn::BitOr: return helper("bitor_i32");
      case ir::Fn::BitXor: return helper("bitxor_i32");
      case ir::Fn::BitNot: return helper("bitnot_i32");
      case ir::Fn::Shl: return helper("shl_i32");
      case ir::Fn::Shr: return helper("shr_i32");
      case ir::Fn::LogBucket: break;  // ir::simplify rewrote every one into comparisons
      case ir::Fn::HashUniform: return helper("hash_uniform_f32");
    }
    throw std::logic_error("tessera internal error: unknown function");
  }

  // The position of `tensor` in PatternArgs::tensors, checking that a tensor of `rank` fits.
  size_t tensor_index(const ir::Node& n, size_t rank) {
    auto it = std::find(spec_.tensors.begin(), spec_.tensors.end(), n.name);
    if (it == spec_.tensors.end()) {
      unsupported(fmt::format("it reads the run-time tensor '{}', which is not among the functor's tensors [{}]",
                              n.name, fmt::join(spec_.tensors, ", ")));
    }
    if (rank > static_cast<size_t>(tessera_cuda::kMaxTensorRank)) {
      unsupported(fmt::format("the run-time tensor '{}' has rank {}; at most {} is supported", n.name, rank,
                              tessera_cuda::kMaxTensorRank));
    }
    if (const ir::TensorDecl* decl = pattern_.input(n.name); decl && decl->dims.size() != rank) {
      unsupported(fmt::format("the run-time tensor '{}' is declared with rank {} but indexed with rank {}", n.name,
                              decl->dims.size(), rank));
    }
    return static_cast<size_t>(it - spec_.tensors.begin());
  }

  std::string load(const ir::Node& n) {
    const size_t rank = n.operands.size();
    const size_t tensor = tensor_index(n, rank);
    std::vector<std::string> index;
    for (const ir::Expr& o : n.operands) index.push_back(value(o));
    const char* fn = n.elem_type == ir::ElemType::Int32 ? "load_i32" : "load_f32";
    const ir::Type type = n.elem_type == ir::ElemType::Int32 ? ir::Type::Int : ir::Type::Float;
    std::string key = fmt::format("{}(a, {}, {}, {{{}}})", fn, tensor, rank, fmt::join(index, ", "));
    if (auto it = by_rhs_.find(key); it != by_rhs_.end()) return it->second;
    std::string name = fresh();
    begin(name);
    std::string array = "nullptr";  // rank 0: a scalar tensor, no index (C++ has no empty arrays)
    if (rank > 0) {
      array = name + "_index";
      line(fmt::format("const i32 {}[{}] = {{{}}};", array, rank, fmt::join(index, ", ")));
    }
    line(fmt::format("const {} {} = {}(a, {}, {}, {});  // {}", cpp_type(type), name, fn, tensor, rank, array, n.name));
    by_rhs_.emplace(key, name);
    return name;
  }

  std::string dot_q(const ir::Node& n) {
    const size_t rank = n.operands.size() + 1;  // the last dimension, D, is summed over
    const size_t tensor = tensor_index(n, rank);
    std::vector<std::string> index;
    for (const ir::Expr& o : n.operands) index.push_back(value(o));
    std::string key = fmt::format("dot_q(a, {}, {}, {{{}}})", tensor, rank, fmt::join(index, ", "));
    if (auto it = by_rhs_.find(key); it != by_rhs_.end()) return it->second;
    std::string name = fresh();
    begin(name);
    index.push_back("0");
    line(fmt::format("float {} = 0.0f;  // dot(q_vec, {}[...])", name, n.name));
    line("{");
    line(fmt::format("  i32 index[{}] = {{{}}};", rank, fmt::join(index, ", ")));
    line("  for (i32 d = 0; d < a.D; ++d) {");
    line(fmt::format("    index[{}] = d;", rank - 1));
    line(fmt::format("    {} += q(d) * load_f32(a, {}, {}, index);", name, tensor, rank));
    line("  }");
    line("}");
    by_rhs_.emplace(key, name);
    return name;
  }

  // One named value, defined in one or more lines.
  struct Statement {
    std::string name;
    std::vector<std::string> lines;
  };

  const ir::Pattern& pattern_;
  const FunctorSpec& spec_;
  const bool is_score_;
  std::vector<Statement> statements_;
  std::set<std::string> used_;  // identifiers the kept statements read, among them the arguments a b h i j s q
  int next_ = 0;
  std::unordered_map<const ir::Node*, std::string> memo_;
  std::map<std::string, std::string> by_rhs_;
};

// An argument declaration, its name commented out when the body does not read it (no unused warnings).
std::string argument(const FunctionEmitter& f, const char* type, char name) {
  return f.uses(name) ? fmt::format("{} {}", type, name) : fmt::format("{} /*{}*/", type, name);
}

enum class Member { Mask, Score, Weight };

// A member's expression, whether it is the identity (emitted as `identity`), its name and its return type.
struct MemberForm {
  const ir::Expr& expression;
  bool trivial;
  const char *identity, *name, *type;
};

MemberForm member_form(const ir::Pattern& pattern, Member member) {
  switch (member) {
    case Member::Mask: return {pattern.mask, !pattern.has_mask(), "true", "mask", "bool"};
    case Member::Score: return {pattern.score, !pattern.has_score(), "s", "score", "float"};
    case Member::Weight: break;
  }
  return {pattern.weight, !pattern.has_weight(), "1.0f", "weight", "float"};
}

std::string member_function(const ir::Pattern& pattern, const FunctorSpec& spec, Member member) {
  const bool is_score = member == Member::Score;
  FunctionEmitter f(pattern, spec, is_score);
  const MemberForm form = member_form(pattern, member);
  const std::string result = form.trivial ? form.identity : f.value(form.expression);
  const std::string body = f.finish(result);
  std::string out = fmt::format("  // {}: {}\n", form.name,
                                form.trivial ? form.identity : comment_text(ir::to_string(form.expression)));
  out += "  template <class QueryRow>\n";
  std::string points = fmt::format("{}, {}, {}, {}", argument(f, "i32", 'b'), argument(f, "i32", 'h'),
                                   argument(f, "i32", 'i'), argument(f, "i32", 'j'));
  if (is_score) {
    out += fmt::format("  TESSERA_HD static float score({}, {}, {}, {}) {{\n", argument(f, "const PatternArgs&", 'a'),
                       points, argument(f, "float", 's'), argument(f, "const QueryRow&", 'q'));
  } else {
    out += fmt::format("  TESSERA_HD static {} {}({}, {}, {}) {{\n", form.type, form.name,
                       argument(f, "const PatternArgs&", 'a'), points, argument(f, "const QueryRow&", 'q'));
  }
  out += body;
  out += fmt::format("    return {};\n  }}\n", result);
  return out;
}

}  // namespace

std::string emit_pattern_functor(const ir::Pattern& pattern, const FunctorSpec& spec) {
  if (!is_identifier(spec.name)) {
    throw UnsupportedExpression(fmt::format("'{}' is not a valid name for a CUDA functor", spec.name));
  }
  if (spec.symbols.size() > static_cast<size_t>(tessera_cuda::kMaxPatternSymbols)) {
    throw UnsupportedExpression(fmt::format("the CUDA functor {} for pattern '{}' needs {} symbols; at most {} fit",
                                            spec.name, pattern.name, spec.symbols.size(),
                                            tessera_cuda::kMaxPatternSymbols));
  }
  if (spec.tensors.size() > static_cast<size_t>(tessera_cuda::kMaxPatternTensors)) {
    throw UnsupportedExpression(
        fmt::format("the CUDA functor {} for pattern '{}' reads {} run-time tensors; at most {} fit", spec.name,
                    pattern.name, spec.tensors.size(), tessera_cuda::kMaxPatternTensors));
  }
  std::string mask = member_function(pattern, spec, Member::Mask);
  std::string score = member_function(pattern, spec, Member::Score);
  std::string weight = member_function(pattern, spec, Member::Weight);
  // Additive scoring: the kernel reads v[h, :] (the pattern's run-time [H, A] tensor) for its per-pair sums.
  std::string additive =
      "  TESSERA_HD static const float* additive_vector(const PatternArgs& /*a*/, i32 /*h*/) { return nullptr; }\n"
      "  TESSERA_HD static i32 additive_size(const PatternArgs& /*a*/) { return 0; }\n";
  if (pattern.scoring == ir::Scoring::Additive) {
    auto it = std::find(spec.tensors.begin(), spec.tensors.end(), pattern.additive.vector);
    if (it == spec.tensors.end()) {
      throw UnsupportedExpression(fmt::format("the CUDA functor {} does not list the additive vector '{}'", spec.name,
                                              pattern.additive.vector));
    }
    const auto index = it - spec.tensors.begin();
    additive = fmt::format(
        "  // additive scoring: {}[h, :], of length A\n"
        "  TESSERA_HD static const float* additive_vector(const PatternArgs& a, i32 h) {{\n"
        "    return static_cast<const float*>(a.tensors[{}]) + h * a.shapes[{}][1];\n  }}\n"
        "  TESSERA_HD static i32 additive_size(const PatternArgs& a) {{ return a.shapes[{}][1]; }}\n",
        comment_text(pattern.additive.vector), index, index, index);
  }
  const bool query = (pattern.has_mask() && ir::reads_query_vector(pattern.mask)) ||
                     (pattern.has_score() && ir::reads_query_vector(pattern.score)) ||
                     (pattern.has_weight() && ir::reads_query_vector(pattern.weight));
  return fmt::format(
      "// {}\n"
      "struct {} {{\n"
      "  static constexpr bool kHasMask = {};\n"
      "  static constexpr bool kHasScore = {};\n"
      "  static constexpr bool kHasWeight = {};\n"
      "  static constexpr bool kReadsQuery = {};\n"
      "  static constexpr bool kHardmax = {};\n"
      "  static constexpr bool kAdditive = {};\n"
      "\n"
      "{}\n"
      "{}\n"
      "{}\n"
      "{}"
      "}};\n",
      comment_text(pattern.name), spec.name, pattern.has_mask(), pattern.has_score(), pattern.has_weight(), query,
      pattern.normalizer == ir::Normalizer::Hardmax, pattern.scoring == ir::Scoring::Additive, mask, score, weight,
      additive);
}

}  // namespace tessera::cuda
