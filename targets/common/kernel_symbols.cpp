#include "targets/common/kernel_symbols.h"

#include <set>

#include "compiler/planner/sparsity_plan.h"

namespace tessera::targets {

std::vector<std::string> kernel_symbols(const ir::Pattern& local) {
  std::set<std::string> symbols;
  ir::collect_symbols(local.mask, &symbols);
  ir::collect_symbols(local.score, &symbols);
  ir::collect_symbols(local.weight, &symbols);
  return {symbols.begin(), symbols.end()};
}

std::map<std::string, int64_t> call_symbol_values(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                                  const std::map<std::string, std::vector<int64_t>>& tensor_shapes) {
  std::map<std::string, int64_t> values = {{planner::kQueries, sz.N}, {planner::kKeys, sz.M}};
  for (const ir::TensorDecl& decl : pattern.inputs) {
    auto shape = tensor_shapes.find(decl.name);
    if (shape == tensor_shapes.end()) continue;
    for (size_t d = 0; d < decl.dims.size() && d < shape->second.size(); ++d) values[decl.dims[d]] = shape->second[d];
  }
  return values;
}

}  // namespace tessera::targets
