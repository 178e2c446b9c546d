// The float64 reference executor against the independent oracle (independent_attention.h), on every
// standard-library pattern and on compositions, over shapes that exercise N < M, N > M, GQA/MQA and D != Dv.
//
// Patterns are built directly with the IR constructors, mirroring dsl/prelude.attn, so these tests do not
// depend on the DSL front end.
#include "targets/reference/reference_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/expr.h"
#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "test/unit/expect_error.h"
#include "test/unit/independent_attention.h"

namespace tessera::reference {
namespace {

using ir::BinaryOp;
using ir::Expr;
using ir::Fn;
using ir::Var;
using runtime::DType;
using runtime::Tensor;

// ------------------------------------------------------------------------------------------------------------
// IR building shorthands.

Expr v(Var x) { return ir::var(x); }
Expr c(int64_t x) { return ir::int_imm(x); }
Expr f(double x) { return ir::float_imm(x); }
Expr op(BinaryOp o, Expr a, Expr b) { return ir::binary(o, std::move(a), std::move(b)); }
Expr add(Expr a, Expr b) { return op(BinaryOp::Add, std::move(a), std::move(b)); }
Expr sub(Expr a, Expr b) { return op(BinaryOp::Sub, std::move(a), std::move(b)); }
Expr mul(Expr a, Expr b) { return op(BinaryOp::Mul, std::move(a), std::move(b)); }
Expr div(Expr a, Expr b) { return op(BinaryOp::Div, std::move(a), std::move(b)); }
Expr mod(Expr a, Expr b) { return op(BinaryOp::Mod, std::move(a), std::move(b)); }
Expr lt(Expr a, Expr b) { return op(BinaryOp::Lt, std::move(a), std::move(b)); }
Expr le(Expr a, Expr b) { return op(BinaryOp::Le, std::move(a), std::move(b)); }
Expr ge(Expr a, Expr b) { return op(BinaryOp::Ge, std::move(a), std::move(b)); }
Expr eq(Expr a, Expr b) { return op(BinaryOp::Eq, std::move(a), std::move(b)); }
Expr land(Expr a, Expr b) { return op(BinaryOp::And, std::move(a), std::move(b)); }
Expr lor(Expr a, Expr b) { return op(BinaryOp::Or, std::move(a), std::move(b)); }
Expr fn(Fn x, std::vector<Expr> args) { return ir::call(x, std::move(args)); }

ir::Pattern make_pattern(std::string name, Expr mask, Expr score = nullptr, std::vector<ir::TensorDecl> inputs = {}) {
  ir::Pattern p;
  p.name = std::move(name);
  p.mask = mask ? std::move(mask) : ir::bool_imm(true);
  p.score = score ? std::move(score) : v(Var::Score);
  p.inputs = std::move(inputs);
  return p;
}

// ------------------------------------------------------------------------------------------------------------
// The standard library as IR, one function per prelude pattern, written as the prelude writes it.

ir::Pattern ir_full() { return make_pattern("full", nullptr); }

ir::Pattern ir_causal() { return make_pattern("causal", le(v(Var::K), v(Var::Q))); }

ir::Pattern ir_sliding_window(int64_t window) {
  Expr d = sub(v(Var::Q), v(Var::K));
  return make_pattern("sliding_window", land(ge(d, c(0)), lt(d, c(window))));
}

ir::Pattern ir_local(int64_t window) {
  return make_pattern("local", lt(fn(Fn::Abs, {sub(v(Var::Q), v(Var::K))}), c(window)));
}

ir::Pattern ir_strided(int64_t stride) {
  Expr d = sub(v(Var::Q), v(Var::K));
  return make_pattern("strided", land(le(v(Var::K), v(Var::Q)), lor(lt(d, c(stride)), eq(mod(d, c(stride)), c(0)))));
}

ir::Pattern ir_fixed(int64_t block, int64_t summary) {
  Expr same_block = eq(div(v(Var::K), c(block)), div(v(Var::Q), c(block)));
  Expr summary_key = ge(mod(v(Var::K), c(block)), sub(c(block), c(summary)));
  return make_pattern("fixed", land(le(v(Var::K), v(Var::Q)), lor(same_block, summary_key)));
}

ir::Pattern ir_dilated(int64_t window, int64_t dilation) {
  Expr d = sub(v(Var::Q), v(Var::K));
  return make_pattern("dilated",
                      land(land(ge(d, c(0)), lt(d, mul(c(window), c(dilation)))), eq(mod(d, c(dilation)), c(0))));
}

ir::Pattern ir_local2d(int64_t width, int64_t block_h, int64_t block_w, int64_t halo_h, int64_t halo_w) {
  Expr row_q = div(v(Var::Q), c(width));
  Expr col_q = mod(v(Var::Q), c(width));
  Expr row_k = div(v(Var::K), c(width));
  Expr col_k = mod(v(Var::K), c(width));
  Expr r0 = mul(div(row_q, c(block_h)), c(block_h));
  Expr c0 = mul(div(col_q, c(block_w)), c(block_w));
  Expr mask = le(v(Var::K), v(Var::Q));
  mask = land(mask, ge(row_k, sub(r0, c(halo_h))));
  mask = land(mask, le(row_k, sub(add(r0, c(block_h)), c(1))));
  mask = land(mask, ge(col_k, sub(c0, c(halo_w))));
  mask = land(mask, le(col_k, add(sub(add(c0, c(block_w)), c(1)), c(halo_w))));
  return make_pattern("local2d", mask);
}

ir::Pattern ir_prefix_lm(int64_t prefix) {
  return make_pattern("prefix_lm", lor(le(v(Var::K), v(Var::Q)), lt(v(Var::K), c(prefix))));
}

ir::TensorDecl segments_decl() { return {"segments", ir::ElemType::Int32, {"B", "M"}, {}}; }
ir::TensorDecl rel_decl() { return {"rel", ir::ElemType::Float32, {"H", "R", "D"}, {}}; }

ir::Pattern ir_document() {
  Expr seg_q = ir::load("segments", ir::ElemType::Int32, {v(Var::Batch), v(Var::Q)});
  Expr seg_k = ir::load("segments", ir::ElemType::Int32, {v(Var::Batch), v(Var::K)});
  return make_pattern("document", land(ge(v(Var::Q), c(0)), eq(seg_q, seg_k)), nullptr, {segments_decl()});
}

ir::Pattern ir_alibi() {
  Expr slope =
      fn(Fn::Exp2, {div(mul(f(-8.0), fn(Fn::ToFloat, {add(v(Var::Head), c(1))})), fn(Fn::ToFloat, {v(Var::Heads)}))});
  return make_pattern("alibi", nullptr, sub(v(Var::Score), mul(slope, fn(Fn::ToFloat, {sub(v(Var::Q), v(Var::K))}))));
}

ir::Pattern ir_softcap(double cap) {
  return make_pattern("softcap", nullptr, mul(f(cap), fn(Fn::Tanh, {div(v(Var::Score), f(cap))})));
}

ir::Pattern ir_relative() {
  Expr r = fn(Fn::Clamp, {sub(v(Var::Q), v(Var::K)), c(0), sub(ir::symbol("R"), c(1))});
  Expr dot = ir::dot_q("rel", {v(Var::Head), r});
  return make_pattern("relative", nullptr, add(v(Var::Score), mul(v(Var::Scale), dot)), {rel_decl()});
}

// Composition, with the semantics of the DSL's &, | and -.
std::vector<ir::TensorDecl> union_inputs(const ir::Pattern& a, const ir::Pattern& b) {
  std::vector<ir::TensorDecl> inputs = a.inputs;
  for (const auto& t : b.inputs) {
    if (!a.input(t.name)) inputs.push_back(t);
  }
  return inputs;
}

ir::Pattern ir_and(const ir::Pattern& a, const ir::Pattern& b) {
  return make_pattern(a.name + " & " + b.name, land(a.mask, b.mask), ir::substitute(b.score, Var::Score, a.score),
                      union_inputs(a, b));
}

ir::Pattern ir_or(const ir::Pattern& a, const ir::Pattern& b) {
  return make_pattern("(" + a.name + ") | (" + b.name + ")", lor(a.mask, b.mask),
                      ir::substitute(b.score, Var::Score, a.score), union_inputs(a, b));
}

ir::Pattern ir_minus(const ir::Pattern& a, const ir::Pattern& b) {
  return make_pattern(a.name + " - " + b.name, land(a.mask, ir::unary(ir::UnaryOp::Not, b.mask)), a.score,
                      union_inputs(a, b));
}

// ------------------------------------------------------------------------------------------------------------
// Problems: random Q, K, V and run-time tensors for a shape.

struct Shape {
  const char* label;
  int64_t B, H, Hkv, N, M, D, Dv;
};

const std::vector<Shape> kShapes = {
    {"N<M MHA D16", 2, 4, 4, 13, 29, 16, 24},   {"N>M GQA2 D32", 2, 4, 2, 31, 17, 32, 8},
    {"N=M MQA D64", 2, 4, 1, 24, 24, 64, 40},   {"N<M GQA2 D128", 2, 4, 2, 9, 37, 128, 64},
    {"N>M MQA D128", 2, 4, 1, 21, 11, 128, 20}, {"N=1 GQA2 D16", 2, 4, 2, 1, 19, 16, 5},
};

constexpr int64_t kRelDistances = 7;

struct Problem {
  Shape shape;
  Tensor q, k, v, segments, rel;

