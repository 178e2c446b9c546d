// T5's log-bucketed relative distance, log_bucket(n, exact, max_distance, buckets), in exact arithmetic.
//
// Distances below `exact` get a bucket each; from `exact` on, buckets grow geometrically up to `max_distance`,
// and every farther distance shares the last bucket, buckets - 1 (Raffel et al. 2020, `_relative_position_bucket`).
// T5 computes the geometric part in float32, which puts the distances that are exact powers (16, 32 and 64 with
// T5's own settings) in a bucket that depends on rounding. Tessera defines the bucket of n as exact + the number
// of real thresholds exact * (max_distance / exact)^(j / (buckets - exact)), j = 1 .. buckets - exact - 1, that
// n reaches, and decides each threshold once, in integers, at compile time: every target then agrees exactly.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/ir/expr.h"

namespace tessera::ir {

// Whether the thresholds are defined: 1 <= exact < buckets and max_distance >= 1 (a max_distance <= exact puts
// every distance from exact on in the last bucket). Otherwise a distance n >= 0 maps to min(n, buckets - 1), and
// buckets <= 0 maps everything to 0.
bool log_bucket_is_geometric(int64_t exact, int64_t max_distance, int64_t buckets);

// The smallest integer distance in each geometric bucket exact + j, j = 1 .. buckets - exact - 1 (ascending).
std::vector<int64_t> log_bucket_thresholds(int64_t exact, int64_t max_distance, int64_t buckets);

// The bucket of distance n (a negative n is treated as 0).
int64_t log_bucket(int64_t n, int64_t exact, int64_t max_distance, int64_t buckets);

// A call log_bucket(n, exact, max_distance, buckets) whose last three operands are integer constants, rewritten
// into comparisons against the thresholds: select(n < exact, clamp(n, 0, exact - 1), exact + sum of
// (n >= t_j)). Null when an
// operand is not constant.
Expr expand_log_bucket(const Expr& call);

}  // namespace tessera::ir
