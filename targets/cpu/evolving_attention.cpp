#include "targets/cpu/evolving_attention.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>

#include "compiler/ir/printer.h"
#include "targets/common/kernel_symbols.h"
#include "targets/common/tensor_index_bounds.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/halide_lowering.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;
using Halide::Func;
using Halide::RDom;
using Halide::TailStrategy;
using Halide::Var;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();
constexpr int kRowsPerTile = 16;  // query rows per parallel task: the input maps of every head cover them plus a halo
constexpr int kVector = 8;

// The kind's tap offsets and whether a previous map is read are run-time parameters: one kernel serves every
// layer of a model with the same pattern and sizes (a JIT compile costs seconds).
struct EvolvingKey {
  std::string pattern_ir;
  int64_t H, D, Dv;

  std::string str() const {
    return fmt::format("{}|H={}|D={}|Dv={}|{}", pattern_ir, H, D, Dv, cpu_target().to_string());
  }
};

struct EvolvingPipeline {
  mutable Halide::Pipeline pipeline;  // output (x, n, h, b): x < M the map A, then Dv columns of the output
  Halide::ImageParam q{Halide::Float(32), 4, "q"}, k{Halide::Float(32), 4, "k"}, v{Halide::Float(32), 4, "v"};
  Halide::ImageParam previous{Halide::Float(32), 4, "previous"};
  Halide::ImageParam weight{Halide::Float(32), 4, "conv_weight"}, bias{Halide::Float(32), 1, "conv_bias"};
  std::map<std::string, Halide::ImageParam> tensors;
  std::vector<std::pair<std::string, Halide::Param<int32_t>>> symbols;
  Halide::Param<int32_t> group{"group"}, n_queries{"n_queries"}, m_keys{"m_keys"};
  Halide::Param<float> scale{"scale"}, alpha{"alpha"}, beta{"beta"};
  Halide::Param<int32_t> row_offset{"row_offset"}, column_offset{"column_offset"};  // targets::EvolvingTaps
  Halide::Param<bool> use_previous{"use_previous"};
};

