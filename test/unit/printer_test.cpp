#include "compiler/ir/printer.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "test/unit/random_expressions.h"

namespace tessera::ir {
namespace {

Expr q() { return var(Var::Q); }
Expr k() { return var(Var::K); }
Expr c(int64_t v) { return int_imm(v); }
Expr add(Expr a, Expr b) { return binary(BinaryOp::Add, a, b); }
Expr sub(Expr a, Expr b) { return binary(BinaryOp::Sub, a, b); }
Expr mul(Expr a, Expr b) { return binary(BinaryOp::Mul, a, b); }
Expr div(Expr a, Expr b) { return binary(BinaryOp::Div, a, b); }
Expr mod(Expr a, Expr b) { return binary(BinaryOp::Mod, a, b); }

TEST(Printer, UsesMinimalPrecedenceCorrectParentheses) {
  EXPECT_EQ(to_string(sub(sub(q(), k()), c(1))), "q - k - 1");
  EXPECT_EQ(to_string(sub(q(), sub(k(), c(1)))), "q - (k - 1)");
  EXPECT_EQ(to_string(mul(add(q(), k()), c(2))), "(q + k) * 2");
  EXPECT_EQ(to_string(add(q(), mul(k(), c(2)))), "q + k * 2");
  EXPECT_EQ(to_string(div(q(), mul(k(), c(2)))), "q / (k * 2)");
  EXPECT_EQ(to_string(mul(div(q(), k()), c(2))), "q / k * 2");
  Expr mask =
      binary(BinaryOp::And, binary(BinaryOp::Le, k(), q()), binary(BinaryOp::Eq, mod(sub(q(), k()), c(128)), c(0)));
  EXPECT_EQ(to_string(mask), "k <= q && (q - k) % 128 == 0");
  Expr lt = binary(BinaryOp::Lt, q(), k());
  EXPECT_EQ(to_string(binary(BinaryOp::And, binary(BinaryOp::Or, lt, lt), lt)), "(q < k || q < k) && q < k");
  EXPECT_EQ(to_string(binary(BinaryOp::Or, binary(BinaryOp::And, lt, lt), lt)), "q < k && q < k || q < k");
  EXPECT_EQ(to_string(binary(BinaryOp::Eq, binary(BinaryOp::Eq, lt, lt), lt)), "q < k == q < k == q < k");
  EXPECT_EQ(to_string(binary(BinaryOp::Eq, lt, binary(BinaryOp::Eq, lt, lt))), "q < k == (q < k == q < k)");
  EXPECT_EQ(to_string(unary(UnaryOp::Not, lt)), "!(q < k)");
  EXPECT_EQ(to_string(unary(UnaryOp::Neg, add(q(), k()))), "-(q + k)");
  EXPECT_EQ(to_string(unary(UnaryOp::Neg, unary(UnaryOp::Neg, q()))), "-(-q)");
  EXPECT_EQ(to_string(unary(UnaryOp::Neg, c(-3))), "-(-3)");
  EXPECT_EQ(to_string(sub(q(), c(-3))), "q - -3");
  EXPECT_EQ(to_string(mul(c(-3), q())), "-3 * q");
}

TEST(Printer, PrintsCallsLoadsAndDots) {
  EXPECT_EQ(to_string(call(Fn::Min, {q(), k()})), "min(q, k)");
  EXPECT_EQ(to_string(call(Fn::ToFloat, {sub(q(), k())})), "float(q - k)");
  EXPECT_EQ(to_string(call(Fn::ToInt, {var(Var::Score)})), "int(s)");
  EXPECT_EQ(to_string(call(Fn::Select, {bool_imm(true), q(), k()})), "select(true, q, k)");
  EXPECT_EQ(to_string(load("segments", ElemType::Int32, {var(Var::Batch), q()})), "segments[b, q]");
  Expr R = symbol("R");
  Expr rel = dot_q("rel", {var(Var::Head), call(Fn::Clamp, {sub(q(), k()), c(0), sub(R, c(1))})});
  EXPECT_EQ(to_string(rel), "dot(q_vec, rel[h, clamp(q - k, 0, R - 1)])");
  Expr alibi =
      sub(var(Var::Score), mul(call(Fn::Exp2, {div(mul(float_imm(-8.0), call(Fn::ToFloat, {add(var(Var::Head), c(1))})),
                                                   call(Fn::ToFloat, {var(Var::Heads)}))}),
                               call(Fn::ToFloat, {sub(q(), k())})));
  EXPECT_EQ(to_string(alibi), "s - exp2(-8.0 * float(h + 1) / float(H)) * float(q - k)");
}

TEST(Printer, PrintsFloatsAsShortestFloatLiterals) {
  EXPECT_EQ(to_string(float_imm(1.0)), "1.0");
  EXPECT_EQ(to_string(float_imm(0.5)), "0.5");
  EXPECT_EQ(to_string(float_imm(0.1)), "0.1");
  EXPECT_EQ(to_string(float_imm(-2.0)), "-2.0");
  EXPECT_EQ(to_string(float_imm(123456.0)), "123456.0");
  EXPECT_EQ(std::strtod(to_string(float_imm(1e-6)).c_str(), nullptr), 1e-6);
  EXPECT_EQ(std::strtod(to_string(float_imm(1e300)).c_str(), nullptr), 1e300);
  EXPECT_EQ(to_string(float_imm(INFINITY)), "(1.0 / 0.0)");
  EXPECT_EQ(to_string(int_imm(INT64_MIN)), "(-9223372036854775807 - 1)");
  EXPECT_EQ(to_string(bool_imm(false)), "false");
}

TEST(Printer, PrintsPatterns) {
  Pattern p;
  p.name = "document";
  Expr seg_q = load("segments", ElemType::Int32, {var(Var::Batch), q()});
  Expr seg_k = load("segments", ElemType::Int32, {var(Var::Batch), k()});
  p.mask = binary(BinaryOp::And, binary(BinaryOp::Ge, q(), c(0)), binary(BinaryOp::Eq, seg_q, seg_k));
  p.score = var(Var::Score);
  p.inputs = {TensorDecl{"segments", ElemType::Int32, {"B", "M"}, {}},
              TensorDecl{"rel", ElemType::Float32, {"H", "R", "D"}, {}}};
  EXPECT_EQ(to_string(p),
            "pattern document\n"
            "  inputs: segments: int32[B, M], rel: float32[H, R, D]\n"
            "  mask:  q >= 0 && segments[b, q] == segments[b, k]\n"
            "  score: s\n");
  Pattern full;
  full.name = "full";
  full.mask = bool_imm(true);
  full.score = var(Var::Score);
  EXPECT_EQ(to_string(full), "pattern full\n  mask:  true\n  score: s\n");
}

// ---- a tiny recursive-descent parser of the printed form, written from the C grammar ----

class Parser {
 public:
  explicit Parser(std::string text) : text_(std::move(text)) {}

