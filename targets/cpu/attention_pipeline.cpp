#include "targets/cpu/attention_pipeline.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

#include "targets/cpu/attention_driver.h"
#include "targets/cpu/halide_lowering.h"
#include "targets/cpu/halves_as_reinterpret.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;
using Halide::Func;
using Halide::RDom;
using Halide::TailStrategy;
using Halide::Var;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
constexpr float kLog2E = 1.44269504088896341f;

// The Funcs of one kind of chunk (FULL or PARTIAL). Every Func is indexed by the chunk's slot c and the
// query tile (t, h, b) so that it can be computed inside the state's loop over chunks. Query rows i are the
// innermost dimension everywhere: the kernels vectorise over rows, so row reductions (max, sum) and the
// running state are plain vector operations, and neither Q nor K needs transposing per chunk.
struct ChunkFuncs {
  std::string kind;
  Func dot, score, chunk_max, prob, row_sum, pv, pv_tile;
  Func keys, values;  // (feature, chunk key, ...): the chunk's key and value rows (inline unless widened per chunk)
  Func weighted;      // prob times the pattern's weight, what P.V sums (the row sum is not weighted); prob if none
  // The merge's domain: (slot, chunk) over the state's slots (see StateSlots) for each chunk of one query tile
  // (where chunk < count). rc is its chunk dimension.
  RDom merge;
  Halide::RVar rc;
  Halide::LoopLevel at;  // the loop every per-chunk Func is computed in: the tile loop inside rc (see schedule())
  RDom rj;               // over a chunk's keys
  RDom rd;               // over the head dimension, for Q.K
  // bf16 P.V (Algorithm::bf16_pv): the chunk's probabilities rounded to bf16 and its value rows, in key pairs.
  Func prob_pairs;   // (row, key pair, ...): a row's two probabilities as the halves of one uint32
  Func value_pairs;  // (key in pair, value column, key pair, ...)
  RDom rp;           // over a chunk's keys in pairs: rp.x within a pair, rp.y the pair
};

// The running state of a query row is one Func over slots, not an (acc, max, sum) tuple repeated over the value
// columns, so that a chunk's two rescaling factors are computed once per row and stored, then read by every column:
// with a tuple, each merge took one exp per (row, column), 19-21% of a call in a Halide profile (causal, N=128).
// A chunk's merge walks the slots in order: the factors first (from the old max), the sum, the max last.
struct StateSlots {
  int Dv;
  int keep_old() const { return 0; }    // exp(m_old - m_new), this chunk's factor for the old state
  int keep_chunk() const { return 1; }  // exp(chunk max - m_new), its factor for the chunk's sums
  int acc() const { return 2; }         // acc() + e: the value column e
  int sum() const { return Dv + 2; }
  int max() const { return Dv + 3; }
  int count() const { return Dv + 4; }
};

struct Algorithm {
  Var e{"e"}, n{"n"}, h{"h"}, b{"b"}, i{"i"}, t{"t"}, j{"j"}, c{"c"}, s{"s"}, d{"d"};
  Func q{"q"}, k{"k"}, v{"v"};  // the inputs, clamped at their edges
  // bf16 keys and values as stored (uint16), by the view's local key: what vdpbf16ps reads (Algorithm::bf16_dot).
  // Packed into contiguous rows once per call where the view steps over keys, as k and v are otherwise.
  Func k_bits{"k_bits"}, v_bits{"v_bits"};
  // Keys read through a strided view (residue classes, column sets) are gathered once per call into contiguous
  // rows: their rows lie in other pages, and the chunks read every key row many times (residue classes of
  // strided(128) at N=16384: 0.172 -> 0.115 ms per call; fixed(128, 8) 10-20% faster, single-thread AOT).
  bool pack_keys = false;
  // bf16 keys and values not packed are widened to float32 once per chunk: widened at each read, every broadcast
  // of a key or value feature took a scalar load, shift and move to a vector register (on the FMA port), and bf16
  // ran 8% slower than float32 (causal, N=4096, single-thread AOT, min of 5 rounds; now 3% faster: RESULTS.md).
  // Not for single-row tiles, whose chunks read each key once.
  bool widen_per_chunk = false;
  // bf16 Q.K as vdpbf16ps: each lane of a vector of query rows takes two adjacent features of its row against the
  // same two of one key (a 32-bit broadcast straight from K's row), twice the fp32 FMA rate on Zen 4 (fma_peak:
  // 465 against 232 GFLOP/s on 2 threads). Halide 14 emits it for a 2-wide atomic, vectorised sum of
  // f32(bf16) * f32(bf16) on a target with avx512_sapphirerapids, which only these kernels get (bf16_dot_target()).
  bool bf16_dot = false;
  Func q_pairs{"q_pairs"};  // (feature in pair, row, pair, t, h, b): the query tile's bf16 features, pairs innermost
  // P.V as vdpbf16ps too, on probabilities rounded to bf16 as FlashAttention's bf16 kernels (and this project's
  // CUDA target) round them: each lane a row's pair of keys, against a value column's two values (a 32-bit
  // broadcast from the chunk's value rows in key pairs). The row sums stay float32, so an output moves by at most
  // 2^-8 max|V| from float32 arithmetic on the rounded inputs. Not where values may be non-finite (the guarded
  // P.V) or where probabilities are weighted.
  bool bf16_pv = false;
  StateSlots slots{0};
  Func q_t{"q_t"};        // one query tile, transposed to (row, feature)
  Func q_rows{"q_rows"};  // the same tile as rows of features, as Q holds it
  // The state's initial values by row (slot innermost), as acc_in holds them; `state` transposes them.
  Func state_rows{"state_rows"};
  ChunkFuncs full, partial;
  Func state{"state"};  // (i, slot, t, h, b): the running state of each query row, slots as in StateSlots
  Func acc_out{"acc_out"}, max_out{"max_out"}, sum_out{"sum_out"};
  // dot(q_vec, T[..., r]) for every query row and table row r, by tensor and leading indices (see
  // query_table_dot): `dots` (i, r, t, h, b) reads `sums`, the reduction over the head dimension `rd`.
  struct QueryTableDots {
    Func dots, sums;
    Var r;
    RDom rd;
  };
  std::map<std::string, QueryTableDots> query_table_dots;
};

