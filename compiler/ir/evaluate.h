// A scalar interpreter for the expression IR: the semantics every target must reproduce.
//
// Used by the float64 reference executor and by the tile classifier's exact-enumeration fallback. It is an
// oracle, not a fast path.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"

namespace tessera::ir {

// A run-time failure while evaluating a pattern (an out-of-bounds tensor index, a missing or mis-shaped input).
// The message names the offending tensor and index or shape.
class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A borrowed, C-ordered run-time tensor.
struct TensorView {
  ElemType elem_type = ElemType::Float32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

struct AttentionSizes {
  int64_t B = 1, H = 1, Hkv = 1, N = 0, M = 0, D = 0, Dv = 0;
  int64_t size(const std::string& dim_name) const;  // "B", "H", ... (see is_attention_size)
};

struct Value {
  Type type = Type::Int;
  int64_t i = 0;
  double f = 0;
  bool b = false;
};

// Everything an expression can read at one (b, h, i, j) point.
struct EvalEnv {
  std::array<int64_t, 10> ints{};  // indexed by Var for q k i j b h H N M D
  double s = 0;
  double scale = 1;
  const float* q_vec = nullptr;  // D floats: the query vector at (b, h, i), for dot(q_vec, T[...])
  int64_t D = 0;
  const std::map<std::string, Value>* symbols = nullptr;
  const std::map<std::string, TensorView>* tensors = nullptr;

  void set(Var v, int64_t value) { ints[static_cast<size_t>(v)] = value; }
};

// Evaluates `e` at `env`. Throws EvalError for an out-of-bounds index or an unbound symbol/tensor.
Value evaluate(const Expr& e, const EvalEnv& env);

// Binds a pattern to concrete sizes and run-time tensors and evaluates its mask, score and weight at points.
class PatternEvaluator {
 public:
  // Validates that every tensor the pattern reads is given, with its element type, rank and attention sizes,
  // and binds the free dimension names (like R) from the shapes. Throws EvalError naming what is wrong.
  PatternEvaluator(const Pattern& pattern, const AttentionSizes& sizes, std::map<std::string, TensorView> tensors,
                   double scale);

  // Whether query row i may attend to key column j in batch b, head h.
  bool allowed(int64_t b, int64_t h, int64_t i, int64_t j) const;
  // The modified logit for an allowed pair whose scaled logit is s. q_vec: the query vector (D floats).
  double score(int64_t b, int64_t h, int64_t i, int64_t j, double s, const float* q_vec) const;
  // The weight of an allowed pair's probability (1 when the pattern has no `weight:`).
  double weight(int64_t b, int64_t h, int64_t i, int64_t j) const;

  const AttentionSizes& sizes() const { return sizes_; }

 private:
  EvalEnv env_at(int64_t b, int64_t h, int64_t i, int64_t j) const;

  const Pattern& pattern_;
  AttentionSizes sizes_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, Value> symbols_;
  double scale_;
  bool mask_is_true_;
  bool score_is_identity_;
};

}  // namespace tessera::ir
