// Box min/max of run-time tensors against brute force over random data and random boxes.
#include "compiler/analysis/tensor_value_bounds.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace tessera::analysis {
namespace {

std::vector<int64_t> random_shape(std::mt19937_64& rng) {
  int rank = std::uniform_int_distribution<int>(1, 3)(rng);
  std::vector<int64_t> shape;
  for (int d = 0; d < rank; ++d) {
    // The last dimension is long enough for several sparse-table levels; leading ones stay small.
    int64_t hi = d + 1 == rank ? 70 : 4;
    shape.push_back(std::uniform_int_distribution<int64_t>(1, hi)(rng));
  }
  return shape;
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::vector<IntInterval> random_box(std::mt19937_64& rng, const std::vector<int64_t>& shape) {
  std::vector<IntInterval> box;
  for (int64_t d : shape) {
    int64_t a = std::uniform_int_distribution<int64_t>(0, d - 1)(rng);
    int64_t b = std::uniform_int_distribution<int64_t>(0, d - 1)(rng);
    box.push_back(IntInterval::range(std::min(a, b), std::max(a, b)));
  }
  return box;
}

// Calls visit(flat offset) for every element of the box.
template <typename Visit>
void for_each_in_box(const std::vector<int64_t>& shape, const std::vector<IntInterval>& box, Visit visit) {
  std::vector<int64_t> index(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) index[d] = box[d].lo;
  while (true) {
    int64_t offset = 0;
    for (size_t d = 0; d < shape.size(); ++d) offset = offset * shape[d] + index[d];
    visit(offset);
    size_t d = shape.size();
    while (d > 0 && index[d - 1] == box[d - 1].hi) {
      index[d - 1] = box[d - 1].lo;
      --d;
    }
    if (d == 0) return;
    ++index[d - 1];
  }
}

TEST(TensorValueBounds, Int32BoxesMatchBruteForce) {
  std::mt19937_64 rng(11);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int64_t> shape = random_shape(rng);
    // Narrow value ranges give ties and single-valued boxes; wide ones reach the int32 extremes.
    bool wide = trial % 3 == 0;
    std::uniform_int_distribution<int32_t> value(wide ? INT32_MIN : -3, wide ? INT32_MAX : 3);
    std::vector<int32_t> data(static_cast<size_t>(element_count(shape)));
    for (auto& v : data) v = value(rng);
    if (wide) data[0] = trial % 2 ? INT32_MIN : INT32_MAX;
    TensorValueBounds bounds({ir::ElemType::Int32, shape, data.data()});
    EXPECT_EQ(bounds.elem_type(), ir::ElemType::Int32);
    EXPECT_EQ(bounds.shape(), shape);
    for (int q = 0; q < 40; ++q) {
      std::vector<IntInterval> box = random_box(rng, shape);
      int64_t lo = INT64_MAX, hi = INT64_MIN;
      for_each_in_box(shape, box, [&](int64_t o) {
        lo = std::min<int64_t>(lo, data[static_cast<size_t>(o)]);
        hi = std::max<int64_t>(hi, data[static_cast<size_t>(o)]);
      });
      std::optional<Interval> got = bounds.bounds(box);
      ASSERT_TRUE(got.has_value());
      ASSERT_EQ(got->type, ir::Type::Int);
      EXPECT_EQ(got->i, IntInterval::range(lo, hi)) << "trial " << trial;
    }
  }
}

TEST(TensorValueBounds, Float32BoxesMatchBruteForceWithNaNAndInfinities) {
  std::mt19937_64 rng(12);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int64_t> shape = random_shape(rng);
    std::vector<float> data(static_cast<size_t>(element_count(shape)));
    // Mostly NaN in some trials, so that all-NaN boxes occur too.
    int nan_percent = trial % 4 == 0 ? 90 : 10;
    for (auto& v : data) {
      int kind = std::uniform_int_distribution<int>(0, 99)(rng);
      if (kind < nan_percent) {
        v = std::numeric_limits<float>::quiet_NaN();
      } else if (kind < nan_percent + 3) {
        v = kind % 2 ? kInf : -kInf;
      } else {
        v = std::uniform_real_distribution<float>(-5, 5)(rng);
      }
    }
    TensorValueBounds bounds({ir::ElemType::Float32, shape, data.data()});
    for (int q = 0; q < 40; ++q) {
      std::vector<IntInterval> box = random_box(rng, shape);
      double lo = INFINITY, hi = -INFINITY;
      bool nan = false, any_number = false;
      for_each_in_box(shape, box, [&](int64_t o) {
        float v = data[static_cast<size_t>(o)];
        if (std::isnan(v)) {
          nan = true;
          return;
        }
        any_number = true;
        lo = std::min<double>(lo, v);
        hi = std::max<double>(hi, v);
      });
      std::optional<Interval> got = bounds.bounds(box);
      ASSERT_TRUE(got.has_value());
      ASSERT_EQ(got->type, ir::Type::Float);
      if (any_number) {
        EXPECT_EQ(got->f.lo, lo) << "trial " << trial;
        EXPECT_EQ(got->f.hi, hi) << "trial " << trial;
        EXPECT_EQ(got->f.maybe_nan, nan) << "trial " << trial;
      } else {
        // Only NaNs: the interval must admit NaN (it cannot be narrower than that).
        EXPECT_TRUE(got->f.maybe_nan);
      }
    }
  }
}