// dot(q_vec, T[lead..., last]) inside a query tile. A table row's product with a query row does not depend on
// the key, so when every index but the last reads neither the row nor the key (`relative`'s T[h, clamp(q - k)]),
// the products of every table row with every query row are computed once per call (rows x R x D multiply-adds)
// and each pair looks its one up: `relative` at N=4096 took 4.6x causal's time with a D-long dot product per
// pair (bench/RESULTS.md). Other index forms keep the per-pair dot product.
Expr query_table_dot(Algorithm& a, AttentionPipeline& p, const std::string& tensor, const std::vector<Expr>& indices,
                     int D) {
  const Halide::ImageParam& img = p.tensors.at(tensor);
  const std::vector<Expr> lead(indices.begin(), indices.end() - 1);
  const bool per_tile = std::none_of(lead.begin(), lead.end(), [&](const Expr& e) {
    return Halide::Internal::expr_uses_var(e, a.i.name()) || Halide::Internal::expr_uses_var(e, a.j.name()) ||
           Halide::Internal::expr_uses_var(e, a.c.name());
  });
  if (!per_tile) {
    return clamped_tensor_dot(img, indices, D, [&a](Expr r) { return a.q_t(a.i, r, a.t, a.h, a.b); });
  }
  std::ostringstream key;
  key << tensor;
  for (const Expr& e : lead) key << "|" << e;
  auto [it, inserted] = a.query_table_dots.try_emplace(key.str());
  Algorithm::QueryTableDots& t = it->second;
  // Halide sees T's dimensions innermost first: (d, last, lead[n - 2], ..., lead[0]).
  const int n = static_cast<int>(indices.size());
  if (inserted) {
    const std::string name = fmt::format("qdot{}_{}", a.query_table_dots.size(), tensor);
    t.dots = Func(name);
    t.sums = Func(name + "_sum");
    t.r = Var(name + "_r");
    t.rd = RDom(0, D, name + "_rd");
    std::vector<Expr> args{t.rd, Halide::clamp(t.r, 0, img.dim(1).extent() - 1)};
    for (int k = n - 2; k >= 0; --k) args.push_back(Halide::clamp(lead[k], 0, img.dim(n - k).extent() - 1));
    t.sums(a.i, t.r, a.t, a.h, a.b) = 0.0f;
    t.sums(a.i, t.r, a.t, a.h, a.b) += a.q_t(a.i, t.rd, a.t, a.h, a.b) * img(args);
    t.dots(a.i, t.r, a.t, a.h, a.b) = t.sums(a.i, t.r, a.t, a.h, a.b);
  }
  return t.dots(a.i, Halide::clamp(indices.back(), 0, img.dim(1).extent() - 1), a.t, a.h, a.b);
}

// 2^x for x <= 0 (or -inf): a degree-5 polynomial on (-1, 0] (relative error 3e-7 in float32) scaled by the
// exponent, which a truncating conversion gives (Halide's floor, in its exp, runs as two 256-bit halves here).
// Causal f32 at N=4096 on the Zen 4: 95-96 ms against 100-101 with Halide::exp (bench/RESULTS.md, 2026-12-06).
// x at or below -127 gives exactly +0 (exponent and mantissa fields both zero): masked keys weigh nothing.
Expr exp2_of_nonpositive(Expr x) {
  x = Halide::max(x, -127.0f);
  Expr whole = Halide::cast<int32_t>(x);  // rounds towards zero: the fraction lies in (-1, 0]
  Expr fraction = x - Halide::cast<float>(whole);
  Expr p = 9.547549442e-04f;
  for (float c : {9.229836595e-03f, 5.531787399e-02f, 2.401872196e-01f, 6.931445180e-01f, 1.0f}) {
    p = p * fraction + c;
  }
  return Halide::reinterpret(Halide::Float(32), Halide::reinterpret(Halide::Int(32), p) + (whole << 23));
}

