// What one launch of the attention kernel reads: the data, the views of the planner's component it computes,
// and the block table that says which key tiles each block visits. The host builds it (launch_plan.h); the same
// structs describe a launch for the GPU, for the warp emulator and for the host tests of the tile walk.
#pragma once

#include "pattern_args.cuh"
#include "platform.cuh"

namespace tessera_cuda {

// Local index x < count of a view selects original index origin + stride * (x / group) + x % group (see
// compiler/planner/sparsity_plan.h).
struct IndexView {
  i32 origin = 0, stride = 1, group = 1, count = 0;
};
TESSERA_HD i32 original_index(const IndexView& v, i32 x) { return v.origin + v.stride * (x / v.group) + x % v.group; }

struct ViewDesc {
  IndexView queries, keys;
};

// One block of the grid's x dimension: a query tile of a view, the key tiles it visits (entries
// [tile_begin, tile_end) of the launch's tile list) and the output slot it writes. A query tile whose keys are
// split (decoding: few queries, many keys) has one block per split, each writing its own slot.
struct BlockDesc {
  i32 view = 0, query_tile = 0, slot = 0, tile_begin = 0, tile_end = 0;
};

// A tile list entry: key tile index * 2 + 1 when the tile's pairs are only partly allowed (the mask is
// evaluated), + 0 when all are (the mask is skipped; keys past the view's end are still excluded).
TESSERA_HD i32 tile_entry(i32 key_tile, bool masked) { return key_tile * 2 + (masked ? 1 : 0); }
TESSERA_HD i32 entry_key_tile(i32 entry) { return entry >> 1; }
TESSERA_HD bool entry_masked(i32 entry) { return (entry & 1) != 0; }

struct KernelParams {
  const void* q = nullptr;  // [B, H, N, D]    bf16 or fp16
  const void* k = nullptr;  // [B, Hkv, M, D]
  const void* v = nullptr;  // [B, Hkv, M, Dv]
  // Output slots: slot s of the float32 [B, H, N, Dv] output starts at out + s * out_slot_stride, its log2-domain
  // log-sum-exp [B, H, N] at lse + s * lse_slot_stride. With one slot (write_lse 0) out is the final output and
  // lse is unused; otherwise a merge combines the slots.
  float* out = nullptr;
  float* lse = nullptr;
  i64 out_slot_stride = 0, lse_slot_stride = 0;
  i32 write_lse = 0;
  i32 B = 1, H = 1, Hkv = 1, N = 0, M = 0;
  float scale = 1.0f;  // logit scale
  const ViewDesc* views = nullptr;
  const BlockDesc* blocks = nullptr;  // gridDim.x of them; gridDim.y = B * H
  const i32* tiles = nullptr;         // tile list entries
  // PatternArgs::symbols indices that take the view's query / key origin, or -1.
  i32 query_origin_symbol = -1, key_origin_symbol = -1;
  // Kernels instantiated to guard non-finite values (attention_block's GuardValues): v holds V with every Inf and
  // NaN element replaced by 0, v_raw the values as given, and value_flags [B, Hkv, M] is 1 for a key whose row of
  // V holds one. Unused (null) otherwise.
  const void* v_raw = nullptr;
  const unsigned char* value_flags = nullptr;
  PatternArgs pattern;  // N and M are set per view by the kernel
};

// A multi-slot launch is merged row by row: out = sum_s 2^(lse_s - max) O_s / sum_s 2^(lse_s - max).
// Slots whose row has lse -inf (no allowed key there) are skipped, whatever their O holds; a row with none
// is zero.
struct MergeParams {
  const float* slots_out = nullptr;
  const float* slots_lse = nullptr;
  float* out = nullptr;
  i64 rows = 0;  // B * H * N
  i32 slots = 0, value_dim = 0;
  i64 out_slot_stride = 0, lse_slot_stride = 0;
};

inline constexpr int kMergeThreads = 128;  // threads per block of tessera_merge_slots (one block per row)
inline constexpr int kFillThreads = 256;   // threads per block of tessera_fill

// The data and output layout of one attention launch, shared by the run-time launcher and the host code of libraries
// compiled ahead of time: with one slot, `out` is the [B, H, N, Dv] output; with several, slot s of the outputs
// starts at out + s * B*H*N*Dv and of the log-sum-exps at lse + s * B*H*N. Views, blocks, tiles and the pattern's
// arguments are the component's.
TESSERA_HD KernelParams launch_params(const void* q, const void* k, const void* v, float* out, float* lse, i32 slots,
                                      i32 B, i32 H, i32 Hkv, i32 N, i32 M, i32 value_dim, float scale) {
  KernelParams p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = slots > 1 ? lse : nullptr;
  p.out_slot_stride = static_cast<i64>(B) * H * N * value_dim;
  p.lse_slot_stride = static_cast<i64>(B) * H * N;
  p.write_lse = slots > 1 ? 1 : 0;
  p.B = B;
  p.H = H;
  p.Hkv = Hkv;
  p.N = N;
  p.M = M;
  p.scale = scale;
  return p;
}

// The merge of the slots of launch_params' layout into `out`.
TESSERA_HD MergeParams merge_params(const float* slots_out, const float* slots_lse, float* out, i32 slots, i64 rows,
                                    i32 value_dim) {
  MergeParams m;
  m.slots_out = slots_out;
  m.slots_lse = slots_lse;
  m.out = out;
  m.rows = rows;
  m.slots = slots;
  m.value_dim = value_dim;
  m.out_slot_stride = rows * value_dim;
  m.lse_slot_stride = rows;
  return m;
}

// The pattern arguments of one view: the launch's, with the view's sizes and origins.
TESSERA_HD PatternArgs view_pattern_args(const KernelParams& p, const ViewDesc& view) {
  PatternArgs a = p.pattern;
  a.N = view.queries.count;
  a.M = view.keys.count;
  if (p.query_origin_symbol >= 0) a.symbols[p.query_origin_symbol] = view.queries.origin;
  if (p.key_origin_symbol >= 0) a.symbols[p.key_origin_symbol] = view.keys.origin;
  return a;
}

}  // namespace tessera_cuda
