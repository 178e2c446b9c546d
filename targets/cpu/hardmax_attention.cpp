#include "targets/cpu/hardmax_attention.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

#include "compiler/ir/printer.h"
#include "targets/common/kernel_symbols.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/halide_lowering.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;
using Halide::Func;
using Halide::RDom;
using Halide::Var;

constexpr int kRowsPerBlock = 8;  // query rows per vector: the running best is one vector per field
constexpr int kKeyTile = 64;      // keys per tile when classifying which keys a block of rows may read

struct HardmaxPipeline {
  mutable Halide::Pipeline pipeline;  // output (e, n, h, b); realize() is not const
  Halide::ImageParam q, k, v;
  // Per block of rows: the first key it reads and how many.
  Halide::ImageParam first_key{Halide::Int(32), 1, "first_key"}, key_count{Halide::Int(32), 1, "key_count"};
  std::map<std::string, Halide::ImageParam> tensors;
  std::vector<std::pair<std::string, Halide::Param<int32_t>>> symbols;
  Halide::Param<int32_t> heads{"heads"}, group{"group"}, n_queries{"n_queries"}, m_keys{"m_keys"};
  Halide::Param<int32_t> key_span{"key_span"};  // the largest key_count
  Halide::Param<float> scale{"scale"};
};

std::unique_ptr<HardmaxPipeline> build(const ir::Pattern& pattern, int D, int Dv, StorageType storage) {
  auto p = std::make_unique<HardmaxPipeline>();
  const Halide::Type element = storage == StorageType::Float32 ? Halide::Float(32) : Halide::UInt(16);
  p->q = Halide::ImageParam(element, 4, "q");
  p->k = Halide::ImageParam(element, 4, "k");
  p->v = Halide::ImageParam(element, 4, "v");
  for (const ir::TensorDecl& t : pattern.inputs) {
    Halide::Type type = t.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
    p->tensors.emplace(t.name, Halide::ImageParam(type, static_cast<int>(t.dims.size()), "tensor_" + t.name));
  }
  for (const std::string& name : targets::kernel_symbols(pattern)) {
    p->symbols.emplace_back(name, Halide::Param<int32_t>("symbol_" + name));
  }
  p->q.dim(0).set_bounds(0, D).set_stride(1);
  p->k.dim(0).set_bounds(0, D).set_stride(1);
  p->v.dim(0).set_bounds(0, Dv).set_stride(1);

  // The algorithm, over query rows n = kRowsPerBlock * no + ni: block no reads the keys
  // first_key(no) + r for r in [0, key_count(no)), in increasing order. Funcs are indexed by r, not by
  // the key: bounds inference cannot see through the load of first_key and would otherwise score every key per r.
  Var d{"d"}, e{"e"}, n{"n"}, ni{"ni"}, no{"no"}, r{"r"}, j{"j"}, h{"h"}, b{"b"};
  auto to_f32 = [&](Expr x) {
    if (storage == StorageType::Float32) return x;
    return Halide::reinterpret(Halide::Float(32), Halide::cast<uint32_t>(x) << 16);  // bf16: the top 16 bits
  };
  const Expr row = no * kRowsPerBlock + ni;
  const Expr key = Halide::clamp(p->first_key(no) + r, 0, p->m_keys - 1);
  Func q_rows{"q_rows"}, k_f{"k_f"}, v_f{"v_f"}, dot{"dot"}, best{"best"}, out{"out"};
  // Rows innermost: a block of query rows is one vector per feature.
  q_rows(ni, no, d, h, b) = to_f32(p->q(d, Halide::clamp(row, 0, p->n_queries - 1), h, b));
  k_f(d, j, h, b) = to_f32(p->k(d, Halide::clamp(j, 0, p->m_keys - 1), h, b));
  v_f(d, j, h, b) = to_f32(p->v(d, Halide::clamp(j, 0, p->m_keys - 1), h, b));
  Expr kv_head = h / p->group;
  RDom rd(0, D, "rd");
  dot(ni, no, r, h, b) = 0.0f;
  if (pattern.scoring == ir::Scoring::Additive) {
    // Q and K arrive projected (targets::project_for_additive), D is their length A: v[h] . tanh(q + k).
    Expr exp_2x = exp_passing_nan(2.0f * (q_rows(ni, no, rd, h, b) + k_f(rd, key, kv_head, b)));
    dot(ni, no, r, h, b) += p->tensors.at(pattern.additive.vector)(rd, h) * tanh_of_exponential(exp_2x);
  } else {
    dot(ni, no, r, h, b) += q_rows(ni, no, rd, h, b) * k_f(rd, key, kv_head, b);
  }

  const HalideScope scope = kernel_scope(
      KernelPoint{row, key, b, h, p->heads, p->n_queries, p->m_keys, D, p->scale, dot(ni, no, r, h, b) * p->scale},
      p->symbols, p->tensors, [q_rows, ni, no, h, b](Expr x) { return q_rows(ni, no, x, h, b); });
  Expr score = lower_to_halide(pattern.score, scope);
  if (pattern.has_mask()) {
    score = Halide::select(lower_to_halide(pattern.mask, scope), score, -std::numeric_limits<float>::infinity());
  }
  Func scored{"scored"};
  scored(ni, no, r, h, b) = score;

  // Keys in increasing order; a strictly greater score replaces the best, so among equals the first stays.
  // The predicate shrinks each block's key loop to its own count (Halide trims the loop to where it is true).
  RDom rk(0, p->key_span, "rk");
  rk.where(rk < p->key_count(no));
  const Expr unclamped = p->first_key(no) + rk;
  best(ni, no, h, b) = {-1, -std::numeric_limits<float>::infinity(), Halide::cast<uint8_t>(0)};
  Expr s = scored(ni, no, rk, h, b);
  Expr better = s > best(ni, no, h, b)[1];
  best(ni, no, h, b) = {Halide::select(better, unclamped, best(ni, no, h, b)[0]),
                        Halide::select(better, s, best(ni, no, h, b)[1]),
                        best(ni, no, h, b)[2] | Halide::cast<uint8_t>(is_nan_bits(s))};
  const Expr winner = best(n % kRowsPerBlock, n / kRowsPerBlock, h, b)[0];
  const Expr nan_seen = best(n % kRowsPerBlock, n / kRowsPerBlock, h, b)[2];
  Expr value = v_f(e, Halide::max(winner, 0), kv_head, b);
  out(e, n, h, b) =
      Halide::select(nan_seen != 0, std::numeric_limits<float>::quiet_NaN(), Halide::select(winner < 0, 0.0f, value));

  // The schedule: blocks of rows in parallel; per block, the keys in order, each scored for the block's rows
  // as one vector.
  Var out_block{"out_block"}, out_row{"out_row"};
  out.split(n, out_block, out_row, kRowsPerBlock, Halide::TailStrategy::GuardWithIf)
      .reorder(e, out_row, out_block, h, b)
      .parallel(b)
      .parallel(h)
      .parallel(out_block);
  q_rows.compute_at(out, out_block).vectorize(ni, kRowsPerBlock);
  best.compute_at(out, out_block).vectorize(ni, kRowsPerBlock);
  // An update's reduction loops are inside its pure ones unless reordered: the rows must be the innermost.
  best.update().reorder(ni, rk).vectorize(ni, kRowsPerBlock);
  dot.compute_at(best, rk).vectorize(ni, kRowsPerBlock);
  dot.update().reorder(ni, rd).vectorize(ni, kRowsPerBlock);
  out.output_buffer().dim(0).set_bounds(0, Dv).set_stride(1);
  p->pipeline = Halide::Pipeline(out);
  p->pipeline.compile_jit(cpu_target());
  return p;
}