// The algorithm of one kind of chunk: scores, modifier (and mask), row max, probabilities, sums, P.V.
void define_chunk(Algorithm& a, ChunkFuncs& f, AttentionPipeline& p, const ir::Pattern& pattern,
                  const AttentionPipelineKey& key, bool masked) {
  const int D = static_cast<int>(key.D);
  const int BQ = static_cast<int>(key.schedule.block_q);
  const int CK = static_cast<int>(key.schedule.chunk_k);
  Halide::ImageParam& table = masked ? p.partial_chunks : p.full_chunks;
  f.kind = masked ? "partial" : "full";
  auto name = [&](const char* what) { return fmt::format("{}_{}", what, f.kind); };
  f.dot = Func(name("dot"));
  f.score = Func(name("score"));
  f.chunk_max = Func(name("chunk_max"));
  f.prob = Func(name("prob"));
  f.row_sum = Func(name("row_sum"));
  f.pv = Func(name("pv"));
  f.rj = RDom(0, CK, name("rj"));
  f.rd = RDom(0, D, name("rd"));

  Expr first = table(0, a.c, a.t);
  Expr count = table(1, a.c, a.t);
  Expr row = a.t * BQ + a.i;
  Expr kv_head = a.h / p.group;

  f.dot(a.i, a.j, a.c, a.t, a.h, a.b) = 0.0f;
  // The view's key read for chunk key x, clamped (keys past the chunk's end are masked) to the keys the call's
  // chunks hold, which bounds the region packed keys are computed over: a call of 4 of a residue class's 8 query
  // tiles packed all the class's keys (dilated(32, 4) at N=4096: 1024 keys, where its tiles read ~540).
  auto key_row = [&](Expr x) { return Halide::clamp(first + x, p.keys_begin, p.keys_end - 1); };
  f.keys = Func(name("keys"));
  f.values = Func(name("values"));
  f.keys(a.d, a.j, a.c, a.t, a.h, a.b) = a.k(a.d, key_row(a.j), kv_head, a.b);
  f.values(a.d, a.j, a.c, a.t, a.h, a.b) = a.v(a.d, key_row(a.j), kv_head, a.b);
  Expr q_feature = a.q_t(a.i, f.rd, a.t, a.h, a.b), k_feature = f.keys(f.rd, a.j, a.c, a.t, a.h, a.b);
  if (pattern.scoring == ir::Scoring::Additive) {
    // Q and K arrive projected (targets::project_for_additive), D is their length A: v[h] . tanh(q + k), with
    // e^(2(q + k)) a product when they arrive exponentiated.
    // exp_passing_nan: a NaN key or query leaves its pairs NaN (the exponentials are never NaN: NaN projections
    // take this per-pair path, see exponentiate_additive_projections).
    Expr exp_2x = key.additive_exponentials ? q_feature * k_feature : exp_passing_nan(2.0f * (q_feature + k_feature));
    f.dot(a.i, a.j, a.c, a.t, a.h, a.b) +=
        p.tensors.at(pattern.additive.vector)(f.rd, a.h) * tanh_of_exponential(exp_2x);
  } else if (a.bf16_dot) {
    f.rd = RDom(0, 2, 0, D / 2, name("rd"));
    const Expr kv = Halide::reinterpret(Halide::BFloat(16), a.k_bits(2 * f.rd.y + f.rd.x, key_row(a.j), kv_head, a.b));
    f.dot(a.i, a.j, a.c, a.t, a.h, a.b) +=
        Halide::cast<float>(a.q_pairs(f.rd.x, a.i, f.rd.y, a.t, a.h, a.b)) * Halide::cast<float>(kv);
  } else {
    f.dot(a.i, a.j, a.c, a.t, a.h, a.b) += q_feature * k_feature;
  }

  Expr key_index = first + a.j;
  HalideScope scope = kernel_scope(KernelPoint{row, key_index, a.b, a.h, p.heads, p.n_queries, p.m_keys, D, p.scale,
                                               f.dot(a.i, a.j, a.c, a.t, a.h, a.b) * p.scale},
                                   p.symbols, p.tensors, [&a](Expr r) { return a.q_t(a.i, r, a.t, a.h, a.b); });
  scope.dot_q = [&p, &a, D](const std::string& tensor, const std::vector<Expr>& indices) {
    return query_table_dot(a, p, tensor, indices, D);
  };

  Expr modified = lower_to_halide(pattern.score, scope);
  // Keys past the chunk's end score -inf, as masked keys do: the loops run over whole chunks.
  Expr keep = a.j < count;
  // The mask is or-ed with a comparison Halide cannot decide (n_queries is at least 1 in every call), so that its
  // simplifier never folds a mask that is false at every pair (`causal - causal`, which our intervals leave PARTIAL)
  // into a constant: Halide 14 compiled such chunks into code that wrote NaN into rows with nothing allowed
  // (16- and 32-row tiles; found by test/fuzz/attention_differential.cpp). The comparison is loop-invariant.
  if (masked) keep = keep && (lower_to_halide(pattern.mask, scope) || p.n_queries < 0);
  f.score(a.i, a.j, a.c, a.t, a.h, a.b) = Halide::select(keep, modified, kMinusInfinity);

  f.chunk_max(a.i, a.c, a.t, a.h, a.b) = kMinusInfinity;
  f.chunk_max(a.i, a.c, a.t, a.h, a.b) =
      Halide::max(f.chunk_max(a.i, a.c, a.t, a.h, a.b), f.score(a.i, f.rj, a.c, a.t, a.h, a.b));
  Expr cmax = f.chunk_max(a.i, a.c, a.t, a.h, a.b);
  // Probabilities relative to the chunk's own max: independent of the running state, so computable before
  // the merge. A chunk with no allowed key in a row contributes nothing (never exp(-inf - -inf) = NaN).
  // An allowed NaN score makes its row NaN, as in the reference. Neither max() (which drops NaN on x86) nor
  // exp2_of_nonpositive (which clamps its argument) passes it on, so it is passed on as the probability itself.
  // An allowed +inf score makes the reference's row NaN too (exp(inf - inf)), where here s - cmax = NaN would be
  // clamped to a probability of 0: it becomes NaN as well.
  Expr s = f.score(a.i, a.j, a.c, a.t, a.h, a.b);
  f.prob(a.i, a.j, a.c, a.t, a.h, a.b) =
      Halide::select(is_nan_bits(s) || Halide::reinterpret(Halide::UInt(32), s) == Expr(uint32_t{0x7f800000}),
                     std::numeric_limits<float>::quiet_NaN(),
                     Halide::select(cmax == kMinusInfinity, 0.0f, exp2_of_nonpositive((s - cmax) * kLog2E)));
  f.row_sum(a.i, a.c, a.t, a.h, a.b) = 0.0f;
  f.row_sum(a.i, a.c, a.t, a.h, a.b) += f.prob(a.i, f.rj, a.c, a.t, a.h, a.b);
  f.weighted = f.prob;
  if (pattern.has_weight()) {
    f.weighted = Func(name("weighted"));
    f.weighted(a.i, a.j, a.c, a.t, a.h, a.b) =
        f.prob(a.i, a.j, a.c, a.t, a.h, a.b) * lower_to_halide(pattern.weight, scope);
  }
  f.pv(a.i, a.e, a.c, a.t, a.h, a.b) = 0.0f;
  Expr prob = f.weighted(a.i, f.rj, a.c, a.t, a.h, a.b);
  Expr pv = f.pv(a.i, a.e, a.c, a.t, a.h, a.b);
  if (a.bf16_pv) {
    // Each probability rounded to the nearest bf16 (halves round up; probabilities are >= 0 or NaN), two keys of
    // one row per 32-bit lane: lane by lane, two adds and one word shuffle per 32 probabilities. P.V reads the
    // lanes as bf16 pairs (see HalvesAsReinterpret).
    auto rounded = [&](Expr key) {
      return Halide::reinterpret(Halide::UInt(32), f.weighted(a.i, key, a.c, a.t, a.h, a.b)) + Expr(uint32_t{0x8000});
    };
    f.prob_pairs = Func(name("prob_pairs"));
    f.prob_pairs(a.i, a.d, a.c, a.t, a.h, a.b) =
        (rounded(2 * a.d + 1) & Expr(uint32_t{0xffff0000})) | (rounded(2 * a.d) >> 16);
    // The chunk's value rows in key pairs: (key in pair, value column, key pair), straight from V's bf16 rows.
    Expr kv_head = a.h / p.group;
    auto value_row = [&](Expr x) { return a.v_bits(a.e, key_row(x), kv_head, a.b); };
    f.value_pairs = Func(name("value_pairs"));
    f.value_pairs(a.s, a.e, a.d, a.c, a.t, a.h, a.b) =
        Halide::reinterpret(Halide::BFloat(16), Halide::select(a.s == 0, value_row(2 * a.d), value_row(2 * a.d + 1)));
    f.rp = RDom(0, 2, 0, CK / 2, name("rp"));
    Expr half = Halide::cast<uint16_t>(f.prob_pairs(a.i, f.rp.y, a.c, a.t, a.h, a.b) >> (16 * f.rp.x));
    f.pv(a.i, a.e, a.c, a.t, a.h, a.b) += Halide::cast<float>(Halide::reinterpret(Halide::BFloat(16), half)) *
                                          Halide::cast<float>(f.value_pairs(f.rp.x, a.e, f.rp.y, a.c, a.t, a.h, a.b));
  } else if (key.guard_values) {
    // A key that is masked (or past the chunk's end) must not contribute at all, as in the reference: 0 * NaN
    // (or Inf) in its value row would be NaN. The select costs ~20% on strided(128) at N=16384 (not folded
    // into a masked FMA), so it is compiled only for calls whose V holds a non-finite value.
    f.pv(a.i, a.e, a.c, a.t, a.h, a.b) =
        Halide::select(prob != 0.0f, pv + prob * f.values(a.e, f.rj, a.c, a.t, a.h, a.b), pv);
  } else {
    f.pv(a.i, a.e, a.c, a.t, a.h, a.b) = pv + prob * f.values(a.e, f.rj, a.c, a.t, a.h, a.b);
  }
  f.pv_tile = f.pv.in();

  Halide::ImageParam& counts = masked ? p.partial_counts : p.full_counts;
  f.merge = RDom({{0, a.slots.count()}, {0, masked ? p.max_partial : p.max_full}}, name("merge"));
  f.merge.where(f.merge.y < counts(a.t));
  f.rc = f.merge.y;
}

