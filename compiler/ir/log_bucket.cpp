#include "compiler/ir/log_bucket.h"

#include <algorithm>
#include <cmath>

namespace tessera::ir {

bool log_bucket_is_geometric(int64_t exact, int64_t max_distance, int64_t buckets) {
  return exact >= 1 && exact < buckets && max_distance >= 1;
}

std::vector<int64_t> log_bucket_thresholds(int64_t exact, int64_t max_distance, int64_t buckets) {
  std::vector<int64_t> thresholds;
  if (!log_bucket_is_geometric(exact, max_distance, buckets)) return thresholds;
  const int64_t steps = buckets - exact;
  const long double ratio = static_cast<long double>(max_distance) / static_cast<long double>(exact);
  for (int64_t j = 1; j < steps; ++j) {
    long double t = static_cast<long double>(exact) *
                    std::pow(ratio, static_cast<long double>(j) / static_cast<long double>(steps));
    // A threshold that is an integer in exact arithmetic (16 = 8 * 16^(2/8)) comes out a few ulps off either
    // way; snap it so that the integer itself reaches the bucket.
    long double nearest = std::round(t);
    int64_t smallest =
        std::fabs(t - nearest) <= 1e-9L * t ? static_cast<int64_t>(nearest) : static_cast<int64_t>(std::ceil(t));
    thresholds.push_back(smallest);
  }
  return thresholds;
}

int64_t log_bucket(int64_t n, int64_t exact, int64_t max_distance, int64_t buckets) {
  if (buckets <= 0) return 0;
  n = std::max<int64_t>(n, 0);
  if (!log_bucket_is_geometric(exact, max_distance, buckets)) return std::min(n, buckets - 1);
  if (n < exact) return n;
  int64_t bucket = exact;
  for (int64_t t : log_bucket_thresholds(exact, max_distance, buckets)) bucket += n >= t ? 1 : 0;
  return bucket;
}

Expr expand_log_bucket(const Expr& e) {
  const auto& ops = e->operands;
  for (size_t i = 1; i < 4; ++i) {
    if (ops[i]->kind != Kind::IntImm) return nullptr;
  }
  const Expr& n = ops[0];
  const int64_t exact = ops[1]->int_value, max_distance = ops[2]->int_value, buckets = ops[3]->int_value;
  const dsl::SourceRange& where = e->where;
  if (buckets <= 0) return int_imm(0, where);
  if (!log_bucket_is_geometric(exact, max_distance, buckets)) {
    return call(Fn::Clamp, {n, int_imm(0), int_imm(buckets - 1)}, where);
  }
  // clamp(n, 0, exact - 1) rather than max(n, 0): equal where it is selected, and its range stays inside the
  // table for the bounds check of the tensor it indexes.
  Expr small = call(Fn::Clamp, {n, int_imm(0), int_imm(exact - 1)}, where);
  Expr geometric = int_imm(exact);
  for (int64_t t : log_bucket_thresholds(exact, max_distance, buckets)) {
    Expr reached = call(Fn::Select, {binary(BinaryOp::Ge, n, int_imm(t)), int_imm(1), int_imm(0)});
    geometric = binary(BinaryOp::Add, geometric, reached, where);
  }
  return call(Fn::Select, {binary(BinaryOp::Lt, n, int_imm(exact)), small, geometric}, where);
}

}  // namespace tessera::ir