  Expr parse() {
    Expr e = parse_binary(1);
    skip_space();
    if (pos_ != text_.size()) fail("trailing text");
    return e;
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what + " at " + std::to_string(pos_) + " in: " + text_);
  }
  void skip_space() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  bool eat(const std::string& token) {
    skip_space();
    if (text_.compare(pos_, token.size(), token) != 0) return false;
    pos_ += token.size();
    return true;
  }
  void expect(const std::string& token) {
    if (!eat(token)) fail("expected '" + token + "'");
  }

  // Operators of one precedence level, longest spelling first so "<=" is not read as "<".
  static std::vector<std::pair<std::string, BinaryOp>> level(int precedence) {
    switch (precedence) {
      case 1: return {{"||", BinaryOp::Or}};
      case 2: return {{"&&", BinaryOp::And}};
      case 3: return {{"==", BinaryOp::Eq}, {"!=", BinaryOp::Ne}};
      case 4: return {{"<=", BinaryOp::Le}, {">=", BinaryOp::Ge}, {"<", BinaryOp::Lt}, {">", BinaryOp::Gt}};
      case 5: return {{"+", BinaryOp::Add}, {"-", BinaryOp::Sub}};
      case 6: return {{"*", BinaryOp::Mul}, {"/", BinaryOp::Div}, {"%", BinaryOp::Mod}};
    }
    return {};
  }

  Expr parse_binary(int precedence) {
    if (precedence > 6) return parse_unary();
    Expr left = parse_binary(precedence + 1);
    for (;;) {
      bool matched = false;
      for (const auto& [spelling, op] : level(precedence)) {
        skip_space();
        // "&&" must not be taken for "&", "||" for "|": the table holds full spellings only.
        if (eat(spelling)) {
          left = binary(op, left, parse_binary(precedence + 1));
          matched = true;
          break;
        }
      }
      if (!matched) return left;
    }
  }

  Expr parse_unary() {
    skip_space();
    if (eat("!")) return unary(UnaryOp::Not, parse_unary());
    if (eat("-")) {
      if (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) return number(true);
      return unary(UnaryOp::Neg, parse_unary());
    }
    return parse_primary();
  }

  Expr number(bool negative) {
    size_t start = pos_;
    bool is_float = false;
    while (pos_ < text_.size()) {
      char ch = text_[pos_];
      if (std::isdigit(static_cast<unsigned char>(ch))) {
        ++pos_;
      } else if (ch == '.' || ch == 'e') {
        is_float = true;
        ++pos_;
        if (ch == 'e' && (text_[pos_] == '-' || text_[pos_] == '+')) ++pos_;
      } else {
        break;
      }
    }
    std::string digits = text_.substr(start, pos_ - start);
    if (is_float) return float_imm((negative ? -1 : 1) * std::strtod(digits.c_str(), nullptr));
    int64_t magnitude = std::stoll(digits);
    return int_imm(negative ? -magnitude : magnitude);
  }

