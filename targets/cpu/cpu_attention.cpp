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
#include "targets/cpu/attention_pipeline.h"

namespace tessera::cpu {

namespace {

using runtime::Tensor;

// The chunk tables of the pipeline: per query tile, the runs of consecutive FULL (or PARTIAL) key tiles, each
// at most chunk_k keys, as (first key, key count). EMPTY tiles are in neither table.
struct ChunkTables {
  Halide::Buffer<int32_t> full, partial;                // (field, slot, query tile)
  Halide::Buffer<int32_t> full_counts, partial_counts;  // (query tile)
  int32_t max_full = 0, max_partial = 0;
};

ChunkTables chunk_tables(const analysis::TileMap& tiles, int64_t M, int64_t tiles_per_chunk) {
  std::vector<std::vector<std::pair<int32_t, int32_t>>> runs[2];  // [full, partial][row] -> (first, count)
  for (auto& r : runs) r.resize(static_cast<size_t>(tiles.rows));
  for (int64_t row = 0; row < tiles.rows; ++row) {
    for (int64_t c = 0; c < tiles.cols;) {
      analysis::TileKind kind = tiles.at(row, c);
      if (kind == analysis::TileKind::Empty) {
        ++c;
        continue;
      }
      int64_t end = c + 1;
      while (end < tiles.cols && end - c < tiles_per_chunk && tiles.at(row, end) == kind) ++end;
      int64_t first = c * tiles.block_k;
      int64_t last = std::min(end * tiles.block_k, M);
      runs[kind == analysis::TileKind::Full ? 0 : 1][row].emplace_back(static_cast<int32_t>(first),
                                                                       static_cast<int32_t>(last - first));
      c = end;
    }
  }
  ChunkTables tables;
  int32_t* max_slots[2] = {&tables.max_full, &tables.max_partial};
  Halide::Buffer<int32_t>* table[2] = {&tables.full, &tables.partial};
  Halide::Buffer<int32_t>* counts[2] = {&tables.full_counts, &tables.partial_counts};
  for (int kind = 0; kind < 2; ++kind) {
    for (const auto& row : runs[kind]) *max_slots[kind] = std::max(*max_slots[kind], static_cast<int32_t>(row.size()));
    *table[kind] = Halide::Buffer<int32_t>(2, std::max(1, *max_slots[kind]), static_cast<int>(tiles.rows));
    *counts[kind] = Halide::Buffer<int32_t>(static_cast<int>(tiles.rows));
    table[kind]->fill(0);
    for (int64_t row = 0; row < tiles.rows; ++row) {
      const auto& r = runs[kind][static_cast<size_t>(row)];
      (*counts[kind])(static_cast<int>(row)) = static_cast<int32_t>(r.size());
      for (size_t slot = 0; slot < r.size(); ++slot) {
        (*table[kind])(0, static_cast<int>(slot), static_cast<int>(row)) = r[slot].first;
        (*table[kind])(1, static_cast<int>(slot), static_cast<int>(row)) = r[slot].second;
      }
    }
  }
  return tables;
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

// A Halide view (innermost dimension first) of a C-ordered tensor, without copying.
Halide::Buffer<> halide_view(const Tensor& t, Halide::Type type) {
  std::vector<int> extents;
  for (auto d = t.shape().rbegin(); d != t.shape().rend(); ++d) extents.push_back(static_cast<int>(*d));
  return Halide::Buffer<>(type, const_cast<void*>(t.raw_data()), extents);
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
  if (sched.block_q < 1 || sched.block_k < 1 || sched.vector_width < 1 || sched.chunk_k % sched.block_k != 0 ||
      sched.chunk_k % sched.vector_width != 0) {
    throw std::invalid_argument(
        fmt::format("bad CPU schedule (block_q={}, block_k={}, chunk_k={}, vector_width={}): sizes must be >= 1 and "
                    "chunk_k a multiple of block_k and of vector_width",
                    sched.block_q, sched.block_k, sched.chunk_k, sched.vector_width));
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

  AttentionPipelineKey key{ir::to_string(pattern), sz.D, sz.Dv, {}, sched, options.storage, halide_target_string()};
  for (const ir::TensorDecl& t : pattern.inputs) key.tensor_ranks[t.name] = static_cast<int>(t.dims.size());
  const std::shared_ptr<const AttentionPipeline> kernel = attention_pipeline(pattern, key);
  const ChunkTables tables = chunk_tables(tiles, sz.M, sched.chunk_k / sched.block_k);

  Halide::ParamMap params;
  params.set(kernel->q, halide_view(*q, Halide::Float(32)));
  params.set(kernel->k, halide_view(*k, Halide::Float(32)));
  params.set(kernel->v, halide_view(*v, Halide::Float(32)));
  params.set(kernel->full_chunks, tables.full);
  params.set(kernel->partial_chunks, tables.partial);
  params.set(kernel->full_counts, tables.full_counts);
  params.set(kernel->partial_counts, tables.partial_counts);
  params.set(kernel->max_full, tables.max_full);
  params.set(kernel->max_partial, tables.max_partial);
  params.set(kernel->heads, static_cast<int32_t>(sz.H));
  params.set(kernel->group, static_cast<int32_t>(sz.H / sz.Hkv));
  params.set(kernel->n_queries, static_cast<int32_t>(sz.N));
  params.set(kernel->m_keys, static_cast<int32_t>(sz.M));
  params.set(kernel->scale, static_cast<float>(scale));
  std::map<std::string, Halide::Buffer<>> tensor_buffers;
  for (const auto& [name, img] : kernel->tensors) {
    const ir::TensorView& tv = tensors.views.at(name);
    std::vector<int> extents(tv.shape.rbegin(), tv.shape.rend());
    Halide::Type type = tv.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
    params.set(img, Halide::Buffer<>(type, const_cast<void*>(tv.data), extents));
  }
  for (const auto& [name, param] : kernel->symbols) {
    for (const ir::TensorDecl& decl : pattern.inputs) {
      for (size_t d = 0; d < decl.dims.size(); ++d) {
        if (decl.dims[d] == name) params.set(param, static_cast<int32_t>(tensors.views.at(decl.name).shape[d]));
      }
    }
  }

  // Work items: a few query tiles of one (batch, head) per pipeline call, handed out dynamically so threads
  // stay balanced when tiles differ in cost (causal rows grow).
  const Halide::Target target = cpu_target();
  const int64_t tiles_per_item = std::max<int64_t>(1, std::min<int64_t>(4, tiles.rows / 8));
  const int64_t items_per_head = (tiles.rows + tiles_per_item - 1) / tiles_per_item;
  const int64_t work_items = sz.B * sz.H * items_per_head;
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(sched.threads > 0 ? sched.threads : std::thread::hardware_concurrency(), work_items));
  Halide::Buffer<float> out_view = halide_view(out, Halide::Float(32));
  std::atomic<int64_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    try {
      for (int64_t item; (item = next.fetch_add(1)) < work_items;) {
        const int64_t part = item % items_per_head;
        const int64_t h = (item / items_per_head) % sz.H;
        const int64_t b = item / (items_per_head * sz.H);
        const int64_t first_row = part * tiles_per_item * sched.block_q;
        const int64_t rows = std::min(tiles_per_item * sched.block_q, sz.N - first_row);
        Halide::Buffer<float> region(out_view.get()
                                         ->cropped(1, static_cast<int>(first_row), static_cast<int>(rows))
                                         .cropped(2, static_cast<int>(h), 1)
                                         .cropped(3, static_cast<int>(b), 1));
        const_cast<Halide::Pipeline&>(kernel->pipeline).realize(region, target, params);
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