// The merge of one chunk into the running state, by log-sum-exp rescaling, for the slot the merge domain is at. One
// of the two factors is always exp(0) = 1, so a single exp of -|m_old - chunk max| gives both.
Expr merged(Algorithm& a, ChunkFuncs& f) {
  const StateSlots& slots = a.slots;
  Expr slot = f.merge.x;
  auto state = [&](Expr s) { return a.state(a.i, s, a.t, a.h, a.b); };
  Expr m_old = state(slots.max());
  Expr cmax = f.chunk_max(a.i, f.rc, a.t, a.h, a.b);
  Expr m_new = Halide::max(m_old, cmax);
  Expr old_wins = m_old >= cmax && m_old != kMinusInfinity;
  // -inf - -inf is NaN: a row with nothing allowed so far keeps weight 0 for whichever side is empty.
  Expr gap = Halide::select(m_new == kMinusInfinity, kMinusInfinity, -Halide::abs(m_old - cmax));
  Expr smaller = Halide::exp(gap);
  Expr keep_old = state(slots.keep_old()), keep_chunk = state(slots.keep_chunk());
  Expr column = Halide::clamp(slot - slots.acc(), 0, slots.Dv - 1);
  Expr factors_and_sums =
      Halide::select(slot == slots.keep_old(), Halide::select(old_wins, 1.0f, smaller),  //
                     slot == slots.keep_chunk(), Halide::select(old_wins, smaller, 1.0f), slot == slots.sum(),
                     state(slot) * keep_old + f.row_sum(a.i, f.rc, a.t, a.h, a.b) * keep_chunk,  //
                     m_new);
  // likely() on the columns' value makes Halide partition the slot loop: the value columns run without the select
  // (and its exp), which only the first two and the last two slots evaluate.
  return Halide::select(
      slot >= slots.acc() && slot < slots.sum(),
      Halide::likely(state(slot) * keep_old + f.pv_tile(a.i, column, f.rc, a.t, a.h, a.b) * keep_chunk),
      factors_and_sums);
}

