#include "targets/common/aot_tensors.h"

#include <fmt/format.h>

#include <functional>
#include <limits>
#include <stdexcept>

#include "compiler/ir/printer.h"
#include "targets/common/tensor_index_bounds.h"

namespace tessera::targets {

void check_aot_tensor_indices(const ir::Pattern& pattern, const ir::AttentionSizes& sizes,
                              const std::map<std::string, std::vector<int64_t>>& shapes) {
  std::function<void(const ir::Expr&)> visit = [&](const ir::Expr& e) {
    if (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ) {
      const ir::TensorDecl* decl = pattern.input(e->name);
      for (size_t d = 0; decl && d < e->operands.size() && d < decl->dims.size(); ++d) {
        const ir::Expr& index = e->operands[d];
        if (decl->dims[d] == "B" && !(index->kind == ir::Kind::Var && index->var == ir::Var::Batch)) {
          throw std::invalid_argument(fmt::format(
              "tensor '{}' is indexed in its batch dimension by '{}', not by b: a library compiled ahead of time "
              "chooses the batch per call and cannot prove that index in bounds",
              e->name, ir::to_string(index)));
        }
      }
    }
    for (const auto& o : e->operands) visit(o);
  };
  visit(pattern.mask);
  visit(pattern.score);
  ir::AttentionSizes any_batch = sizes;
  any_batch.B = std::numeric_limits<int32_t>::max();
  std::map<std::string, std::vector<int64_t>> any_batch_shapes = shapes;
  for (const ir::TensorDecl& decl : pattern.inputs) {
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      if (decl.dims[d] == "B") any_batch_shapes[decl.name][d] = any_batch.B;
    }
  }
  std::string unproven;
  if (!targets::tensor_indices_proven(pattern, any_batch, any_batch_shapes, &unproven)) {
    throw std::invalid_argument(
        fmt::format("cannot prove every index of {} in bounds for these sizes; a library compiled ahead of time "
                    "does not check indices at run time (use `tessera eval`, which does)",
                    unproven));
  }
}

std::map<std::string, std::vector<int64_t>> aot_tensor_shapes(const ir::Pattern& pattern,
                                                              const ir::AttentionSizes& sizes,
                                                              const std::map<std::string, int64_t>& tensor_sizes) {
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const ir::TensorDecl& decl : pattern.inputs) {
    std::vector<int64_t>& shape = shapes[decl.name];
    for (const std::string& dim : decl.dims) {
      if (dim == "B") {
        shape.push_back(1);
      } else if (ir::is_attention_size(dim)) {
        shape.push_back(sizes.size(dim));
      } else if (auto value = tensor_sizes.find(dim); value != tensor_sizes.end()) {
        shape.push_back(value->second);
      } else {
        throw std::invalid_argument(fmt::format(
            "tensor '{}' has dimension '{}', whose size the library must know: give it with --size {}=VALUE", decl.name,
            dim, dim));
      }
    }
  }
  return shapes;
}

}  // namespace tessera::targets