const HardmaxPipeline& cached_pipeline(const ir::Pattern& pattern, int D, int Dv, StorageType storage) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<HardmaxPipeline>> cache;
  std::string key = fmt::format("{}|D={}|Dv={}|{}|{}", ir::to_string(pattern), D, Dv,
                                storage == StorageType::Float32 ? "f32" : "bf16", cpu_target().to_string());
  for (const ir::TensorDecl& t : pattern.inputs) key += fmt::format("|{}:{}", t.name, t.dims.size());
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<HardmaxPipeline>& entry = cache[key];
  if (!entry) entry = build(pattern, D, Dv, storage);
  return *entry;
}

template <typename T>
Halide::Buffer<T> qkv_buffer(const runtime::Tensor& t) {
  // C order [B, heads, rows, features] is Halide's (feature, row, head, batch).
  return Halide::Buffer<T>(const_cast<T*>(t.data<T>()), {static_cast<int>(t.dim(3)), static_cast<int>(t.dim(2)),
                                                         static_cast<int>(t.dim(1)), static_cast<int>(t.dim(0))});
}

// Which keys each block of kRowsPerBlock query rows reads: from its first non-empty key tile to the end of its
// last (the mask still decides pair by pair in between); a block with none reads nothing.
struct KeyWindows {
  std::vector<int32_t> first, count;
  int32_t span = 0;  // the largest count
};

