#include "targets/cpu/chunk_pipeline.h"

#include <fmt/format.h>

#include <limits>
#include <mutex>

#include "targets/cpu/halide_lowering.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;
using Halide::Func;
using Halide::RDom;
using Halide::TailStrategy;
using Halide::Var;

constexpr float kMinusInfinity = -std::numeric_limits<float>::infinity();

// The algorithm: stated once, for both mask modes; nothing here says how it is computed.
struct ChunkAlgorithm {
  Var j{"j"}, i{"i"}, e{"e"};
  Func k_t{"k_t"};      // the key chunk transposed, so the score loop vectorises over keys
  Func dot{"dot"};      // q . k for each (key, query) of the chunk
  Func score{"score"};  // the pattern's score modifier (and mask, in Masked mode)
  Func chunk_max{"chunk_max"}, m_new{"m_new"}, alpha{"alpha"}, row_sum{"row_sum"};
  Func prob{"prob"};  // exp(score - m_new)
  Func pv{"pv"};      // P . V of the chunk
  Func m_out{"m_out"}, l_out{"l_out"}, acc_out{"acc_out"};
  RDom rd, rj;  // over the head dimension, and over the chunk's keys
  RDom rv;      // the chunk's keys rounded up to whole vectors: (lane, vector)
  Func q{"q"}, k{"k"}, v{"v"}, m_in{"m_in"}, l_in{"l_in"};  // the inputs, clamped at their edges
};

void define_algorithm(ChunkAlgorithm& a, ChunkPipeline& p, const ir::Pattern& pattern, const ChunkPipelineKey& key) {
  const int D = static_cast<int>(key.D);
  Expr cols = p.k_chunk.dim(1).extent();
  a.rd = RDom(0, D, "rd");
  a.rj = RDom(0, cols, "rj");
  const int vec = static_cast<int>(key.schedule.vector_width);
  a.rv = RDom(0, vec, 0, (cols + vec - 1) / vec, "rv");
  const RDom& rd = a.rd;
  const RDom& rj = a.rj;

  // Register tiles round the rows and keys of a chunk up to whole tiles; the extra lanes read clamped inputs
  // and are never stored.
  a.q = Halide::BoundaryConditions::repeat_edge(p.q_tile);
  a.k = Halide::BoundaryConditions::repeat_edge(p.k_chunk);
  a.v = Halide::BoundaryConditions::repeat_edge(p.v_chunk);
  a.m_in = Halide::BoundaryConditions::repeat_edge(p.m_in);
  a.l_in = Halide::BoundaryConditions::repeat_edge(p.l_in);

  a.k_t(a.j, a.i) = a.k(a.i, a.j);  // (key, feature)
  a.dot(a.j, a.i) = 0.0f;
  a.dot(a.j, a.i) += a.q(rd, a.i) * a.k_t(a.j, rd);

  HalideScope scope;
  Expr row = p.first_row + a.i;
  Expr col = p.first_col + a.j;
  scope.vars[ir::Var::I] = row;
  scope.vars[ir::Var::J] = col;
  scope.vars[ir::Var::Q] = row + (p.m_keys - p.n_queries);
  scope.vars[ir::Var::K] = col;
  scope.vars[ir::Var::Batch] = p.batch;
  scope.vars[ir::Var::Head] = p.head;
  scope.vars[ir::Var::Heads] = p.heads;
  scope.vars[ir::Var::N] = p.n_queries;
  scope.vars[ir::Var::M] = p.m_keys;
  scope.vars[ir::Var::D] = Expr(D);
  scope.vars[ir::Var::Scale] = p.scale;
  scope.vars[ir::Var::Score] = a.dot(a.j, a.i) * p.scale;
  for (auto& [name, param] : p.symbols) scope.symbols[name] = param;
  // Indices are clamped so Halide's bounds inference sees a finite region; the driver has checked (or proved)
  // that no evaluated index is out of bounds, so the clamp never changes a value.
  scope.load = [&p](const std::string& tensor, const std::vector<Expr>& indices) {
    Halide::ImageParam& img = p.tensors.at(tensor);
    std::vector<Expr> args;
    for (size_t d = indices.size(); d-- > 0;) {
      int dim = static_cast<int>(indices.size() - 1 - d);
      args.push_back(Halide::clamp(indices[d], 0, img.dim(dim).extent() - 1));
    }
    Expr value = img(args);
    return img.type() == Halide::Int(32) ? value : Halide::cast<float>(value);
  };
  scope.dot_q = [&p, &a, D](const std::string& tensor, const std::vector<Expr>& indices) {
    Halide::ImageParam& img = p.tensors.at(tensor);
    RDom r(0, D, "rdot");
    std::vector<Expr> args{r};
    for (size_t d = indices.size(); d-- > 0;) {
      int dim = static_cast<int>(indices.size() - d);
      args.push_back(Halide::clamp(indices[d], 0, img.dim(dim).extent() - 1));
    }
    return Halide::sum(a.q(r, a.i) * img(args));
  };

  Expr modified = lower_to_halide(pattern.score, scope);
  // Keys past the chunk (the row reductions run over whole vectors) score -inf, as masked keys do.
  Expr keep = a.j < cols;
  if (key.mode == MaskMode::Masked) keep = keep && lower_to_halide(pattern.mask, scope);
  a.score(a.j, a.i) = Halide::select(keep, modified, kMinusInfinity);

  Expr key_of_lane = a.rv.x + vec * a.rv.y;
  a.chunk_max(a.i) = kMinusInfinity;
  a.chunk_max(a.i) = Halide::max(a.chunk_max(a.i), a.score(key_of_lane, a.i));
  a.m_new(a.i) = Halide::max(a.m_in(a.i), a.chunk_max(a.i));
  // A row whose every key so far is masked keeps m = -inf: its weights are 0, never exp(-inf - -inf) = NaN.
  Expr empty = a.m_new(a.i) == kMinusInfinity;
  a.alpha(a.i) = Halide::select(empty, 0.0f, Halide::exp(a.m_in(a.i) - a.m_new(a.i)));
  a.prob(a.j, a.i) = Halide::select(empty, 0.0f, Halide::exp(a.score(a.j, a.i) - a.m_new(a.i)));

  a.pv(a.e, a.i) = 0.0f;
  a.pv(a.e, a.i) += a.prob(rj, a.i) * a.v(a.e, rj);

  a.m_out(a.i) = a.m_new(a.i);
  a.row_sum(a.i) = 0.0f;
  a.row_sum(a.i) += a.prob(key_of_lane, a.i);
  a.l_out(a.i) = a.l_in(a.i) * a.alpha(a.i) + a.row_sum(a.i);
  a.acc_out(a.e, a.i) = p.acc_in(a.e, a.i) * a.alpha(a.i) + a.pv(a.e, a.i);
}