TEST(TensorValueBounds, BoxesNotInsideTheShapeAreUnknown) {
  std::vector<int32_t> data(3 * 5, 7);
  TensorValueBounds bounds({ir::ElemType::Int32, {3, 5}, data.data()});
  auto r = [](int64_t lo, int64_t hi) { return IntInterval::range(lo, hi); };
  EXPECT_TRUE(bounds.bounds({r(0, 2), r(0, 4)}).has_value());
  EXPECT_FALSE(bounds.bounds({r(0, 2)}).has_value());                    // rank too small
  EXPECT_FALSE(bounds.bounds({r(0, 2), r(0, 4), r(0, 0)}).has_value());  // rank too large
  EXPECT_FALSE(bounds.bounds({r(-1, 2), r(0, 4)}).has_value());
  EXPECT_FALSE(bounds.bounds({r(0, 3), r(0, 4)}).has_value());
  EXPECT_FALSE(bounds.bounds({r(0, 2), r(4, 5)}).has_value());
  EXPECT_FALSE(bounds.bounds({IntInterval{0, IntInterval::kPosInf}, r(0, 4)}).has_value());
  EXPECT_FALSE(bounds.bounds({r(0, 0), IntInterval::everything()}).has_value());
  EXPECT_FALSE(bounds.bounds({r(0, 0), IntInterval{IntInterval::kNegInf, 3}}).has_value());

  TensorValueBounds empty({ir::ElemType::Int32, {2, 0}, nullptr});  // no element: no box fits
  EXPECT_FALSE(empty.bounds({r(0, 1), r(0, 0)}).has_value());
}

TEST(TensorValueBounds, BadTensorsAreRejected) {
  int32_t one = 1;
  EXPECT_THROW(TensorValueBounds({ir::ElemType::Int32, {}, &one}), std::invalid_argument);
  EXPECT_THROW(TensorValueBounds({ir::ElemType::Int32, {2, -1}, &one}), std::invalid_argument);
  EXPECT_THROW(TensorValueBounds({ir::ElemType::Int32, {2, 3}, nullptr}), std::invalid_argument);
  EXPECT_THROW(TensorValueBounds({ir::ElemType::Int32, {int64_t{1} << 30, int64_t{1} << 30}, &one}),
               std::invalid_argument);
}

TEST(TensorValueBounds, KeepsItsOwnCopyOfTheData) {
  std::vector<int32_t> data = {4, 1, 9, 2};
  TensorValueBounds bounds({ir::ElemType::Int32, {4}, data.data()});
  data.assign(4, 100);
  EXPECT_EQ(bounds.bounds({IntInterval::range(0, 3)})->i, IntInterval::range(1, 9));
  EXPECT_EQ(bounds.bounds({IntInterval::range(2, 3)})->i, IntInterval::range(2, 9));
  EXPECT_EQ(bounds.bounds({IntInterval::range(1, 1)})->i, IntInterval::single(1));
}

TEST(TensorValueBounds, BoxesOverVeryManyRowsStaySound) {
  // More leading rows than a query walks: the answer widens to the whole tensor, never narrower than the box.
  std::mt19937_64 rng(13);
  std::vector<int64_t> shape = {9000, 3};
  std::vector<int32_t> data(9000 * 3);
  for (auto& v : data) v = std::uniform_int_distribution<int32_t>(-1000, 1000)(rng);
  data[5] = -5000;  // outside every box below
  data[data.size() - 1] = 5000;
  TensorValueBounds bounds({ir::ElemType::Int32, shape, data.data()});
  for (int q = 0; q < 20; ++q) {
    std::vector<IntInterval> box = random_box(rng, shape);
    box[0] = IntInterval::range(std::uniform_int_distribution<int64_t>(2, 100)(rng),
                                std::uniform_int_distribution<int64_t>(6000, 8998)(rng));
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for_each_in_box(shape, box, [&](int64_t o) {
      lo = std::min<int64_t>(lo, data[static_cast<size_t>(o)]);
      hi = std::max<int64_t>(hi, data[static_cast<size_t>(o)]);
    });
    std::optional<Interval> got = bounds.bounds(box);
    ASSERT_TRUE(got.has_value());
    EXPECT_LE(got->i.lo, lo);
    EXPECT_GE(got->i.hi, hi);
    EXPECT_EQ(got->i, IntInterval::range(-5000, 5000));
  }
}

TEST(TensorValueBounds, HookAnswersOnlyForItsTensors) {
  std::vector<int32_t> segments = {0, 0, 1, 1, 2, 2};
  std::vector<float> weights = {0.5f, -2.0f, 3.0f};
  LoadBounds hook = make_load_bounds(std::map<std::string, ir::TensorView>{
      {"segments", {ir::ElemType::Int32, {2, 3}, segments.data()}},
      {"weights", {ir::ElemType::Float32, {3}, weights.data()}},
  });
  auto r = [](int64_t lo, int64_t hi) { return IntInterval::range(lo, hi); };
  EXPECT_EQ(hook("segments", {r(0, 1), r(0, 0)})->i, IntInterval::range(0, 1));
  EXPECT_EQ(hook("segments", {r(1, 1), r(0, 1)})->i, IntInterval::range(1, 2));
  EXPECT_EQ(hook("segments", {r(1, 1), r(1, 2)})->i, IntInterval::single(2));
  std::optional<Interval> w = hook("weights", {r(0, 1)});
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->f.lo, -2.0);
  EXPECT_EQ(w->f.hi, 0.5);
  EXPECT_FALSE(w->f.maybe_nan);
  EXPECT_FALSE(hook("other", {r(0, 0)}).has_value());
  EXPECT_FALSE(hook("segments", {r(0, 2), r(0, 0)}).has_value());
}

}  // namespace
}  // namespace tessera::analysis