KeyWindows key_windows(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                       const analysis::ClassifyOptions& classify) {
  const analysis::TileMap tiles = analysis::classify_tiles(pattern, sz.N, sz.M, kRowsPerBlock, kKeyTile, classify);
  KeyWindows windows;
  windows.first.assign(static_cast<size_t>(tiles.rows), 0);
  windows.count.assign(static_cast<size_t>(tiles.rows), 0);
  for (int64_t r = 0; r < tiles.rows; ++r) {
    int64_t lo = -1, hi = -1;
    for (int64_t c = 0; c < tiles.cols; ++c) {
      if (tiles.at(r, c) == analysis::TileKind::Empty) continue;
      if (lo < 0) lo = c;
      hi = c + 1;
    }
    if (lo < 0) continue;
    windows.first[static_cast<size_t>(r)] = static_cast<int32_t>(lo * kKeyTile);
    windows.count[static_cast<size_t>(r)] = static_cast<int32_t>(std::min(sz.M, hi * kKeyTile) - lo * kKeyTile);
    windows.span = std::max(windows.span, windows.count[static_cast<size_t>(r)]);
  }
  return windows;
}

}  // namespace

void hardmax_attention_into(const ir::Pattern& pattern, const ir::AttentionSizes& sz, double scale,
                            const runtime::Tensor& q, const runtime::Tensor& k, const runtime::Tensor& v,
                            const targets::RuntimeTensorViews& tensors, const analysis::ClassifyOptions& classify,
                            StorageType storage, runtime::Tensor& out) {
  const HardmaxPipeline& p = cached_pipeline(pattern, static_cast<int>(sz.D), static_cast<int>(sz.Dv), storage);
  Halide::ParamMap params;
  if (storage == StorageType::Float32) {
    params.set(p.q, qkv_buffer<float>(q));
    params.set(p.k, qkv_buffer<float>(k));
    params.set(p.v, qkv_buffer<float>(v));
  } else {
    params.set(p.q, qkv_buffer<uint16_t>(q));
    params.set(p.k, qkv_buffer<uint16_t>(k));
    params.set(p.v, qkv_buffer<uint16_t>(v));
  }
  bind_tensor_views(params, p.tensors, tensors.views);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, view] : tensors.views) shapes[name] = view.shape;
  const std::map<std::string, int64_t> values = targets::call_symbol_values(pattern, sz, shapes);
  for (const auto& [name, param] : p.symbols) params.set(param, static_cast<int32_t>(values.at(name)));
  params.set(p.heads, static_cast<int32_t>(sz.H));
  params.set(p.group, static_cast<int32_t>(sz.H / sz.Hkv));
  params.set(p.n_queries, static_cast<int32_t>(sz.N));
  params.set(p.m_keys, static_cast<int32_t>(sz.M));
  params.set(p.scale, static_cast<float>(scale));
  KeyWindows windows = key_windows(pattern, sz, classify);
  params.set(p.first_key, Halide::Buffer<int32_t>(windows.first.data(), static_cast<int>(windows.first.size())));
  params.set(p.key_count, Halide::Buffer<int32_t>(windows.count.data(), static_cast<int>(windows.count.size())));
  params.set(p.key_span, windows.span);
  Halide::Buffer<float> result(out.data<float>(), {static_cast<int>(sz.Dv), static_cast<int>(sz.N),
                                                   static_cast<int>(sz.H), static_cast<int>(sz.B)});
  p.pipeline.realize(Halide::Realization(result), cpu_target(), params);
}

}  // namespace tessera::cpu