  explicit Problem(const Shape& s, uint64_t seed, double q_spread = 1.5)
      : shape(s),
        q(DType::Float32, {s.B, s.H, s.N, s.D}),
        k(DType::Float32, {s.B, s.Hkv, s.M, s.D}),
        v(DType::Float32, {s.B, s.Hkv, s.M, s.Dv}),
        segments(DType::Int32, {s.B, s.M}),
        rel(DType::Float32, {s.H, kRelDistances, s.D}) {
    std::mt19937_64 rng(seed);
    auto fill = [&](Tensor& t, double spread) {
      std::normal_distribution<double> normal(0.0, spread);
      for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = static_cast<float>(normal(rng));
    };
    // A wide spread of Q gives logits of several units, enough for softcap(20) to bend them.
    fill(q, q_spread);
    fill(k, 1.0);
    fill(v, 1.0);
    fill(rel, 1.0);
    // Documents: runs of equal ids of random lengths, different per batch.
    std::uniform_int_distribution<int> new_doc(0, 4);
    for (int64_t b = 0; b < s.B; ++b) {
      int32_t doc = 0;
      for (int64_t m = 0; m < s.M; ++m) {
        if (m > 0 && new_doc(rng) == 0) ++doc;
        segments.data<int32_t>()[b * s.M + m] = doc + static_cast<int32_t>(100 * b);
      }
    }
  }

