#include "targets/common/tensor_index_bounds.h"

#include <fmt/format.h>

#include <functional>

#include "compiler/analysis/interval.h"

namespace tessera::targets {

bool tensor_indices_proven(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                           const std::map<std::string, std::vector<int64_t>>& tensor_shapes, std::string* unproven) {
  analysis::VarRanges ranges;
  ranges[ir::Var::I] = analysis::IntInterval::range(0, sz.N - 1);
  ranges[ir::Var::J] = analysis::IntInterval::range(0, sz.M - 1);
  ranges[ir::Var::Q] = analysis::IntInterval::range(sz.M - sz.N, sz.M - 1);
  ranges[ir::Var::K] = analysis::IntInterval::range(0, sz.M - 1);
  ranges[ir::Var::Batch] = analysis::IntInterval::range(0, sz.B - 1);
  ranges[ir::Var::Head] = analysis::IntInterval::range(0, sz.H - 1);
  ranges[ir::Var::Heads] = analysis::IntInterval::single(sz.H);
  ranges[ir::Var::N] = analysis::IntInterval::single(sz.N);
  ranges[ir::Var::M] = analysis::IntInterval::single(sz.M);
  ranges[ir::Var::D] = analysis::IntInterval::single(sz.D);
  for (const ir::TensorDecl& decl : pattern.inputs) {
    auto shape = tensor_shapes.find(decl.name);
    if (shape == tensor_shapes.end()) continue;
    for (size_t d = 0; d < decl.dims.size() && d < shape->second.size(); ++d) {
      if (!ir::is_attention_size(decl.dims[d])) {
        ranges.symbols[decl.dims[d]] = analysis::Interval::of(analysis::IntInterval::single(shape->second[d]));
      }
    }
  }
  bool proven = true;
  std::function<void(const ir::Expr&)> visit = [&](const ir::Expr& e) {
    if (proven && (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ)) {
      auto shape = tensor_shapes.find(e->name);
      for (size_t d = 0; proven && d < e->operands.size(); ++d) {
        analysis::IntInterval index = analysis::int_bounds(e->operands[d], ranges);
        if (shape == tensor_shapes.end() || d >= shape->second.size() || index.lo < 0 ||
            index.hi > shape->second[d] - 1) {
          proven = false;
          if (unproven) *unproven = fmt::format("{} (dimension {})", e->name, d);
        }
      }
    }
    for (const auto& o : e->operands) visit(o);
  };
  visit(pattern.mask);
  visit(pattern.score);
  visit(pattern.weight);
  return proven;
}

void check_tensor_indices(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                          const std::map<std::string, std::vector<int64_t>>& tensor_shapes,
                          const ir::PatternEvaluator& evaluator, const float* q) {
  if (tensor_indices_proven(pattern, sz, tensor_shapes)) return;
  for (int64_t b = 0; b < sz.B; ++b) {
    for (int64_t h = 0; h < sz.H; ++h) {
      for (int64_t i = 0; i < sz.N; ++i) {
        for (int64_t j = 0; j < sz.M; ++j) {
          if (!evaluator.allowed(b, h, i, j)) continue;
          evaluator.score(b, h, i, j, 0.0, q + ((b * sz.H + h) * sz.N + i) * sz.D);
          evaluator.weight(b, h, i, j);
        }
      }
    }
  }
}

}  // namespace tessera::targets
