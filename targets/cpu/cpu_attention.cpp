#include "targets/cpu/cpu_attention.h"

#include <fmt/format.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "compiler/analysis/interval.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/printer.h"
#include "targets/cpu/chunk_pipeline.h"

namespace tessera::cpu {

namespace {

using runtime::Tensor;

// A run of consecutive key tiles of one kind, processed by one pipeline call.
struct Chunk {
  int64_t first_col, cols;
  MaskMode mode;
};

// The chunks of one row of query tiles: EMPTY tiles are skipped, runs of FULL or PARTIAL tiles are merged.
std::vector<Chunk> chunks_of_row(const analysis::TileMap& tiles, int64_t row, int64_t M, int64_t max_tiles) {
  std::vector<Chunk> chunks;
  for (int64_t c = 0; c < tiles.cols;) {
    analysis::TileKind kind = tiles.at(row, c);
    if (kind == analysis::TileKind::Empty) {
      ++c;
      continue;
    }
    int64_t end = c + 1;
    while (end < tiles.cols && end - c < max_tiles && tiles.at(row, end) == kind) ++end;
    int64_t first = c * tiles.block_k;
    int64_t last = std::min(end * tiles.block_k, M);
    chunks.push_back({first, last - first, kind == analysis::TileKind::Full ? MaskMode::Unmasked : MaskMode::Masked});
    c = end;
  }
  return chunks;
}

// Every tensor index the kernels evaluate must be in bounds, as the reference checks. Intervals over the whole
// problem prove it for most patterns (document's segments[b, q] with N <= M, relative's clamped distance);
// otherwise the reference evaluator visits every pair once and throws the same error the reference would.
void check_tensor_indices(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                          const targets::RuntimeTensorViews& tensors, const ir::PatternEvaluator& evaluator,
                          const Tensor& q) {
  analysis::VarRanges ranges;
  ranges[ir::Var::I] = analysis::IntInterval::range(0, sz.N - 1);
  ranges[ir::Var::J] = analysis::IntInterval::range(0, sz.M - 1);
  ranges[ir::Var::Q] = analysis::IntInterval::range(sz.M - sz.N, sz.M - 1);
  ranges[ir::Var::K] = analysis::IntInterval::range(0, sz.M - 1);
  ranges[ir::Var::Batch] = analysis::IntInterval::range(0, sz.B - 1);
  ranges[ir::Var::Head] = analysis::IntInterval::range(0, sz.H - 1);
  ranges[ir::Var::Heads] = analysis::IntInterval::single(sz.H);
  ranges[ir::Var::N] = analysis::IntInterval::single(sz.N);
  ranges[ir::Var::M] = analysis::IntInterval::single(sz.M);
  ranges[ir::Var::D] = analysis::IntInterval::single(sz.D);
  for (const ir::TensorDecl& decl : pattern.inputs) {
    const ir::TensorView& view = tensors.views.at(decl.name);
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      if (!ir::is_attention_size(decl.dims[d])) {
        ranges.symbols[decl.dims[d]] = analysis::Interval::of(analysis::IntInterval::single(view.shape[d]));
      }
    }
  }
  bool proven = true;
  std::function<void(const ir::Expr&)> visit = [&](const ir::Expr& e) {
    if (e->kind == ir::Kind::Load || e->kind == ir::Kind::DotQ) {
      const ir::TensorView& view = tensors.views.at(e->name);
      for (size_t d = 0; d < e->operands.size(); ++d) {
        analysis::IntInterval index = analysis::int_bounds(e->operands[d], ranges);
        if (index.lo < 0 || index.hi > view.shape[d] - 1) proven = false;
      }
    }
    for (const auto& o : e->operands) visit(o);
  };
  visit(pattern.mask);
  visit(pattern.score);
  if (proven) return;
  const float* qd = q.data<float>();
  for (int64_t b = 0; b < sz.B; ++b) {
    for (int64_t h = 0; h < sz.H; ++h) {
      for (int64_t i = 0; i < sz.N; ++i) {
        for (int64_t j = 0; j < sz.M; ++j) {
          if (evaluator.allowed(b, h, i, j)) evaluator.score(b, h, i, j, 0.0, qd + ((b * sz.H + h) * sz.N + i) * sz.D);
        }
      }
    }
  }
}

// bf16 storage: round to nearest even, keep the fp32 layout.
Tensor rounded_to_bf16(const Tensor& t) {
  Tensor out = t.clone();
  float* data = out.data<float>();
  for (int64_t e = 0; e < out.numel(); ++e) {
    uint32_t bits;
    std::memcpy(&bits, &data[e], 4);
    if ((bits & 0x7f800000u) != 0x7f800000u) bits += 0x7fffu + ((bits >> 16) & 1u);
    bits &= 0xffff0000u;
    std::memcpy(&data[e], &bits, 4);
  }
  return out;
}

Halide::Buffer<float> view(const float* data, std::initializer_list<int> extents) {
  return Halide::Buffer<float>(const_cast<float*>(data), std::vector<int>(extents));
}

}  // namespace

