// The syntax tree of a spec file, exactly as written (no names resolved, no types).
//
// Nodes own their children through unique_ptr. Every node records the source range it was parsed from so
// elaboration can point its diagnostics at the offending text.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "dsl/source.h"

namespace tessera::dsl::ast {

// ---- Expressions (masks, scores, lets, requires, arguments, defaults, constraints) ----

enum class UnaryOp : uint8_t { Neg, Not };
enum class BinaryOp : uint8_t { Or, And, Eq, Ne, Lt, Le, Gt, Ge, Add, Sub, Mul, Div, Mod };
const char* op_symbol(UnaryOp op);
const char* op_symbol(BinaryOp op);

enum class ExprKind : uint8_t {
  IntLit,
  FloatLit,
  BoolLit,
  Name,    // `name`
  Unary,   // `unary_op` operands[0]
  Binary,  // `binary_op` operands[0], operands[1]
  Call,    // `name(operands...)`; name_where locates the callee
  Index,   // `name[operands...]`; name_where locates the tensor name
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind = ExprKind::IntLit;
  SourceRange where;
  int64_t int_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string text;  // the literal's source spelling (IntLit, FloatLit)
  UnaryOp unary_op = UnaryOp::Neg;
  BinaryOp binary_op = BinaryOp::Add;
  std::string name;
  SourceRange name_where;
  std::vector<ExprPtr> operands;
};

// ---- Pattern expressions: `causal & sliding_window(window=256)` ----

struct Argument {
  std::string name;  // empty for a positional argument
  SourceRange name_where;
  ExprPtr value;
  SourceRange where;  // the whole argument, `name=value` or `value`
};

enum class PatternExprKind : uint8_t { Ref, Intersect, Union, Difference };
const char* op_symbol(PatternExprKind kind);  // "&", "|", "-"; "" for Ref

struct PatternExpr;
using PatternExprPtr = std::unique_ptr<PatternExpr>;

struct PatternExpr {
  PatternExprKind kind = PatternExprKind::Ref;
  SourceRange where;
  // Ref
  std::string name;
  SourceRange name_where;
  std::vector<Argument> args;
  // Intersect, Union, Difference
  PatternExprPtr lhs;
  PatternExprPtr rhs;
};

// ---- Declarations ----

struct Dimension {
  std::string name;
  SourceRange where;
};

// tensor NAME: ELEM[DIM, ...];
struct TensorDecl {
  std::string name;
  SourceRange name_where;
  std::string elem_type;  // as written; elaboration checks it is int32 or float32
  SourceRange elem_type_where;
  std::vector<Dimension> dims;
  SourceRange where;
};

struct Constraint {
  BinaryOp op = BinaryOp::Ge;  // Ge, Gt, Le or Lt
  ExprPtr bound;
  SourceRange where;
};

// name: TYPE [CONSTRAINT...] [= DEFAULT]
struct Param {
  std::string name;
  SourceRange name_where;
  std::string type;  // as written; elaboration checks it is int, float or bool
  SourceRange type_where;
  std::vector<Constraint> constraints;
  ExprPtr default_value;  // null if none
  SourceRange where;
};

enum class StatementKind : uint8_t { Let, Require, Mask, Score, Weight, Normalize, Scoring };

struct Statement {
  StatementKind kind = StatementKind::Mask;
  std::string name;  // Let
  SourceRange name_where;
  ExprPtr value;
  bool has_message = false;  // Require
  std::string message;
  SourceRange where;  // from the keyword to the ';'
};

// pattern NAME [(PARAMS)] { BODY }   or   pattern NAME [(PARAMS)] = PATTERN_EXPR;
struct PatternDecl {
  std::string name;
  SourceRange name_where;
  std::vector<Param> params;
  bool has_param_list = false;  // written with parentheses (possibly empty)
  std::vector<Statement> body;  // body form
  PatternExprPtr alias;         // alias form (null for the body form)
  SourceRange where;
};

// ---- Models: layer graphs ----

// A value of a model: a name, an operator call, a number (only as a factor of `*`), or a `+`/`*` of two values.
enum class ModelValueKind : uint8_t { Name, Call, Number, Add, Mul };

struct ModelValue;
using ModelValuePtr = std::unique_ptr<ModelValue>;

// One argument of an operator call: positional (`x`, a value), named (`out = ffn`, an expression over the
// model's parameters), or the attention pattern (`pattern = causal & alibi` or `pattern = [strided(...), ...]`).
enum class ModelArgumentKind : uint8_t { Positional, Named, Pattern, PatternList };

struct ModelArgument {
  ModelArgumentKind kind = ModelArgumentKind::Positional;
  std::string name;  // Named, Pattern, PatternList
  SourceRange name_where;
  ModelValuePtr value;                   // Positional
  ExprPtr expr;                          // Named
  std::vector<PatternExprPtr> patterns;  // Pattern (one), PatternList (one per entry)
  SourceRange where;                     // the whole argument
};

struct ModelValue {
  ModelValueKind kind = ModelValueKind::Name;
  SourceRange where;
  std::string name;  // Name: the bound name; Call: the operator
  SourceRange name_where;
  std::vector<ModelArgument> args;      // Call
  ExprPtr number;                       // Number: an int or float literal, possibly negated
  std::vector<ModelValuePtr> operands;  // Add, Mul: two
};

enum class ModelStatementKind : uint8_t { Input, Bind, Stack, Output, Return };

// input NAME;  |  NAME = VALUE;  |  output VALUE;  |  return VALUE;  |
// stack NAME[COUNT](CARRIED = INITIAL) { STATEMENT* }   (the body's last statement is its `return`)
struct ModelStatement {
  ModelStatementKind kind = ModelStatementKind::Bind;
  std::string name;  // Input, Bind, Stack
  SourceRange name_where;
  ModelValuePtr value;  // Bind, Output, Return; Stack: the carried value's initial value
  // Stack
  ExprPtr count;
  std::string carried;
  SourceRange carried_where;
  std::vector<ModelStatement> body;
  SourceRange where;  // from the first token to the ';' or '}'
};

// model NAME [(PARAMS)] { STATEMENT* }
struct ModelDecl {
  std::string name;
  SourceRange name_where;
  std::vector<Param> params;
  bool has_param_list = false;
  std::vector<ModelStatement> body;
  SourceRange where;
};

// A top-level declaration.
using Declaration = std::variant<TensorDecl, PatternDecl, ModelDecl>;

struct Module {
  std::shared_ptr<const SourceFile> file;
  std::vector<Declaration> declarations;
  // Patterns left out of `declarations` because of syntax errors: references to them are not "unknown".
  std::vector<Dimension> invalid_patterns;
};

// The tree printed back in the DSL's own syntax with every sub-expression parenthesised, so the structure the
// parser chose is visible (`--emit=ast`). Parsing the output yields the same tree.
std::string dump(const Module& module);
std::string dump(const Expr& expr);
std::string dump(const PatternExpr& expr);
std::string dump(const ModelValue& value);

}  // namespace tessera::dsl::ast