std::unique_ptr<EvolvingPipeline> build(const ir::Pattern& pattern, const EvolvingKey& key) {
  auto p = std::make_unique<EvolvingPipeline>();
  for (const ir::TensorDecl& t : pattern.inputs) {
    Halide::Type type = t.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
    p->tensors.emplace(t.name, Halide::ImageParam(type, static_cast<int>(t.dims.size()), "tensor_" + t.name));
  }
  for (const std::string& name : targets::kernel_symbols(pattern)) {
    p->symbols.emplace_back(name, Halide::Param<int32_t>("symbol_" + name));
  }
  const int H = static_cast<int>(key.H), D = static_cast<int>(key.D), Dv = static_cast<int>(key.Dv);
  p->q.dim(0).set_bounds(0, D).set_stride(1);
  p->k.dim(0).set_bounds(0, D).set_stride(1);
  p->v.dim(0).set_bounds(0, Dv).set_stride(1);
  Expr N = p->n_queries, M = p->m_keys;

  // The algorithm. x: key column, n: query row.
  Var x{"x"}, n{"n"}, h{"h"}, b{"b"}, d{"d"}, e{"e"}, g{"g"};
  Func q_rows{"q_rows"}, k_columns{"k_columns"}, v_rows{"v_rows"}, dot{"dot"}, input{"input"}, conv{"conv"};
  Func map{"map"}, row_max{"row_max"}, prob{"prob"}, row_sum{"row_sum"}, pv{"pv"}, out{"out"}, combined{"combined"};
  q_rows(d, n, h, b) = p->q(d, Halide::clamp(n, 0, N - 1), h, b);
  k_columns(x, d, g, b) = p->k(d, Halide::clamp(x, 0, M - 1), g, b);  // keys innermost: vectors over keys
  v_rows(e, x, g, b) = p->v(e, Halide::clamp(x, 0, M - 1), g, b);
  Expr kv_head = h / p->group;
  RDom rd(0, D, "rd");
  dot(x, n, h, b) = 0.0f;
  dot(x, n, h, b) += q_rows(rd, n, h, b) * k_columns(x, rd, kv_head, b);

  const HalideScope scope =
      kernel_scope(KernelPoint{n, x, b, h, Expr(H), N, M, D, p->scale, dot(x, n, h, b) * p->scale}, p->symbols,
                   p->tensors, [q_rows, n, h, b](Expr r) { return q_rows(r, n, h, b); });
  // Outside the N x M map every pair counts as masked: the convolution's zero padding.
  Expr allowed = n >= 0 && n < N && x >= 0 && x < M;
  if (pattern.has_mask()) allowed = allowed && lower_to_halide(pattern.mask, scope);
  Expr logit = lower_to_halide(pattern.score, scope);
  // Clamped into the buffer bound, which is a 1 x 1 x 1 x 1 placeholder for the first layer of a chain.
  Expr before = p->previous(
      Halide::clamp(x, 0, p->previous.dim(0).extent() - 1), Halide::clamp(n, 0, p->previous.dim(1).extent() - 1),
      Halide::clamp(h, 0, p->previous.dim(2).extent() - 1), Halide::clamp(b, 0, p->previous.dim(3).extent() - 1));
  logit = Halide::select(p->use_previous, p->alpha * before + (1.0f - p->alpha) * logit, logit);
  input(x, n, h, b) = Halide::select(allowed, logit, 0.0f);
  // Taps (u, v) over channels c: the weight [H, H, 3, 3] is (v, u, c, h) to Halide.
  RDom tap(0, 3, 0, 3, 0, H, "tap");
  conv(x, n, h, b) = p->bias(h);
  conv(x, n, h, b) +=
      p->weight(tap.x, tap.y, tap.z, h) * input(x + tap.x - p->column_offset, n + tap.y - p->row_offset, tap.z, b);
  // NaN passes through the ReLU, the row maximum, exp and the normalisation, as in the reference: the kernels are
  // fast-math, where Halide's max and exp may turn NaN into a number (see is_nan_bits).
  Expr c = conv(x, n, h, b);
  Expr relu = Halide::select(is_nan_bits(c), c, Halide::max(c, 0.0f));
  map(x, n, h, b) = Halide::select(allowed, p->beta * relu + (1.0f - p->beta) * input(x, n, h, b), 0.0f);
  RDom rx(0, M, "rx");
  Expr allowed_rx = Halide::Internal::substitute(x.name(), rx.x, allowed);
  row_max(n, h, b) = kMinusInfinity;
  Expr so_far = row_max(n, h, b), next = map(rx, n, h, b);
  row_max(n, h, b) = Halide::select(
      allowed_rx, Halide::select(is_nan_bits(so_far), so_far, is_nan_bits(next), next, Halide::max(so_far, next)),
      so_far);
  Expr best = row_max(n, h, b);
  // A NaN maximum fails `best != -inf` (an ordered comparison): tested on the bits.
  prob(x, n, h, b) = Halide::select(allowed && (best != kMinusInfinity || is_nan_bits(best)),
                                    exp_passing_nan(map(x, n, h, b) - best), 0.0f);
  row_sum(n, h, b) = 0.0f;
  row_sum(n, h, b) += prob(rx, n, h, b);
  pv(e, n, h, b) = 0.0f;
  // Masked keys contribute nothing, not 0 * V: a NaN value there must not reach the row.
  pv(e, n, h, b) += Halide::select(allowed_rx, prob(rx, n, h, b) * v_rows(e, rx, kv_head, b), 0.0f);
  Expr total = row_sum(n, h, b);
  out(e, n, h, b) = Halide::select(total > 0.0f || is_nan_bits(total), pv(e, n, h, b) / total, 0.0f);
  combined(x, n, h, b) =
      Halide::select(x < M, map(Halide::min(x, M - 1), n, h, b), out(Halide::clamp(x - M, 0, Dv - 1), n, h, b));

  // The schedule: tiles of query rows of one batch row in parallel; per tile the input maps of every head (with
  // the halo rows), then head by head the convolution, map, softmax and P V.
  Var no{"no"}, ni{"ni"}, task{"task"};
  combined.split(n, no, ni, kRowsPerTile, TailStrategy::GuardWithIf)
      .reorder(x, ni, h, no, b)
      .fuse(no, b, task)
      .parallel(task)
      .vectorize(x, kVector, TailStrategy::GuardWithIf);
  k_columns.compute_root().vectorize(x, kVector, TailStrategy::GuardWithIf);
  input.compute_at(combined, task).vectorize(x, kVector, TailStrategy::GuardWithIf);
  dot.compute_at(combined, task).vectorize(x, kVector, TailStrategy::GuardWithIf);
  dot.update().reorder(x, rd, n, h).vectorize(x, kVector, TailStrategy::GuardWithIf);
  for (Func* f : {&conv, &map, &prob}) f->compute_at(combined, h).vectorize(x, kVector, TailStrategy::GuardWithIf);
  conv.update().reorder(x, tap.x, tap.y, tap.z, n).vectorize(x, kVector, TailStrategy::GuardWithIf);
  row_max.compute_at(combined, h);
  row_sum.compute_at(combined, h);
  pv.compute_at(combined, h).vectorize(e, kVector, TailStrategy::GuardWithIf);
  pv.update().reorder(e, rx, n).vectorize(e, kVector, TailStrategy::GuardWithIf);
  out.compute_at(combined, h);
  p->pipeline = Halide::Pipeline(combined);
  p->pipeline.compile_jit(cpu_target());
  return p;
}

const EvolvingPipeline& cached_pipeline(const ir::Pattern& pattern, const EvolvingKey& key) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<EvolvingPipeline>> cache;
  std::string cache_key = key.str();
  for (const ir::TensorDecl& t : pattern.inputs) cache_key += fmt::format("|{}:{}", t.name, t.dims.size());
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<EvolvingPipeline>& entry = cache[cache_key];
  if (!entry) entry = build(pattern, key);
  return *entry;
}

