// The flash-attention kernel template for sm_80 and newer (mma.sync m16n8k16, ldmatrix, cp.async): one block
// computes one query tile of one view of a planner component for one (batch, head), walking the key tiles its
// block descriptor lists, with online softmax in registers and no N x M buffer.
//
// The pattern enters as a functor type (pattern_args.cuh) whose mask and score are inlined; tile sizes, pipeline
// depth and the matrix-product policy are template parameters (AttentionTraits). Each warp owns 16 query rows and
// all of a key tile's columns, as in FlashAttention-2: S = Q K^T and O += P V are warp-local (Sm80Mma here;
// Sm90Wgmma in flash_attention_sm90.cuh issues them per warpgroup), and K/V tiles are shared by the block through
// a multi-stage cp.async pipeline. Scores are kept in the log2 domain (exp2 is one instruction).
#pragma once

#include "attention_params.cuh"
#include "fragments.cuh"
#include "numerics.cuh"
#include "primitives.cuh"

#if !TESSERA_DEVICE_CODE
#include <cmath>
#endif

namespace tessera_cuda {

enum class ElementKind { BFloat16, Float16 };

struct Sm80Mma;

// Tile sizes, element type and the matrix-product policy (Sm80Mma: mma.sync per warp; Sm90Wgmma: wgmma per
// warpgroup, sm_90a only) of one kernel instantiation.
template <int HeadDim, int ValueDim, int BlockM, int BlockN, ElementKind Element, class Mma = Sm80Mma, int Stages = 2>
struct AttentionTraits {
  using MmaPolicy = Mma;
  static constexpr int kHeadDim = HeadDim;
  static constexpr int kValueDim = ValueDim;
  static constexpr int kBlockM = BlockM;
  static constexpr int kBlockN = BlockN;
  static constexpr ElementKind kElement = Element;
  static constexpr int kWarps = BlockM / 16;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kStages = Stages;           // K/V tiles in flight: the cp.async pipeline's depth
  static constexpr int kHeadChunks = HeadDim / 8;  // 16-byte chunks per Q or K row
  static constexpr int kValueChunks = ValueDim / 8;
  static constexpr int kQElements = BlockM * HeadDim;
  static constexpr int kKElements = BlockN * HeadDim;
  static constexpr int kVElements = BlockN * ValueDim;
  // Q, the K/V stages, then the view's pattern arguments: read by every thread's mask and score, they live in
  // shared memory rather than in each thread's registers (a per-thread copy was spilled to local memory).
  static constexpr int kPatternArgsOffset = 2 * (kQElements + kStages * (kKElements + kVElements));
  static constexpr int kSharedBytes = kPatternArgsOffset + static_cast<int>(sizeof(PatternArgs));

