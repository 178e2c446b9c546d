#include "compiler/analysis/tensor_value_bounds.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <utility>

namespace tessera::analysis {

namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;
// A box spanning more rows than this is answered with the whole tensor's bounds: still sound, and a query
// never costs more than this many steps.
constexpr int64_t kMaxRowsWalked = 4096;

// Level k of a sparse table over `rows` rows of `length` values: per row, pick() over [x, x + 2^k) for every
// x in [0, length - 2^k], rows stored at a stride of length - 2^k + 1. pick must be associative, commutative and
// idempotent (min, max), which is what lets two overlapping runs answer any range.
template <typename T, typename Pick>
std::vector<std::vector<T>> build_levels(const T* data, int64_t rows, int64_t length, Pick pick) {
  std::vector<std::vector<T>> levels;
  levels.emplace_back(data, data + rows * length);
  for (int64_t width = 2; width <= length; width *= 2) {
    const std::vector<T>& prev = levels.back();
    int64_t half = width / 2;
    int64_t prev_stride = length - half + 1;
    int64_t stride = length - width + 1;
    std::vector<T> level(static_cast<size_t>(rows * stride));
    for (int64_t r = 0; r < rows; ++r) {
      const T* from = prev.data() + r * prev_stride;
      T* to = level.data() + r * stride;
      for (int64_t x = 0; x < stride; ++x) to[x] = pick(from[x], from[x + half]);
    }
    levels.push_back(std::move(level));
  }
  return levels;
}

// pick() over [a, b] (a <= b) of one row: two runs of the largest power of two that fits cover it.
template <typename T, typename Pick>
T range_pick(const std::vector<std::vector<T>>& levels, int64_t length, int64_t row, int64_t a, int64_t b, Pick pick) {
  int k = std::bit_width(static_cast<uint64_t>(b - a + 1)) - 1;
  int64_t width = int64_t{1} << k;
  int64_t stride = length - width + 1;
  const T* level = levels[static_cast<size_t>(k)].data() + row * stride;
  return pick(level[a], level[b - width + 1]);
}

int32_t min_int(int32_t a, int32_t b) { return std::min(a, b); }
int32_t max_int(int32_t a, int32_t b) { return std::max(a, b); }
// fmin/fmax skip a NaN operand, so a run's entry is NaN only when the whole run is.
float min_float(float a, float b) { return std::fmin(a, b); }
float max_float(float a, float b) { return std::fmax(a, b); }

}  // namespace

struct TensorValueBounds::Tables {
  ir::ElemType elem_type = ir::ElemType::Int32;
  std::vector<int64_t> shape;
  int64_t rows = 0;    // combinations of the leading indices
  int64_t length = 0;  // the last dimension
  std::vector<std::vector<int32_t>> int_min, int_max;
  std::vector<std::vector<float>> float_min, float_max;
  std::vector<int64_t> nan_before;  // float32: per row, length + 1 counts of the NaNs before each position
  std::optional<Interval> whole;    // every element's bounds (none for an empty tensor)

  // Bounds over [a, b] of the last dimension in each of the given rows.
  template <typename Rows>
  Interval over_rows(const Rows& for_each_row, int64_t a, int64_t b) const {
    if (elem_type == ir::ElemType::Int32) {
      int32_t lo = INT32_MAX, hi = INT32_MIN;
      for_each_row([&](int64_t row) {
        lo = std::min(lo, range_pick(int_min, length, row, a, b, min_int));
        hi = std::max(hi, range_pick(int_max, length, row, a, b, max_int));
      });
      return Interval::of(IntInterval::range(lo, hi));
    }
    float lo = NAN, hi = NAN;
    bool nan = false;
    for_each_row([&](int64_t row) {
      lo = std::fmin(lo, range_pick(float_min, length, row, a, b, min_float));
      hi = std::fmax(hi, range_pick(float_max, length, row, a, b, max_float));
      const int64_t* counts = nan_before.data() + row * (length + 1);
      nan = nan || counts[b + 1] != counts[a];
    });
    if (std::isnan(lo)) return Interval::everything(ir::Type::Float);  // only NaNs: no range to give
    return Interval::of(FloatInterval{lo, hi, nan});
  }
};