  AttentionInputs inputs() const {
    AttentionInputs in;
    in.q = &q;
    in.k = &k;
    in.v = &v;
    in.tensors = {{"segments", &segments}, {"rel", &rel}};
    return in;
  }

  oracle::Problem plain(double scale) const {
    oracle::Problem p;
    p.B = shape.B;
    p.H = shape.H;
    p.Hkv = shape.Hkv;
    p.N = shape.N;
    p.M = shape.M;
    p.D = shape.D;
    p.Dv = shape.Dv;
    p.q = q.data<float>();
    p.k = k.data<float>();
    p.v = v.data<float>();
    p.scale = scale;
    return p;
  }
  oracle::Problem plain() const { return plain(1.0 / std::sqrt(static_cast<double>(shape.D))); }

  oracle::Rule document() const { return oracle::document(segments.data<int32_t>(), shape.M); }
  oracle::Rule relative(double scale) const { return oracle::relative(plain(scale), rel.data<float>(), kRelDistances); }
  oracle::Rule relative() const { return oracle::relative(plain(), rel.data<float>(), kRelDistances); }
};

// A pattern under test: its IR and its oracle, built for a given problem.
struct Row {
  std::string label;
  std::function<ir::Pattern()> ir;
  std::function<oracle::Rule(const Problem&)> rule;
};

std::vector<Row> standard_rows() {
  auto fixed_rule = [](oracle::Rule r) { return [r](const Problem&) { return r; }; };
  return {
      {"full", ir_full, fixed_rule(oracle::full())},
      {"causal", ir_causal, fixed_rule(oracle::causal())},
      {"sliding_window(5)", [] { return ir_sliding_window(5); }, fixed_rule(oracle::sliding_window(5))},
      {"local(4)", [] { return ir_local(4); }, fixed_rule(oracle::local(4))},
      {"strided(3)", [] { return ir_strided(3); }, fixed_rule(oracle::strided(3))},
      {"fixed(6, 2)", [] { return ir_fixed(6, 2); }, fixed_rule(oracle::fixed(6, 2))},
      {"fixed(4, 0)", [] { return ir_fixed(4, 0); }, fixed_rule(oracle::fixed(4, 0))},
      {"dilated(3, 2)", [] { return ir_dilated(3, 2); }, fixed_rule(oracle::dilated(3, 2))},
      {"local2d(5, 2, 2, 1, 1)", [] { return ir_local2d(5, 2, 2, 1, 1); }, fixed_rule(oracle::local2d(5, 2, 2, 1, 1))},
      {"local2d(4, 3, 2, 0, 1)", [] { return ir_local2d(4, 3, 2, 0, 1); }, fixed_rule(oracle::local2d(4, 3, 2, 0, 1))},
      {"prefix_lm(6)", [] { return ir_prefix_lm(6); }, fixed_rule(oracle::prefix_lm(6))},
      {"document", ir_document, [](const Problem& p) { return p.document(); }},
      {"alibi", ir_alibi, [](const Problem& p) { return oracle::alibi(p.shape.H); }},
      {"softcap(20)", [] { return ir_softcap(20); }, fixed_rule(oracle::softcap(20))},
      {"relative", ir_relative, [](const Problem& p) { return p.relative(); }},
  };
}

std::vector<Row> composed_rows() {
  return {
      {"causal & alibi", [] { return ir_and(ir_causal(), ir_alibi()); },
       [](const Problem& p) { return oracle::both(oracle::causal(), oracle::alibi(p.shape.H)); }},
      {"causal & document", [] { return ir_and(ir_causal(), ir_document()); },
       [](const Problem& p) { return oracle::both(oracle::causal(), p.document()); }},
      {"causal & softcap(20)", [] { return ir_and(ir_causal(), ir_softcap(20)); },
       [](const Problem&) { return oracle::both(oracle::causal(), oracle::softcap(20)); }},
      {"causal & relative", [] { return ir_and(ir_causal(), ir_relative()); },
       [](const Problem& p) { return oracle::both(oracle::causal(), p.relative()); }},
      {"softcap(20) & alibi", [] { return ir_and(ir_softcap(20), ir_alibi()); },
       [](const Problem& p) { return oracle::both(oracle::softcap(20), oracle::alibi(p.shape.H)); }},
      {"sliding_window(3) | dilated(4, 3)", [] { return ir_or(ir_sliding_window(3), ir_dilated(4, 3)); },
       [](const Problem&) { return oracle::either(oracle::sliding_window(3), oracle::dilated(4, 3)); }},
      {"(sliding_window(3) & softcap(20)) | (strided(4) & alibi)",
       [] { return ir_or(ir_and(ir_sliding_window(3), ir_softcap(20)), ir_and(ir_strided(4), ir_alibi())); },
       [](const Problem& p) {
         return oracle::either(oracle::both(oracle::sliding_window(3), oracle::softcap(20)),
                               oracle::both(oracle::strided(4), oracle::alibi(p.shape.H)));
       }},
      {"causal - sliding_window(4)", [] { return ir_minus(ir_causal(), ir_sliding_window(4)); },
       [](const Problem&) { return oracle::minus(oracle::causal(), oracle::sliding_window(4)); }},
      {"(causal & alibi) - document", [] { return ir_minus(ir_and(ir_causal(), ir_alibi()), ir_document()); },
       [](const Problem& p) {
         return oracle::minus(oracle::both(oracle::causal(), oracle::alibi(p.shape.H)), p.document());
       }},
  };
}

// ------------------------------------------------------------------------------------------------------------
// Comparison

struct RowCounts {
  int64_t empty = 0, nonempty = 0;
};

// Compares the executor with the oracle element by element; rows the oracle leaves without keys must be
// exactly zero in the executor as well.
RowCounts expect_matches(const std::vector<double>& got, const std::vector<double>& want, const Problem& p,
                         const oracle::Rule& rule) {
  const Shape& s = p.shape;
  EXPECT_EQ(got.size(), want.size());
  RowCounts counts;
  if (got.size() != want.size()) return counts;
  int failures = 0;
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t h = 0; h < s.H; ++h) {
      for (int64_t i = 0; i < s.N; ++i) {
        bool any = false;
        for (int64_t j = 0; j < s.M; ++j) any = any || rule.mask(b, h, i, j, i + s.M - s.N, j);
        (any ? counts.nonempty : counts.empty)++;
        for (int64_t e = 0; e < s.Dv; ++e) {
          const size_t at = static_cast<size_t>(((b * s.H + h) * s.N + i) * s.Dv + e);
          const bool ok = any ? std::abs(got[at] - want[at]) <= 1e-12 : got[at] == 0.0;
          if (!ok && failures++ < 5) {
            ADD_FAILURE() << "b=" << b << " h=" << h << " i=" << i << " e=" << e << ": got " << got[at] << ", want "
                          << want[at] << (any ? "" : " (row has no allowed key)");
          }
          if (any && !std::isfinite(want[at])) ADD_FAILURE() << "the oracle produced " << want[at];
        }
      }
    }
  }
  EXPECT_EQ(failures, 0);
  return counts;
}

