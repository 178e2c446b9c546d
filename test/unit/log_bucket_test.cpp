// log_bucket: T5's bucketing decided in integers, its rewrite into comparisons, and its interval.
#include "compiler/ir/log_bucket.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <tuple>

#include "compiler/analysis/interval.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/simplify.h"

namespace tessera::ir {
namespace {

// T5's own settings for one direction: 16 buckets, 8 exact, up to distance 128. The thresholds are
// 8 * 16^(j/8): 11.3, 16, 22.6, 32, 45.3, 64, 90.5; the exact powers 16, 32 and 64 reach their bucket.
TEST(LogBucket, ThresholdsOfT5Defaults) {
  EXPECT_EQ(log_bucket_thresholds(8, 128, 16), (std::vector<int64_t>{12, 16, 23, 32, 46, 64, 91}));
  EXPECT_EQ(log_bucket(7, 8, 128, 16), 7);
  EXPECT_EQ(log_bucket(11, 8, 128, 16), 8);
  EXPECT_EQ(log_bucket(12, 8, 128, 16), 9);
  EXPECT_EQ(log_bucket(15, 8, 128, 16), 9);
  EXPECT_EQ(log_bucket(16, 8, 128, 16), 10);
  EXPECT_EQ(log_bucket(127, 8, 128, 16), 15);
  EXPECT_EQ(log_bucket(100000, 8, 128, 16), 15);
  EXPECT_EQ(log_bucket(-3, 8, 128, 16), 0);
}

TEST(LogBucket, DegenerateSettings) {
  EXPECT_EQ(log_bucket(5, 0, 10, 1), 0);   // one bucket
  EXPECT_EQ(log_bucket(3, 4, 2, 9), 3);    // exact distances are exact whatever max_distance is
  EXPECT_EQ(log_bucket(4, 4, 2, 9), 8);    // max_distance <= exact: every far key in the last bucket
  EXPECT_EQ(log_bucket(7, 9, 100, 6), 5);  // buckets <= exact: clamped
  EXPECT_EQ(log_bucket(7, 2, 100, 0), 0);
}

// simplify() rewrites the call once its settings are constants; the rewrite evaluates to log_bucket() at every
// distance, and the interval analysis bounds it by the buckets.
TEST(LogBucket, RewriteAgreesWithTheDefinition) {
  for (auto [exact, max_distance, buckets] : {std::tuple{8, 128, 16}, std::tuple{3, 12, 7}, std::tuple{4, 2, 9},
                                              std::tuple{2, 1000, 40}, std::tuple{0, 5, 1}}) {
    Expr bucket = call(Fn::LogBucket, {binary(BinaryOp::Sub, var(Var::Q), var(Var::K)), int_imm(exact),
                                       int_imm(max_distance), int_imm(buckets)});
    Expr rewritten = simplify(bucket);
    ASSERT_FALSE(rewritten->kind == Kind::Call && rewritten->fn == Fn::LogBucket);
    analysis::VarRanges ranges;
    ranges[Var::Q] = analysis::IntInterval::range(0, 5000);
    ranges[Var::K] = analysis::IntInterval::single(0);
    analysis::IntInterval bound = analysis::int_bounds(rewritten, ranges);
    EXPECT_GE(bound.lo, 0);
    EXPECT_LE(bound.hi, std::max(buckets - 1, 0));
    EvalEnv env;
    for (int64_t n = -5; n <= 5000; ++n) {
      env.set(Var::Q, n);
      ASSERT_EQ(evaluate(rewritten, env).i, log_bucket(n, exact, max_distance, buckets))
          << exact << " " << max_distance << " " << buckets << " n=" << n;
      ASSERT_EQ(evaluate(bucket, env).i, log_bucket(n, exact, max_distance, buckets));
    }
  }
}

}  // namespace
}  // namespace tessera::ir
