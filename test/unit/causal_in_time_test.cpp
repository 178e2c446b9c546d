// proves_causal_in_time: what it proves (expected answers), and that every proof holds (no allowed pair with
// k > q, checked by evaluating the mask over a grid of positions).
#include "compiler/analysis/causal_in_time.h"

#include <gtest/gtest.h>

#include "compiler/ir/evaluate.h"
#include "compiler/sema/pattern_library.h"

namespace tessera::analysis {
namespace {

// Whether some pair with k > q is allowed, over q in [-8, 24] and k in [0, 24].
bool sees_a_later_key(const ir::Expr& mask) {
  for (int64_t q = -8; q <= 24; ++q) {
    for (int64_t k = 0; k <= 24; ++k) {
      ir::EvalEnv env;
      env.set(ir::Var::Q, q);
      env.set(ir::Var::K, k);
      env.set(ir::Var::I, q + 8);
      env.set(ir::Var::J, k);
      env.set(ir::Var::Heads, 1);
      env.set(ir::Var::N, 33);
      env.set(ir::Var::M, 25);
      env.set(ir::Var::D, 4);
      if (k > q && ir::evaluate(mask, env).b) return true;
    }
  }
  return false;
}

struct Case {
  const char* mask;  // a pattern body's mask over q and k
  bool proven;
};

TEST(CausalInTime, AffineComparisonsOfTheDistance) {
  const Case cases[] = {
      {"k <= q", true},
      {"q >= k", true},
      {"k < q", true},
      {"q - k >= 0", true},
      {"k - q <= 0", true},
      {"k < q + 1", true},
      {"2 * (q - k) + 1 > 0", true},
      {"3 * q - 3 * k >= -2", true},
      {"q - k == 3", true},
      {"k - q == 0", true},
      {"2 * (q - k) == -1", true},  // no integer solution at all
      {"k <= q && k % 3 == 0", true},
      {"k % 3 == 0 && q - k < 4 && q - k >= 0", true},
      {"k <= q || q - k >= 5", true},
      {"false", true},
      {"k <= q + 1", false},
      {"q - k == -2", false},
      {"q - k > -2", false},
      {"q - k < 4", false},
      {"-(q - k) <= 3", false},
      {"k <= q || k < 4", false},
      {"true", false},
      {"abs(q - k) < 3", false},
      {"!(k > q)", true},             // the simplifier turns it into k <= q
      {"min(q - k, 0) == 0", false},  // causal, but not in a form the proof reads: false negatives are allowed
      {"q * k >= 0", false},
      {"j <= i", false},
  };
  sema::PatternLibrary lib;
  std::string spec;
  for (size_t i = 0; i < std::size(cases); ++i)
    spec += "pattern c" + std::to_string(i) + " { mask: " + cases[i].mask + "; }\n";
  dsl::Diagnostics diags;
  ASSERT_TRUE(lib.add_file(std::make_shared<const dsl::SourceFile>("c.attn", spec), diags)) << diags.str();
  for (size_t i = 0; i < std::size(cases); ++i) {
    auto p = lib.instantiate("c" + std::to_string(i), diags);
    ASSERT_TRUE(p) << diags.str();
    bool proven = proves_causal_in_time(p->mask);
    EXPECT_EQ(proven, cases[i].proven) << cases[i].mask;
    if (proven) {
      EXPECT_FALSE(sees_a_later_key(p->mask)) << "unsound proof for " << cases[i].mask;
    }
  }
}

TEST(CausalInTime, ThePreludesPatterns) {
  const std::pair<const char*, bool> cases[] = {
      {"causal", true},
      {"strided(stride=4)", true},
      {"fixed(block=4, summary=1)", true},
      {"sliding_window(window=3)", true},
      {"dilated(window=3, dilation=2)", true},
      {"local2d(width=5, block_h=2, block_w=2, halo_h=1, halo_w=1)", true},
      {"causal & alibi", true},
      {"causal & softcap(cap=30.0)", true},
      {"causal - sliding_window(window=2)", true},
      {"strided(stride=3) | fixed(block=4, summary=2)", true},
      {"full", false},
      {"local(window=3)", false},
      {"alibi", false},
      {"prefix_lm(prefix=3)", false},
      {"full - causal", false},
      {"causal | local(window=2)", false},
  };
  sema::PatternLibrary lib;
  dsl::Diagnostics diags;
  for (const auto& [pattern, proven] : cases) {
    auto p = lib.instantiate(pattern, diags);
    ASSERT_TRUE(p) << diags.str();
    EXPECT_EQ(proves_causal_in_time(p->mask), proven) << pattern;
    if (proves_causal_in_time(p->mask)) {
      EXPECT_FALSE(sees_a_later_key(p->mask)) << "unsound proof for " << pattern;
    } else if (!proven) {
      EXPECT_TRUE(sees_a_later_key(p->mask)) << pattern << " is causal after all";
    }
  }
  // A mask reading a run-time tensor: causal & document is proven from its `k <= q` alone.
  auto documents = lib.instantiate("causal & document", diags);
  ASSERT_TRUE(documents) << diags.str();
  EXPECT_TRUE(proves_causal_in_time(documents->mask));
  auto document = lib.instantiate("document", diags);
  ASSERT_TRUE(document) << diags.str();
  EXPECT_FALSE(proves_causal_in_time(document->mask));
}

TEST(CausalInTime, HugeCoefficientsAreNotTrusted) {
  // 2^40 * (q - k) >= 0 would be exact without wrap-around, but the proof does not reason about such sizes.
  auto big = ir::binary(ir::BinaryOp::Ge,
                        ir::binary(ir::BinaryOp::Mul, ir::int_imm(int64_t{1} << 40),
                                   ir::binary(ir::BinaryOp::Sub, ir::var(ir::Var::Q), ir::var(ir::Var::K))),
                        ir::int_imm(0));
  EXPECT_FALSE(proves_causal_in_time(big));
}

}  // namespace
}  // namespace tessera::analysis
