#include "compiler/planner/column_blocks.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "compiler/analysis/interval.h"
#include "compiler/ir/evaluate.h"
#include "compiler/planner/divisor_split.h"

namespace tessera::planner {

namespace {

using ir::Expr;

// Positions as (row, column) of the period: q = P * qr + qc, k = P * kr + kc.
constexpr const char* kQueryRow = "column_blocks.qr";
constexpr const char* kQueryColumn = "column_blocks.qc";
constexpr const char* kKeyRow = "column_blocks.kr";
constexpr const char* kKeyColumn = "column_blocks.kc";

// Constants above 1 that the mask divides by (or takes a modulo of), of dividends that read any of `vars`, or
// of any dividend where `vars` is empty.
void collect_divisors(const Expr& e, std::initializer_list<ir::Var> vars, std::set<int64_t>* divisors) {
  const bool div_or_mod =
      e->kind == ir::Kind::Binary && (e->binary_op == ir::BinaryOp::Div || e->binary_op == ir::BinaryOp::Mod);
  if (div_or_mod && e->operands[1]->kind == ir::Kind::IntImm && e->operands[1]->int_value > 1) {
    const Expr& x = e->operands[0];
    const bool reads =
        vars.size() == 0 || std::any_of(vars.begin(), vars.end(), [&](ir::Var v) { return ir::uses_var(x, v); });
    if (reads) divisors->insert(e->operands[1]->int_value);
  }
  for (const Expr& o : e->operands) collect_divisors(o, vars, divisors);
}

// The mask over rows and columns of period P, its Div and Mod split over multiples of their divisors
// (divisor_split.h), so that a column is read as `qc % P`, not `(P * qr + qc) % P`.
struct SplitMask {
  Expr mask;
  analysis::VarRanges ranges;  // rows over the whole shape, columns over the whole period

  bool never(int64_t q_first, int64_t q_last, int64_t k_first, int64_t k_last) const {
    analysis::VarRanges r = ranges;
    r.symbols[kQueryColumn] = analysis::Interval::of(analysis::IntInterval::range(q_first, q_last));
    r.symbols[kKeyColumn] = analysis::Interval::of(analysis::IntInterval::range(k_first, k_last));
    return analysis::bool_bounds(mask, r).always_false();
  }
};

SplitMask split_mask(const Expr& mask, int64_t P, int64_t N, int64_t M) {
  auto position = [&](const char* row, const char* column) {
    return ir::binary(ir::BinaryOp::Add, ir::binary(ir::BinaryOp::Mul, ir::int_imm(P), ir::symbol(row)),
                      ir::symbol(column));
  };
  const Expr q = position(kQueryRow, kQueryColumn);
  const Expr k = position(kKeyRow, kKeyColumn);
  const std::map<ir::Var, Expr> positions = {
      {ir::Var::Q, q},
      {ir::Var::I, ir::binary(ir::BinaryOp::Sub, q, ir::int_imm(M - N))},
      {ir::Var::K, k},
      {ir::Var::J, k},
      {ir::Var::N, ir::int_imm(N)},
      {ir::Var::M, ir::int_imm(M)},
  };
  SplitMask s;
  auto range = [](int64_t lo, int64_t hi) { return analysis::Interval::of(analysis::IntInterval::range(lo, hi)); };
  s.ranges.symbols[kQueryRow] = range(ir::floor_div(M - N, P), ir::floor_div(M - 1, P));
  s.ranges.symbols[kKeyRow] = range(0, ir::floor_div(M - 1, P));
  s.ranges.symbols[kQueryColumn] = range(0, P - 1);
  s.ranges.symbols[kKeyColumn] = range(0, P - 1);
  s.mask = split_by_divisors(ir::substitute_vars(mask, positions), s.ranges);
  return s;
}

// Key columns [lo, hi) outside which block [first, first + g) provably reaches nothing; lo >= hi: none at all.
std::pair<int64_t, int64_t> reached_columns(const SplitMask& s, int64_t P, int64_t first, int64_t g) {
  const int64_t last = first + g - 1;
  if (s.never(first, last, 0, P - 1)) return {P, 0};
  // The proofs are monotone in the excluded range: a binary search for the widest one on each side, `side(w)`
  // being the first and last excluded column of width w.
  auto widest = [&](auto side) {
    int64_t best = 0;
    for (int64_t a = 1, b = P; a <= b;) {
      const int64_t w = a + (b - a) / 2;
      const auto [k_first, k_last] = side(w);
      if (s.never(first, last, k_first, k_last)) {
        best = w;
        a = w + 1;
      } else {
        b = w - 1;
      }
    }
    return best;
  };
  const int64_t lo = widest([](int64_t w) { return std::pair{int64_t{0}, w - 1}; });
  const int64_t hi = P - widest([P](int64_t w) { return std::pair{P - w, P - 1}; });
  return {lo, hi};
}

std::optional<ColumnBlockSplit> split_for(const SplitMask& s, int64_t P, int64_t g) {
  ColumnBlockSplit split{P, g, 0, {}};
  std::vector<std::pair<int64_t, int64_t>> reached;
  for (int64_t first = 0; first < P; first += g) {
    auto [lo, hi] = reached_columns(s, P, first, g);
    reached.emplace_back(lo, hi);
    split.key_group = std::max(split.key_group, hi - lo);
  }
  if (split.key_group == 0 || split.key_group >= P) return std::nullopt;
  const int64_t G = split.key_group;
  for (int64_t b = 0; b < static_cast<int64_t>(reached.size()); ++b) {
    auto [lo, hi] = reached[static_cast<size_t>(b)];
    if (lo >= hi) continue;
    const int64_t key_first = std::min(lo, P - G);
    const int64_t first = b * g;
    // The widened range holds [lo, hi); proven again directly, so that no step above has to be trusted.
    if (key_first > 0 && !s.never(first, first + g - 1, 0, key_first - 1)) return std::nullopt;
    if (key_first + G < P && !s.never(first, first + g - 1, key_first + G, P - 1)) return std::nullopt;
    split.blocks.push_back({first, key_first});
  }
  return split;
}

}  // namespace

std::vector<ColumnBlockSplit> column_block_splits(const Expr& mask, int64_t N, int64_t M, int64_t min_period,
                                                  int64_t min_view_queries) {
  std::vector<ColumnBlockSplit> splits;
  if (N <= 0 || M <= 0) return splits;
  // A period both positions are divided by: the columns of queries and of keys.
  std::set<int64_t> of_queries, of_keys;
  collect_divisors(mask, {ir::Var::Q, ir::Var::I}, &of_queries);
  collect_divisors(mask, {ir::Var::K, ir::Var::J}, &of_keys);
  for (int64_t P : of_queries) {
    if (!of_keys.count(P)) continue;
    if (P < min_period || P > M || ir::floor_mod(M - N, P) != 0) continue;
    const SplitMask s = split_mask(mask, P, N, M);
    std::set<int64_t> widths = {1};
    std::set<int64_t> divisors;
    collect_divisors(s.mask, {}, &divisors);
    for (int64_t d : divisors) {
      if (d < P && P % d == 0) widths.insert(d);
    }
    // Narrowest first: where two widths compute the same pairs, the plan keeps the first, and one column per
    // view is one stride apart (wider runs cost the CPU a copy of their rows).
    for (int64_t g : widths) {
      if (N / P * g < min_view_queries) continue;
      if (auto split = split_for(s, P, g)) splits.push_back(std::move(*split));
    }
  }
  return splits;
}

}  // namespace tessera::planner
