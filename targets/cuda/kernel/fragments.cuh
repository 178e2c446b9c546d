// Where the elements of mma.sync.m16n8k16 fragments and ldmatrix rows live, from the PTX ISA (version 8.x),
// section 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type" and section 9.7.14.5.15
// "Warp-level matrix load instruction: ldmatrix". Every index the kernel derives from a lane number comes from
// here, so the tables are stated once:
//
//   groupID = laneid >> 2, threadID_in_group = laneid % 4.
//   A (16x16, .row; four .b32 registers a0..a3 holding two 16-bit elements each, lower half first):
//     register r holds row groupID + 8 * (r % 2), columns 2 * threadID_in_group + {0, 1} + 8 * (r / 2).
//   B (16x8, .col; two registers b0, b1):
//     register r holds column groupID, rows 2 * threadID_in_group + {0, 1} + 8 * r.
//   C / D (16x8, fp32; four registers c0..c3):
//     c[e] sits at row groupID + 8 * (e / 2), column 2 * threadID_in_group + e % 2.
//   ldmatrix .x4 (four 8x8 matrices of 16-bit elements): lane l supplies the address of row l % 8 of matrix
//     l / 8; destination register m of lane l holds matrix m's row l / 4, columns 2 * (l % 4) + {0, 1}
//     (.trans: column l / 4, rows 2 * (l % 4) + {0, 1}).
//
// Consequences the kernel uses (derived from the tables above):
//   - A from a row-major [row][k] tile: matrix m of an .x4 load covers rows 8 * (m % 2) .. +7 and columns
//     8 * (m / 2) .. +7, so register m is exactly a_m.
//   - B from a [n][k] tile (K rows: B = K^T): matrices cover n rows 8 * (m / 2) .. +7 and k columns
//     8 * (m % 2) .. +7; registers 0, 1 are b0, b1 of the first n8 block, 2, 3 those of the second.
//   - B from a [k][n] tile (V rows) with .trans: matrices cover k rows 8 * (m % 2) .. +7 and n columns
//     8 * (m / 2) .. +7; registers 0, 1 are b0, b1 of the first n8 block, 2, 3 those of the second.
//   - The C fragments of two adjacent n8 blocks (columns 0-7 and 8-15), rounded to 16 bits and packed in
//     pairs, are the A fragment of a 16x16 operand: a0 = (c0, c1) of block 0, a1 = (c2, c3) of block 0,
//     a2 = (c0, c1) of block 1, a3 = (c2, c3) of block 1. P = softmax(S) goes from the first product to the
//     second without leaving registers.
#pragma once

#include "platform.cuh"

namespace tessera_cuda::fragments {

TESSERA_HD int group_id(int lane) { return lane >> 2; }
TESSERA_HD int thread_in_group(int lane) { return lane & 3; }

// Row and column of accumulator element e (0..3) of `lane` in a 16x8 C/D fragment.
TESSERA_HD int accumulator_row(int lane, int e) { return group_id(lane) + 8 * (e >> 1); }
TESSERA_HD int accumulator_col(int lane, int e) { return 2 * thread_in_group(lane) + (e & 1); }

// The row (within a 16-row block) and the 8-column group whose address `lane` supplies to an .x4 ldmatrix that
// loads a 16x16 A operand from a row-major tile.
TESSERA_HD int a_load_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
TESSERA_HD int a_load_col8(int lane) { return lane >> 4; }

// The same for the B operand of two adjacent n8 blocks from an [n][k] tile: n row within 16, k column group.
TESSERA_HD int bt_load_row(int lane) { return (lane & 7) + 8 * (lane >> 4); }
TESSERA_HD int bt_load_col8(int lane) { return (lane >> 3) & 1; }

// The same for the B operand of two adjacent n8 blocks from a [k][n] tile loaded with .trans: k row within 16,
// n column group.
TESSERA_HD int b_trans_load_row(int lane) { return (lane & 7) + 8 * ((lane >> 3) & 1); }
TESSERA_HD int b_trans_load_col8(int lane) { return lane >> 4; }

}  // namespace tessera_cuda::fragments