  // The shared-memory swizzle permutes 8 chunks per row: rows must span a multiple of 8 chunks (64 elements).
  static_assert(HeadDim % 64 == 0 && HeadDim <= 256, "head dimension must be 64, 128, 192 or 256");
  static_assert(ValueDim % 64 == 0 && ValueDim <= 256, "value dimension must be 64, 128, 192 or 256");
  static_assert(BlockM % 16 == 0 && BlockM >= 16 && BlockM <= 128, "query tile: 16 to 128 rows, a multiple of 16");
  static_assert(BlockN % 16 == 0 && BlockN >= 16 && BlockN <= 128, "key tile: 16 to 128 keys, a multiple of 16");
  static_assert(Stages >= 2 && Stages <= 4, "2 to 4 pipeline stages");
};

// Element offset of (row, 16-byte chunk) in a tile of `chunks` chunks per row. The chunk index is XORed with
// row % 8 so that the eight row addresses of one ldmatrix phase fall in eight different bank groups.
TESSERA_HD i32 swizzled(i32 row, i32 chunk, i32 chunks) { return (row * chunks + (chunk ^ (row & 7))) * 8; }

// Rows first_local .. first_local + Rows - 1 of `view` into a tile whose (row, 16-byte chunk) sits at element
// offset(row, chunk); rows past the view's end are zeros.
template <int Chunks, int Rows, int Threads, class Offset>
TESSERA_DEVICE void load_tile(u16* tile, const u16* base, const IndexView& view, i32 first_local, i32 tid,
                              Offset offset) {
  for (i32 n = tid; n < Rows * Chunks; n += Threads) {
    const i32 r = n / Chunks, c = n % Chunks;
    const i32 x = first_local + r;
    const bool valid = x < view.count;
    const i64 row = valid ? original_index(view, x) : 0;
    cp_async_16(tile + offset(r, c), base + row * (Chunks * 8) + c * 8, valid);
  }
}

template <ElementKind Element>
TESSERA_DEVICE u32 pack_pair(float lo, float hi) {
  if constexpr (Element == ElementKind::BFloat16) {
    return pack_bf16x2(lo, hi);
  } else {
    return pack_f16x2(lo, hi);
  }
}

template <ElementKind Element>
TESSERA_DEVICE void mma(float d[4], const u32 a[4], const u32 b[2]) {
  if constexpr (Element == ElementKind::BFloat16) {
    mma_m16n8k16_bf16(d, a, b);
  } else {
    mma_m16n8k16_f16(d, a, b);
  }
}

template <ElementKind Element>
TESSERA_HD float element_to_float(u16 bits) {
  if constexpr (Element == ElementKind::BFloat16) {
    return bf16_bits_to_float(bits);
  } else {
    return f16_bits_to_float(bits);
  }
}

// Query row `row` of the block's Q tile as floats: what dot(q_vec, T[...]) in a pattern reads.
template <class Traits>
struct SharedQueryRow {
  const u16* tile;
  i32 row;
  TESSERA_HD float operator()(i32 d) const {
    return element_to_float<Traits::kElement>(tile[swizzled(row, d / 8, Traits::kHeadChunks) + d % 8]);
  }
};

// The two matrix products of a key tile, for one warp's 16 rows: S = Q K^T into s[BlockN / 8][4] (C fragments of
// consecutive n8 blocks), and O += P V with P the probabilities in s and O in o[ValueDim / 8][4]. A policy also
// says where each (row, 16-byte chunk) of the K and V tiles lives in shared memory.
struct Sm80Mma {
  // Makes this thread's completed cp.async writes visible to the products (ldmatrix reads: the barrier suffices).
  TESSERA_DEVICE static void publish_shared_writes() {}

  template <class T>
  TESSERA_HD static i32 k_offset(i32 row, i32 chunk) {
    return swizzled(row, chunk, T::kHeadChunks);
  }
  template <class T>
  TESSERA_HD static i32 v_offset(i32 row, i32 chunk) {
    return swizzled(row, chunk, T::kValueChunks);
  }

  template <class T>
  TESSERA_DEVICE static void qk(float (*s)[4], const u32 (*q_fragment)[4], const u16* k_tile, int lane) {
    for (int ks = 0; ks < T::kHeadDim / 16; ++ks) {
      for (int np = 0; np < T::kBlockN / 16; ++np) {
        u32 kb[4];
        ldmatrix_x4(kb, k_tile + swizzled(16 * np + fragments::bt_load_row(lane),
                                          2 * ks + fragments::bt_load_col8(lane), T::kHeadChunks));
        mma<T::kElement>(s[2 * np], q_fragment[ks], kb);
        mma<T::kElement>(s[2 * np + 1], q_fragment[ks], kb + 2);
      }
    }
  }