std::string halide_target_string() { return cpu_target().to_string(); }

CpuSchedule parse_schedule(const std::string& text) {
  CpuSchedule schedule;
  std::map<std::string, int64_t*> fields = {{"block_q", &schedule.block_q},
                                            {"block_k", &schedule.block_k},
                                            {"chunk_k", &schedule.chunk_k},
                                            {"vector_width", &schedule.vector_width}};
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    pos = comma == std::string::npos ? text.size() : comma + 1;
    size_t eq = item.find('=');
    auto field = eq == std::string::npos ? fields.end() : fields.find(item.substr(0, eq));
    if (field == fields.end()) {
      throw std::invalid_argument(fmt::format(
          "bad schedule item '{}': expected NAME=VALUE with NAME one of block_q, block_k, chunk_k, vector_width",
          item));
    }
    try {
      size_t used = 0;
      *field->second = std::stoll(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1 || *field->second < 1) throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw std::invalid_argument(fmt::format("bad schedule value in '{}': expected a positive integer", item));
    }
  }
  return schedule;
}

runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& given,
                          const CpuOptions& options) {
  const ir::AttentionSizes sz = targets::validate_attention_inputs(given);
  const double scale = targets::attention_scale(given, sz);
  const targets::RuntimeTensorViews tensors = targets::runtime_tensor_views(pattern, given);
  const ir::PatternEvaluator evaluator(pattern, sz, tensors.views, scale);  // validates the run-time tensors
  const CpuSchedule& sched = options.schedule;
  if (sched.block_q < 1 || sched.block_k < 1 || sched.chunk_k < sched.block_k || sched.vector_width < 1) {
    throw std::invalid_argument("CPU schedule needs block_q, block_k >= 1 and chunk_k >= block_k");
  }
  for (int64_t size : {sz.B * sz.H, sz.N, sz.M, sz.D, sz.Dv}) {
    if (size > std::numeric_limits<int32_t>::max()) throw std::invalid_argument("the CPU target needs sizes < 2^31");
  }

  std::optional<Tensor> q_bf16, k_bf16, v_bf16;
  const Tensor* q = given.q;
  const Tensor* k = given.k;
  const Tensor* v = given.v;
  if (options.storage == StorageType::BFloat16) {
    q = &q_bf16.emplace(rounded_to_bf16(*given.q));
    k = &k_bf16.emplace(rounded_to_bf16(*given.k));
    v = &v_bf16.emplace(rounded_to_bf16(*given.v));
  }
  check_tensor_indices(pattern, sz, tensors, evaluator, *q);

  Tensor out(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  if (sz.N == 0) return out;

  analysis::ClassifyOptions classify;
  classify.B = sz.B;
  classify.H = sz.H;
  classify.D = sz.D;
  const analysis::TileMap tiles = analysis::classify_tiles(pattern, sz.N, sz.M, sched.block_q, sched.block_k, classify);

  ChunkPipelineKey key{ir::to_string(pattern), MaskMode::Unmasked,    sz.D, sz.Dv, {}, sched,
                       options.storage,        halide_target_string()};
  for (const ir::TensorDecl& t : pattern.inputs) key.tensor_ranks[t.name] = static_cast<int>(t.dims.size());
  std::shared_ptr<const ChunkPipeline> kernels[2];
  bool needs[2] = {tiles.full > 0, tiles.partial > 0};
  for (int m = 0; m < 2; ++m) {
    if (!needs[m]) continue;
    key.mode = m == 0 ? MaskMode::Unmasked : MaskMode::Masked;
    kernels[m] = chunk_pipeline(pattern, key);
  }

  const Halide::Target target = cpu_target();
  const int64_t group = sz.H / sz.Hkv;
  const int64_t work_items = sz.B * sz.H * tiles.rows;
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(sched.threads > 0 ? sched.threads : std::thread::hardware_concurrency(), work_items));
  std::atomic<int64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;

  auto worker = [&] {
    const int64_t bq = sched.block_q;
    std::vector<float> m_state[2], l_state[2], acc_state[2];
    for (int s = 0; s < 2; ++s) {
      m_state[s].resize(bq);
      l_state[s].resize(bq);
      acc_state[s].resize(bq * sz.Dv);
    }
    try {
      for (int64_t item; (item = next.fetch_add(1)) < work_items;) {
        const int64_t row = item % tiles.rows;
        const int64_t h = (item / tiles.rows) % sz.H;
        const int64_t b = item / (tiles.rows * sz.H);
        const int64_t first_row = row * bq;
        const int rows = static_cast<int>(std::min(bq, sz.N - first_row));
        std::fill(m_state[0].begin(), m_state[0].end(), -std::numeric_limits<float>::infinity());
        std::fill(l_state[0].begin(), l_state[0].end(), 0.0f);
        std::fill(acc_state[0].begin(), acc_state[0].end(), 0.0f);
        int cur = 0;
        const float* q_rows = q->data<float>() + ((b * sz.H + h) * sz.N + first_row) * sz.D;
        const float* k_head = k->data<float>() + (b * sz.Hkv + h / group) * sz.M * sz.D;
        const float* v_head = v->data<float>() + (b * sz.Hkv + h / group) * sz.M * sz.Dv;
        for (const Chunk& chunk : chunks_of_row(tiles, row, sz.M, sched.chunk_k / sched.block_k)) {
          const ChunkPipeline& kp = *kernels[chunk.mode == MaskMode::Unmasked ? 0 : 1];
          const int cols = static_cast<int>(chunk.cols);
          Halide::ParamMap params;
          params.set(kp.q_tile, view(q_rows, {static_cast<int>(sz.D), rows}));
          params.set(kp.k_chunk, view(k_head + chunk.first_col * sz.D, {static_cast<int>(sz.D), cols}));
          params.set(kp.v_chunk, view(v_head + chunk.first_col * sz.Dv, {static_cast<int>(sz.Dv), cols}));
          params.set(kp.m_in, view(m_state[cur].data(), {rows}));
          params.set(kp.l_in, view(l_state[cur].data(), {rows}));
          params.set(kp.acc_in, view(acc_state[cur].data(), {static_cast<int>(sz.Dv), rows}));
          params.set(kp.first_row, static_cast<int32_t>(first_row));
          params.set(kp.first_col, static_cast<int32_t>(chunk.first_col));
          params.set(kp.batch, static_cast<int32_t>(b));
          params.set(kp.head, static_cast<int32_t>(h));
          params.set(kp.heads, static_cast<int32_t>(sz.H));
          params.set(kp.n_queries, static_cast<int32_t>(sz.N));
          params.set(kp.m_keys, static_cast<int32_t>(sz.M));
          params.set(kp.scale, static_cast<float>(scale));
          for (const auto& [name, img] : kp.tensors) {
            const ir::TensorView& tv = tensors.views.at(name);
            std::vector<int> extents(tv.shape.rbegin(), tv.shape.rend());
            Halide::Type type = tv.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
            params.set(img, Halide::Buffer<>(type, const_cast<void*>(tv.data), extents));
          }
          for (const auto& [name, param] : kp.symbols) {
            for (const ir::TensorDecl& decl : pattern.inputs) {
              for (size_t d = 0; d < decl.dims.size(); ++d) {
                if (decl.dims[d] == name) {
                  params.set(param, static_cast<int32_t>(tensors.views.at(decl.name).shape[d]));
                }
              }
            }
          }
          const int nxt = 1 - cur;
          Halide::Buffer<float> acc_out = view(acc_state[nxt].data(), {static_cast<int>(sz.Dv), rows});
          Halide::Buffer<float> m_out = view(m_state[nxt].data(), {rows});
          Halide::Buffer<float> l_out = view(l_state[nxt].data(), {rows});
          const_cast<Halide::Pipeline&>(kp.pipeline)
              .realize(Halide::Realization({acc_out, m_out, l_out}), target, params);
          cur = nxt;
        }
        float* o = out.data<float>() + ((b * sz.H + h) * sz.N + first_row) * sz.Dv;
        for (int r = 0; r < rows; ++r) {
          const float l = l_state[cur][r];
          for (int64_t e = 0; e < sz.Dv; ++e)
            o[r * sz.Dv + e] = l > 0 || std::isnan(l) ? acc_state[cur][r * sz.Dv + e] / l : 0.0f;
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(failure_mutex);
      if (!failure) failure = std::current_exception();
      next = work_items;
    }
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  return out;
}

}  // namespace tessera::cpu
