// The CUDA target's pattern functors (targets/cuda/device_expression.h), compiled by the host compiler,
// against the IR's reference semantics (compiler/ir/evaluate.h): the helpers of expression_support.cuh over
// edge values, and every functor of the generated header pattern_functors.h (test/tools/
// emit_pattern_functors.cpp) over every point of every view of its plan component.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/printer.h"
#include "compiler/planner/sparsity_plan.h"
#include "compiler/sema/pattern_library.h"
#include "pattern_functors.h"
#include "targets/cuda/device_expression.h"
#include "test/unit/random_expressions.h"

namespace tessera {
namespace {

namespace tc = tessera_cuda;
namespace tf = tessera_cuda::test_functors;

// Reduces a 64-bit reference result modulo 2^32, as the CUDA target's 32-bit integers do.
int32_t wrap32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

const int32_t kEdges[] = {std::numeric_limits<int32_t>::min(),
                          std::numeric_limits<int32_t>::min() + 1,
                          -65537,
                          -37,
                          -8,
                          -7,
                          -3,
                          -2,
                          -1,
                          0,
                          1,
                          2,
                          3,
                          7,
                          8,
                          31,
                          32,
                          33,
                          63,
                          64,
                          65,
                          1 << 20,
                          std::numeric_limits<int32_t>::max() - 1,
                          std::numeric_limits<int32_t>::max()};

// The reference value of fn applied to integer constants.
int64_t reference_call(ir::Fn fn, std::vector<int64_t> args) {
  std::vector<ir::Expr> operands;
  for (int64_t a : args) operands.push_back(ir::int_imm(a));
  return ir::evaluate(ir::call(fn, operands), ir::EvalEnv{}).i;
}

TEST(CudaExpressionSupport, IntegerArithmeticIsTheReferenceModulo2To32) {
  for (int32_t a : kEdges) {
    EXPECT_EQ(tc::neg_i32(a), wrap32(ir::wrapping_sub(0, a))) << a;
    EXPECT_EQ(tc::abs_i32(a), wrap32(reference_call(ir::Fn::Abs, {a}))) << a;
    EXPECT_EQ(tc::bitnot_i32(a), wrap32(reference_call(ir::Fn::BitNot, {a}))) << a;
    for (int32_t b : kEdges) {
      SCOPED_TRACE(::testing::Message() << "a = " << a << ", b = " << b);
      // 32-bit operands cannot overflow the 64-bit reference, so its result reduced is the wrapped result.
      EXPECT_EQ(tc::add_i32(a, b), wrap32(ir::wrapping_add(a, b)));
      EXPECT_EQ(tc::sub_i32(a, b), wrap32(ir::wrapping_sub(a, b)));
      EXPECT_EQ(tc::mul_i32(a, b), wrap32(ir::wrapping_mul(a, b)));
      EXPECT_EQ(tc::floor_div_i32(a, b), wrap32(ir::floor_div(a, b)));
      EXPECT_EQ(tc::floor_mod_i32(a, b), wrap32(ir::floor_mod(a, b)));
      EXPECT_EQ(tc::min_i32(a, b), wrap32(reference_call(ir::Fn::Min, {a, b})));
      EXPECT_EQ(tc::max_i32(a, b), wrap32(reference_call(ir::Fn::Max, {a, b})));
      EXPECT_EQ(tc::bitand_i32(a, b), wrap32(reference_call(ir::Fn::BitAnd, {a, b})));
      EXPECT_EQ(tc::bitor_i32(a, b), wrap32(reference_call(ir::Fn::BitOr, {a, b})));
      EXPECT_EQ(tc::bitxor_i32(a, b), wrap32(reference_call(ir::Fn::BitXor, {a, b})));
      EXPECT_EQ(tc::shl_i32(a, b), wrap32(reference_call(ir::Fn::Shl, {a, b})));
      EXPECT_EQ(tc::shr_i32(a, b), wrap32(reference_call(ir::Fn::Shr, {a, b})));
      for (int32_t c : {-5, 0, 7, std::numeric_limits<int32_t>::max()}) {
        EXPECT_EQ(tc::clamp_i32(a, b, c), wrap32(reference_call(ir::Fn::Clamp, {a, b, c}))) << "c = " << c;
      }
    }
  }
  // The overflowing quotient and its remainder, spelled out.
  EXPECT_EQ(tc::floor_div_i32(std::numeric_limits<int32_t>::min(), -1), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(tc::floor_mod_i32(std::numeric_limits<int32_t>::min(), -1), 0);
  EXPECT_EQ(tc::floor_div_i32(-7, 2), -4);
  EXPECT_EQ(tc::floor_mod_i32(-7, 2), 1);
  EXPECT_EQ(tc::floor_mod_i32(7, -2), -1);
  EXPECT_EQ(tc::floor_div_i32(5, 0), 0);
  EXPECT_EQ(tc::floor_mod_i32(5, 0), 0);
}

// hash_uniform takes each argument's low 32 bits: the 32-bit helper equals the interpreter bit for bit.
TEST(CudaExpressionSupport, HashUniformIsTheReference) {
  for (int32_t a : kEdges) {
    for (int32_t b : kEdges) {
      const double want =
          ir::evaluate(ir::call(ir::Fn::HashUniform, {ir::int_imm(b), ir::int_imm(a), ir::int_imm(-int64_t{a}),
                                                      ir::int_imm(7), ir::int_imm(b ^ a)}),
                       ir::EvalEnv{})
              .f;
      EXPECT_EQ(static_cast<double>(tc::hash_uniform_f32(b, a, tc::neg_i32(a), 7, b ^ a)), want) << a << " " << b;
      EXPECT_GT(want, 0.0);
      EXPECT_LT(want, 1.0);
    }
  }
}

TEST(CudaExpressionSupport, FloatToIntTruncatesAndGivesZeroOutside32Bits) {
  const float inf = std::numeric_limits<float>::infinity();
  const float values[] = {0.0f, -0.0f, 0.5f,          -0.5f,         1.999f,         -2.5f,
                          1e9f, -1e9f, 2147483520.0f, 2147483648.0f, -2147483648.0f, -2147483904.0f,
                          3e9f, -3e9f, 1e30f,         inf,           -inf,           std::nanf("")};
  for (float x : values) {
    int64_t reference = ir::evaluate(ir::call(ir::Fn::ToInt, {ir::float_imm(x)}), ir::EvalEnv{}).i;
    // The reference's rule (NaN and out of range give 0) with the CUDA target's 32-bit range.
    int64_t expected =
        reference >= std::numeric_limits<int32_t>::min() && reference <= std::numeric_limits<int32_t>::max() ? reference
                                                                                                             : 0;
    EXPECT_EQ(tc::to_i32(x), expected) << x;
  }
  EXPECT_EQ(tc::to_i32(-2147483648.0f), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(tc::to_i32(2147483648.0f), 0);
  EXPECT_EQ(tc::to_f32(-7), -7.0f);
}

TEST(CudaExpressionSupport, FloatHelpersFollowTheReference) {
  EXPECT_TRUE(std::isinf(tc::f32_inf()) && tc::f32_inf() > 0);
  EXPECT_TRUE(std::isnan(tc::f32_nan()));
  const float nan = tc::f32_nan(), inf = tc::f32_inf();
  const float values[] = {-7.5f, -2.0f, -0.25f, -0.0f, 0.0f, 0.75f, 3.0f, 7.5f, inf, -inf, nan};
  auto reference = [](ir::Fn fn, std::vector<float> args) {
    std::vector<ir::Expr> operands;
    for (float a : args) operands.push_back(ir::float_imm(a));
    return ir::evaluate(ir::call(fn, operands), ir::EvalEnv{}).f;
  };
  // Exact operations: the float result is the reference's double result rounded, NaN for NaN.
  auto same = [](float got, double want) {
    return std::isnan(want) ? std::isnan(got) : got == static_cast<float>(want);
  };
  for (float a : values) {
    EXPECT_TRUE(same(tc::abs_f32(a), reference(ir::Fn::Abs, {a}))) << a;
    EXPECT_TRUE(same(tc::floor_f32(a), reference(ir::Fn::Floor, {a}))) << a;
    EXPECT_TRUE(same(tc::ceil_f32(a), reference(ir::Fn::Ceil, {a}))) << a;
    EXPECT_TRUE(same(tc::sqrt_f32(a), reference(ir::Fn::Sqrt, {a}))) << a;
    for (float b : values) {
      SCOPED_TRACE(::testing::Message() << "a = " << a << ", b = " << b);
      EXPECT_TRUE(same(tc::min_f32(a, b), reference(ir::Fn::Min, {a, b})));
      EXPECT_TRUE(same(tc::max_f32(a, b), reference(ir::Fn::Max, {a, b})));
      EXPECT_TRUE(same(tc::clamp_f32(a, b, 1.0f), reference(ir::Fn::Clamp, {a, b, 1.0f})));
      double mod = ir::evaluate(ir::binary(ir::BinaryOp::Mod, ir::float_imm(a), ir::float_imm(b)), ir::EvalEnv{}).f;
      EXPECT_TRUE(same(tc::mod_f32(a, b), mod)) << tc::mod_f32(a, b) << " vs " << mod;
    }
  }
  // Transcendental functions: within a few float ulps of the double reference.
  for (float a : {-3.0f, -0.5f, 0.0f, 0.25f, 1.0f, 2.5f, 10.0f}) {
    EXPECT_NEAR(tc::tanh_f32(a), reference(ir::Fn::Tanh, {a}), 1e-6) << a;
    EXPECT_NEAR(tc::exp_f32(a), reference(ir::Fn::Exp, {a}), 1e-6 * std::exp(a)) << a;
    EXPECT_NEAR(tc::exp2_f32(a), reference(ir::Fn::Exp2, {a}), 1e-6 * std::exp2(a)) << a;
    EXPECT_NEAR(tc::pow_f32(2.0f, a), reference(ir::Fn::Pow, {2.0f, a}), 1e-6 * std::exp2(a)) << a;
    if (a > 0) {
      EXPECT_NEAR(tc::log_f32(a), reference(ir::Fn::Log, {a}), 1e-6) << a;
    }
  }
}

TEST(CudaExpressionSupport, LoadsClampEachIndexIntoTheShape) {
  const int32_t ints[6] = {10, 11, 12, 20, 21, 22};  // [2, 3]
  const float floats[3] = {0.5f, 1.5f, 2.5f};        // [3]
  tc::PatternArgs a;
  a.tensors[0] = ints;
  a.shapes[0][0] = 2;
  a.shapes[0][1] = 3;
  a.tensors[1] = floats;
  a.shapes[1][0] = 3;
  auto at = [&](int32_t r, int32_t c) {
    const tc::i32 index[2] = {r, c};
    return tc::load_i32(a, 0, 2, index);
  };
  EXPECT_EQ(at(0, 0), 10);
  EXPECT_EQ(at(1, 2), 22);
  EXPECT_EQ(at(0, 1), 11);
  EXPECT_EQ(at(-1, 1), 11);
  EXPECT_EQ(at(1, -5), 20);
  EXPECT_EQ(at(7, 3), 22);
  EXPECT_EQ(at(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()), 12);
  for (int32_t x : {-3, 0, 1, 2, 9}) {
    const tc::i32 index[1] = {x};
    EXPECT_EQ(tc::load_f32(a, 1, 1, index), floats[std::clamp(x, 0, 2)]) << x;
  }
}

// ---- The emitter's errors and form ----

ir::Pattern pattern_of(ir::Expr mask, ir::Expr score = ir::var(ir::Var::Score)) {
  return ir::Pattern{"test", std::move(mask), std::move(score), {}};
}

template <class F>
void expect_unsupported(F&& emit, const std::string& fragment) {
  try {
    emit();
    ADD_FAILURE() << "expected UnsupportedExpression mentioning '" << fragment << "'";
  } catch (const cuda::UnsupportedExpression& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(CudaDeviceExpression, UnknownSymbolThrows) {
  ir::Pattern p = pattern_of(ir::binary(ir::BinaryOp::Le, ir::var(ir::Var::K), ir::symbol("window")));
  expect_unsupported([&] { cuda::emit_pattern_functor(p, {"F", {"view_query_origin"}, {}}); }, "window");
  // An unsupported expression is a user error, which the CLI reports as such.
  EXPECT_THROW(cuda::emit_pattern_functor(p, {"F", {}, {}}), std::runtime_error);
  EXPECT_NO_THROW(cuda::emit_pattern_functor(p, {"F", {"other", "window"}, {}}));
}

TEST(CudaDeviceExpression, WhatCannotBeEmittedThrows) {
  const ir::Expr k = ir::var(ir::Var::K);
  auto emit = [](const ir::Pattern& p, cuda::FunctorSpec spec) {
    return [p, spec] { cuda::emit_pattern_functor(p, spec); };
  };
  ir::Pattern load = pattern_of(ir::binary(ir::BinaryOp::Eq, ir::load("seg", ir::ElemType::Int32, {k}), k));
  expect_unsupported(emit(load, {"F", {}, {"other"}}), "seg");
  ir::Pattern deep =
      pattern_of(ir::binary(ir::BinaryOp::Eq, ir::load("seg", ir::ElemType::Int32, {k, k, k, k, k}), ir::int_imm(0)));
  expect_unsupported(emit(deep, {"F", {}, {"seg"}}), "rank 5");
  std::vector<std::string> many(17, "x");
  expect_unsupported(emit(pattern_of(ir::bool_imm(true)), {"F", many, {}}), "17 symbols");
  std::vector<std::string> tensors(9, "t");
  expect_unsupported(emit(pattern_of(ir::bool_imm(true)), {"F", {}, tensors}), "9 run-time tensors");
  ir::Pattern big = pattern_of(ir::binary(ir::BinaryOp::Lt, k, ir::int_imm(int64_t{1} << 40)));
  expect_unsupported(emit(big, {"F", {}, {}}), "1099511627776");
  ir::Pattern score_in_mask = pattern_of(ir::binary(ir::BinaryOp::Lt, ir::var(ir::Var::Score), ir::float_imm(0)));
  expect_unsupported(emit(score_in_mask, {"F", {}, {}}), "score");
  ir::Pattern float_symbol = pattern_of(
      ir::bool_imm(true), ir::binary(ir::BinaryOp::Mul, ir::var(ir::Var::Score), ir::symbol("cap", ir::Type::Float)));
  expect_unsupported(emit(float_symbol, {"F", {"cap"}, {}}), "cap");
  expect_unsupported(emit(pattern_of(ir::bool_imm(true)), {"not a name", {}, {}}), "not a name");
}

TEST(CudaDeviceExpression, SharedSubexpressionsAreComputedOnce) {
  // (i - j >= 0) && (i - j < 5), the two differences built separately: equal structure, one constant.
  auto diff = [] { return ir::binary(ir::BinaryOp::Sub, ir::var(ir::Var::I), ir::var(ir::Var::J)); };
  ir::Pattern p = pattern_of(ir::binary(ir::BinaryOp::And, ir::binary(ir::BinaryOp::Ge, diff(), ir::int_imm(0)),
                                        ir::binary(ir::BinaryOp::Lt, diff(), ir::int_imm(5))));
  std::string text = cuda::emit_pattern_functor(p, {"Band", {}, {}});
  size_t first = text.find("sub_i32(i, j)");
  ASSERT_NE(first, std::string::npos) << text;
  EXPECT_EQ(text.find("sub_i32(i, j)", first + 1), std::string::npos) << text;
  EXPECT_NE(text.find("struct Band {"), std::string::npos) << text;
  EXPECT_NE(text.find("kHasMask = true"), std::string::npos) << text;
  EXPECT_NE(text.find("kHasScore = false"), std::string::npos) << text;
}

TEST(CudaDeviceExpression, FloatConstantsAreTheirFloatValuesExactly) {
  const double values[] = {0.1, 2.5, -3.0, 1e-7, 123456789.0, 3.4028235e38, 1e-45, -0.0};
  for (double c : values) {
    ir::Pattern p =
        pattern_of(ir::bool_imm(true), ir::binary(ir::BinaryOp::Mul, ir::var(ir::Var::Score), ir::float_imm(c)));
    std::string text = cuda::emit_pattern_functor(p, {"F", {}, {}});
    size_t at = text.find("= s * ");
    ASSERT_NE(at, std::string::npos) << text;
    std::string literal = text.substr(at + 6, text.find(';', at) - at - 6);
    ASSERT_EQ(literal.back(), 'f') << literal;
    const float parsed = std::strtof(literal.c_str(), nullptr);
    EXPECT_EQ(parsed, static_cast<float>(c)) << literal;
    EXPECT_EQ(std::signbit(parsed), std::signbit(c)) << literal;
  }
  // Beyond the float range: infinity from half an ulp above FLT_MAX on (IEEE rounding), NaN stays NaN.
  auto literal_of = [](double c) {
    return cuda::emit_pattern_functor(
        pattern_of(ir::bool_imm(true), ir::binary(ir::BinaryOp::Mul, ir::var(ir::Var::Score), ir::float_imm(c))),
        {"F", {}, {}});
  };
  EXPECT_NE(literal_of(1e39).find("s * f32_inf()"), std::string::npos);
  EXPECT_NE(literal_of(-1e300).find("s * -f32_inf()"), std::string::npos);
  EXPECT_NE(literal_of(std::nan("")).find("s * f32_nan()"), std::string::npos);
  EXPECT_NE(literal_of(0x1.fffffefp+127).find("s * 3.4028235e+38f"), std::string::npos);
}

// ---- Generated functors against the reference ----

// Random inputs shared by every case: B = 2, H = 4, D = 16 over the generator's N x M.
struct Inputs {
  static constexpr int64_t B = 2, H = 4, D = 16, R = 33;
  int64_t N = tf::kPlanN, M = tf::kPlanM;
  double scale = 0.3f;            // a float value, so the functor (float) and the reference (double) read the same
  std::vector<int32_t> segments;  // [B, M], sorted per batch
  std::vector<float> rel;         // [H, R, D]
  std::vector<float> rel_bidir;   // [H, R, D]: relative_bidir(max_distance <= 16) reads 2 * max_distance + 1 rows
  std::vector<float> rel_rows;    // [H, R, D]: relative2d
  std::vector<float> rel_cols;    // [H, R, D]
  std::vector<float> t5;          // [H, R]: t5_bias(buckets <= 33)
  std::vector<float> bilinear_w;  // [H, D, D]: read on the host (the queries are projected before the kernel)
  std::vector<float> centers;     // [B, N]: luong_local_p's centres, over the key positions
  std::vector<float> q;           // [B, H, N, D]
  std::map<std::string, ir::TensorView> tensors;

  Inputs() {
    std::mt19937 rng(20240611);
    std::uniform_int_distribution<int32_t> ids(0, 5);
    std::uniform_real_distribution<float> values(-1.0f, 1.0f);
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int32_t> row(static_cast<size_t>(M));
      for (auto& v : row) v = ids(rng);
      std::sort(row.begin(), row.end());
      segments.insert(segments.end(), row.begin(), row.end());
    }
    rel.resize(static_cast<size_t>(H * R * D));
    for (auto& v : rel) v = values(rng);
    for (auto* table : {&rel_bidir, &rel_rows, &rel_cols}) {
      table->resize(static_cast<size_t>(H * R * D));
      for (auto& v : *table) v = values(rng);
    }
    t5.resize(static_cast<size_t>(H * R));
    for (auto& v : t5) v = values(rng);
    bilinear_w.resize(static_cast<size_t>(H * D * D));
    for (auto& v : bilinear_w) v = values(rng);
    std::uniform_real_distribution<float> positions(-2.0f, static_cast<float>(M) + 1.0f);
    centers.resize(static_cast<size_t>(B * N));
    for (auto& v : centers) v = positions(rng);
    q.resize(static_cast<size_t>(B * H * N * D));
    for (auto& v : q) v = values(rng);
    tensors["segments"] = {ir::ElemType::Int32, {B, M}, segments.data()};
    tensors["rel"] = {ir::ElemType::Float32, {H, R, D}, rel.data()};
    tensors["rel_bidir"] = {ir::ElemType::Float32, {H, R, D}, rel_bidir.data()};
    tensors["rel_rows"] = {ir::ElemType::Float32, {H, R, D}, rel_rows.data()};
    tensors["rel_cols"] = {ir::ElemType::Float32, {H, R, D}, rel_cols.data()};
    tensors["t5"] = {ir::ElemType::Float32, {H, R}, t5.data()};
    tensors["bilinear_w"] = {ir::ElemType::Float32, {H, D, D}, bilinear_w.data()};
    tensors["centers"] = {ir::ElemType::Float32, {B, N}, centers.data()};
  }

  const float* q_row(int64_t b, int64_t h, int64_t row) const { return q.data() + ((b * H + h) * N + row) * D; }
};

// A score equals the reference's within float32 rounding: relative 1e-5, scaled by at least 16 because
// intermediate terms (ALiBi's slope times distance) reach that size while the result may be near 0.
bool close_score(float got, double want) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want)) return got == want;
  return std::fabs(got - want) <= 1e-5 * std::max(std::fabs(want), 16.0);
}

bool uses_dot(const ir::Expr& e) {
  if (e->kind == ir::Kind::DotQ) return true;
  for (const auto& o : e->operands) {
    if (uses_dot(o)) return true;
  }
  return false;
}

std::vector<std::string> sorted_symbols(const ir::Pattern& p) {
  std::set<std::string> names;
  ir::collect_symbols(p.mask, &names);
  ir::collect_symbols(p.score, &names);
  return {names.begin(), names.end()};
}

const sema::PatternLibrary& library() {
  static const sema::PatternLibrary lib = [] {
    sema::PatternLibrary l;
    dsl::Diagnostics diags;
    EXPECT_TRUE(l.add_file(
        std::make_shared<const dsl::SourceFile>("functor_test_patterns.attn", tf::kExtraPatternSource), diags))
        << diags.str();
    return l;
  }();
  return lib;
}

// Checks one generated functor over every point of every view of `component`, for a few (b, h).
void check_component(const tf::FunctorCase& fc, const ir::Pattern& pattern, const planner::Component& component,
                     const Inputs& in) {
  const ir::Pattern& local = component.local;
  ASSERT_EQ(fc.local,
            ir::to_string(local.mask) + " ; " + ir::to_string(local.score) + " ; " + ir::to_string(local.weight))
      << "the generator emitted this functor from a different component";
  ASSERT_EQ(std::vector<std::string>(fc.symbols, fc.symbols + fc.symbol_count), sorted_symbols(local));
  std::vector<std::string> tensor_names;
  for (const ir::TensorDecl& t : pattern.inputs) tensor_names.push_back(t.name);
  std::sort(tensor_names.begin(), tensor_names.end());
  ASSERT_EQ(std::vector<std::string>(fc.tensors, fc.tensors + fc.tensor_count), tensor_names);
  EXPECT_EQ(fc.has_mask, local.has_mask());
  EXPECT_EQ(fc.has_score, local.has_score());
  EXPECT_EQ(fc.has_weight, local.has_weight());
  EXPECT_EQ(fc.reads_query, uses_dot(local.mask) || uses_dot(local.score) || uses_dot(local.weight));

  ir::AttentionSizes sizes{in.B, in.H, in.H, in.N, in.M, in.D, in.D};
  std::map<std::string, ir::TensorView> tensors;
  for (const std::string& name : tensor_names) tensors[name] = in.tensors.at(name);
  const ir::PatternEvaluator whole(pattern, sizes, tensors, in.scale);
  const ir::PatternEvaluator original(component.original, sizes, tensors, in.scale);

  tc::PatternArgs args;
  args.H = static_cast<int32_t>(in.H);
  args.D = static_cast<int32_t>(in.D);
  args.scale = static_cast<float>(in.scale);
  for (size_t t = 0; t < tensor_names.size(); ++t) {
    const ir::TensorView& view = tensors.at(tensor_names[t]);
    args.tensors[t] = view.data;
    for (size_t d = 0; d < view.shape.size(); ++d) args.shapes[t][d] = static_cast<int32_t>(view.shape[d]);
  }
  // Symbols other than the view's come from tensor shapes (R in rel: float32[H, R, D]).
  std::map<std::string, int64_t> shape_symbols;
  for (const ir::TensorDecl& decl : pattern.inputs) {
    for (size_t d = 0; d < decl.dims.size(); ++d) shape_symbols[decl.dims[d]] = tensors.at(decl.name).shape[d];
  }

  std::mt19937 rng(static_cast<uint32_t>(fc.component) * 7919u + 17u);
  std::uniform_int_distribution<int32_t> grid(-512, 512);
  int mismatches = 0;
  for (const planner::View& view : component.views) {
    std::map<std::string, ir::Value> symbols;
    for (int s = 0; s < fc.symbol_count; ++s) {
      const std::string name = fc.symbols[s];
      int64_t value = 0;
      if (name == planner::kQueryOrigin) {
        value = view.queries.origin;
      } else if (name == planner::kKeyOrigin) {
        value = view.keys.origin;
      } else if (name == planner::kQueries) {
        value = in.N;
      } else if (name == planner::kKeys) {
        value = in.M;
      } else {
        ASSERT_TRUE(shape_symbols.count(name)) << "no value for symbol " << name;
        value = shape_symbols.at(name);
      }
      args.symbols[s] = static_cast<int32_t>(value);
      symbols[name] = ir::Value{ir::Type::Int, value, 0, false};
    }
    args.N = static_cast<int32_t>(view.queries.count);
    args.M = static_cast<int32_t>(view.keys.count);
    ir::EvalEnv env;
    env.set(ir::Var::Heads, in.H);
    env.set(ir::Var::N, view.queries.count);
    env.set(ir::Var::M, view.keys.count);
    env.set(ir::Var::D, in.D);
    env.scale = static_cast<float>(in.scale);
    env.D = in.D;
    env.symbols = &symbols;
    env.tensors = &tensors;
    for (auto [b, h] : {std::pair<int32_t, int32_t>{0, 0}, {1, 3}, {0, 2}}) {
      env.set(ir::Var::Batch, b);
      env.set(ir::Var::Head, h);
      for (int32_t i = 0; i < args.N; ++i) {
        const int64_t row = view.queries.original(i);
        const float* q = in.q_row(b, h, row);
        env.q_vec = q;
        env.set(ir::Var::I, i);
        env.set(ir::Var::Q, i + view.keys.count - view.queries.count);
        for (int32_t j = 0; j < args.M; ++j) {
          const int64_t col = view.keys.original(j);
          env.set(ir::Var::J, j);
          env.set(ir::Var::K, j);
          const float s = static_cast<float>(grid(rng)) / 64.0f;  // exact in float and double
          env.s = s;
          const bool mask = fc.mask(args, b, h, i, j, q);
          const float score = fc.score(args, b, h, i, j, s, q);
          const bool want_mask = local.has_mask() ? ir::evaluate(local.mask, env).b : true;
          const double want_score = local.has_score() ? ir::evaluate(local.score, env).f : s;
          // The same point in original coordinates: the component's own mask and the whole pattern's score.
          const bool original_mask = original.allowed(b, h, row, col);
          const double original_score = whole.score(b, h, row, col, s, q);
          const float weight = fc.weight(args, b, h, i, j, q);
          const double want_weight = local.has_weight() ? ir::evaluate(local.weight, env).f : 1.0;
          const double original_weight = whole.weight(b, h, row, col);
          if (mask != want_mask || mask != original_mask || !close_score(score, want_score) ||
              !close_score(score, original_score) || !close_score(weight, want_weight) ||
              !close_score(weight, original_weight)) {
            if (++mismatches <= 5) {
              ADD_FAILURE() << "view (" << view.queries.origin << ", " << view.keys.origin << ") b=" << b << " h=" << h
                            << " i=" << i << " j=" << j << " (row " << row << ", column " << col << "), s=" << s
                            << ": mask " << mask << " vs " << want_mask << " (original " << original_mask << "), score "
                            << score << " vs " << want_score << " (original " << original_score << "), weight "
                            << weight << " vs " << want_weight << " (original " << original_weight << ")";
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(CudaDeviceExpression, GeneratedFunctorsMatchTheReferenceOnEveryView) {
  const Inputs inputs;
  std::map<std::string, std::vector<const tf::FunctorCase*>> by_expression;
  for (const tf::FunctorCase& fc : tf::kFunctorCases) by_expression[fc.expression].push_back(&fc);
  ASSERT_GE(by_expression.size(), 19u);
  for (const auto& [expression, cases] : by_expression) {
    SCOPED_TRACE(expression);
    dsl::Diagnostics diags;
    std::optional<ir::Pattern> pattern = library().instantiate(expression, diags);
    ASSERT_TRUE(pattern.has_value()) << diags.str();
    planner::Plan plan = planner::plan_pattern(*pattern, inputs.N, inputs.M);
    ASSERT_EQ(cases.size(), plan.components.size()) << "one functor per component";
    for (const tf::FunctorCase* fc : cases) {
      SCOPED_TRACE(::testing::Message() << "component " << fc->component);
      ASSERT_LT(static_cast<size_t>(fc->component), plan.components.size());
      check_component(*fc, *pattern, plan.components[static_cast<size_t>(fc->component)], inputs);
    }
  }
}

void collect_int_nodes(const ir::Expr& e, std::set<const ir::Node*>* seen, std::vector<ir::Expr>* out) {
  if (!seen->insert(e.get()).second) return;
  if (e->type == ir::Type::Int) out->push_back(e);
  for (const auto& o : e->operands) collect_int_nodes(o, seen, out);
}

TEST(CudaDeviceExpression, RandomMasksMatchTheReferenceIn32Bits) {
  const int32_t t[4] = {5, -3, 100, 7};
  std::map<std::string, ir::TensorView> tensors = {{"t", {ir::ElemType::Int32, {4}, t}}};
  tc::PatternArgs args;
  args.H = 4;
  args.N = static_cast<int32_t>(tf::kPlanN);
  args.M = static_cast<int32_t>(tf::kPlanM);
  args.D = 16;
  args.tensors[0] = t;
  args.shapes[0][0] = 4;
  std::mt19937 rng(99);
  int64_t compared = 0, points = 0, allowed = 0, mismatches = 0;
  for (const tf::RandomMaskCase& rc : tf::kRandomMaskCases) {
    testing::ExprGenerator gen(rc.seed, testing::functor_mask_config());
    ir::Expr mask = gen.make(ir::Type::Bool, tf::kRandomDepth);
    ASSERT_EQ(ir::to_string(mask), rc.mask) << "seed " << rc.seed;
    std::set<const ir::Node*> seen;
    std::vector<ir::Expr> ints;
    collect_int_nodes(mask, &seen, &ints);
    ir::EvalEnv env;
    env.set(ir::Var::Heads, args.H);
    env.set(ir::Var::N, args.N);
    env.set(ir::Var::M, args.M);
    env.set(ir::Var::D, args.D);
    env.tensors = &tensors;
    for (int n = 0; n < 600; ++n) {
      ++points;
      const int32_t b = static_cast<int32_t>(rng() % 2), h = static_cast<int32_t>(rng() % 4);
      const int32_t i = static_cast<int32_t>(rng() % static_cast<uint32_t>(args.N));
      const int32_t j = static_cast<int32_t>(rng() % static_cast<uint32_t>(args.M));
      env.set(ir::Var::Batch, b);
      env.set(ir::Var::Head, h);
      env.set(ir::Var::I, i);
      env.set(ir::Var::J, j);
      env.set(ir::Var::K, j);
      env.set(ir::Var::Q, i + args.M - args.N);
      bool want = false;
      try {
        want = ir::evaluate(mask, env).b;
      } catch (const ir::EvalError&) {
        continue;  // an unguarded out-of-bounds load: the reference has no value to compare with
      }
      // The functor computes in 32 bits: compare where no intermediate the reference computes leaves them.
      bool fits = true;
      for (const ir::Expr& e : ints) {
        try {
          int64_t v = ir::evaluate(e, env).i;
          fits = fits && v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max();
        } catch (const ir::EvalError&) {
          // Not reached by the reference (it succeeded); the functor's clamped load is discarded likewise.
        }
      }
      if (!fits) continue;
      ++compared;
      allowed += want;
      if (rc.fn(args, b, h, i, j, nullptr) != want && ++mismatches <= 5) {
        ADD_FAILURE() << rc.mask << " at b=" << b << " h=" << h << " i=" << i << " j=" << j << ": expected " << want;
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  // The comparison must not be vacuous: most points are compared, with both outcomes.
  EXPECT_GT(compared, points / 2);
  EXPECT_GT(allowed, compared / 20);
  EXPECT_LT(allowed, compared - compared / 20);
}

}  // namespace
}  // namespace tessera