void define_algorithm(Algorithm& a, AttentionPipeline& p, const ir::Pattern& pattern, const AttentionPipelineKey& key) {
  const int BQ = static_cast<int>(key.schedule.block_q);
  // A plain clamp, not BoundaryConditions::repeat_edge: its likely() would make Halide partition every loop
  // nest into several copies, multiplying compile time for no run-time gain here. Clamped rows and keys only
  // feed lanes that are discarded.
  // bf16 storage: the 16 bits are the top half of the float32 they stand for.
  auto to_f32 = [&](Expr x) {
    if (key.storage == StorageType::Float32) return x;
    return Halide::reinterpret(Halide::Float(32), Halide::cast<uint32_t>(x) << 16);
  };
  a.q(a.d, a.n, a.h, a.b) = to_f32(p.q(a.d, Halide::clamp(a.n, 0, p.n_queries - 1), a.h, a.b));
  // Keys are addressed through the view: local key n is original key origin + stride * (n / group) + n % group.
  // The chunks read only the view's keys (define_chunk clamps n).
  const int ks = static_cast<int>(key.key_stride), kg = static_cast<int>(key.key_group);
  Expr view_row = kg == 1 ? p.key_origin + ks * a.n : p.key_origin + ks * (a.n / kg) + a.n % kg;
  // Bounds inference takes n % kg over a whole run, past the last key where the view's last run is cut short
  // (local2d's key columns in an image's last, partial row): the bound keeps the region inside K and V.
  auto key_row = [&](const Halide::ImageParam& rows) {
    return kg == 1 ? view_row : Halide::min(view_row, rows.dim(1).max());
  };
  a.pack_keys = ks > 1;
  a.bf16_dot = bf16_dot_applies(key, pattern);
  a.bf16_pv = a.bf16_dot && !key.guard_values && !pattern.has_weight() && key.schedule.chunk_k % 2 == 0 &&
              key.Dv % key.schedule.vector_width == 0;
  a.widen_per_chunk = key.storage == StorageType::BFloat16 && !a.pack_keys && BQ > 1;
  a.k(a.d, a.n, a.h, a.b) = to_f32(p.k(a.d, key_row(p.k), a.h, a.b));
  a.v(a.d, a.n, a.h, a.b) = to_f32(p.v(a.d, key_row(p.v), a.h, a.b));
  if (a.bf16_dot) {
    a.k_bits(a.d, a.n, a.h, a.b) = p.k(a.d, key_row(p.k), a.h, a.b);
    a.v_bits(a.d, a.n, a.h, a.b) = p.v(a.d, key_row(p.v), a.h, a.b);
  }
  a.q_rows(a.d, a.i, a.t, a.h, a.b) = a.q(a.d, a.t * BQ + a.i, a.h, a.b);
  a.q_t(a.i, a.d, a.t, a.h, a.b) = a.q_rows(a.d, a.i, a.t, a.h, a.b);
  if (a.bf16_dot) {
    // From the transposed float32 tile, whose values are bf16 widened exactly: their top halves, in vectors (a
    // gather of 16-bit elements would be vmovw, an AVX512-FP16 instruction Zen 4 lacks).
    Expr bits = Halide::reinterpret(Halide::UInt(32), a.q_t(a.i, 2 * a.d + a.e, a.t, a.h, a.b));
    a.q_pairs(a.e, a.i, a.d, a.t, a.h, a.b) =
        Halide::reinterpret(Halide::BFloat(16), Halide::cast<uint16_t>(bits >> 16));
  }
  a.slots = StateSlots{static_cast<int>(key.Dv)};
  const StateSlots& slots = a.slots;
  define_chunk(a, a.full, p, pattern, key, false);
  define_chunk(a, a.partial, p, pattern, key, true);

  Expr in_row = Halide::clamp(a.t * BQ + a.i, 0, p.n_queries - 1);
  Expr column = Halide::clamp(a.s - slots.acc(), 0, slots.Dv - 1);
  a.state_rows(a.s, a.i, a.t, a.h, a.b) =
      Halide::select(a.s < slots.acc(), 0.0f, a.s < slots.sum(), p.acc_in(column, in_row, a.h, a.b), a.s == slots.sum(),
                     p.sum_in(in_row, a.h, a.b), p.max_in(in_row, a.h, a.b));
  a.state(a.i, a.s, a.t, a.h, a.b) = a.state_rows(a.s, a.i, a.t, a.h, a.b);
  a.state(a.i, a.full.merge.x, a.t, a.h, a.b) = merged(a, a.full);
  a.state(a.i, a.partial.merge.x, a.t, a.h, a.b) = merged(a, a.partial);

  Expr t = a.n / BQ;
  Expr i = a.n % BQ;
  a.acc_out(a.e, a.n, a.h, a.b) = a.state(i, a.e + slots.acc(), t, a.h, a.b);
  a.max_out(a.n, a.h, a.b) = a.state(i, slots.max(), t, a.h, a.b);
  a.sum_out(a.n, a.h, a.b) = a.state(i, slots.sum(), t, a.h, a.b);
}

// Register tiles: (row vectors) x (columns) accumulators, within the 32 zmm registers with room for operands.
struct RegisterTile {
  int row_vectors, columns;
};

RegisterTile register_tile(int rows, int vec, int columns_extent, int max_row_vectors, int max_accumulators) {
  int row_vectors = std::max(1, std::min(rows / vec, max_row_vectors));
  int columns = 1;
  for (int cand = max_accumulators / row_vectors; cand >= 1; --cand) {
    if (columns_extent % cand == 0) {
      columns = cand;
      break;
    }
  }
  return {row_vectors, columns};
}

