// Interval rules for every node kind.
//
// Integers: bounds are combined in 128-bit arithmetic. When the mathematically exact result range leaves int64,
// the evaluator's wrapping arithmetic can produce any value, so the result is the full range; otherwise
// bounds beyond +-2^62 are widened to the infinities (IntInterval::range).
// Floats: IEEE operations with round-to-nearest are monotone, so evaluating them at the corners of the operand
// ranges bounds every result. Whenever NaN is possible the result is the unknown interval.
#include "compiler/analysis/interval.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "compiler/ir/log_bucket.h"

namespace tessera::analysis {

namespace {

using ir::BinaryOp;
using ir::Expr;
using ir::Fn;
using ir::Kind;
using ir::Type;

__extension__ typedef __int128 Wide;

constexpr double kInf = std::numeric_limits<double>::infinity();

// ---- integers ----

IntInterval from_wide(Wide lo, Wide hi) {
  if (lo < INT64_MIN || hi > INT64_MAX) return IntInterval::everything();  // wrap-around possible
  return IntInterval::range(static_cast<int64_t>(lo), static_cast<int64_t>(hi));
}

IntInterval hull(const IntInterval& a, const IntInterval& b) { return {std::min(a.lo, b.lo), std::max(a.hi, b.hi)}; }

void join(std::optional<IntInterval>& acc, const IntInterval& v) { acc = acc ? hull(*acc, v) : v; }

Wide wide_floor_div(Wide a, Wide b) {
  Wide q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

Wide wide_floor_mod(Wide a, Wide b) { return a - b * wide_floor_div(a, b); }

IntInterval int_add(const IntInterval& a, const IntInterval& b) {
  return from_wide(Wide{a.lo} + b.lo, Wide{a.hi} + b.hi);
}
IntInterval int_sub(const IntInterval& a, const IntInterval& b) {
  return from_wide(Wide{a.lo} - b.hi, Wide{a.hi} - b.lo);
}
IntInterval int_neg(const IntInterval& a) { return from_wide(-Wide{a.hi}, -Wide{a.lo}); }

IntInterval int_mul(const IntInterval& a, const IntInterval& b) {
  Wide c[4] = {Wide{a.lo} * b.lo, Wide{a.lo} * b.hi, Wide{a.hi} * b.lo, Wide{a.hi} * b.hi};
  return from_wide(*std::min_element(c, c + 4), *std::max_element(c, c + 4));
}

// Positive part [max(lo, 1), hi] and negative part [lo, min(hi, -1)] of a divisor range.
std::optional<IntInterval> positive_part(const IntInterval& b) {
  if (b.hi < 1) return std::nullopt;
  return IntInterval{std::max<int64_t>(b.lo, 1), b.hi};
}
std::optional<IntInterval> negative_part(const IntInterval& b) {
  if (b.lo > -1) return std::nullopt;
  return IntInterval{b.lo, std::min<int64_t>(b.hi, -1)};
}

IntInterval int_div(const IntInterval& a, const IntInterval& b) {
  std::optional<IntInterval> result;
  if (b.contains(0)) join(result, IntInterval::single(0));  // division by zero yields 0
  // floor(x / y) over a divisor range of one sign takes its extremes at the corners.
  for (const auto& part : {positive_part(b), negative_part(b)}) {
    if (!part) continue;
    Wide c[4] = {wide_floor_div(a.lo, part->lo), wide_floor_div(a.lo, part->hi), wide_floor_div(a.hi, part->lo),
                 wide_floor_div(a.hi, part->hi)};
    join(result, from_wide(*std::min_element(c, c + 4), *std::max_element(c, c + 4)));
  }
  return *result;
}

IntInterval int_mod(const IntInterval& a, const IntInterval& b) {
  std::optional<IntInterval> result;
  if (b.contains(0)) join(result, IntInterval::single(0));  // modulo by zero yields 0
  if (auto p = positive_part(b)) {
    if (p->is_single() && wide_floor_div(a.lo, p->lo) == wide_floor_div(a.hi, p->lo)) {
      // The dividend lies within one period, where x % c = x - c * floor(x / c) is increasing.
      join(result, from_wide(wide_floor_mod(a.lo, p->lo), wide_floor_mod(a.hi, p->lo)));
    } else if (a.lo >= 0 && a.hi < p->lo) {
      join(result, a);  // 0 <= x < y: x % y == x
    } else {
      IntInterval r{0, p->hi - 1};
      if (a.lo >= 0) r.hi = std::min(r.hi, a.hi);  // 0 <= x % y <= x
      join(result, IntInterval::range(r.lo, r.hi));
    }
  }
  if (auto n = negative_part(b)) {
    if (n->is_single() && wide_floor_div(a.lo, n->lo) == wide_floor_div(a.hi, n->lo)) {
      join(result, from_wide(wide_floor_mod(a.lo, n->lo), wide_floor_mod(a.hi, n->lo)));
    } else if (a.hi <= 0 && a.lo > n->hi) {
      join(result, a);  // y < x <= 0: x % y == x
    } else {
      IntInterval r{static_cast<int64_t>(Wide{n->lo} + 1), 0};
      if (a.hi <= 0) r.lo = std::max(r.lo, a.lo);  // x <= x % y <= 0
      join(result, IntInterval::range(r.lo, r.hi));
    }
  }
  return *result;
}

IntInterval int_min(const IntInterval& a, const IntInterval& b) { return {std::min(a.lo, b.lo), std::min(a.hi, b.hi)}; }
IntInterval int_max(const IntInterval& a, const IntInterval& b) { return {std::max(a.lo, b.lo), std::max(a.hi, b.hi)}; }

IntInterval int_abs(const IntInterval& a) {
  if (a.lo >= 0) return a;
  if (a.hi <= 0) return int_neg(a);
  return from_wide(0, std::max(-Wide{a.lo}, Wide{a.hi}));
}

// 2^(bit width of v) - 1 for v >= 0: the largest value with no bit above v's highest.
Wide all_ones_up_to(int64_t v) {
  Wide ones = 0;
  while (ones < v) ones = ones * 2 + 1;
  return ones;
}

IntInterval int_bitwise(Fn fn, const IntInterval& a, const IntInterval& b) {
  bool a_nonneg = a.lo >= 0;
  bool b_nonneg = b.lo >= 0;
  switch (fn) {
    case Fn::BitAnd:
      // x & y with one side non-negative lies in [0, that side].
      if (a_nonneg && b_nonneg) return {0, std::min(a.hi, b.hi)};
      if (a_nonneg) return {0, a.hi};
      if (b_nonneg) return {0, b.hi};
      return IntInterval::everything();
    case Fn::BitOr:
      if (a_nonneg && b_nonneg) return from_wide(std::max(a.lo, b.lo), all_ones_up_to(std::max(a.hi, b.hi)));
      return IntInterval::everything();
    case Fn::BitXor:
      if (a_nonneg && b_nonneg) return from_wide(0, all_ones_up_to(std::max(a.hi, b.hi)));
      return IntInterval::everything();
    case Fn::Shl:
      // Shifting by s in [0, 62] is wrapping multiplication by 2^s; other amounts (63, or out of range: 0) are
      // left to the full range.
      if (b.lo >= 0 && b.hi <= 62) {
        return int_mul(a, IntInterval{int64_t{1} << b.lo, int64_t{1} << b.hi});
      }
      return IntInterval::everything();
    case Fn::Shr: {
      // x >> s is floor(x / 2^s), monotone in x and in s for a fixed sign of x: the corners bound it.
      int64_t s_lo = std::clamp<int64_t>(b.lo, 0, 63);
      int64_t s_hi = std::clamp<int64_t>(b.hi, 0, 63);
      int64_t c[4] = {a.lo >> s_lo, a.lo >> s_hi, a.hi >> s_lo, a.hi >> s_hi};
      return IntInterval::range(*std::min_element(c, c + 4), *std::max_element(c, c + 4));
    }
    default: break;
  }
  throw std::logic_error("tessera internal error: not a binary bitwise function");
}

BoolInterval decided(bool can_be_false, bool can_be_true) { return {can_be_false, can_be_true}; }

template <typename T>
BoolInterval compare(BinaryOp op, T alo, T ahi, T blo, T bhi) {
  switch (op) {
    case BinaryOp::Lt: return decided(!(ahi < blo), alo < bhi);
    case BinaryOp::Le: return decided(!(ahi <= blo), alo <= bhi);
    case BinaryOp::Gt: return decided(!(alo > bhi), ahi > blo);
    case BinaryOp::Ge: return decided(!(alo >= bhi), ahi >= blo);
    case BinaryOp::Eq: {
      bool overlap = !(ahi < blo || bhi < alo);
      bool both_single = alo == ahi && blo == bhi;
      return decided(!(both_single && overlap), overlap);
    }
    case BinaryOp::Ne: {
      bool overlap = !(ahi < blo || bhi < alo);
      bool both_single = alo == ahi && blo == bhi;
      return decided(overlap, !(both_single && overlap));
    }
    default: break;
  }
  throw std::logic_error("tessera internal error: not a comparison");
}

// ---- floats ----

// Corner evaluation of a monotone-per-argument IEEE operation; NaN at any corner means the unknown result.
template <typename Op>
FloatInterval float_corners(const FloatInterval& a, const FloatInterval& b, Op op) {
  double c[4] = {op(a.lo, b.lo), op(a.lo, b.hi), op(a.hi, b.lo), op(a.hi, b.hi)};
  for (double v : c) {
    if (std::isnan(v)) return FloatInterval::everything();
  }
  return {*std::min_element(c, c + 4), *std::max_element(c, c + 4), a.maybe_nan || b.maybe_nan};
}

bool contains_zero(const FloatInterval& a) { return a.lo <= 0 && a.hi >= 0; }
bool has_infinite_bound(const FloatInterval& a) { return std::isinf(a.lo) || std::isinf(a.hi); }

FloatInterval float_arith(BinaryOp op, const FloatInterval& a, const FloatInterval& b) {
  switch (op) {
    case BinaryOp::Add: return float_corners(a, b, [](double x, double y) { return x + y; });
    case BinaryOp::Sub: return float_corners(a, b, [](double x, double y) { return x - y; });
    case BinaryOp::Mul:
      // 0 * inf is NaN even when no corner is 0 * inf.
      if ((contains_zero(a) && has_infinite_bound(b)) || (contains_zero(b) && has_infinite_bound(a))) {
        return FloatInterval::everything();
      }
      return float_corners(a, b, [](double x, double y) { return x * y; });
    case BinaryOp::Div:
      if (contains_zero(b) || (has_infinite_bound(a) && has_infinite_bound(b))) return FloatInterval::everything();
      return float_corners(a, b, [](double x, double y) { return x / y; });
    default: return FloatInterval::everything();
  }
}

// fmin/fmax return the other operand when one is NaN, so a possible NaN widens the result to both ranges.
FloatInterval float_min_max(bool is_min, const FloatInterval& a, const FloatInterval& b) {
  FloatInterval r = is_min ? FloatInterval{std::fmin(a.lo, b.lo), std::fmin(a.hi, b.hi), false}
                           : FloatInterval{std::fmax(a.lo, b.lo), std::fmax(a.hi, b.hi), false};
  if (a.maybe_nan || b.maybe_nan) {
    r.lo = std::min({r.lo, a.lo, b.lo});
    r.hi = std::max({r.hi, a.hi, b.hi});
    r.maybe_nan = a.maybe_nan && b.maybe_nan;
  }
  return r;
}

FloatInterval float_abs(const FloatInterval& a) {
  if (a.lo >= 0) return a;
  if (a.hi <= 0) return {-a.hi, -a.lo, a.maybe_nan};
  return {0, std::max(-a.lo, a.hi), a.maybe_nan};
}

// libm's transcendental functions are accurate to an ulp or so but not guaranteed monotone; two ulps of
// slack on each side keep the corner bounds sound.
double down(double v) { return std::nextafter(std::nextafter(v, -kInf), -kInf); }
double up(double v) { return std::nextafter(std::nextafter(v, kInf), kInf); }

template <typename F>
FloatInterval monotone(const FloatInterval& a, F f, bool exact, double floor_value, double ceil_value) {
  double lo = f(a.lo);
  double hi = f(a.hi);
  if (std::isnan(lo) || std::isnan(hi)) return FloatInterval::everything();
  if (!exact) {
    lo = std::max(down(lo), floor_value);
    hi = std::min(up(hi), ceil_value);
  }
  return {lo, hi, a.maybe_nan};
}

FloatInterval float_unary_fn(Fn fn, const FloatInterval& a) {
  switch (fn) {
    case Fn::Tanh:
      return monotone(
          a, [](double x) { return std::tanh(x); }, false, -1.0, 1.0);
    case Fn::Exp:
      return monotone(
          a, [](double x) { return std::exp(x); }, false, 0.0, kInf);
    case Fn::Exp2:
      return monotone(
          a, [](double x) { return std::exp2(x); }, false, 0.0, kInf);
    case Fn::Floor:
      return monotone(
          a, [](double x) { return std::floor(x); }, true, -kInf, kInf);
    case Fn::Ceil:
      return monotone(
          a, [](double x) { return std::ceil(x); }, true, -kInf, kInf);
    case Fn::Log:
    case Fn::Sqrt: {
      // Negative arguments give NaN; the non-NaN results come from the non-negative part of the range.
      if (a.hi < 0) return FloatInterval::everything();
      FloatInterval domain{std::max(a.lo, 0.0), a.hi, a.maybe_nan || a.lo < 0};
      if (fn == Fn::Sqrt)
        return monotone(
            domain, [](double x) { return std::sqrt(x); }, true, -kInf, kInf);
      return monotone(
          domain, [](double x) { return std::log(x); }, false, -kInf, kInf);
    }
    default: return FloatInterval::everything();
  }
}

IntInterval to_int(const FloatInterval& a) {
  // int(x) truncates; NaN and values outside +-9.2e18 give 0 (see ir::evaluate).
  constexpr double kLimit = 9.2e18;
  std::optional<IntInterval> result;
  if (a.maybe_nan || a.lo < -kLimit || a.hi > kLimit) join(result, IntInterval::single(0));
  double lo = std::max(a.lo, -kLimit);
  double hi = std::min(a.hi, kLimit);
  if (lo <= hi) {
    join(result, IntInterval::range(static_cast<int64_t>(std::trunc(lo)), static_cast<int64_t>(std::trunc(hi))));
  }
  return result ? *result : IntInterval::single(0);
}

// ---- bools ----

BoolInterval bool_eq(bool is_eq, const BoolInterval& a, const BoolInterval& b) {
  BoolInterval r{false, false};
  for (int x = 0; x < 2; ++x) {
    if (!(x ? a.can_be_true : a.can_be_false)) continue;
    for (int y = 0; y < 2; ++y) {
      if (!(y ? b.can_be_true : b.can_be_false)) continue;
      bool v = (x == y) == is_eq;
      (v ? r.can_be_true : r.can_be_false) = true;
    }
  }
  return r;
}

Interval hull(const Interval& a, const Interval& b) {
  switch (a.type) {
    case Type::Int: return Interval::of(hull(a.i, b.i));
    case Type::Float:
      return Interval::of(
          FloatInterval{std::min(a.f.lo, b.f.lo), std::max(a.f.hi, b.f.hi), a.f.maybe_nan || b.f.maybe_nan});
    case Type::Bool:
      return Interval::of(BoolInterval{a.b.can_be_false || b.b.can_be_false, a.b.can_be_true || b.b.can_be_true});
  }
  return a;
}

// ---- the walk ----

Interval eval(const Expr& e, const VarRanges& r);

Interval eval_binary(const Expr& e, const VarRanges& r) {
  Interval a = eval(e->operands[0], r);
  BinaryOp op = e->binary_op;
  if (op == BinaryOp::And || op == BinaryOp::Or) {
    Interval b = eval(e->operands[1], r);
    if (op == BinaryOp::And) {
      return Interval::of(BoolInterval{a.b.can_be_false || b.b.can_be_false, a.b.can_be_true && b.b.can_be_true});
    }
    return Interval::of(BoolInterval{a.b.can_be_false && b.b.can_be_false, a.b.can_be_true || b.b.can_be_true});
  }
  Interval b = eval(e->operands[1], r);
  bool comparison = e->type == Type::Bool;
  switch (a.type) {
    case Type::Int:
      if (comparison) return Interval::of(compare(op, a.i.lo, a.i.hi, b.i.lo, b.i.hi));
      switch (op) {
        case BinaryOp::Add: return Interval::of(int_add(a.i, b.i));
        case BinaryOp::Sub: return Interval::of(int_sub(a.i, b.i));
        case BinaryOp::Mul: return Interval::of(int_mul(a.i, b.i));
        case BinaryOp::Div: return Interval::of(int_div(a.i, b.i));
        case BinaryOp::Mod: return Interval::of(int_mod(a.i, b.i));
        default: break;
      }
      break;
    case Type::Float:
      if (comparison) {
        BoolInterval v = compare(op, a.f.lo, a.f.hi, b.f.lo, b.f.hi);
        // Every comparison with NaN is false, except != which is true.
        if (a.f.maybe_nan || b.f.maybe_nan) (op == BinaryOp::Ne ? v.can_be_true : v.can_be_false) = true;
        return Interval::of(v);
      }
      return Interval::of(float_arith(op, a.f, b.f));
    case Type::Bool: return Interval::of(bool_eq(op == BinaryOp::Eq, a.b, b.b));
  }
  throw std::logic_error("tessera internal error: ill-typed binary node in interval analysis");
}

Interval eval_call(const Expr& e, const VarRanges& r) {
  const auto& ops = e->operands;
  if (e->fn == Fn::Select) {
    Interval c = eval(ops[0], r);
    if (c.b.always_true()) return eval(ops[1], r);
    if (c.b.always_false()) return eval(ops[2], r);
    return hull(eval(ops[1], r), eval(ops[2], r));
  }
  std::vector<Interval> a;
  a.reserve(ops.size());
  for (const auto& o : ops) a.push_back(eval(o, r));
  bool is_int = !a.empty() && a[0].type == Type::Int;
  switch (e->fn) {
    case Fn::Min:
      return is_int ? Interval::of(int_min(a[0].i, a[1].i)) : Interval::of(float_min_max(true, a[0].f, a[1].f));
    case Fn::Max:
      return is_int ? Interval::of(int_max(a[0].i, a[1].i)) : Interval::of(float_min_max(false, a[0].f, a[1].f));
    case Fn::Abs: return is_int ? Interval::of(int_abs(a[0].i)) : Interval::of(float_abs(a[0].f));
    case Fn::Clamp:
      if (is_int) return Interval::of(int_min(int_max(a[0].i, a[1].i), a[2].i));
      return Interval::of(float_min_max(true, float_min_max(false, a[0].f, a[1].f), a[2].f));
    case Fn::Tanh:
    case Fn::Exp:
    case Fn::Log:
    case Fn::Exp2:
    case Fn::Sqrt:
    case Fn::Floor:
    case Fn::Ceil: return Interval::of(float_unary_fn(e->fn, a[0].f));
    case Fn::Pow: return Interval::everything(Type::Float);
    case Fn::ToFloat:
      return Interval::of(FloatInterval{static_cast<double>(a[0].i.lo), static_cast<double>(a[0].i.hi), false});
    case Fn::ToInt: return Interval::of(to_int(a[0].f));
    case Fn::BitNot: return Interval::of(IntInterval::range(~a[0].i.hi, ~a[0].i.lo));
    case Fn::BitAnd:
    case Fn::BitOr:
    case Fn::BitXor:
    case Fn::Shl:
    case Fn::Shr: return Interval::of(int_bitwise(e->fn, a[0].i, a[1].i));
    case Fn::LogBucket: {
      // Non-decreasing in n once the other operands are fixed.
      const IntInterval &exact = a[1].i, &max_distance = a[2].i, &buckets = a[3].i;
      if (exact.lo != exact.hi || max_distance.lo != max_distance.hi || buckets.lo != buckets.hi) {
        return Interval::of(IntInterval::everything());
      }
      return Interval::of(IntInterval::range(ir::log_bucket(a[0].i.lo, exact.lo, max_distance.lo, buckets.lo),
                                             ir::log_bucket(a[0].i.hi, exact.lo, max_distance.lo, buckets.lo)));
    }
    case Fn::HashUniform: return Interval::of(FloatInterval{0.5 / 8388608.0, 1.0 - 0.5 / 8388608.0, false});
    case Fn::Select: break;
  }
  throw std::logic_error("tessera internal error: unknown function in interval analysis");
}

// Without knowledge of the contents, any value of the element type; with the hook, its bounds over the box the
// indices range over, cut to the element type (no answer is wider than what the data can hold).
Interval eval_load(const Expr& e, const VarRanges& r) {
  constexpr IntInterval kInt32Range{INT32_MIN, INT32_MAX};
  if (r.load_bounds) {
    std::vector<IntInterval> box;
    box.reserve(e->operands.size());
    for (const auto& index : e->operands) box.push_back(eval(index, r).i);
    std::optional<Interval> known = r.load_bounds(e->name, box);
    if (known && known->type == e->type) {
      if (e->type == Type::Float) return *known;
      IntInterval v{std::max(known->i.lo, kInt32Range.lo), std::min(known->i.hi, kInt32Range.hi)};
      if (v.lo > v.hi) {
        throw std::logic_error(
            fmt::format("tessera internal error: load bounds {} of int32 tensor '{}' hold no int32 value",
                        to_string(known->i), e->name));
      }
      return Interval::of(v);
    }
  }
  if (e->elem_type == ir::ElemType::Int32) return Interval::of(kInt32Range);
  return Interval::everything(Type::Float);  // float32 data may hold NaN or infinities
}

Interval eval(const Expr& e, const VarRanges& r) {
  switch (e->kind) {
    case Kind::IntImm: return Interval::of(IntInterval::single(e->int_value));
    case Kind::FloatImm: return Interval::of(FloatInterval::single(e->float_value));
    case Kind::BoolImm: return Interval::of(BoolInterval{!e->bool_value, e->bool_value});
    case Kind::Var:
      if (e->var == ir::Var::Score) return Interval::of(r.s);
      if (e->var == ir::Var::Scale) return Interval::of(r.scale);
      return Interval::of(r[e->var]);
    case Kind::Symbol: {
      auto it = r.symbols.find(e->name);
      if (it != r.symbols.end() && it->second.type == e->type) return it->second;
      return Interval::everything(e->type);
    }
    case Kind::Unary: {
      Interval a = eval(e->operands[0], r);
      if (e->unary_op == ir::UnaryOp::Not) return Interval::of(BoolInterval{a.b.can_be_true, a.b.can_be_false});
      if (a.type == Type::Int) return Interval::of(int_neg(a.i));
      return Interval::of(FloatInterval{-a.f.hi, -a.f.lo, a.f.maybe_nan});
    }
    case Kind::Binary: return eval_binary(e, r);
    case Kind::Call: return eval_call(e, r);
    case Kind::Load: return eval_load(e, r);
    case Kind::DotQ: return Interval::everything(Type::Float);
  }
  throw std::logic_error("tessera internal error: unknown node kind in interval analysis");
}

std::string bound_text(int64_t v, bool infinite, const char* inf_text) {
  return infinite ? inf_text : std::to_string(v);
}

}  // namespace

IntInterval IntInterval::single(int64_t v) { return range(v, v); }

IntInterval IntInterval::range(int64_t lo, int64_t hi) {
  if (lo > hi) throw std::invalid_argument(fmt::format("empty integer interval [{}, {}]", lo, hi));
  IntInterval r{lo, hi};
  if (r.lo < -kFiniteLimit) r.lo = kNegInf;
  if (r.lo > kFiniteLimit) r.lo = kFiniteLimit;
  if (r.hi > kFiniteLimit) r.hi = kPosInf;
  if (r.hi < -kFiniteLimit) r.hi = -kFiniteLimit;
  return r;
}

FloatInterval FloatInterval::single(double v) {
  if (std::isnan(v)) return everything();
  return {v, v, false};
}

bool FloatInterval::contains(double v) const {
  if (std::isnan(v)) return maybe_nan;
  return lo <= v && v <= hi;
}

Interval bounds(const ir::Expr& e, const VarRanges& ranges) {
  if (!e) throw std::invalid_argument("interval analysis of a null expression");
  return eval(e, ranges);
}

BoolInterval bool_bounds(const ir::Expr& e, const VarRanges& ranges) {
  if (!e || e->type != Type::Bool) throw std::invalid_argument("bool_bounds needs a bool expression");
  return eval(e, ranges).b;
}

IntInterval int_bounds(const ir::Expr& e, const VarRanges& ranges) {
  if (!e || e->type != Type::Int) throw std::invalid_argument("int_bounds needs an int expression");
  return eval(e, ranges).i;
}

std::string to_string(const IntInterval& v) {
  return "[" + bound_text(v.lo, !v.lo_finite(), "-inf") + ", " + bound_text(v.hi, !v.hi_finite(), "+inf") + "]";
}

std::string to_string(const FloatInterval& v) {
  return fmt::format("[{}, {}]{}", v.lo, v.hi, v.maybe_nan ? " or NaN" : "");
}

std::string to_string(const BoolInterval& v) {
  if (v.always_true()) return "{true}";
  if (v.always_false()) return "{false}";
  if (v.can_be_false && v.can_be_true) return "{false, true}";
  return "{}";
}

}  // namespace tessera::analysis
