#include "compiler/planner/sparsity_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <random>
#include <set>

#include "compiler/analysis/interval.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/ir/simplify.h"
#include "compiler/planner/column_blocks.h"
#include "compiler/planner/divisor_split.h"

namespace tessera::planner {

namespace {

using ir::Expr;

// The comparisons a boolean mask is built from (through &&, || and !).
void collect_atoms(const Expr& e, std::vector<Expr>* atoms) {
  if (e->kind == ir::Kind::Binary && (e->binary_op == ir::BinaryOp::And || e->binary_op == ir::BinaryOp::Or)) {
    collect_atoms(e->operands[0], atoms);
    collect_atoms(e->operands[1], atoms);
  } else if (e->kind == ir::Kind::Unary && e->unary_op == ir::UnaryOp::Not) {
    collect_atoms(e->operands[0], atoms);
  } else if (e->type == ir::Type::Bool && e->kind != ir::Kind::BoolImm) {
    atoms->push_back(e);
  }
}

// Whether `e` reads only the given built-in variables (no tensors, symbols, b, h, ...).
bool reads_only(const Expr& e, std::initializer_list<ir::Var> allowed) {
  if (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ || e->kind == ir::Kind::Symbol) return false;
  if (e->kind == ir::Kind::Var && std::find(allowed.begin(), allowed.end(), e->var) == allowed.end()) return false;
  for (const auto& o : e->operands) {
    if (!reads_only(o, allowed)) return false;
  }
  return true;
}

Expr replace_subexpression(const Expr& e, const Expr& target, const Expr& replacement) {
  if (ir::structurally_equal(e, target)) return replacement;
  bool changed = false;
  std::vector<Expr> operands;
  for (const auto& o : e->operands) {
    operands.push_back(replace_subexpression(o, target, replacement));
    changed |= operands.back() != o;
  }
  if (!changed) return e;
  auto copy = std::make_shared<ir::Node>(*e);
  copy->operands = std::move(operands);
  return copy;
}

// Evaluates an expression of positions at query position q and key position k.
ir::Value at(const Expr& e, int64_t q, int64_t k, int64_t N, int64_t M) {
  ir::EvalEnv env;
  env.set(ir::Var::Q, q);
  env.set(ir::Var::K, k);
  env.set(ir::Var::I, q - (M - N));
  env.set(ir::Var::J, k);
  env.set(ir::Var::N, N);
  env.set(ir::Var::M, M);
  return ir::evaluate(e, env);
}

// A term `E % S == C` with E = e0 + a (q - k), a = +-1: true iff q - k = offset (mod S).
struct ResidueTerm {
  Expr atom;
  int64_t stride = 0, offset = 0;
};

std::optional<ResidueTerm> residue_term(const Expr& atom, int64_t N, int64_t M, int64_t min_stride) {
  if (atom->kind != ir::Kind::Binary || atom->binary_op != ir::BinaryOp::Eq) return std::nullopt;
  for (int side = 0; side < 2; ++side) {
    const Expr& mod = atom->operands[side];
    const Expr& rhs = atom->operands[1 - side];
    if (mod->kind != ir::Kind::Binary || mod->binary_op != ir::BinaryOp::Mod || rhs->kind != ir::Kind::IntImm) continue;
    const Expr& divisor = mod->operands[1];
    if (divisor->kind != ir::Kind::IntImm || divisor->int_value < min_stride) continue;
    const Expr& diff = mod->operands[0];
    using V = ir::Var;
    if (!reads_only(diff, {V::Q, V::K, V::I, V::J, V::N, V::M})) continue;
    const int64_t s = divisor->int_value;
    const int64_t e0 = at(diff, 0, 0, N, M).i;
    const int64_t a = at(diff, 1, 0, N, M).i - e0;
    if (a != 1 && a != -1) continue;
    // Affine in q - k with slope a: check at spread points (any other dependence shows up).
    std::mt19937_64 rng(1);
    std::uniform_int_distribution<int64_t> pos(-3 * (N + M + s), 3 * (N + M + s));
    bool affine = true;
    for (int trial = 0; trial < 64 && affine; ++trial) {
      int64_t q = pos(rng), k = pos(rng);
      affine = at(diff, q, k, N, M).i == e0 + a * (q - k);
    }
    if (!affine) continue;
    const int64_t c0 = rhs->int_value;
    if (c0 < 0 || c0 >= s) continue;  // a floor modulo is never outside [0, s): left to the tile-sparse plan
    return ResidueTerm{atom, s, ir::floor_mod(a * (c0 - e0), s)};
  }
  return std::nullopt;
}

// A term on the key position alone, periodic with period P: true iff k mod P is in `offsets`.
struct ColumnTerm {
  Expr atom;
  int64_t period = 0;
  std::vector<int64_t> offsets;
};

std::optional<int64_t> key_period(const Expr& e, int64_t min_stride) {
  if (e->kind == ir::Kind::Binary && e->binary_op == ir::BinaryOp::Mod && e->operands[1]->kind == ir::Kind::IntImm &&
      e->operands[1]->int_value >= min_stride &&
      (ir::uses_var(e->operands[0], ir::Var::K) || ir::uses_var(e->operands[0], ir::Var::J))) {
    return e->operands[1]->int_value;
  }
  for (const auto& o : e->operands) {
    if (auto p = key_period(o, min_stride)) return p;
  }
  return std::nullopt;
}

std::optional<ColumnTerm> column_term(const Expr& atom, int64_t N, int64_t M, int64_t min_stride) {
  using V = ir::Var;
  if (!reads_only(atom, {V::K, V::J, V::N, V::M})) return std::nullopt;
  std::optional<int64_t> period = key_period(atom, min_stride);
  if (!period) return std::nullopt;
  const int64_t P = *period;
  ColumnTerm term{atom, P, {}};
  for (int64_t o = 0; o < P; ++o) {
    bool value = at(atom, 0, o, N, M).b;
    for (int64_t shift : {P, 2 * P, 7 * P, 31 * P}) {
      if (at(atom, 0, o + shift, N, M).b != value) return std::nullopt;  // not periodic in k after all
    }
    if (value) term.offsets.push_back(o);
  }
  if (term.offsets.empty() || 2 * static_cast<int64_t>(term.offsets.size()) > P) return std::nullopt;
  return term;
}

// Index origin + stride * (x / group) + x % group of local index x.
Expr view_index(Expr origin, int64_t stride, int64_t group, Expr x) {
  Expr period = group == 1 ? x : ir::binary(ir::BinaryOp::Div, x, ir::int_imm(group));
  Expr index = ir::binary(ir::BinaryOp::Add, origin, ir::binary(ir::BinaryOp::Mul, ir::int_imm(stride), period));
  if (group > 1) index = ir::binary(ir::BinaryOp::Add, index, ir::binary(ir::BinaryOp::Mod, x, ir::int_imm(group)));
  return index;
}

// The pattern over a view's local indices (see Component::local).
ir::Pattern localize(const ir::Pattern& p, const Expr& mask, int64_t query_stride, int64_t query_group,
                     int64_t key_stride, int64_t key_group, int64_t N, int64_t M) {
  Expr n = ir::symbol(kQueries);
  Expr m = ir::symbol(kKeys);
  Expr row = view_index(ir::symbol(kQueryOrigin), query_stride, query_group, ir::var(ir::Var::I));
  Expr col = view_index(ir::symbol(kKeyOrigin), key_stride, key_group, ir::var(ir::Var::J));
  std::map<ir::Var, Expr> to_local = {
      {ir::Var::I, row},
      {ir::Var::J, col},
      {ir::Var::Q, ir::binary(ir::BinaryOp::Add, row, ir::binary(ir::BinaryOp::Sub, m, n))},
      {ir::Var::K, col},
      {ir::Var::N, n},
      {ir::Var::M, m},
  };
  // A view's origins lie within one period of its strides; its local indices within the original sizes.
  analysis::VarRanges ranges;
  auto range = [](int64_t lo, int64_t hi) { return analysis::Interval::of(analysis::IntInterval::range(lo, hi)); };
  ranges[ir::Var::I] = analysis::IntInterval::range(0, std::max<int64_t>(0, N - 1));
  ranges[ir::Var::J] = analysis::IntInterval::range(0, std::max<int64_t>(0, M - 1));
  ranges.symbols[kQueryOrigin] = range(0, query_stride - 1);
  ranges.symbols[kKeyOrigin] = range(0, key_stride - 1);
  ranges.symbols[kQueries] = range(N, N);
  ranges.symbols[kKeys] = range(M, M);
  auto to_view = [&](const Expr& e) {
    return ir::simplify(split_by_divisors(ir::substitute_vars(e, to_local), ranges));
  };
  ir::Pattern local = p;
  local.mask = to_view(mask);
  local.score = to_view(p.score);
  local.weight = to_view(p.weight);
  return local;
}

Component make_component(const ir::Pattern& p, ComponentKind kind, std::string description, const Expr& original_mask,
                         const Expr& view_mask, int64_t query_stride, int64_t key_stride, int64_t key_group,
                         std::vector<View> views, int64_t N, int64_t M, int64_t query_group = 1) {
  Component c;
  c.kind = kind;
  c.description = std::move(description);
  c.original = p;
  c.original.mask = ir::simplify(original_mask);
  c.local = localize(p, view_mask, query_stride, query_group, key_stride, key_group, N, M);
  c.query_stride = query_stride;
  c.key_stride = key_stride;
  c.query_group = query_group;
  c.key_group = key_group;
  c.views = std::move(views);
  return c;
}

Component tile_sparse(const ir::Pattern& p, const Expr& mask, int64_t N, int64_t M) {
  return make_component(p, ComponentKind::TileSparse, "tile-sparse", mask, mask, 1, 1, 1, {View{{0, 1, N}, {0, 1, M}}},
                        N, M);
}

int64_t count_from(int64_t origin, int64_t stride, int64_t extent) {
  return origin >= extent ? 0 : (extent - origin + stride - 1) / stride;
}

Plan residue_plan(const ir::Pattern& p, const ResidueTerm& term, int64_t N, int64_t M) {
  const int64_t s = term.stride;
  std::vector<View> views;
  for (int64_t rq = 0; rq < s; ++rq) {
    // Queries at positions q = rq (mod s), i.e. rows i = rq - (M - N) (mod s); keys k = rq - offset (mod s).
    int64_t qo = ir::floor_mod(rq - (M - N), s);
    int64_t ko = ir::floor_mod(rq - term.offset, s);
    View v{{qo, s, count_from(qo, s, N)}, {ko, s, count_from(ko, s, M)}};
    if (v.queries.count > 0 && v.keys.count > 0) views.push_back(v);
  }
  Expr not_term = ir::unary(ir::UnaryOp::Not, term.atom);
  Plan plan{N, M, {}};
  std::string description = fmt::format("residue classes: q - k = {} (mod {}), {} views", term.offset, s, views.size());
  // Where the term is false, the rest of the mask is the mask with the term replaced by false: said
  // explicitly, so tile classification sees the band that is left.
  Expr rest = replace_subexpression(p.mask, term.atom, ir::bool_imm(false));
  plan.components.push_back(tile_sparse(p, ir::binary(ir::BinaryOp::And, rest, not_term), N, M));
  plan.components.push_back(make_component(
      p, ComponentKind::ResidueClasses, std::move(description),
      ir::binary(ir::BinaryOp::And, replace_subexpression(p.mask, term.atom, ir::bool_imm(true)), term.atom),
      replace_subexpression(p.mask, term.atom, ir::bool_imm(true)), s, s, 1, std::move(views), N, M));
  return plan;
}

// Keys origin + P * a + r (r < group) below `extent`: whole periods, then the valid prefix of the last one.
int64_t grouped_count(int64_t origin, int64_t period, int64_t group, int64_t extent) {
  if (origin >= extent) return 0;
  int64_t whole = origin + group - 1 >= extent ? 0 : (extent - (origin + group - 1) + period - 1) / period;
  int64_t rest_start = origin + period * whole;
  int64_t rest = rest_start < extent ? std::min(group, extent - rest_start) : 0;
  return whole * group + rest;
}

Plan column_plan(const ir::Pattern& p, const ColumnTerm& term, int64_t N, int64_t M) {
  // Runs of consecutive offsets become one view each when the runs are equally long; otherwise one view per
  // offset.
  std::vector<std::pair<int64_t, int64_t>> runs;  // (first offset, length)
  for (int64_t o : term.offsets) {
    if (!runs.empty() && runs.back().first + runs.back().second == o) {
      ++runs.back().second;
    } else {
      runs.emplace_back(o, 1);
    }
  }
  int64_t group = runs.front().second;
  for (const auto& run : runs) {
    if (run.second != group) group = 1;
  }
  if (group == 1) {
    runs.clear();
    for (int64_t o : term.offsets) runs.emplace_back(o, 1);
  }
  std::vector<View> views;
  for (const auto& run : runs) {
    View v{{0, 1, N}, {run.first, term.period, grouped_count(run.first, term.period, group, M), group}};
    if (v.keys.count > 0 && v.queries.count > 0) views.push_back(v);
  }
  Expr not_term = ir::unary(ir::UnaryOp::Not, term.atom);
  Plan plan{N, M, {}};
  std::string description =
      fmt::format("column set: k mod {} in [{}], {} views", term.period, fmt::join(term.offsets, ", "), views.size());
  // Where the term is false, the rest of the mask is the mask with the term replaced by false: said
  // explicitly, so tile classification sees the band that is left.
  Expr rest = replace_subexpression(p.mask, term.atom, ir::bool_imm(false));
  plan.components.push_back(tile_sparse(p, ir::binary(ir::BinaryOp::And, rest, not_term), N, M));
  plan.components.push_back(make_component(
      p, ComponentKind::ColumnSet, std::move(description),
      ir::binary(ir::BinaryOp::And, replace_subexpression(p.mask, term.atom, ir::bool_imm(true)), term.atom),
      replace_subexpression(p.mask, term.atom, ir::bool_imm(true)), 1, term.period, group, std::move(views), N, M));
  return plan;
}

// One view per query column block: all of the mask, over the key columns the block reaches.
Plan column_block_plan(const ir::Pattern& p, const ColumnBlockSplit& split, int64_t N, int64_t M) {
  const int64_t P = split.period, g = split.query_group, G = split.key_group;
  std::vector<View> views;
  for (const ColumnBlock& block : split.blocks) {
    // Query row i sits at position i + M - N, in the same column since P divides M - N.
    View v{{block.first, P, grouped_count(block.first, P, g, N), g},
           {block.key_first, P, grouped_count(block.key_first, P, G, M), G}};
    if (v.queries.count > 0 && v.keys.count > 0) views.push_back(v);
  }
  std::string description =
      fmt::format("column blocks: q mod {} in runs of {}, k mod {} in runs of {}, {} views", P, g, P, G, views.size());
  Plan plan{N, M, {}};
  plan.components.push_back(make_component(p, ComponentKind::ColumnBlocks, std::move(description), p.mask, p.mask, P, P,
                                           G, std::move(views), N, M, g));
  return plan;
}

// Components whose mask is constant false compute nothing: drop them.
Plan without_empty_components(Plan plan) {
  std::vector<Component> kept;
  for (auto& c : plan.components) {
    bool never = c.original.mask->kind == ir::Kind::BoolImm && !c.original.mask->bool_value;
    if (!never && !c.views.empty()) kept.push_back(std::move(c));
  }
  plan.components = std::move(kept);
  return plan;
}

}  // namespace

ir::Pattern bind_view(const Component& component, const View& view, int64_t N, int64_t M) {
  ir::Pattern bound = component.local;
  for (auto [name, value] : {std::pair{kQueryOrigin, view.queries.origin}, std::pair{kKeyOrigin, view.keys.origin},
                             std::pair{kQueries, N}, std::pair{kKeys, M}}) {
    bound.mask = ir::substitute_symbol(bound.mask, name, ir::int_imm(value));
    bound.score = ir::substitute_symbol(bound.score, name, ir::int_imm(value));
    bound.weight = ir::substitute_symbol(bound.weight, name, ir::int_imm(value));
  }
  bound.mask = ir::simplify(bound.mask);
  bound.score = ir::simplify(bound.score);
  bound.weight = ir::simplify(bound.weight);
  return bound;
}

ComponentCost component_cost(const Component& component, int64_t N, int64_t M, const PlanOptions& options) {
  ComponentCost cost;
  for (const View& v : component.views) {
    ir::Pattern bound = bind_view(component, v, N, M);
    analysis::TileMap tiles =
        analysis::classify_tiles(bound, v.queries.count, v.keys.count, options.block_q, options.block_k);
    cost.empty += tiles.empty;
    cost.full += tiles.full;
    cost.partial += tiles.partial;
    for (int64_t r = 0; r < tiles.rows; ++r) {
      for (int64_t col = 0; col < tiles.cols; ++col) {
        if (tiles.at(r, col) == analysis::TileKind::Empty) continue;
        analysis::Tile t = tiles.tile(r, col);
        cost.pairs += (t.i1 - t.i0) * (t.j1 - t.j0);
      }
    }
  }
  return cost;
}

int64_t pairs_computed(const Plan& plan, const PlanOptions& options) {
  int64_t pairs = 0;
  for (const Component& c : plan.components) pairs += component_cost(c, plan.N, plan.M, options).pairs;
  return pairs;
}

Plan plan_pattern(const ir::Pattern& pattern, int64_t N, int64_t M, const PlanOptions& options) {
  Plan best{N, M, {tile_sparse(pattern, pattern.mask, N, M)}};
  if (!options.allow_reindexing || N == 0 || M == 0) return best;
  int64_t best_pairs = pairs_computed(best, options);
  std::vector<Expr> atoms;
  collect_atoms(pattern.mask, &atoms);
  for (const Expr& atom : atoms) {
    std::optional<Plan> candidate;
    if (auto r = residue_term(atom, N, M, options.min_stride)) {
      candidate = without_empty_components(residue_plan(pattern, *r, N, M));
    } else if (auto c = column_term(atom, N, M, options.min_stride)) {
      candidate = without_empty_components(column_plan(pattern, *c, N, M));
    }
    if (!candidate) continue;
    int64_t pairs = pairs_computed(*candidate, options);
    if (pairs < best_pairs) {
      best = std::move(*candidate);
      best_pairs = pairs;
    }
  }
  for (const ColumnBlockSplit& split : column_block_splits(pattern.mask, N, M, options.min_stride, options.block_q)) {
    Plan candidate = without_empty_components(column_block_plan(pattern, split, N, M));
    int64_t pairs = pairs_computed(candidate, options);
    if (pairs < best_pairs) {
      best = std::move(candidate);
      best_pairs = pairs;
    }
  }
  return best;
}

namespace {

// Whether two views' queries are disjoint: equal strides S > 1 and runs of residues mod S that do not overlap.
bool disjoint_rows(const IndexView& a, const IndexView& b) {
  if (a.stride != b.stride || a.stride <= 1) return false;
  const int64_t S = a.stride;
  return ir::floor_mod(b.origin - a.origin, S) >= a.group && ir::floor_mod(a.origin - b.origin, S) >= b.group;
}

}  // namespace

std::vector<std::vector<size_t>> disjoint_waves(const Component& component) {
  std::vector<std::vector<size_t>> waves;
  for (size_t v = 0; v < component.views.size(); ++v) {
    const IndexView& q = component.views[v].queries;
    bool placed = false;
    for (auto& wave : waves) {
      bool disjoint = true;
      for (size_t other : wave) {
        disjoint &= disjoint_rows(q, component.views[other].queries);
      }
      if (disjoint) {
        wave.push_back(v);
        placed = true;
        break;
      }
    }
    if (!placed) waves.push_back({v});
  }
  return waves;
}

}  // namespace tessera::planner
