// Column blocks: a 2-D re-indexing of raster-order positions. With positions read as (row, column) of a period
// P (q = P * row + column), a mask like the Image Transformer's local 2D blocks lets a query reach only a few
// key columns near its own, whatever the rows: a tile of raster-order queries spans whole image rows and so
// every key column, where a tile of the queries of one column block (runs of g columns, every row) needs only
// the key columns that block reaches. This file finds such a split and proves, by interval analysis over
// (row, column) of queries and keys, which key columns each query column block can reach.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "compiler/ir/pattern.h"

namespace tessera::planner {

// Query columns [first, first + query_group) of every row reach key columns within [key_first, key_first +
// key_group) only (columns of the period).
struct ColumnBlock {
  int64_t first = 0, key_first = 0;
};

struct ColumnBlockSplit {
  int64_t period = 0, query_group = 0, key_group = 0;
  std::vector<ColumnBlock> blocks;  // query column blocks that reach any key column, in column order
};

// The splits worth trying for `mask` at N queries and M keys: for each period P >= min_period that divides both
// a query and a key position in the mask (q / P or q % P, and k / P or k % P) and each query block width g dividing P
// (1, and divisors the mask itself divides by), the proven key column range of every block, widened to a common width.
// Only splits whose blocks reach fewer than all P key columns are returned. Requires (M - N) % P == 0 so that query row
// i and its position share a column; other shapes get no split. Splits whose views would hold fewer than
// `min_view_queries` queries are not tried: a view shorter than a query tile wastes most of its tiles, and
// classifying many small views' tiles costs the planner seconds.
std::vector<ColumnBlockSplit> column_block_splits(const ir::Expr& mask, int64_t N, int64_t M, int64_t min_period,
                                                  int64_t min_view_queries);

}  // namespace tessera::planner
