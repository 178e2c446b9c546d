// The sparsity planner: splits a pattern's mask into components, each run in the layout where it is dense,
// so that a sparse pattern costs in proportion to its allowed pairs, not to its bounding tiles.
//
// Every component is computed over one or more *views*: affine selections of query rows and key columns
// (local index x is original index origin + stride * x). Their partial softmax results are merged by
// log-sum-exp, so every allowed pair must be computed in exactly one (component, view) and no other pair may
// contribute. Components:
//   - tile-sparse: the identity view; tiles of the mask classified EMPTY / FULL / PARTIAL.
//   - residue classes: a mask term `(q - k) % S == C` (the Sparse Transformer's strided pattern, dilated
//     windows) is dense after permuting queries and keys by position mod S (the "transpose trick"): one view
//     per class, strides S on both sides.
//   - column sets: a term on k alone that depends on k only through k % P (the fixed pattern's summary
//     columns) selects whole key columns: one view per run of consecutive allowed offsets, taking that run
//     of keys every P keys.
//   - column blocks: positions read as (row, column) of a period P, when each run of query columns reaches only
//     a few key columns (the Image Transformer's local 2D blocks): one view per run of query columns, taking
//     those columns of every row, with the key columns the run provably reaches (see column_blocks.h).
// The planner reads the mask's IR, never the pattern's name.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"

namespace tessera::planner {

// Local index x < count selects original index origin + stride * (x / group) + x % group: every stride-th
// index (group 1), or runs of `group` consecutive indices every stride-th (a column set's summary columns).
struct IndexView {
  int64_t origin = 0, stride = 1, count = 0, group = 1;

  int64_t original(int64_t x) const { return origin + stride * (x / group) + x % group; }
};

struct View {
  IndexView queries, keys;
};

// Symbols the `local` pattern of a component reads; bind_view gives them a view's values.
inline constexpr const char* kQueryOrigin = "view_query_origin";
inline constexpr const char* kKeyOrigin = "view_key_origin";
inline constexpr const char* kQueries = "original_N";
inline constexpr const char* kKeys = "original_M";

enum class ComponentKind { TileSparse, ResidueClasses, ColumnSet, ColumnBlocks };

struct Component {
  ComponentKind kind = ComponentKind::TileSparse;
  std::string description;  // e.g. "residue classes of q - k mod 128 (128 views)"
  ir::Pattern original;     // in original coordinates: its mask selects exactly this component's pairs
  // The same component over a view's local indices: Var::I / Var::J are local, positions and sizes come from
  // the symbols above; the term that defines the views is replaced by `true` (it holds inside every view).
  ir::Pattern local;
  std::vector<View> views;
  // The same for every view of the component.
  int64_t query_stride = 1, key_stride = 1, query_group = 1, key_group = 1;
};

struct Plan {
  int64_t N = 0, M = 0;
  std::vector<Component> components;
};

struct PlanOptions {
  int64_t block_q = 128, block_k = 64;  // tiles used to estimate pairs computed
  int64_t min_stride = 4;               // residue or column strides below this are left tile-sparse
  bool allow_reindexing = true;         // false: a single tile-sparse component
};

// Chooses the plan with the fewest pairs computed (pairs in non-EMPTY tiles over all views).
Plan plan_pattern(const ir::Pattern& pattern, int64_t N, int64_t M, const PlanOptions& options = {});

// The component's local pattern with one view's symbols replaced by their values.
ir::Pattern bind_view(const Component& component, const View& view, int64_t N, int64_t M);

// What a component costs over all its views: tiles by kind and the pairs in non-EMPTY tiles (what a backend
// computes), for the options' tile sizes.
struct ComponentCost {
  int64_t empty = 0, full = 0, partial = 0, pairs = 0;
};
ComponentCost component_cost(const Component& component, int64_t N, int64_t M, const PlanOptions& options = {});

// Pairs computed by every component of the plan.
int64_t pairs_computed(const Plan& plan, const PlanOptions& options = {});

// Views of one component grouped into waves whose query rows are pairwise disjoint: views in a wave may run
// in parallel; waves (and components) accumulate into the same rows one after another.
std::vector<std::vector<size_t>> disjoint_waves(const Component& component);

}  // namespace tessera::planner