// The schedule: how the chunk is computed on an AVX-512 CPU. Register tiles are sized for 32 zmm registers.
void schedule(ChunkAlgorithm& a, const ChunkPipelineKey& key) {
  const int vec = static_cast<int>(key.schedule.vector_width);
  Var jo{"jo"}, ji{"ji"}, io{"io"}, ii{"ii"}, eo{"eo"}, ei{"ei"};

  a.k_t.compute_root().vectorize(a.j, vec, TailStrategy::GuardWithIf);

  // Scores: 2 vectors of keys x 4 queries of accumulators held in registers across the D loop.
  a.score.compute_root()
      .split(a.j, jo, ji, 2 * vec, TailStrategy::RoundUp)
      .split(a.i, io, ii, 4, TailStrategy::RoundUp)
      .reorder(ji, ii, jo, io)
      .vectorize(ji, vec)
      .unroll(ii);
  a.dot.compute_at(a.score, jo).vectorize(a.j, vec).unroll(a.i);
  a.dot.update().reorder(a.j, a.i, a.rd.x).vectorize(a.j, vec).unroll(a.i);

  // Row reductions: one vector of partial results per row across the chunk, then a horizontal step.
  for (Func* reduction : {&a.chunk_max, &a.row_sum}) {
    Var lane{"lane"};
    reduction->compute_root();
    Func partial = reduction->update().rfactor(a.rv.x, lane);
    partial.compute_at(*reduction, a.i).vectorize(lane);
    partial.update().vectorize(lane);
  }
  a.m_new.compute_root();
  a.alpha.compute_root();
  a.prob.compute_root().vectorize(a.j, vec, TailStrategy::GuardWithIf);

  // P.V: Dv in vectors x 4 queries of accumulators across the chunk's keys.
  a.acc_out.split(a.e, eo, ei, std::min<int>(static_cast<int>(key.Dv), 4 * vec), TailStrategy::GuardWithIf)
      .split(a.i, io, ii, 4, TailStrategy::GuardWithIf)
      .reorder(ei, ii, eo, io)
      .vectorize(ei, vec, TailStrategy::GuardWithIf)
      .unroll(ii);
  a.pv.compute_at(a.acc_out, eo).bound_extent(a.i, 4).vectorize(a.e, vec, TailStrategy::GuardWithIf).unroll(a.i);
  a.pv.update().reorder(a.e, a.i, a.rj.x).vectorize(a.e, vec, TailStrategy::GuardWithIf).unroll(a.i);
  a.l_out.compute_root();
  a.m_out.compute_root();
}

}  // namespace

