#include "targets/reference/double_query_score.h"

#include <fmt/format.h>

#include <cmath>
#include <memory>
#include <unordered_map>
#include <utility>

namespace tessera::reference {

void QueryPieces::assign(const double* q, int64_t D) {
  const auto n = static_cast<size_t>(D);
  hi.resize(n);
  mid.resize(n);
  lo.resize(n);
  for (size_t d = 0; d < n; ++d) {
    hi[d] = static_cast<float>(q[d]);
    // q - hi is exact in double (hi is q's nearest float), and so is the second remainder. A value beyond
    // float range rounds to ±inf in hi; the remainders are then left zero rather than made NaN by inf - inf.
    if (!std::isfinite(hi[d])) {
      mid[d] = lo[d] = 0.0f;
      continue;
    }
    const double rest = q[d] - static_cast<double>(hi[d]);
    mid[d] = static_cast<float>(rest);
    lo[d] = static_cast<float>(rest - static_cast<double>(mid[d]));
  }
}

namespace {

// Replaces every DotQ node by a Float symbol "dot#N" (not a DSL identifier, so it cannot clash with one),
// sharing unchanged subtrees and giving a DotQ node shared by several parents (a `let`) one symbol.
class DotReplacer {
 public:
  ir::Expr rewrite(const ir::Expr& e) {
    if (auto done = done_.find(e.get()); done != done_.end()) return done->second;
    ir::Expr result;
    if (e->kind == ir::Kind::DotQ) {
      for (const ir::Expr& operand : e->operands) nested |= ir::reads_query_vector(operand);
      names.push_back(fmt::format("dot#{}", dots.size()));
      dots.push_back(e);
      result = ir::symbol(names.back(), ir::Type::Float, e->where);
    } else {
      std::vector<ir::Expr> operands;
      operands.reserve(e->operands.size());
      bool changed = false;
      for (const ir::Expr& operand : e->operands) {
        operands.push_back(rewrite(operand));
        changed |= operands.back() != operand;
      }
      if (changed) {
        auto copy = std::make_shared<ir::Node>(*e);
        copy->operands = std::move(operands);
        result = std::move(copy);
      } else {
        result = e;
      }
    }
    done_.emplace(e.get(), result);
    return result;
  }

  std::vector<ir::Expr> dots;
  std::vector<std::string> names;
  bool nested = false;

 private:
  std::unordered_map<const ir::Node*, ir::Expr> done_;
};

}  // namespace

DoubleQueryScore::DoubleQueryScore(const ir::Pattern& pattern, const ir::PatternEvaluator& evaluator,
                                   const std::map<std::string, ir::TensorView>& tensors, double scale)
    : evaluator_(evaluator), tensors_(tensors), scale_(scale) {
  has_dot_ = pattern.score != nullptr && ir::reads_query_vector(pattern.score);
  if (!has_dot_) return;
  DotReplacer replacer;
  rewritten_ = replacer.rewrite(pattern.score);
  dots_ = std::move(replacer.dots);
  dot_names_ = std::move(replacer.names);
  nested_dot_ = replacer.nested;
  // The sizes a tensor's shape binds (R in rel: float32[H, R, D]), as ir::PatternEvaluator binds them; it has
  // already checked that the shapes agree.
  for (const ir::TensorDecl& decl : pattern.inputs) {
    auto view = tensors_.find(decl.name);
    if (view == tensors_.end()) continue;
    for (size_t d = 0; d < decl.dims.size() && d < view->second.shape.size(); ++d) {
      if (!ir::is_attention_size(decl.dims[d])) {
        symbols_.emplace(decl.dims[d], ir::Value{ir::Type::Int, view->second.shape[d], 0, false});
      }
    }
  }
  for (const std::string& name : dot_names_) symbols_[name] = ir::Value{ir::Type::Float, 0, 0.0, false};
}

double DoubleQueryScore::score(int64_t b, int64_t h, int64_t i, int64_t j, double s, const QueryPieces& q) {
  if (!has_dot_) return evaluator_.score(b, h, i, j, s, nullptr);
  if (nested_dot_) return evaluator_.score(b, h, i, j, s, q.hi.data());

  // The environment ir::PatternEvaluator builds for a point.
  const ir::AttentionSizes& sz = evaluator_.sizes();
  ir::EvalEnv env;
  env.set(ir::Var::Q, i + sz.M - sz.N);
  env.set(ir::Var::K, j);
  env.set(ir::Var::I, i);
  env.set(ir::Var::J, j);
  env.set(ir::Var::Batch, b);
  env.set(ir::Var::Head, h);
  env.set(ir::Var::Heads, sz.H);
  env.set(ir::Var::N, sz.N);
  env.set(ir::Var::M, sz.M);
  env.set(ir::Var::D, sz.D);
  env.s = s;
  env.scale = scale_;
  env.D = sz.D;
  env.symbols = &symbols_;
  env.tensors = &tensors_;

  for (size_t n = 0; n < dots_.size(); ++n) {
    double sum = 0;
    try {
      for (const std::vector<float>* piece : {&q.hi, &q.mid, &q.lo}) {
        env.q_vec = piece->data();
        sum += ir::evaluate(dots_[n], env).f;
      }
    } catch (const ir::EvalError&) {
      // Evaluated eagerly here, a dot may index out of bounds in a branch the score never takes (a select,
      // a short-circuit); the interpreter's own lazy evaluation decides, with the float32-rounded query.
      return evaluator_.score(b, h, i, j, s, q.hi.data());
    }
    symbols_[dot_names_[n]].f = sum;
  }
  env.q_vec = q.hi.data();  // no DotQ is left to read it
  return ir::evaluate(rewritten_, env).f;
}

}  // namespace tessera::reference
