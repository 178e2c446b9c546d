// A pattern's score modifier evaluated with a float64 query vector.
//
// ir::PatternEvaluator::score takes the query as float32, which is what attention kernels receive. The model
// oracle's queries are float64 activations; rounding them for dot(q_vec, T[...]) (Music Transformer's relative
// term) would make the oracle no more precise than the float32 executor it checks. dot is linear in q_vec, so
// each DotQ node is evaluated three times by the IR interpreter, with q split exactly into three float32 pieces
// (q = hi + mid + lo to ~2^-72 relative), and the sum enters the score as a symbol. Everything else goes
// through ir::evaluate unchanged, so the IR semantics stay in one place.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"

namespace tessera::reference {

// The query vector of one (b, h, i) in the forms the score needs.
struct QueryPieces {
  std::vector<float> hi, mid, lo;  // float32 pieces with hi + mid + lo == the float64 query (to ~2^-72)

  void assign(const double* q, int64_t D);
};

class DoubleQueryScore {
 public:
  // `evaluator` must have been built from `pattern` with the same sizes, tensors and scale; both must outlive
  // this object.
  DoubleQueryScore(const ir::Pattern& pattern, const ir::PatternEvaluator& evaluator,
                   const std::map<std::string, ir::TensorView>& tensors, double scale);

  // The modified logit of the allowed pair (b, h, i, j) whose scaled logit is s. Throws ir::EvalError where
  // ir::PatternEvaluator::score would.
  double score(int64_t b, int64_t h, int64_t i, int64_t j, double s, const QueryPieces& q);

 private:
  const ir::PatternEvaluator& evaluator_;
  const std::map<std::string, ir::TensorView>& tensors_;
  double scale_;
  bool has_dot_ = false;        // the score reads q_vec at all
  bool nested_dot_ = false;     // a dot's indices read another dot: evaluated with the float32-rounded query
  ir::Expr rewritten_;          // the score with each DotQ node replaced by a Float symbol
  std::vector<ir::Expr> dots_;  // the replaced DotQ nodes; dots_[n] is symbol dot_names_[n]
  std::vector<std::string> dot_names_;
  std::map<std::string, ir::Value> symbols_;  // sizes bound from tensor shapes (R) and the current dot values
};

}  // namespace tessera::reference
