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
#include "compiler/planner/sparsity_plan.h"
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

// A strided Halide view of a C-ordered [B, heads, rows, width] tensor (width innermost) that selects rows
// origin + stride * x for x < count: how a plan's views reach Q, K, V and the running state without copies.
Halide::Buffer<float> row_view(float* data, int64_t B, int64_t heads, int64_t rows, int64_t width,
                               const planner::IndexView& view) {
  std::vector<halide_dimension_t> dims;
  if (width > 0) dims.push_back({0, static_cast<int32_t>(width), 1, 0});
  const int64_t row_stride = std::max<int64_t>(width, 1);
  dims.push_back({0, static_cast<int32_t>(view.count), static_cast<int32_t>(view.stride * row_stride), 0});
  dims.push_back({0, static_cast<int32_t>(heads), static_cast<int32_t>(rows * row_stride), 0});
  dims.push_back({0, static_cast<int32_t>(B), static_cast<int32_t>(heads * rows * row_stride), 0});
  return Halide::Buffer<float>(data + view.origin * row_stride, static_cast<int>(dims.size()), dims.data());
}

// One pipeline call: some query tiles of one (batch, head) of one view.
struct WorkItem {
  size_t view;
  int64_t b, h, first_row, rows;
};

// What a call needs besides the data: the plan and, per view, its chunk tables. Planning classifies every
// tile of every view, which costs more than a small attention call, so plans are cached like kernels.
struct ExecutionPlan {
  planner::Plan plan;
  std::vector<std::vector<ChunkTables>> tables;  // [component][view]
};