  std::vector<Expr> arguments(const std::string& close) {
    std::vector<Expr> args;
    if (eat(close)) return args;
    do {
      args.push_back(parse_binary(1));
    } while (eat(","));
    expect(close);
    return args;
  }

  Expr parse_primary() {
    skip_space();
    if (eat("(")) {
      Expr e = parse_binary(1);
      expect(")");
      return e;
    }
    if (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) return number(false);
    size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    std::string name = text_.substr(start, pos_ - start);
    if (name.empty()) fail("expected an operand");
    if (name == "true" || name == "false") return bool_imm(name == "true");
    if (name == "dot") {
      expect("(");
      expect("q_vec");
      expect(",");
      skip_space();
      size_t tensor_start = pos_;
      while (pos_ < text_.size() && std::isalnum(static_cast<unsigned char>(text_[pos_]))) ++pos_;
      std::string tensor = text_.substr(tensor_start, pos_ - tensor_start);
      expect("[");
      auto indices = arguments("]");
      expect(")");
      return dot_q(tensor, indices);
    }
    if (eat("(")) {
      Fn fn;
      if (!function_by_name(name, &fn)) fail("unknown function " + name);
      return call(fn, arguments(")"));
    }
    if (eat("[")) return load(name, ElemType::Int32, arguments("]"));
    for (int v = 0; v <= static_cast<int>(Var::Scale); ++v) {
      if (name == var_name(static_cast<Var>(v))) return var(static_cast<Var>(v));
    }
    return symbol(name);
  }

  std::string text_;
  size_t pos_ = 0;
};

// Spellings that are equivalent by construction: a sign applied to a literal, and the literal forms the printer
// uses for values that have none of their own (infinities, NaN, INT64_MIN).
Expr normalize(const Expr& e) {
  std::vector<Expr> ops;
  for (const auto& o : e->operands) ops.push_back(normalize(o));
  if (e->kind == Kind::Unary && e->unary_op == UnaryOp::Neg) {
    if (ops[0]->kind == Kind::IntImm && ops[0]->int_value != INT64_MIN) return int_imm(-ops[0]->int_value);
    if (ops[0]->kind == Kind::FloatImm) return float_imm(-ops[0]->float_value);
  }
  if (e->kind == Kind::Binary && e->binary_op == BinaryOp::Sub && ops[0]->kind == Kind::IntImm &&
      ops[1]->kind == Kind::IntImm) {
    return int_imm(
        static_cast<int64_t>(static_cast<uint64_t>(ops[0]->int_value) - static_cast<uint64_t>(ops[1]->int_value)));
  }
  if (e->kind == Kind::Binary && e->binary_op == BinaryOp::Div && ops[0]->kind == Kind::FloatImm &&
      ops[1]->kind == Kind::FloatImm) {
    return float_imm(ops[0]->float_value / ops[1]->float_value);
  }
  if (ops.empty()) return e;
  auto copy = std::make_shared<Node>(*e);
  copy->operands = std::move(ops);
  return copy;
}

// Structural equality with floats compared bit for bit (NaN equal to NaN, 0.0 different from -0.0).
bool same_tree(const Expr& a, const Expr& b) {
  if (a->kind != b->kind || a->type != b->type || a->operands.size() != b->operands.size()) return false;
  if (a->kind == Kind::FloatImm) {
    return testing::same_value(Value{Type::Float, 0, a->float_value, false},
                               Value{Type::Float, 0, b->float_value, false});
  }
  if (a->operands.empty() || a->kind == Kind::Load || a->kind == Kind::DotQ) {
    if (!structurally_equal(a->operands.empty() ? a : symbol(a->name), a->operands.empty() ? b : symbol(b->name)))
      return false;
  }
  if (a->kind == Kind::Unary && a->unary_op != b->unary_op) return false;
  if (a->kind == Kind::Binary && a->binary_op != b->binary_op) return false;
  if (a->kind == Kind::Call && a->fn != b->fn) return false;
  for (size_t i = 0; i < a->operands.size(); ++i) {
    if (!same_tree(a->operands[i], b->operands[i])) return false;
  }
  return true;
}

TEST(Printer, RandomTreesReadBackToTheSameTree) {
  testing::GeneratorConfig config;
  config.loads = true;
  config.int_vars = {Var::Q, Var::K, Var::I, Var::J, Var::Batch, Var::Head, Var::Heads, Var::N, Var::M, Var::D};
  testing::ExprGenerator gen(77, config);
  for (int n = 0; n < 5000; ++n) {
    Expr e = gen.make(static_cast<Type>(gen.pick(0, 2)), static_cast<int>(gen.pick(1, 6)));
    std::string text = to_string(e);
    ASSERT_EQ(text.find('\n'), std::string::npos);
    Expr parsed;
    try {
      parsed = Parser(text).parse();
    } catch (const std::exception& error) {
      FAIL() << error.what();
    }
    ASSERT_TRUE(same_tree(normalize(e), normalize(parsed))) << text << "\n reads back as " << to_string(parsed);
  }
}

}  // namespace
}  // namespace tessera::ir
