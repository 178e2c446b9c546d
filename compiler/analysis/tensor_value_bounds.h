// Bounds of a run-time tensor's values over boxes of indices: what the interval analysis's load_bounds hook
// needs to classify tiles from one call's actual inputs (e.g. document ids, so that tiles between different
// documents are Empty).
//
// A box is answered in O(rows): along the last dimension a sparse table (the min and max of every run of a
// power-of-two length) gives any range in O(1), and the box's leading dimensions are walked row by row (for
// segments[B, M] that is at most B rows).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/analysis/interval.h"
#include "compiler/ir/evaluate.h"

namespace tessera::analysis {

class TensorValueBounds {
 public:
  // Copies what it needs from `tensor` (int32 or float32, C-ordered, rank >= 1), so the view need not outlive
  // it. Throws std::invalid_argument for rank 0, a negative dimension, more than 2^40 elements, or null data
  // with elements.
  explicit TensorValueBounds(const ir::TensorView& tensor);

  // The min and max of the values in `box` (one inclusive index range per dimension): an Int interval for int32
  // data, a Float one for float32 (maybe_nan iff the box holds a NaN). nullopt when the box's rank differs from
  // the tensor's, or it is not inside the shape (unbounded ranges never are).
  std::optional<Interval> bounds(const std::vector<IntInterval>& box) const;

  ir::ElemType elem_type() const;
  const std::vector<int64_t>& shape() const;

 private:
  struct Tables;
  std::shared_ptr<const Tables> tables_;  // shared: copies (one per hook) are cheap
};

// The hook for VarRanges::load_bounds and ClassifyOptions::load_bounds: a load of a tensor named in `providers`
// is bounded by its provider, a load of any other tensor stays unknown.
LoadBounds make_load_bounds(std::map<std::string, TensorValueBounds> providers);
// The same with a provider built for each tensor (pass only the ones loaded: building costs O(n log n)).
LoadBounds make_load_bounds(const std::map<std::string, ir::TensorView>& tensors);

}  // namespace tessera::analysis
