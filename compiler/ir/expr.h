// The typed expression IR that masks and score modifiers lower to.
//
// Expressions are immutable trees shared through `Expr` (a shared_ptr to a const node), so passes build new
// trees and share unchanged subtrees. Every node has exactly one type; operands of arithmetic and comparison
// nodes always have the same type (elaboration inserts explicit `float(x)` casts), so a backend never has to
// guess a promotion.
//
// Integer semantics (all targets must agree): integers are 64-bit; `/` and `%` floor towards negative
// infinity (-7 / 2 == -4, -7 % 2 == 1); division or modulo by zero yields 0 (as in Halide). Float arithmetic
// is IEEE; the reference evaluates it in double precision.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dsl/source.h"

namespace tessera::ir {

enum class Type : uint8_t { Bool, Int, Float };
const char* type_name(Type type);

// The built-in variables of a mask or score expression.
enum class Var : uint8_t {
  Q,      // q: absolute query position, i + M - N
  K,      // k: absolute key position, == j
  I,      // i: 0-based index in the query sequence
  J,      // j: 0-based index in the key sequence
  Batch,  // b: batch index
  Head,   // h: query head index
  Heads,  // H: number of query heads
  N,      // N: query sequence length
  M,      // M: key sequence length
  D,      // D: head dimension of Q and K
  Score,  // s: the scaled logit (Float; only inside score modifiers)
  Scale,  // scale: the logit scale, 1/sqrt(D) unless given (Float)
};
const char* var_name(Var var);
Type var_type(Var var);

enum class UnaryOp : uint8_t { Neg, Not };
enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Mod, Lt, Le, Gt, Ge, Eq, Ne, And, Or };
const char* op_symbol(BinaryOp op);

// Built-in functions. Arity and typing rules live in function_signature() (expr.cpp).
enum class Fn : uint8_t {
  Min,
  Max,
  Abs,
  Clamp,   // (x, lo, hi)
  Select,  // (cond, if_true, if_false)
  Tanh,
  Exp,
  Log,
  Exp2,
  Sqrt,
  Pow,
  Floor,
  Ceil,
  ToFloat,  // float(int)
  ToInt,    // int(float): truncation towards zero
  BitAnd,
  BitOr,
  BitXor,
  BitNot,
  Shl,
  Shr,          // integer bitwise functions (Shr is arithmetic)
  LogBucket,    // (n, exact, max_distance, buckets): T5's log-bucketed distance, log_bucket.h; the last three
                // are constants once a pattern's parameters are bound, and simplify() rewrites it into comparisons
  HashUniform,  // (seed, a, b, c, d) -> float in (0, 1), the same on every target: hash_uniform.h
};
const char* fn_name(Fn fn);

enum class ElemType : uint8_t { Int32, Float32 };
const char* elem_type_name(ElemType type);

enum class Kind : uint8_t {
  IntImm,
  FloatImm,
  BoolImm,
  Var,     // a built-in variable (`var`)
  Symbol,  // a named scalar that is not a built-in (`name`, `type`): a run-time size fixed by an input tensor's
           // shape (R in rel: float32[H, R, D]), or a pattern parameter not yet bound to a value
  Unary,   // `unary_op` operands[0]
  Binary,  // `binary_op` operands[0], operands[1]
  Call,    // `fn` operands...
  Load,    // scalar element of run-time tensor `name` at integer operands (one per dimension)
  DotQ,    // dot(q_vec, name[operands...]): the query vector times a row of a float32 tensor whose last
           // dimension is D; operands index every dimension but the last
};

struct Node;
using Expr = std::shared_ptr<const Node>;

struct Node {
  Kind kind;
  Type type;
  int64_t int_value = 0;    // IntImm
  double float_value = 0;   // FloatImm
  bool bool_value = false;  // BoolImm
  ir::Var var = Var::Q;
  UnaryOp unary_op = UnaryOp::Neg;
  BinaryOp binary_op = BinaryOp::Add;
  ir::Fn fn = Fn::Min;
  ElemType elem_type = ElemType::Int32;  // Load / DotQ: the tensor's element type
  std::string name;                      // Symbol, Load, DotQ
  std::vector<Expr> operands;
  dsl::SourceRange where;  // where the user wrote it; invalid for synthesised nodes
};

// Constructors. They check operand types (an internal error, not a user diagnostic, if violated: elaboration
// reports user type errors before building IR) and do not simplify.
Expr int_imm(int64_t value, dsl::SourceRange where = {});
Expr float_imm(double value, dsl::SourceRange where = {});
Expr bool_imm(bool value, dsl::SourceRange where = {});
Expr var(Var v, dsl::SourceRange where = {});
Expr symbol(std::string name, Type type = Type::Int, dsl::SourceRange where = {});
// Replaces the variables in `replacements` simultaneously (a replacement's own variables are not replaced again).
Expr substitute_vars(const Expr& e, const std::map<Var, Expr>& replacements);
// Replaces every Symbol called `name` by `replacement`.
Expr substitute_symbol(const Expr& e, const std::string& name, const Expr& replacement);
Expr unary(UnaryOp op, Expr a, dsl::SourceRange where = {});
Expr binary(BinaryOp op, Expr a, Expr b, dsl::SourceRange where = {});
Expr call(Fn fn, std::vector<Expr> args, dsl::SourceRange where = {});
Expr load(std::string tensor, ElemType elem_type, std::vector<Expr> indices, dsl::SourceRange where = {});
Expr dot_q(std::string tensor, std::vector<Expr> indices, dsl::SourceRange where = {});

// The result type of `fn` applied to operands of the given types, or nullopt-like Type via `ok=false` if the
// operands do not fit (wrong arity or types). Used by elaboration for diagnostics and by call() for checks.
struct Signature {
  int arity;         // number of operands
  const char* form;  // human-readable signature for error messages, e.g. "clamp(x, lo, hi)"
};
Signature function_signature(Fn fn);
bool function_result_type(Fn fn, const std::vector<Type>& operand_types, Type* result);
// Looks up a built-in function by its DSL name ("min", "clamp", "float", "bitand", ...).
bool function_by_name(const std::string& name, Fn* fn);

// Structural helpers used by passes.
bool is_const(const Expr& e);  // IntImm, FloatImm or BoolImm
bool is_int_const(const Expr& e, int64_t value);
bool uses_var(const Expr& e, Var v);
bool uses_tensors(const Expr& e);        // any Load or DotQ
bool reads_query_vector(const Expr& e);  // any DotQ
bool structurally_equal(const Expr& a, const Expr& b);
// The names of the Symbols `e` reads.
void collect_symbols(const Expr& e, std::set<std::string>* names);
// Returns e with every occurrence of variable `v` replaced by `replacement`.
Expr substitute(const Expr& e, Var v, const Expr& replacement);

// Integer +, -, * with Tessera's semantics: two's-complement wrap-around, never undefined behaviour.
int64_t wrapping_add(int64_t a, int64_t b);
int64_t wrapping_sub(int64_t a, int64_t b);
int64_t wrapping_mul(int64_t a, int64_t b);

// Integer division and modulo with Tessera's semantics (floor; by zero gives 0).
int64_t floor_div(int64_t a, int64_t b);
int64_t floor_mod(int64_t a, int64_t b);

}  // namespace tessera::ir