void check_rows(const std::vector<Row>& rows) {
  uint64_t seed = 1;
  for (const Shape& shape : kShapes) {
    for (const Row& row : rows) {
      SCOPED_TRACE(row.label + " on " + shape.label);
      const Problem p(shape, seed++);
      const oracle::Rule rule = row.rule(p);
      const std::vector<double> got = attention_f64(row.ir(), p.inputs());
      const std::vector<double> want = oracle::attention(p.plain(), rule);
      const RowCounts counts = expect_matches(got, want, p, rule);
      // Every pattern here lets at least one row attend somewhere on every shape; an all-zero comparison
      // would prove nothing.
      EXPECT_GT(counts.nonempty, 0);
    }
  }
}

TEST(ReferenceAttention, MatchesTheOracleOnEveryStandardPattern) { check_rows(standard_rows()); }

TEST(ReferenceAttention, MatchesTheOracleOnCompositions) { check_rows(composed_rows()); }

TEST(ReferenceAttention, DifferenceLeavesSomeRowsExactlyZero) {
  // causal - sliding_window(4) keeps keys k <= q - 4, so queries at q < 4 have none.
  const Problem p({"N=M", 2, 4, 2, 12, 12, 16, 8}, 99);
  const std::vector<double> got = attention_f64(ir_minus(ir_causal(), ir_sliding_window(4)), p.inputs());
  const std::vector<double> want =
      oracle::attention(p.plain(), oracle::minus(oracle::causal(), oracle::sliding_window(4)));
  const RowCounts counts = expect_matches(got, want, p, oracle::minus(oracle::causal(), oracle::sliding_window(4)));
  EXPECT_EQ(counts.empty, 2 * 4 * 4);  // rows i = 0..3 of every batch and head
  EXPECT_EQ(counts.nonempty, 2 * 4 * 8);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 4; ++h) {
      for (int64_t i = 0; i < 12; ++i) {
        for (int64_t e = 0; e < 8; ++e) {
          const double x = got[static_cast<size_t>(((b * 4 + h) * 12 + i) * 8 + e)];
          if (i < 4) {
            EXPECT_EQ(x, 0.0);
            EXPECT_FALSE(std::signbit(x));
          } else {
            EXPECT_TRUE(std::isfinite(x));
          }
        }
      }
    }
  }
}