// A small matrix product `sum` (rows x columns, reduced over r) computed in register tiles: `consumer` walks
// tiles of tile.row_vectors vectors of rows by tile.columns columns, and `sum` is computed per tile with r as
// its outer loop, so the tile's accumulators stay in registers (the Halide matrix-multiply idiom).
// With `pair`, `sum` reduces over it too, innermost, as one vector with the rows (see Algorithm::bf16_dot).
void schedule_register_tiled(Func consumer, Func sum, Var rows, Var columns, Halide::RVar r, RegisterTile tile, int vec,
                             const Halide::LoopLevel& at, std::optional<Halide::RVar> pair = std::nullopt) {
  Var ro{"ro"}, ri{"ri"}, co{"co"}, ci{"ci"};
  consumer.compute_at(at)
      .split(rows, ro, ri, tile.row_vectors * vec, TailStrategy::RoundUp)
      .split(columns, co, ci, tile.columns, TailStrategy::RoundUp)
      .reorder(ri, ci, ro, co)
      .vectorize(ri, vec)
      .unroll(ri)
      .unroll(ci);
  sum.compute_at(consumer, ro).vectorize(rows, vec).unroll(rows).unroll(columns);
  if (pair) {
    sum.update()
        .reorder(*pair, rows, columns, r)
        .atomic()
        .vectorize(*pair)
        .vectorize(rows, vec)
        .unroll(rows)
        .unroll(columns);
  } else {
    sum.update().reorder(rows, columns, r).vectorize(rows, vec).unroll(rows).unroll(columns);
  }
}

// One query row per tile (a decoding step): there are no rows to vectorise across, and a scalar dot product per key
// is one 64-long chain of dependent FMAs. The vectors run across each key's features instead (K is [key][feature],
// so contiguous loads), four keys at a time for independent chains; scores, the maximum, probabilities and the row
// sum across the chunk's keys; and P.V accumulates value-column vectors held in registers across the chunk.
void schedule_single_row_chunk(Algorithm& a, ChunkFuncs& f, const AttentionPipelineKey& key, int lanes) {
  const int Dv = static_cast<int>(key.Dv);
  Var jo{"jo"}, ji{"ji"}, eo{"eo"}, ei{"ei"};
  f.score.compute_at(f.at).vectorize(a.j, lanes);
  f.dot.compute_at(f.at).vectorize(a.j, lanes);
  f.dot.update().split(a.j, jo, ji, 4).reorder(f.rd.x, ji, jo).atomic().vectorize(f.rd.x, lanes).unroll(ji);
  f.chunk_max.compute_at(f.at);
  f.chunk_max.update().atomic().vectorize(f.rj.x, lanes);
  f.prob.compute_at(f.at).vectorize(a.j, lanes);
  if (f.weighted.name() != f.prob.name()) f.weighted.compute_at(f.at).vectorize(a.j, lanes);
  f.row_sum.compute_at(f.at);
  f.row_sum.update().atomic().vectorize(f.rj.x, lanes);
  f.pv_tile.compute_at(f.at).vectorize(a.e, lanes, TailStrategy::GuardWithIf);
  f.pv.compute_at(f.at).vectorize(a.e, lanes, TailStrategy::GuardWithIf);
  if (Dv % lanes == 0) {
    f.pv.update().split(a.e, eo, ei, lanes).reorder(ei, eo, f.rj.x).vectorize(ei).unroll(eo);
  } else {
    f.pv.update().reorder(a.e, f.rj.x).vectorize(a.e, lanes, TailStrategy::GuardWithIf);
  }
}

// The schedule: how it runs on an AVX-512 CPU.
void schedule_chunk(Algorithm& a, ChunkFuncs& f, const AttentionPipelineKey& key) {
  const int vec = static_cast<int>(key.schedule.vector_width);
  const int BQ = static_cast<int>(key.schedule.block_q);
  const int CK = static_cast<int>(key.schedule.chunk_k);
  const int Dv = static_cast<int>(key.Dv);

  // Q.K: row vectors x keys of accumulators held in registers across the D loop.
  const int rv = static_cast<int>(key.schedule.row_vectors);
  const RegisterTile qk = register_tile(BQ, vec, CK, rv, static_cast<int>(key.schedule.qk_tile));
  if (a.bf16_dot) {
    // The same register tiles over feature pairs: the pair (rd.x) and the rows make one 32-lane bf16 vector that
    // the atomic sum over rd.x reduces to 16 fp32 lanes: one vdpbf16ps per accumulator and pair.
    schedule_register_tiled(f.score, f.dot, a.i, a.j, f.rd.y, qk, vec, f.at, f.rd.x);
  } else {
    schedule_register_tiled(f.score, f.dot, a.i, a.j, f.rd.x, qk, vec, f.at);
  }
  // Row reductions over the chunk: vector operations across rows.
  for (Func* reduction : {&f.chunk_max, &f.row_sum}) {
    reduction->compute_at(f.at).vectorize(a.i, vec);
    reduction->update().vectorize(a.i, vec);
  }
  f.prob.compute_at(f.at).vectorize(a.i, vec);
  if (f.weighted.name() != f.prob.name()) f.weighted.compute_at(f.at).vectorize(a.i, vec);
  // P.V: row vectors x value columns of accumulators across the chunk's keys.
  const RegisterTile pv = register_tile(BQ, vec, Dv, rv, static_cast<int>(key.schedule.pv_tile));
  if (a.bf16_pv) {
    schedule_register_tiled(f.pv_tile, f.pv, a.i, a.e, f.rp.y, pv, vec, f.at, f.rp.x);
    f.prob_pairs.compute_at(f.at).vectorize(a.i, vec);
    f.value_pairs.compute_at(f.at).bound(a.s, 0, 2).reorder(a.s, a.e, a.d).vectorize(a.s).vectorize(a.e, vec);
  } else {
    schedule_register_tiled(f.pv_tile, f.pv, a.i, a.e, f.rj.x, pv, vec, f.at);
  }
  if (a.widen_per_chunk) {
    std::vector<Func*> widened;
    if (!a.bf16_dot) widened.push_back(&f.keys);
    if (!a.bf16_pv) widened.push_back(&f.values);
    for (Func* rows : widened) {
      rows->compute_at(f.at).vectorize(a.d, vec, TailStrategy::GuardWithIf);
    }
  }
}