const ExecutionPlan& execution_plan(const ir::Pattern& pattern, const ir::AttentionSizes& sz, const CpuSchedule& sched,
                                    analysis::ClassifyOptions classify) {
  static std::mutex mutex;
  static std::map<std::string, std::unique_ptr<ExecutionPlan>> cache;
  const std::string key = fmt::format("{}|B={},H={},N={},M={},D={}|bq={},bk={},ck={}", ir::to_string(pattern), sz.B,
                                      sz.H, sz.N, sz.M, sz.D, sched.block_q, sched.block_k, sched.chunk_k);
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(key); it != cache.end()) return *it->second;
  // Exact enumeration of undecided tiles would only turn PARTIAL into EMPTY or FULL for masks the intervals
  // cannot follow; a small limit keeps planning fast for long sequences.
  classify.enumerate_limit = 256;
  planner::PlanOptions options;
  options.block_q = sched.block_q;
  options.block_k = sched.block_k;
  auto execution = std::make_unique<ExecutionPlan>();
  execution->plan = planner::plan_pattern(pattern, sz.N, sz.M, options);
  for (const planner::Component& component : execution->plan.components) {
    std::vector<ChunkTables>& tables = execution->tables.emplace_back();
    for (const planner::View& view : component.views) {
      ir::Pattern bound = planner::bind_view(component, view, sz.N, sz.M);
      analysis::TileMap tiles =
          analysis::classify_tiles(bound, view.queries.count, view.keys.count, sched.block_q, sched.block_k, classify);
      tables.push_back(chunk_tables(tiles, view.keys.count, sched.chunk_k / sched.block_k));
    }
  }
  return *cache.emplace(key, std::move(execution)).first->second;
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
  if (sz.N == 0 || sz.M == 0) return out;  // no queries, or nothing to attend to: zeros

  analysis::ClassifyOptions classify;
  classify.B = sz.B;
  classify.H = sz.H;
  classify.D = sz.D;

  // The running state every component of the plan merges into, then normalised: out = acc / sum.
  Tensor acc(runtime::DType::Float32, {sz.B, sz.H, sz.N, sz.Dv});
  Tensor row_max(runtime::DType::Float32, {sz.B, sz.H, sz.N});
  Tensor row_sum(runtime::DType::Float32, {sz.B, sz.H, sz.N});
  std::fill(row_max.data<float>(), row_max.data<float>() + row_max.numel(), -std::numeric_limits<float>::infinity());

  const ExecutionPlan& execution = execution_plan(pattern, sz, sched, classify);
  const planner::Plan& plan = execution.plan;
  const Halide::Target target = cpu_target();
  const int64_t max_threads = sched.threads > 0 ? sched.threads : std::thread::hardware_concurrency();

  for (size_t ci = 0; ci < plan.components.size(); ++ci) {
    const planner::Component& component = plan.components[ci];
    AttentionPipelineKey key{ir::to_string(component.local),
                             sz.D,
                             sz.Dv,
                             component.key_stride,
                             component.key_group,
                             {},
                             sched,
                             options.storage,
                             halide_target_string()};
    for (const ir::TensorDecl& t : pattern.inputs) key.tensor_ranks[t.name] = static_cast<int>(t.dims.size());
    const std::shared_ptr<const AttentionPipeline> kernel = attention_pipeline(component.local, key);

    // Per view: its chunk tables and the parameters that do not change between calls.
    const std::vector<ChunkTables>& tables = execution.tables[ci];
    std::vector<Halide::ParamMap> view_params(component.views.size());
    for (size_t vi = 0; vi < component.views.size(); ++vi) {
      const planner::View& view = component.views[vi];
      Halide::ParamMap& params = view_params[vi];
      params.set(kernel->q, row_view(const_cast<float*>(q->data<float>()), sz.B, sz.H, sz.N, sz.D, view.queries));
      const planner::IndexView all_keys{0, 1, sz.M, 1};  // the kernel addresses the view's keys itself
      params.set(kernel->k, row_view(const_cast<float*>(k->data<float>()), sz.B, sz.Hkv, sz.M, sz.D, all_keys));
      params.set(kernel->v, row_view(const_cast<float*>(v->data<float>()), sz.B, sz.Hkv, sz.M, sz.Dv, all_keys));
      params.set(kernel->key_origin, static_cast<int32_t>(view.keys.origin));
      params.set(kernel->acc_in, row_view(acc.data<float>(), sz.B, sz.H, sz.N, sz.Dv, view.queries));
      params.set(kernel->max_in, row_view(row_max.data<float>(), sz.B, sz.H, sz.N, 0, view.queries));
      params.set(kernel->sum_in, row_view(row_sum.data<float>(), sz.B, sz.H, sz.N, 0, view.queries));
      params.set(kernel->full_chunks, tables[vi].full);
      params.set(kernel->partial_chunks, tables[vi].partial);
      params.set(kernel->full_counts, tables[vi].full_counts);
      params.set(kernel->partial_counts, tables[vi].partial_counts);
      params.set(kernel->max_full, tables[vi].max_full);
      params.set(kernel->max_partial, tables[vi].max_partial);
      params.set(kernel->heads, static_cast<int32_t>(sz.H));
      params.set(kernel->group, static_cast<int32_t>(sz.H / sz.Hkv));
      params.set(kernel->n_queries, static_cast<int32_t>(view.queries.count));
      params.set(kernel->m_keys, static_cast<int32_t>(view.keys.count));
      params.set(kernel->scale, static_cast<float>(scale));
      for (const auto& [name, img] : kernel->tensors) {
        const ir::TensorView& tv = tensors.views.at(name);
        std::vector<int> extents(tv.shape.rbegin(), tv.shape.rend());
        Halide::Type type = tv.elem_type == ir::ElemType::Int32 ? Halide::Int(32) : Halide::Float(32);
        params.set(img, Halide::Buffer<>(type, const_cast<void*>(tv.data), extents));
      }
      std::map<std::string, int64_t> symbol_values = {{planner::kQueryOrigin, view.queries.origin},
                                                      {planner::kKeyOrigin, view.keys.origin},
                                                      {planner::kQueries, sz.N},
                                                      {planner::kKeys, sz.M}};
      for (const ir::TensorDecl& decl : pattern.inputs) {
        for (size_t d = 0; d < decl.dims.size(); ++d) {
          symbol_values[decl.dims[d]] = tensors.views.at(decl.name).shape[d];
        }
      }
      for (const auto& [name, param] : kernel->symbols) {
        auto value = symbol_values.find(name);
        if (value == symbol_values.end()) {
          throw std::logic_error("tessera internal error: no value for the kernel's symbol " + name);
        }
        params.set(param, static_cast<int32_t>(value->second));
      }
    }

    // Views of one wave select disjoint rows and run in parallel; waves run one after another, as they
    // merge into the same rows.
    for (const std::vector<size_t>& wave : planner::disjoint_waves(component)) {
      std::vector<WorkItem> items;
      for (size_t vi : wave) {
        const planner::View& view = component.views[vi];
        const int64_t tiles_rows = (view.queries.count + sched.block_q - 1) / sched.block_q;
        const int64_t group_tiles = std::max<int64_t>(1, std::min<int64_t>(4, tiles_rows / 8));
        for (int64_t b = 0; b < sz.B; ++b) {
          for (int64_t h = 0; h < sz.H; ++h) {
            for (int64_t first = 0; first < view.queries.count; first += group_tiles * sched.block_q) {
              items.push_back({vi, b, h, first, std::min(group_tiles * sched.block_q, view.queries.count - first)});
            }
          }
        }
      }
      std::atomic<size_t> next{0};
      std::exception_ptr failure;
      std::mutex failure_mutex;
      auto worker = [&] {
        try {
          for (size_t n; (n = next.fetch_add(1)) < items.size();) {
            const WorkItem& item = items[n];
            const planner::View& view = component.views[item.view];
            auto crop = [&](Halide::Buffer<float> whole, int row_dim) {
              return Halide::Buffer<float>(
                  whole.get()
                      ->cropped(row_dim, static_cast<int>(item.first_row), static_cast<int>(item.rows))
                      .cropped(row_dim + 1, static_cast<int>(item.h), 1)
                      .cropped(row_dim + 2, static_cast<int>(item.b), 1));
            };
            Halide::Buffer<float> acc_out = crop(row_view(acc.data<float>(), sz.B, sz.H, sz.N, sz.Dv, view.queries), 1);
            Halide::Buffer<float> max_out = crop(row_view(row_max.data<float>(), sz.B, sz.H, sz.N, 0, view.queries), 0);
            Halide::Buffer<float> sum_out = crop(row_view(row_sum.data<float>(), sz.B, sz.H, sz.N, 0, view.queries), 0);
            const_cast<Halide::Pipeline&>(kernel->pipeline)
                .realize(Halide::Realization({acc_out, max_out, sum_out}), target, view_params[item.view]);
          }
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = items.size();
        }
      };
      const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(max_threads, static_cast<int64_t>(items.size())));
      std::vector<std::thread> pool;
      for (int64_t t = 1; t < threads; ++t) pool.emplace_back(worker);
      worker();
      for (auto& t : pool) t.join();
      if (failure) std::rethrow_exception(failure);
    }
  }

  // A row with no allowed key has sum 0 and outputs zeros.
  const float* a = acc.data<float>();
  const float* l = row_sum.data<float>();
  float* o = out.data<float>();
  for (int64_t r = 0; r < sz.B * sz.H * sz.N; ++r) {
    const float sum = l[r];
    const bool empty = !(sum > 0) && !std::isnan(sum);
    for (int64_t e = 0; e < sz.Dv; ++e) o[r * sz.Dv + e] = empty ? 0.0f : a[r * sz.Dv + e] / sum;
  }
  return out;
}

}  // namespace tessera::cpu