TEST(ReferenceAttention, CausalRowsBeforeTheFirstKeyAreZeroWhenNExceedsM) {
  // N = 6 queries over M = 2 keys: rows i = 0..3 sit at q = -4..-1, before every key.
  const Problem p({"N>M", 1, 1, 1, 6, 2, 4, 3}, 7);
  const std::vector<double> got = attention_f64(ir_causal(), p.inputs());
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t e = 0; e < 3; ++e) EXPECT_EQ(got[static_cast<size_t>(i * 3 + e)], 0.0) << i;
  }
  // Row i = 4 (q = 0) sees key 0 only, so it is exactly V[0].
  for (int64_t e = 0; e < 3; ++e) EXPECT_EQ(got[static_cast<size_t>(4 * 3 + e)], p.v.data<float>()[e]);
}

TEST(ReferenceAttention, HandComputedTwoByTwo) {
  // One head, D = 2, causal. Row 1 mixes both keys with softmax weights computed here by hand.
  Tensor q(DType::Float32, {1, 1, 2, 2}), k(DType::Float32, {1, 1, 2, 2}), v(DType::Float32, {1, 1, 2, 1});
  const float qs[] = {1, 0, 0.5f, 2}, ks[] = {1, 1, -1, 3}, vs[] = {10, -4};
  std::copy(qs, qs + 4, q.data<float>());
  std::copy(ks, ks + 4, k.data<float>());
  std::copy(vs, vs + 2, v.data<float>());
  AttentionInputs in{&q, &k, &v, {}, std::nullopt};
  const std::vector<double> out = attention_f64(ir_causal(), in);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], 10.0);
  const double s0 = (0.5 * 1 + 2 * 1) / std::sqrt(2.0), s1 = (0.5 * -1 + 2 * 3) / std::sqrt(2.0);
  const double w0 = 1 / (1 + std::exp(s1 - s0));
  EXPECT_NEAR(out[1], w0 * 10 + (1 - w0) * -4, 1e-14);
}