void schedule(Algorithm& a, const AttentionPipelineKey& key) {
  const int vec = static_cast<int>(key.schedule.vector_width);
  const int BQ = static_cast<int>(key.schedule.block_q);
  a.acc_out.vectorize(a.e, vec, TailStrategy::GuardWithIf);
  if (a.pack_keys && a.bf16_dot) {
    // Rows of bf16 as stored, in vectors of 32: copies, no 16-bit element moved alone (see bf16_dot_target()).
    a.k_bits.compute_root().vectorize(a.d, 2 * vec, TailStrategy::GuardWithIf);
    if (a.bf16_pv) {
      a.v_bits.compute_root().vectorize(a.d, 2 * vec, TailStrategy::GuardWithIf);
    } else {
      a.v.compute_root().vectorize(a.d, vec, TailStrategy::GuardWithIf);
    }
  } else if (a.pack_keys) {
    for (Func* f : {&a.k, &a.v}) f->compute_root().vectorize(a.d, vec, TailStrategy::GuardWithIf);
  }
  // Chunks outside query tiles: a call's tiles take the same chunk one after another, while its keys and values are
  // warm in L1 and L2 (causal's chunks are the same keys for every tile), instead of each tile streaming every key
  // from L3. Causal at N=4096 with two threads: 2-4% faster on the AVX-512 VM, whose L3 other tenants share.
  // The tile loop gets a name per stage, for the chunk's Funcs to be computed in.
  for (int u : {0, 1}) {
    ChunkFuncs& f = u == 0 ? a.full : a.partial;
    Var tile(fmt::format("t_{}", f.kind));
    a.state.update(u)
        .rename(a.t, tile)
        .reorder(a.i, f.merge.x, tile, f.rc)
        .vectorize(a.i, vec, TailStrategy::GuardWithIf);
    f.at = Halide::LoopLevel(a.state, tile);
  }
  // Whole query tiles: the register tiles cover BQ rows; rows past the view's end read clamped inputs.
  // The query tile and the state's initial values are first copied row by row, in vectors across a row's features
  // (contiguous loads, though in a residue class each row lies in another page), then transposed from that
  // L1-resident copy by gathers. A one-step transpose either gathered across the rows themselves (the state's init:
  // 37 of 115 us per residue-class call, AVX2) or stored across them element by element (query tile and state init:
  // 43 of 103 us per residue-class call of strided(128) at N=16384, AVX-512; 14 of 66 us this way).
  // A single-row tile (decoding) has nothing to transpose: its one row is read in vectors across it.
  a.q_t.compute_root().align_bounds(a.i, BQ);
  a.state.compute_root().align_bounds(a.i, BQ).bound(a.s, 0, a.slots.count());
  if (BQ == 1) {
    a.q_t.vectorize(a.d, vec, TailStrategy::GuardWithIf);
    a.state.vectorize(a.s, vec, TailStrategy::GuardWithIf);
    const int lanes = Halide::Target(key.target).natural_vector_size<float>();  // the target compiled for
    schedule_single_row_chunk(a, a.full, key, lanes);
    schedule_single_row_chunk(a, a.partial, key, lanes);
  } else {
    a.q_t.vectorize(a.i, vec, TailStrategy::GuardWithIf);
    a.q_rows.compute_at(a.q_t, a.t).vectorize(a.d, vec, TailStrategy::GuardWithIf);
    if (a.bf16_dot) {
      a.q_pairs.compute_root()
          .align_bounds(a.i, BQ)
          .bound(a.e, 0, 2)
          .reorder(a.e, a.i, a.d, a.t)
          .vectorize(a.e)
          .vectorize(a.i, vec, TailStrategy::GuardWithIf);
    }
    a.state.vectorize(a.i, vec, TailStrategy::GuardWithIf);
    a.state_rows.compute_at(a.state, a.t).vectorize(a.s, vec, TailStrategy::GuardWithIf);
    schedule_chunk(a, a.full, key);
    schedule_chunk(a, a.partial, key);
  }
  // Query-table dot products: a small matrix product per call, in register tiles across the head dimension.
  for (auto& [name, t] : a.query_table_dots) {
    Var io{"io"}, ii{"ii"}, ro{"ro"}, ri{"ri"};
    const RegisterTile tile{std::max(1, std::min(BQ / vec, 2)), 4};
    t.dots.compute_root()
        .split(a.i, io, ii, tile.row_vectors * vec, TailStrategy::RoundUp)
        .split(t.r, ro, ri, tile.columns, TailStrategy::RoundUp)
        .reorder(ii, ri, io, ro)
        .vectorize(ii, vec)
        .unroll(ii)
        .unroll(ri);
    t.sums.compute_at(t.dots, io).vectorize(a.i, vec).unroll(a.i).unroll(t.r);
    t.sums.update().reorder(a.i, t.r, t.rd.x).vectorize(a.i, vec).unroll(a.i).unroll(t.r);
  }
}

}  // namespace

std::string AttentionPipelineKey::str() const {
  std::string tensors;
  for (const auto& [name, rank] : tensor_ranks) tensors += fmt::format("{}:{},", name, rank);
  for (const std::string& name : symbols) tensors += fmt::format("${},", name);
  // Only the schedule fields that shape the kernel: the tuner varies the others (block_k, reindex, grain)
  // without recompiling.
  const CpuSchedule& s = schedule;
  return fmt::format("{}|D={}|Dv={}|keys={}x{}|{}|bq={},ck={},vw={},rv={},qk={},pv={}|{}|{}", pattern_ir, D, Dv,
                     key_stride, key_group, tensors, s.block_q, s.chunk_k, s.vector_width, s.row_vectors, s.qk_tile,
                     s.pv_tile, storage == StorageType::Float32 ? "f32" : "bf16", target) +
         (guard_values ? "|guarded" : "") + (additive_exponentials ? "|exponentials" : "");
}