Halide::Buffer<float> float_buffer(const runtime::Tensor& t) {
  std::vector<int> sizes;
  for (int64_t dim = t.rank(); dim-- > 0;) sizes.push_back(static_cast<int>(t.dim(dim)));
  return Halide::Buffer<float>(const_cast<float*>(t.data<float>()), sizes);
}

}  // namespace

std::string describe_evolving_kernel(targets::EvolvingKind kind, int64_t H, int64_t N, int64_t M) {
  const targets::EvolvingTaps taps = targets::evolving_taps(kind);
  const int64_t bytes = H * N * M * 4;
  return fmt::format(
      "  taps:    rows i-{}..i{}, columns j-{}..j{}\n"
      "  map:     float32 [B, {}, {}, {}] stored between layers ({:.1f} MiB per batch row): every pair, masked ones as "
      "0\n"
      "  kernel:  per tile of {} query rows (in parallel), the input maps of all {} heads over the tile's rows and a\n"
      "           halo of {} row(s) before{} with the logits fused in; then per head the 3x3 convolution across\n"
      "           heads, ReLU, the map, its softmax over the keys and P V in the same pass; no tile is skipped\n"
      "  pairs computed: {} per batch row (H x N x M), plus the halo rows' logits\n",
      taps.row_offset, taps.row_offset == 1 ? "+1" : "", taps.column_offset, taps.column_offset == 1 ? "+1" : "", H, N,
      M, static_cast<double>(bytes) / (1024.0 * 1024.0), kRowsPerTile, H, taps.row_offset,
      taps.row_offset == 1 ? " and 1 after" : "", H * N * M);
}

EvolvingAttentionResult evolving_attention(const ir::Pattern& pattern, const targets::EvolvingAttentionInputs& inputs) {
  const ir::AttentionSizes sz = targets::validate_evolving_inputs(pattern, inputs);
  const targets::AttentionInputs& attention = inputs.attention;
  const double scale = targets::attention_scale(pattern, attention, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, attention);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& [name, view] : tensors.views) shapes[name] = view.shape;
  targets::check_tensor_indices(pattern, sz, shapes, evaluator, attention.q->data<float>());
  for (int64_t size : {sz.B * sz.H, sz.N, sz.M + sz.Dv, sz.D}) {
    if (size > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("the CPU target needs sizes < 2^31");
  }

  EvolvingAttentionResult result;
  result.out = runtime::Tensor(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  result.map = runtime::Tensor(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.M});
  if (sz.N == 0 || sz.M == 0) return result;  // zeros

  const EvolvingKey key{ir::to_string(pattern), sz.H, sz.D, sz.Dv};
  const EvolvingPipeline& p = cached_pipeline(pattern, key);
  Halide::ParamMap params;
  params.set(p.q, float_buffer(*attention.q));
  params.set(p.k, float_buffer(*attention.k));
  params.set(p.v, float_buffer(*attention.v));
  params.set(p.weight, float_buffer(*inputs.conv_weight));
  params.set(p.bias, float_buffer(*inputs.conv_bias));
  // Without a previous map the pipeline does not read one; Halide still wants a buffer bound.
  runtime::Tensor no_previous(runtime::DType::Float32, {1, 1, 1, 1});
  params.set(p.previous, float_buffer(inputs.previous ? *inputs.previous : no_previous));
  bind_tensor_views(params, p.tensors, tensors.views);
  const std::map<std::string, int64_t> values = targets::call_symbol_values(pattern, sz, shapes);
  for (const auto& [name, param] : p.symbols) params.set(param, static_cast<int32_t>(values.at(name)));
  params.set(p.group, static_cast<int32_t>(sz.H / sz.Hkv));
  params.set(p.n_queries, static_cast<int32_t>(sz.N));
  params.set(p.m_keys, static_cast<int32_t>(sz.M));
  params.set(p.scale, static_cast<float>(scale));
  params.set(p.alpha, static_cast<float>(inputs.alpha));
  params.set(p.beta, static_cast<float>(inputs.beta));
  const targets::EvolvingTaps taps = targets::evolving_taps(inputs.kind);
  params.set(p.row_offset, taps.row_offset);
  params.set(p.column_offset, taps.column_offset);
  params.set(p.use_previous, inputs.previous != nullptr);

  // One pass writes the map and the output side by side, [B, H, N, M + Dv]; they are split after.
  runtime::Tensor combined(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.M + sz.Dv});
  Halide::Buffer<float> buffer = float_buffer(combined);
  p.pipeline.realize(Halide::Realization(buffer), cpu_target(), params);
  const float* from = combined.data<float>();
  float* map = result.map.data<float>();
  float* out = result.out.data<float>();
  for (int64_t row = 0; row < sz.B * sz.H * sz.N; ++row) {
    std::memcpy(map + row * sz.M, from + row * (sz.M + sz.Dv), static_cast<size_t>(sz.M) * sizeof(float));
    std::memcpy(out + row * sz.Dv, from + row * (sz.M + sz.Dv) + sz.M, static_cast<size_t>(sz.Dv) * sizeof(float));
  }
  return result;
}

}  // namespace tessera::cpu