  template <class T>
  TESSERA_DEVICE static void pv(float (*o)[4], float (*s)[4], const u16* v_tile, int lane) {
    for (int kk = 0; kk < T::kBlockN / 16; ++kk) {
      const u32 pa[4] = {pack_pair<T::kElement>(s[2 * kk][0], s[2 * kk][1]),
                         pack_pair<T::kElement>(s[2 * kk][2], s[2 * kk][3]),
                         pack_pair<T::kElement>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                         pack_pair<T::kElement>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      for (int dp = 0; dp < T::kValueDim / 16; ++dp) {
        u32 vb[4];
        ldmatrix_x4_trans(vb, v_tile + swizzled(16 * kk + fragments::b_trans_load_row(lane),
                                                2 * dp + fragments::b_trans_load_col8(lane), T::kValueChunks));
        mma<T::kElement>(o[2 * dp], pa, vb);
        mma<T::kElement>(o[2 * dp + 1], pa, vb + 2);
      }
    }
  }
};

// tanh(x) = 1 - 2 / (e^(2x) + 1) to an absolute ~1e-7, saturating to +-1 where e^(2x) overflows or vanishes.
// tanh.approx.f32 (one instruction) errs by up to 2^-11 of the value: summed over A = 64 hidden units that could
// move an additive logit by ~1e-3, enough to change hardmax's choice between near-tied keys.
TESSERA_DEVICE float fast_tanh(float x) { return 1.0f - 2.0f * fast_reciprocal(fast_exp2(x * (2.0f * kLog2e)) + 1.0f); }

// Additive scoring (Bahdanau): S = v[h] . tanh(q' + k') for one warp's 16 rows and a key tile's columns, into the
// same C-fragment positions as Q K^T. The host projects Q and K and stores the projections as float32 bit
// patterns, two 16-bit elements each, zero-padded (so the "head dimension" is twice the padded A; the first A
// floats are read): float32 keeps hardmax's choices those of the reference, where bf16 projections moved the
// logits by ~1e-2. Not a matrix product: a tanh per pair and hidden unit.
template <class T, class Mma>
TESSERA_DEVICE void additive_scores(float (*s)[4], const u16* q_tile, const u16* k_tile, i32 warp_row, int lane,
                                    const float* v, i32 A) {
  // The two halves of float a sit in one 16-byte chunk (elements 2a and 2a + 1).
  auto load = [](const u16* element) { return bits_to_float(element[0] | (static_cast<u32>(element[1]) << 16)); };
  for (i32 a = 0; a < A; ++a) {
    const float weight = v[a];
    const i32 chunk = a / 4, within = 2 * (a % 4);
    float q[2];
    TESSERA_UNROLL for (int r = 0; r < 2; ++r) {
      const i32 row = warp_row + fragments::accumulator_row(lane, 2 * r);
      q[r] = load(q_tile + swizzled(row, chunk, T::kHeadChunks) + within);
    }
    TESSERA_UNROLL for (int n = 0; n < T::kBlockN / 8; ++n) {
      TESSERA_UNROLL for (int c = 0; c < 2; ++c) {
        const float k =
            load(k_tile + Mma::template k_offset<T>(8 * n + fragments::accumulator_col(lane, c), chunk) + within);
        s[n][c] += weight * fast_tanh(q[0] + k);
        s[n][2 + c] += weight * fast_tanh(q[1] + k);
      }
    }
  }
}

// Online softmax over one key tile's scores s (log2 domain) for this thread's two rows: the running maximum and
// sum, O rescaled, and s turned into the tile's probabilities. The four lanes of a quad share a row.
template <int KeyBlocks, int ValueBlocks>
TESSERA_DEVICE void online_softmax_update(float (*s)[4], float (*o)[4], float row_max[2], float row_sum[2]) {
  for (int r = 0; r < 2; ++r) {
    float m = row_max[r];
    for (int n = 0; n < KeyBlocks; ++n) m = fmaxf(m, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
    m = fmaxf(m, shfl_xor(m, 1));
    m = fmaxf(m, shfl_xor(m, 2));
    // A row with no allowed key so far keeps max -inf; subtracting 0 instead keeps exp2 from seeing -inf - -inf.
    const float base = m == minus_infinity() ? 0.0f : m;
    const float correction = fast_exp2(row_max[r] - base);
    row_max[r] = m;
    row_sum[r] *= correction;
    for (int d = 0; d < ValueBlocks; ++d) {
      o[d][2 * r] *= correction;
      o[d][2 * r + 1] *= correction;
    }
    for (int n = 0; n < KeyBlocks; ++n) {
      for (int e = 2 * r; e < 2 * r + 2; ++e) {
        s[n][e] = fast_exp2(s[n][e] - base);
        row_sum[r] += s[n][e];
      }
    }
  }
}

// Hardmax, online: a row's state is its best score so far (row_max) and, in O, the value row of the lowest key at
// that score. Key tiles arrive in increasing key order (make_launch_plan keeps a hardmax pattern in one slot and
// unpermuted), so a tile takes over the state only with a strictly higher score, and within the tile the lowest
// column at its maximum wins. P becomes one-hot: 1 at that column, on the one lane of the quad holding it, whose
// row_sum is then 1 (the quad's sum at the end). A NaN score makes the row NaN, as in the reference.
template <int KeyBlocks, int ValueBlocks>
TESSERA_DEVICE void hardmax_update(float (*s)[4], float (*o)[4], float row_max[2], float row_sum[2], bool row_nan[2],
                                   int lane) {
  TESSERA_UNROLL for (int r = 0; r < 2; ++r) {
    // Columns below 128 are exact in a float, which is what the shuffle moves.
    float best = minus_infinity(), column = static_cast<float>(8 * KeyBlocks);
    TESSERA_UNROLL for (int n = 0; n < KeyBlocks; ++n) {
      TESSERA_UNROLL for (int e = 2 * r; e < 2 * r + 2; ++e) {
        if (s[n][e] != s[n][e]) row_nan[r] = true;
        if (s[n][e] > best) {  // strictly: the first (lowest) column at this lane's maximum
          best = s[n][e];
          column = static_cast<float>(8 * n + fragments::accumulator_col(lane, e));
        }
      }
    }
    TESSERA_UNROLL for (int offset = 1; offset <= 2; offset *= 2) {
      const float other_best = shfl_xor(best, offset), other_column = shfl_xor(column, offset);
      if (other_best > best || (other_best == best && other_column < column)) {
        best = other_best;
        column = other_column;
      }
    }
    const bool better = best > row_max[r];  // the same on the quad's four lanes
    if (better) {
      row_max[r] = best;
      row_sum[r] = 0.0f;
      TESSERA_UNROLL for (int d = 0; d < ValueBlocks; ++d) o[d][2 * r] = o[d][2 * r + 1] = 0.0f;
    }
    TESSERA_UNROLL for (int n = 0; n < KeyBlocks; ++n) {
      TESSERA_UNROLL for (int e = 2 * r; e < 2 * r + 2; ++e) {
        const bool chosen = better && static_cast<float>(8 * n + fragments::accumulator_col(lane, e)) == column;
        s[n][e] = chosen ? 1.0f : 0.0f;
        if (chosen) row_sum[r] = 1.0f;
      }
    }
  }
}

// Non-finite values in V (kernels instantiated with GuardValues). P V on tensor cores sums p * v over every key of
// the tile, so a key whose P is 0 (masked, or not a hardmax row's choice) would still turn an Inf or NaN of its
// value row into 0 * Inf = NaN, where the reference leaves it out. The V tile therefore holds those elements as 0,
// and here each kept pair of a flagged key adds its key's non-finite elements to O: Inf or NaN times a positive
// p is the element itself (times the sign of a pattern weight; a weight of 0 gives NaN, as 0 * Inf does), which is
// what the reference's sum gets. `kept` says which of this thread's S elements were kept (hardmax: chosen);
// `sign` holds the weights' signs. Flags are uniform over the warp, so every lane takes the same shuffles.
template <class T, int KeyBlocks, int ValueBlocks>
TESSERA_DEVICE void add_nonfinite_values(float (*o)[4], const bool (*kept)[4], const float (*sign)[4], const u16* v_raw,
                                         const unsigned char* flags, const IndexView& keys, i32 j0, int lane) {
  const int quad = lane & ~3;
  TESSERA_UNROLL for (int n = 0; n < KeyBlocks; ++n) {
    TESSERA_UNROLL for (int c = 0; c < 8; ++c) {
      const i32 j = j0 + 8 * n + c;
      if (j >= keys.count) continue;
      const i32 key = original_index(keys, j);
      if (flags[key] == 0) continue;
      const u16* row = v_raw + static_cast<i64>(key) * T::kValueDim;
      TESSERA_UNROLL for (int r = 0; r < 2; ++r) {
        // The lane of the quad holding (row r, column c) of this n8 block: fragments::accumulator_col.
        const int e = 2 * r + (c & 1);
        const float keep = shfl_index(kept[n][e] ? 1.0f : 0.0f, quad | (c >> 1));
        const float factor = shfl_index(sign[n][e], quad | (c >> 1));
        if (keep == 0.0f) continue;
        TESSERA_UNROLL for (int d = 0; d < ValueBlocks; ++d) {
          TESSERA_UNROLL for (int x = 0; x < 2; ++x) {
            const u16 bits = row[8 * d + fragments::accumulator_col(lane, 2 * r + x)];
            const float value =
                T::kElement == ElementKind::BFloat16 ? bf16_bits_to_float(bits) : f16_bits_to_float(bits);
            if (value - value != 0.0f) o[d][2 * r + x] += value * factor;  // Inf - Inf and NaN - NaN are NaN
          }
        }
      }
    }
  }
}

// GuardValues: V holds non-finite values (see add_nonfinite_values); the host instantiates it only then.
template <class Pattern, class Traits, bool GuardValues = false>
TESSERA_DEVICE void attention_block(const KernelParams& p) {
  using T = Traits;
  using Mma = typename T::MmaPolicy;
  constexpr int kKeyBlocks = T::kBlockN / 8;      // n8 blocks of S
  constexpr int kValueBlocks = T::kValueDim / 8;  // n8 blocks of O
  constexpr int kHeadSteps = T::kHeadDim / 16;    // k16 steps of Q K^T

  const BlockDesc block = p.blocks[block_index_x()];
  const i32 bh = static_cast<i32>(block_index_y());
  const i32 b = bh / p.H, h = bh % p.H;
  const i32 kv_head = h / (p.H / p.Hkv);
  const ViewDesc view = p.views[block.view];
  const i32 tid = static_cast<i32>(thread_index());
  const i32 warp = tid / 32, lane = tid % 32;

  // Visible to every thread after the first barrier of the key loop, before any mask or score reads it.
  PatternArgs& args = *reinterpret_cast<PatternArgs*>(dynamic_shared_memory() + T::kPatternArgsOffset);
  if (tid == 0) args = view_pattern_args(p, view);

  u16* shared_q = reinterpret_cast<u16*>(dynamic_shared_memory());
  u16* shared_k = shared_q + T::kQElements;
  u16* shared_v = shared_k + T::kStages * T::kKElements;

  const u16* q_base = static_cast<const u16*>(p.q) + static_cast<i64>(b * p.H + h) * p.N * T::kHeadDim;
  const u16* k_base = static_cast<const u16*>(p.k) + static_cast<i64>(b * p.Hkv + kv_head) * p.M * T::kHeadDim;
  const u16* v_base = static_cast<const u16*>(p.v) + static_cast<i64>(b * p.Hkv + kv_head) * p.M * T::kValueDim;

  const i32 q_first = block.query_tile * T::kBlockM;
  const i32 tiles = block.tile_end - block.tile_begin;
  auto load_keys = [&](i32 t) {
    const i32 first = entry_key_tile(p.tiles[block.tile_begin + t]) * T::kBlockN;
    const i32 stage = t % T::kStages;
    load_tile<T::kHeadChunks, T::kBlockN, T::kThreads>(shared_k + stage * T::kKElements, k_base, view.keys, first, tid,
                                                       [](i32 r, i32 c) { return Mma::template k_offset<T>(r, c); });
    load_tile<T::kValueChunks, T::kBlockN, T::kThreads>(shared_v + stage * T::kVElements, v_base, view.keys, first, tid,
                                                        [](i32 r, i32 c) { return Mma::template v_offset<T>(r, c); });
  };

  // Commit groups: Q, then one per key tile (possibly empty), Stages - 1 tiles ahead, so that "all but the newest
  // Stages - 1 groups" is always "everything up to the tile about to be used".
  load_tile<T::kHeadChunks, T::kBlockM, T::kThreads>(shared_q, q_base, view.queries, q_first, tid,
                                                     [](i32 r, i32 c) { return swizzled(r, c, T::kHeadChunks); });
  cp_async_commit();
  for (i32 ahead = 0; ahead < T::kStages - 1; ++ahead) {
    if (ahead < tiles) load_keys(ahead);
    cp_async_commit();
  }

  // The two rows this thread holds accumulator elements of: local query indices.
  const i32 warp_row = warp * 16;
  i32 rows[2];
  for (int r = 0; r < 2; ++r) rows[r] = q_first + warp_row + fragments::accumulator_row(lane, 2 * r);

  float o[kValueBlocks][4];
  for (int d = 0; d < kValueBlocks; ++d)
    for (int e = 0; e < 4; ++e) o[d][e] = 0.0f;
  float row_max[2] = {minus_infinity(), minus_infinity()};
  float row_sum[2] = {0.0f, 0.0f};
  bool row_nan[2] = {false, false};                        // hardmax only: a kept pair scored NaN
  u32 q_fragment[Pattern::kAdditive ? 1 : kHeadSteps][4];  // additive scoring reads the Q tile itself

  for (i32 t = 0; t < tiles; ++t) {
    // Into the stage the previous iteration read (every warp left it at that iteration's closing barrier).
    if (t + T::kStages - 1 < tiles) load_keys(t + T::kStages - 1);
    cp_async_commit();
    cp_async_wait<T::kStages - 1>();
    Mma::publish_shared_writes();
    block_sync();
    if constexpr (!Pattern::kAdditive) {
      if (t == 0) {
        for (int ks = 0; ks < kHeadSteps; ++ks) {
          ldmatrix_x4(q_fragment[ks], shared_q + swizzled(warp_row + fragments::a_load_row(lane),
                                                          2 * ks + fragments::a_load_col8(lane), T::kHeadChunks));
        }
      }
    }
    const i32 stage = t % T::kStages;
    const u16* k_tile = shared_k + stage * T::kKElements;
    const u16* v_tile = shared_v + stage * T::kVElements;

    // S = Q K^T for this warp's 16 rows and the tile's keys.
    float s[kKeyBlocks][4];
    for (int n = 0; n < kKeyBlocks; ++n)
      for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
    if constexpr (Pattern::kAdditive) {
      additive_scores<T, Mma>(s, shared_q, k_tile, warp_row, lane, Pattern::additive_vector(args, h),
                              Pattern::additive_size(args));
    } else {
      Mma::template qk<T>(s, q_fragment, k_tile, lane);
    }

    // Mask (PARTIAL tiles only), score modifier, keys past the view's end; into the log2 domain.
    const i32 entry = p.tiles[block.tile_begin + t];
    const bool masked = entry_masked(entry);
    const i32 j0 = entry_key_tile(entry) * T::kBlockN;
    const bool ragged = j0 + T::kBlockN > view.keys.count;
    // The pattern's weights of the kept pairs: they scale P in P V after the row sums have taken P unweighted.
    float weights[Pattern::kHasWeight ? kKeyBlocks : 1][4];
    // GuardValues only: which pairs are kept, and the signs of their weights.
    [[maybe_unused]] bool kept[GuardValues ? kKeyBlocks : 1][4];
    [[maybe_unused]] float sign[GuardValues ? kKeyBlocks : 1][4];
    if constexpr (GuardValues) {
      TESSERA_UNROLL for (int n = 0; n < kKeyBlocks; ++n) {
        TESSERA_UNROLL for (int e = 0; e < 4; ++e) sign[n][e] = 1.0f;
      }
    }
    TESSERA_UNROLL for (int n = 0; n < kKeyBlocks; ++n) {
      TESSERA_UNROLL for (int e = 0; e < 4; ++e) {
        const i32 i = rows[e >> 1];
        const i32 j = j0 + 8 * n + fragments::accumulator_col(lane, e);
        const SharedQueryRow<T> q_row{shared_q, warp_row + fragments::accumulator_row(lane, e)};
        float x = s[n][e] * p.scale;
        bool keep = !ragged || j < view.keys.count;
        if constexpr (Pattern::kHasMask) {
          if (masked && keep) keep = Pattern::mask(args, b, h, i, j, q_row);
        }
        if constexpr (Pattern::kHasScore) {
          if (keep) x = Pattern::score(args, b, h, i, j, x, q_row);
        }
        if constexpr (Pattern::kHasWeight) weights[n][e] = keep ? Pattern::weight(args, b, h, i, j, q_row) : 0.0f;
        // Hardmax only compares scores: the log2 scaling could round two different ones into a tie.
        s[n][e] = keep ? (Pattern::kHardmax ? x : x * kLog2e) : minus_infinity();
        if constexpr (GuardValues) {
          kept[n][e] = keep;
          if constexpr (Pattern::kHasWeight) {
            const float w = weights[n][e];
            sign[n][e] = w > 0.0f ? 1.0f : w < 0.0f ? -1.0f : w;  // 0 and NaN stay themselves
          }
        }
      }
    }

    if constexpr (Pattern::kHardmax) {
      hardmax_update<kKeyBlocks, kValueBlocks>(s, o, row_max, row_sum, row_nan, lane);
    } else {
      online_softmax_update<kKeyBlocks, kValueBlocks>(s, o, row_max, row_sum);
    }

    if constexpr (Pattern::kHasWeight) {
      for (int n = 0; n < kKeyBlocks; ++n)
        for (int e = 0; e < 4; ++e) s[n][e] *= weights[n][e];
    }

    // O += P V, P straight from the S accumulators (fragments.cuh).
    Mma::template pv<T>(o, s, v_tile, lane);
    if constexpr (GuardValues) {
      // A hardmax row keeps only its choice in this tile (P is 1 there), if any.
      if constexpr (Pattern::kHardmax) {
        TESSERA_UNROLL for (int n = 0; n < kKeyBlocks; ++n) {
          TESSERA_UNROLL for (int e = 0; e < 4; ++e) kept[n][e] = s[n][e] != 0.0f;
        }
      }
      add_nonfinite_values<T, kKeyBlocks, kValueBlocks>(
          o, kept, sign, static_cast<const u16*>(p.v_raw) + static_cast<i64>(b * p.Hkv + kv_head) * p.M * T::kValueDim,
          p.value_flags + static_cast<i64>(b * p.Hkv + kv_head) * p.M, view.keys, j0, lane);
    }
    // The next iteration loads into the stage this one read.
    block_sync();
  }
  cp_async_wait<0>();

  // Normalise and write this thread's rows; the log-sum-exp (log2 domain) lets a merge combine slots.
  for (int r = 0; r < 2; ++r) {
    float l = row_sum[r];
    l += shfl_xor(l, 1);
    l += shfl_xor(l, 2);
    // A hardmax row that saw a NaN score is NaN: the product with O makes it so.
    if constexpr (Pattern::kHardmax) {
      float nan = row_nan[r] ? 1.0f : 0.0f;
      nan += shfl_xor(nan, 1);
      nan += shfl_xor(nan, 2);
      if (nan != 0.0f) l = quiet_nan();
    }
    const i32 x = rows[r];
    if (x >= view.queries.count) continue;
    const i32 row = original_index(view.queries, x);
    const float inverse = l == 0.0f ? 0.0f : 1.0f / l;
    float* out = p.out + block.slot * p.out_slot_stride + (static_cast<i64>(b * p.H + h) * p.N + row) * T::kValueDim;
    for (int d = 0; d < kValueBlocks; ++d) {
      const i32 col = 8 * d + fragments::accumulator_col(lane, 2 * r);
      out[col] = o[d][2 * r] * inverse;
      out[col + 1] = o[d][2 * r + 1] * inverse;
    }
    if (p.write_lse && fragments::thread_in_group(lane) == 0) {
      p.lse[block.slot * p.lse_slot_stride + static_cast<i64>(b * p.H + h) * p.N + row] =
          l == 0.0f ? minus_infinity() : row_max[r] + log2f(l);
    }
  }
}

// Combines the output slots of a multi-slot launch (MergeParams) for one row.
TESSERA_DEVICE void merge_slots_row(const MergeParams& p, i64 row, i32 first_col, i32 col_step) {
  float m = minus_infinity();
  for (i32 s = 0; s < p.slots; ++s) m = fmaxf(m, p.slots_lse[s * p.lse_slot_stride + row]);
  for (i32 c = first_col; c < p.value_dim; c += col_step) {
    float numerator = 0.0f, denominator = 0.0f;
    if (m != minus_infinity()) {
      for (i32 s = 0; s < p.slots; ++s) {
        const float lse = p.slots_lse[s * p.lse_slot_stride + row];
        if (lse == minus_infinity()) continue;
        const float w = fast_exp2(lse - m);
        numerator += w * p.slots_out[s * p.out_slot_stride + row * p.value_dim + c];
        denominator += w;
      }
    }
    p.out[row * p.value_dim + c] = denominator == 0.0f ? 0.0f : numerator / denominator;
  }
}

}  // namespace tessera_cuda