std::string ChunkPipelineKey::str() const {
  std::string tensors;
  for (const auto& [name, rank] : tensor_ranks) tensors += fmt::format("{}:{},", name, rank);
  return fmt::format("{}|{}|D={}|Dv={}|{}|bq={},bk={},ck={},vw={}|{}|{}", pattern_ir,
                     mode == MaskMode::Masked ? "masked" : "unmasked", D, Dv, tensors, schedule.block_q,
                     schedule.block_k, schedule.chunk_k, schedule.vector_width,
                     storage == StorageType::Float32 ? "f32" : "bf16", target);
}

Halide::Target cpu_target() {
  // Halide 14 detects this Zen 4 as avx512_sapphirerapids, with which LLVM 14 may emit 256-bit AVX-VNNI
  // instructions Zen 4 lacks (SIGILL); name the features instead.
  Halide::Target host = Halide::get_host_target();
  Halide::Target t = host.without_feature(Halide::Target::AVX512_SapphireRapids);
  return t;
}

std::shared_ptr<const ChunkPipeline> chunk_pipeline(const ir::Pattern& pattern, const ChunkPipelineKey& key) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const ChunkPipeline>> cache;
  const std::string cache_key = key.str();
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(cache_key); it != cache.end()) return it->second;

  auto p = std::make_shared<ChunkPipeline>();
  p->q_tile = Halide::ImageParam(Halide::Float(32), 2, "q_tile");
  p->k_chunk = Halide::ImageParam(Halide::Float(32), 2, "k_chunk");
  p->v_chunk = Halide::ImageParam(Halide::Float(32), 2, "v_chunk");
  p->m_in = Halide::ImageParam(Halide::Float(32), 1, "m_in");
  p->l_in = Halide::ImageParam(Halide::Float(32), 1, "l_in");
  p->acc_in = Halide::ImageParam(Halide::Float(32), 2, "acc_in");
  p->first_row = Halide::Param<int32_t>("first_row");
  p->first_col = Halide::Param<int32_t>("first_col");
  p->batch = Halide::Param<int32_t>("batch");
  p->head = Halide::Param<int32_t>("head");
  p->heads = Halide::Param<int32_t>("heads");
  p->n_queries = Halide::Param<int32_t>("n_queries");
  p->m_keys = Halide::Param<int32_t>("m_keys");
  p->scale = Halide::Param<float>("scale");
  for (const ir::TensorDecl& t : pattern.inputs) {
    Halide::Type type = t.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
    p->tensors.emplace(t.name, Halide::ImageParam(type, static_cast<int>(t.dims.size()), "tensor_" + t.name));
    for (const std::string& dim : t.dims) {
      if (!ir::is_attention_size(dim) && !p->symbols.count(dim)) {
        p->symbols.emplace(dim, Halide::Param<int32_t>("size_" + dim));
      }
    }
  }
  // Every call binds the state and chunk buffers densely; saying so lets Halide vectorise without strides.
  for (Halide::ImageParam* img : {&p->q_tile, &p->k_chunk, &p->v_chunk, &p->acc_in}) {
    img->dim(0).set_stride(1);
  }
  p->q_tile.dim(0).set_bounds(0, static_cast<int>(key.D));
  p->k_chunk.dim(0).set_bounds(0, static_cast<int>(key.D));
  p->v_chunk.dim(0).set_bounds(0, static_cast<int>(key.Dv));
  p->acc_in.dim(0).set_bounds(0, static_cast<int>(key.Dv));

  ChunkAlgorithm a;
  define_algorithm(a, *p, pattern, key);
  schedule(a, key);
  a.acc_out.output_buffer().dim(0).set_stride(1).set_bounds(0, static_cast<int>(key.Dv));
  p->pipeline = Halide::Pipeline({a.acc_out, a.m_out, a.l_out});
  p->pipeline.compile_jit(cpu_target());
  cache.emplace(cache_key, p);
  return p;
}

}  // namespace tessera::cpu
