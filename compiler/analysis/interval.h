// Interval analysis: sound bounds of an expression's value over ranges of its variables.
//
// Soundness is the contract: for every point whose variables lie in the given ranges, ir::evaluate's result
// lies in the computed interval (a bool interval says which truth values are possible); with a load_bounds hook,
// for the run-time tensor contents the hook describes. Precision is a bonus, exact for the affine position
// arithmetic attention masks are made of (q - k, floor division and modulo by constants, comparisons of
// independent ranges).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/expr.h"

namespace tessera::analysis {

// An integer range [lo, hi] (lo <= hi). The extreme int64 values stand for the infinities: kNegInf as lo means
// "unbounded below", kPosInf as hi "unbounded above". Finite bounds stay within +-kFiniteLimit; anything
// beyond is widened to the infinity (so bounds never overflow, and an interval never collapses onto one).
struct IntInterval {
  static constexpr int64_t kNegInf = INT64_MIN;
  static constexpr int64_t kPosInf = INT64_MAX;
  static constexpr int64_t kFiniteLimit = int64_t{1} << 62;

  int64_t lo = kNegInf;
  int64_t hi = kPosInf;

  static IntInterval everything() { return {}; }
  static IntInterval single(int64_t v);
  // [lo, hi] after widening out-of-limit bounds; lo > hi is an internal error.
  static IntInterval range(int64_t lo, int64_t hi);

  bool is_single() const { return lo == hi; }
  bool contains(int64_t v) const { return lo <= v && v <= hi; }
  bool lo_finite() const { return lo != kNegInf; }
  bool hi_finite() const { return hi != kPosInf; }
  bool operator==(const IntInterval&) const = default;
};

// A float range [lo, hi] of the non-NaN values (infinities included), plus whether NaN is possible.
struct FloatInterval {
  double lo = -std::numeric_limits<double>::infinity();
  double hi = std::numeric_limits<double>::infinity();
  bool maybe_nan = true;

  static FloatInterval everything() { return {}; }
  static FloatInterval single(double v);
  bool contains(double v) const;  // NaN is contained iff maybe_nan
};

// Which truth values a bool expression can take.
struct BoolInterval {
  bool can_be_false = true;
  bool can_be_true = true;

  bool always_true() const { return can_be_true && !can_be_false; }
  bool always_false() const { return can_be_false && !can_be_true; }
  bool operator==(const BoolInterval&) const = default;
};

// The bounds of one expression; the member matching `type` is meaningful.
struct Interval {
  ir::Type type = ir::Type::Int;
  IntInterval i;
  FloatInterval f;
  BoolInterval b;

  static Interval of(IntInterval v) { return {ir::Type::Int, v, {}, {}}; }
  static Interval of(FloatInterval v) { return {ir::Type::Float, {}, v, {}}; }
  static Interval of(BoolInterval v) { return {ir::Type::Bool, {}, {}, v}; }
  static Interval everything(ir::Type type) { return {type, {}, {}, {}}; }
};

// Bounds of the values of run-time tensor `tensor` over the box of indices `index` (one range per dimension),
// or nullopt when unknown. It must be sound for the contents the expression will be evaluated with: every
// element in the box lies in the returned interval (of the load's type: Int for int32, Float for float32).
// Boxes that are unbounded or reach outside the tensor may get nullopt: such loads fail at run time anyway.
using LoadBounds =
    std::function<std::optional<Interval>(const std::string& tensor, const std::vector<IntInterval>& index)>;

// Ranges of the variables an expression reads. Defaults are the full ranges (nothing known).
struct VarRanges {
  std::array<IntInterval, 10> ints{};  // indexed by ir::Var for q k i j b h H N M D
  FloatInterval s;                     // the scaled logit
  FloatInterval scale;
  std::map<std::string, Interval> symbols;  // symbols not listed range over their type's full range
  // Unset, or answering nullopt: a load ranges over its element type (any int32; any float, NaN included).
  LoadBounds load_bounds;

  IntInterval& operator[](ir::Var v) { return ints[static_cast<size_t>(v)]; }
  const IntInterval& operator[](ir::Var v) const { return ints[static_cast<size_t>(v)]; }
};

// Sound bounds of `e` over every point whose variables lie in `ranges`.
Interval bounds(const ir::Expr& e, const VarRanges& ranges);

// Short forms for the common case of a mask.
BoolInterval bool_bounds(const ir::Expr& e, const VarRanges& ranges);
IntInterval int_bounds(const ir::Expr& e, const VarRanges& ranges);

// "[lo, hi]" with "-inf"/"+inf", "{false, true}", for messages and tests.
std::string to_string(const IntInterval& v);
std::string to_string(const FloatInterval& v);
std::string to_string(const BoolInterval& v);

}  // namespace tessera::analysis