TEST(ReferenceAttention, ExplicitScaleIsUsedByLogitsAndRelative) {
  const Problem p(kShapes[0], 11);
  AttentionInputs in = p.inputs();
  in.scale = 0.3;
  const ir::Pattern pattern = ir_and(ir_causal(), ir_relative());
  const oracle::Rule rule = oracle::both(oracle::causal(), p.relative(0.3));
  const std::vector<double> got = attention_f64(pattern, in);
  expect_matches(got, oracle::attention(p.plain(0.3), rule), p, rule);
  // And it matters: the default scale gives a different answer.
  const std::vector<double> default_scale = attention_f64(pattern, p.inputs());
  double largest_difference = 0;
  for (size_t e = 0; e < got.size(); ++e)
    largest_difference = std::max(largest_difference, std::abs(got[e] - default_scale[e]));
  EXPECT_GT(largest_difference, 1e-3);
}

TEST(ReferenceAttention, ScoresOfMinusInfinityLeaveTheRowZero) {
  // score = select(q >= 3, s, -inf): rows at q < 3 have allowed keys, all scored -inf.
  const Expr score = fn(Fn::Select, {ge(v(Var::Q), c(3)), v(Var::Score), f(-std::numeric_limits<double>::infinity())});
  const ir::Pattern pattern = make_pattern("minus_inf", nullptr, score);
  const Problem p({"N=M", 2, 2, 1, 8, 8, 16, 4}, 5);
  const oracle::Rule rule{[](int64_t, int64_t, int64_t, int64_t, int64_t, int64_t) { return true; },
                          [](int64_t, int64_t, int64_t, int64_t, int64_t q, int64_t, double s) {
                            return q >= 3 ? s : -std::numeric_limits<double>::infinity();
                          }};
  const std::vector<double> got = attention_f64(pattern, p.inputs());
  const std::vector<double> want = oracle::attention(p.plain(), rule);
  for (size_t e = 0; e < got.size(); ++e) {
    const int64_t i = static_cast<int64_t>(e / 4) % 8;
    if (i < 3) {
      EXPECT_EQ(got[e], 0.0) << e;
    } else {
      EXPECT_TRUE(std::isfinite(got[e])) << e;
      EXPECT_NEAR(got[e], want[e], 1e-12) << e;
    }
  }
}

TEST(ReferenceAttention, NaNInputsPropagateToTheRowsThatReadThem) {
  Problem p({"N=M", 1, 2, 1, 6, 6, 8, 3}, 3);
  // A NaN in key 2 reaches every causal row i >= 2 (both heads share the kv head) and no earlier row.
  p.k.data<float>()[2 * 8 + 5] = std::numeric_limits<float>::quiet_NaN();
  // A NaN in the query of head 1, row 0 poisons that row only.
  p.q.data<float>()[(1 * 6 + 0) * 8 + 1] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<double> got = attention_f64(ir_causal(), p.inputs());
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t i = 0; i < 6; ++i) {
      const bool poisoned = i >= 2 || (h == 1 && i == 0);
      for (int64_t e = 0; e < 3; ++e) {
        const double x = got[static_cast<size_t>((h * 6 + i) * 3 + e)];
        EXPECT_EQ(std::isnan(x), poisoned) << "h=" << h << " i=" << i << " got " << x;
      }
    }
  }
  // The float32 result carries the NaNs too.
  const Tensor rounded = attention(ir_causal(), p.inputs());
  EXPECT_TRUE(std::isnan(rounded.data<float>()[(0 * 6 + 3) * 3]));
  EXPECT_FALSE(std::isnan(rounded.data<float>()[(0 * 6 + 1) * 3]));
}