TensorValueBounds::TensorValueBounds(const ir::TensorView& tensor) {
  auto t = std::make_shared<Tables>();
  t->elem_type = tensor.elem_type;
  t->shape = tensor.shape;
  if (t->shape.empty()) throw std::invalid_argument("tensor value bounds need a tensor of rank >= 1");
  int64_t elements = 1;
  for (int64_t d : t->shape) {
    if (d < 0) throw std::invalid_argument(fmt::format("tensor dimension {} is negative", d));
    if (d > 0 && elements > kMaxElements / d) {
      throw std::invalid_argument(
          fmt::format("tensor of shape [{}] has more than {} elements", fmt::join(t->shape, ", "), kMaxElements));
    }
    elements *= d;
  }
  if (elements > 0 && tensor.data == nullptr)
    throw std::invalid_argument("tensor value bounds: the tensor has no data");
  t->length = t->shape.back();
  t->rows = t->length == 0 ? 0 : elements / t->length;
  if (elements > 0) {
    if (t->elem_type == ir::ElemType::Int32) {
      const auto* data = static_cast<const int32_t*>(tensor.data);
      t->int_min = build_levels(data, t->rows, t->length, min_int);
      t->int_max = build_levels(data, t->rows, t->length, max_int);
    } else {
      const auto* data = static_cast<const float*>(tensor.data);
      t->float_min = build_levels(data, t->rows, t->length, min_float);
      t->float_max = build_levels(data, t->rows, t->length, max_float);
      t->nan_before.resize(static_cast<size_t>(t->rows * (t->length + 1)));
      for (int64_t r = 0; r < t->rows; ++r) {
        int64_t* counts = t->nan_before.data() + r * (t->length + 1);
        for (int64_t x = 0; x < t->length; ++x) counts[x + 1] = counts[x] + std::isnan(data[r * t->length + x]);
      }
    }
    auto every_row = [&](auto&& visit) {
      for (int64_t r = 0; r < t->rows; ++r) visit(r);
    };
    t->whole = t->over_rows(every_row, 0, t->length - 1);
  }
  tables_ = std::move(t);
}

std::optional<Interval> TensorValueBounds::bounds(const std::vector<IntInterval>& box) const {
  const Tables& t = *tables_;
  if (box.size() != t.shape.size()) return std::nullopt;
  int64_t rows = 1;
  for (size_t d = 0; d < box.size(); ++d) {
    // Infinite bounds are the extreme int64 values, so this also rejects unbounded ranges.
    if (box[d].lo < 0 || box[d].hi >= t.shape[d]) return std::nullopt;
    if (d + 1 < box.size()) rows *= box[d].hi - box[d].lo + 1;  // <= the element count: no overflow
  }
  if (rows > kMaxRowsWalked) return t.whole;
  // Visits the flat row index of every combination of the leading indices in the box, odometer style.
  auto box_rows = [&](auto&& visit) {
    size_t leading = box.size() - 1;
    std::vector<int64_t> index(leading);
    for (size_t d = 0; d < leading; ++d) index[d] = box[d].lo;
    while (true) {
      int64_t row = 0;
      for (size_t d = 0; d < leading; ++d) row = row * t.shape[d] + index[d];
      visit(row);
      size_t d = leading;
      while (d > 0 && index[d - 1] == box[d - 1].hi) {
        index[d - 1] = box[d - 1].lo;
        --d;
      }
      if (d == 0) return;
      ++index[d - 1];
    }
  };
  return t.over_rows(box_rows, box.back().lo, box.back().hi);
}

ir::ElemType TensorValueBounds::elem_type() const { return tables_->elem_type; }

const std::vector<int64_t>& TensorValueBounds::shape() const { return tables_->shape; }

LoadBounds make_load_bounds(std::map<std::string, TensorValueBounds> providers) {
  return [providers = std::move(providers)](const std::string& tensor,
                                            const std::vector<IntInterval>& box) -> std::optional<Interval> {
    auto it = providers.find(tensor);
    if (it == providers.end()) return std::nullopt;
    return it->second.bounds(box);
  };
}

LoadBounds make_load_bounds(const std::map<std::string, ir::TensorView>& tensors) {
  std::map<std::string, TensorValueBounds> providers;
  for (const auto& [name, view] : tensors) providers.emplace(name, TensorValueBounds(view));
  return make_load_bounds(std::move(providers));
}

}  // namespace tessera::analysis