Halide::Target cpu_target() {
  // Halide 14 may detect a Zen 4 as avx512_sapphirerapids, with which LLVM 14 can emit 256-bit AVX-VNNI
  // instructions Zen 4 lacks (SIGILL). Nothing here needs those instructions, so the feature is dropped.
  // Detected once: every attention call asks (kernel keys, the tuning cache's key), and the answer cannot change.
  static const Halide::Target target = Halide::get_host_target().without_feature(Halide::Target::AVX512_SapphireRapids);
  return target;
}

bool bf16_dot_applies(const AttentionPipelineKey& key, const ir::Pattern& pattern) {
  if (key.storage != StorageType::BFloat16 || key.schedule.block_q <= 1 || key.D % 2 != 0 ||
      key.schedule.vector_width != 16 || pattern.scoring == ir::Scoring::Additive) {
    return false;
  }
  const Halide::Target target(key.target);
  return target.has_feature(Halide::Target::AVX512_SapphireRapids) && target.has_feature(Halide::Target::AVX512);
}

const Halide::Target& bf16_dot_target() {
  // The x86 AVX-512 runtime module, which holds Halide's vdpbf16ps wrapper, is linked only with the generic
  // avx512 feature. Detected once, as cpu_target() is: every bf16 attention call asks.
  static const Halide::Target target =
      Halide::get_host_target().has_feature(Halide::Target::AVX512_SapphireRapids)
          ? cpu_target().with_feature(Halide::Target::AVX512).with_feature(Halide::Target::AVX512_SapphireRapids)
          : cpu_target();
  return target;
}

std::shared_ptr<AttentionPipeline> build_attention_pipeline(const ir::Pattern& pattern,
                                                            const AttentionPipelineKey& key) {
  auto p = std::make_shared<AttentionPipeline>();
  const Halide::Type storage = key.storage == StorageType::Float32 ? Halide::Float(32) : Halide::UInt(16);
  p->q = Halide::ImageParam(storage, 4, "q");
  p->acc_in = Halide::ImageParam(Halide::Float(32), 4, "acc_in");
  p->max_in = Halide::ImageParam(Halide::Float(32), 3, "max_in");
  p->sum_in = Halide::ImageParam(Halide::Float(32), 3, "sum_in");
  p->k = Halide::ImageParam(storage, 4, "k");
  p->v = Halide::ImageParam(storage, 4, "v");
  p->full_chunks = Halide::ImageParam(Halide::Int(32), 3, "full_chunks");
  p->partial_chunks = Halide::ImageParam(Halide::Int(32), 3, "partial_chunks");
  p->full_counts = Halide::ImageParam(Halide::Int(32), 1, "full_counts");
  p->partial_counts = Halide::ImageParam(Halide::Int(32), 1, "partial_counts");
  p->max_full = Halide::Param<int32_t>("max_full");
  p->max_partial = Halide::Param<int32_t>("max_partial");
  p->heads = Halide::Param<int32_t>("heads");
  p->group = Halide::Param<int32_t>("group");
  p->n_queries = Halide::Param<int32_t>("n_queries");
  p->m_keys = Halide::Param<int32_t>("m_keys");
  p->key_origin = Halide::Param<int32_t>("key_origin");
  p->keys_begin = Halide::Param<int32_t>("keys_begin");
  p->keys_end = Halide::Param<int32_t>("keys_end");
  p->scale = Halide::Param<float>("scale");
  for (const ir::TensorDecl& t : pattern.inputs) {
    Halide::Type type = t.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
    p->tensors.emplace(t.name, Halide::ImageParam(type, static_cast<int>(t.dims.size()), "tensor_" + t.name));
  }
  for (const std::string& name : key.symbols) p->symbols.emplace_back(name, Halide::Param<int32_t>("symbol_" + name));
  // Head dimensions are compile-time constants: the kernels are specialised to them.
  p->q.dim(0).set_bounds(0, static_cast<int>(key.D)).set_stride(1);
  p->k.dim(0).set_bounds(0, static_cast<int>(key.D)).set_stride(1);
  p->v.dim(0).set_bounds(0, static_cast<int>(key.Dv)).set_stride(1);
  p->acc_in.dim(0).set_bounds(0, static_cast<int>(key.Dv)).set_stride(1);
  // Row maxima and sums are read and written through strided views (every stride-th row of a residue class).
  p->max_in.dim(0).set_stride(Expr());
  p->sum_in.dim(0).set_stride(Expr());

  Algorithm a;
  define_algorithm(a, *p, pattern, key);
  schedule(a, key);
  a.acc_out.output_buffer().dim(0).set_bounds(0, static_cast<int>(key.Dv)).set_stride(1);
  a.max_out.output_buffer().dim(0).set_stride(Expr());
  a.sum_out.output_buffer().dim(0).set_stride(Expr());
  p->pipeline = Halide::Pipeline({a.acc_out, a.max_out, a.sum_out});
  if (a.bf16_pv) add_halves_as_reinterpret(p->pipeline);
  return p;
}

std::vector<Halide::Argument> kernel_arguments(const AttentionPipeline& p) {
  std::vector<Halide::Argument> args = {p.q,           p.k,
                                        p.v,           p.acc_in,
                                        p.max_in,      p.sum_in,
                                        p.full_chunks, p.partial_chunks,
                                        p.full_counts, p.partial_counts,
                                        p.max_full,    p.max_partial,
                                        p.heads,       p.group,
                                        p.n_queries,   p.m_keys,
                                        p.key_origin,  p.keys_begin,
                                        p.keys_end,    p.scale};
  for (const auto& [name, img] : p.tensors) args.emplace_back(img);
  for (const auto& [name, param] : p.symbols) args.emplace_back(param);
  return args;
}

}  // namespace tessera::cpu