TEST(ReferenceAttention, Float32ResultIsTheRoundedFloat64Result) {
  const Problem p(kShapes[1], 21);
  const ir::Pattern pattern = ir_and(ir_causal(), ir_alibi());
  const std::vector<double> wide = attention_f64(pattern, p.inputs());
  const Tensor narrow = attention(pattern, p.inputs());
  ASSERT_EQ(narrow.dtype(), DType::Float32);
  EXPECT_EQ(narrow.shape(), (std::vector<int64_t>{2, 4, 31, 8}));
  ASSERT_EQ(static_cast<size_t>(narrow.numel()), wide.size());
  for (size_t e = 0; e < wide.size(); ++e) ASSERT_EQ(narrow.data<float>()[e], static_cast<float>(wide[e])) << e;
}

TEST(ReferenceAttention, Int64SegmentsAreNarrowed) {
  const Problem p(kShapes[2], 31);
  Tensor wide(DType::Int64, p.segments.shape());
  for (int64_t e = 0; e < wide.numel(); ++e) wide.data<int64_t>()[e] = p.segments.data<int32_t>()[e];
  AttentionInputs in = p.inputs();
  in.tensors["segments"] = &wide;
  const ir::Pattern pattern = ir_and(ir_causal(), ir_document());
  EXPECT_EQ(attention_f64(pattern, in), attention_f64(pattern, p.inputs()));

  wide.data<int64_t>()[5] = int64_t{1} << 35;
  try {
    attention_f64(pattern, in);
    ADD_FAILURE() << "did not throw";
  } catch (const runtime::TensorError& e) {
    EXPECT_NE(std::string(e.what()).find("segments"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("34359738368"), std::string::npos) << e.what();
  }
}

TEST(ReferenceAttention, EmptySequences) {
  // No queries: an empty result. No keys: every row zero.
  const Problem no_queries({"N=0", 2, 2, 1, 0, 5, 8, 3}, 1);
  EXPECT_TRUE(attention_f64(ir_causal(), no_queries.inputs()).empty());
  const Problem no_keys({"M=0", 2, 2, 1, 4, 0, 8, 3}, 1);
  const std::vector<double> out = attention_f64(ir_full(), no_keys.inputs());
  ASSERT_EQ(out.size(), 2u * 2 * 4 * 3);
  for (double x : out) EXPECT_EQ(x, 0.0);
}

// ------------------------------------------------------------------------------------------------------------
// Errors

using test::expect_error;

struct Qkv {
  Tensor q, k, v;
  AttentionInputs inputs() const { return AttentionInputs{&q, &k, &v, {}, std::nullopt}; }
};

Qkv qkv(std::vector<int64_t> q, std::vector<int64_t> k, std::vector<int64_t> v, DType dtype = DType::Float32) {
  return Qkv{Tensor(dtype, std::move(q)), Tensor(DType::Float32, std::move(k)), Tensor(DType::Float32, std::move(v))};
}

TEST(ReferenceAttentionErrors, ShapesAndDtypes) {
  using runtime::TensorError;
  auto run = [](const Qkv& t) { return [&t] { attention_f64(ir_causal(), t.inputs()); }; };
  {
    const Qkv t = qkv({2, 4, 8}, {2, 4, 8, 16}, {2, 4, 8, 16});
    expect_error<TensorError>(run(t), {"Q", "rank 4", "[2, 4, 8]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16, 1}, {2, 4, 8, 16});
    expect_error<TensorError>(run(t), {"K", "rank 4", "[B, Hkv, M, D]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16}, {2, 4, 8, 16}, DType::Int32);
    expect_error<TensorError>(run(t), {"Q", "float32", "int32[2, 4, 8, 16]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {3, 4, 8, 16}, {3, 4, 8, 16});
    expect_error<TensorError>(run(t), {"Q and K", "batch", "Q [2, 4, 8, 16]", "K [3, 4, 8, 16]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 32}, {2, 4, 8, 16});
    expect_error<TensorError>(run(t), {"Q and K", "head dimension D", "K [2, 4, 8, 32]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16}, {1, 4, 8, 16});
    expect_error<TensorError>(run(t), {"K and V", "batch", "V [1, 4, 8, 16]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16}, {2, 2, 8, 16});
    expect_error<TensorError>(run(t), {"K and V", "Hkv", "V [2, 2, 8, 16]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16}, {2, 4, 9, 16});
    expect_error<TensorError>(run(t), {"K and V", "M", "V [2, 4, 9, 16]"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 3, 8, 16}, {2, 3, 8, 16});
    expect_error<TensorError>(run(t), {"H = 4", "multiple", "Hkv = 3"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 0}, {2, 4, 8, 0}, {2, 4, 8, 16});
    expect_error<TensorError>(run(t), {"head dimension D", "zero"});
  }
  {
    const Qkv t = qkv({2, 0, 8, 16}, {2, 0, 8, 16}, {2, 0, 8, 16});
    expect_error<TensorError>(run(t), {"zero"});
  }
  {
    const Qkv t = qkv({0, 4, 8, 16}, {0, 4, 8, 16}, {0, 4, 8, 16});
    expect_error<TensorError>(run(t), {"batch size B", "zero"});
  }
  {
    const Qkv t = qkv({2, 4, 8, 16}, {2, 4, 8, 16}, {2, 4, 8, 0});
    expect_error<TensorError>(run(t), {"value dimension Dv", "zero"});
  }
  {
    Qkv t = qkv({1, 1, 2, 4}, {1, 1, 2, 4}, {1, 1, 2, 4});
    AttentionInputs in = t.inputs();
    in.k = nullptr;
    expect_error<TensorError>([&] { attention_f64(ir_causal(), in); }, {"K", "not given"});
    in = t.inputs();
    in.scale = std::numeric_limits<double>::quiet_NaN();
    expect_error<TensorError>([&] { attention_f64(ir_causal(), in); }, {"scale", "finite"});
  }
}

TEST(ReferenceAttentionErrors, RunTimeTensors) {
  const Problem p(kShapes[0], 41);
  {
    AttentionInputs in = p.inputs();
    in.tensors.erase("segments");
    expect_error<ir::EvalError>([&] { attention_f64(ir_and(ir_causal(), ir_document()), in); },
                                {"segments", "not given"});
  }
  {
    AttentionInputs in = p.inputs();
    in.tensors.clear();
    expect_error<ir::EvalError>([&] { attention_f64(ir_relative(), in); }, {"rel", "not given"});
  }
  {
    // segments must be [B, M].
    Tensor wrong(DType::Int32, {p.shape.B, p.shape.M + 1});
    AttentionInputs in = p.inputs();
    in.tensors["segments"] = &wrong;
    expect_error<ir::EvalError>([&] { attention_f64(ir_document(), in); }, {"segments", "[B, M]"});
  }
  {
    // Float segments are refused, not reinterpreted.
    Tensor wrong(DType::Float32, {p.shape.B, p.shape.M});
    AttentionInputs in = p.inputs();
    in.tensors["segments"] = &wrong;
    expect_error<ir::EvalError>([&] { attention_f64(ir_document(), in); }, {"segments", "int32"});
  }
  {
    AttentionInputs in = p.inputs();
    in.tensors["segments"] = nullptr;
    expect_error<runtime::TensorError>([&] { attention_f64(ir_document(), in); }, {"segments"});
  }
  {
    // A tensor the pattern does not read is ignored, whatever it holds.
    Tensor unrelated(DType::Int64, {3});
    AttentionInputs in = p.inputs();
    in.tensors["unrelated"] = &unrelated;
    EXPECT_EQ(attention_f64(ir_causal(), in), attention_f64(ir_causal(), p.inputs()));
  }
}

}  // namespace
}  // namespace tessera::reference
