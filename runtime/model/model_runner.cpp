#include "runtime/model/model_runner.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>

#include "runtime/linear.h"
#include "runtime/model/activation_functions.h"
#include "runtime/model/model_error.h"
#include "runtime/model/rotary_embedding.h"
#include "runtime/parallel_rows.h"
#include "targets/cpu/evolving_attention.h"
#include "targets/cpu/tuned_schedules.h"

namespace tessera::runtime {

namespace {

using graph::Node;
using graph::OpKind;
using graph::ValueKind;

enum class Pass {
  Full,    // forward(): every node
  Static,  // begin_decoding(): the nodes that do not depend on the decoded input
  Step,    // decode(): the nodes that do, on the new positions
};

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

std::string describe(const Node& node) {
  return node.name.empty() ? fmt::format("'{}'", graph::op_name(node.op))
                           : fmt::format("{} '{}'", graph::op_name(node.op), node.name);
}

// Below this many floats per thread a copy stays on fewer threads: a decoding step's heads are a few hundred
// floats, less than starting a thread costs.
constexpr int64_t kMinFloatsPerThread = int64_t{1} << 16;

// Copies [B, n, heads, d] (columns `column`.. of a projection whose rows hold `row_width` values) into
// [B, heads, n, d] (the kernels' layout), or back. Both walk the token-major side row by row, so that it is read
// (or written) in order and only the head-major side jumps; walking head by head read rows 4.6 KB apart and ran at
// a third of the speed (MiniLM).
void split_heads(const float* in, int64_t row_width, int64_t column, float* out, int64_t B, int64_t n, int64_t heads,
                 int64_t d) {
  parallel_rows(
      B * n,
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t b = row / n, i = row % n;
          const float* from = in + row * row_width + column;
          for (int64_t h = 0; h < heads; ++h) {
            float* to = out + ((b * heads + h) * n + i) * d;
            for (int64_t e = 0; e < d; ++e) to[e] = from[h * d + e];
          }
        }
      },
      0, std::max<int64_t>(1, kMinFloatsPerThread / std::max<int64_t>(1, heads * d)));
}

void merge_heads(const float* in, float* out, int64_t B, int64_t n, int64_t heads, int64_t d) {
  parallel_rows(
      B * n,
      [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t b = row / n, i = row % n;
          float* to = out + row * heads * d;
          for (int64_t h = 0; h < heads; ++h) {
            const float* from = in + ((b * heads + h) * n + i) * d;
            for (int64_t e = 0; e < d; ++e) to[h * d + e] = from[e];
          }
        }
      },
      0, std::max<int64_t>(1, kMinFloatsPerThread / std::max<int64_t>(1, heads * d)));
}

void apply_activation(OpKind op, float* x, int64_t count) {
  if (op == OpKind::ReLU) relu_inplace(x, count);
  if (op == OpKind::GELU) gelu_inplace(x, count);
  if (op == OpKind::GELUTanh) gelu_tanh_inplace(x, count);
  if (op == OpKind::SiLU) silu_inplace(x, count);
}

// Row statistics in float with 16 independent partial sums (vectorisable, and each sum adds at most width/16
// terms, so rounding stays far below the float result's own) and a double for the final reduction.
double row_sum(const float* x, int64_t width, float shift) {
  float partial[16] = {};
  int64_t c = 0;
  for (; c + 16 <= width; c += 16) {
    for (int j = 0; j < 16; ++j) partial[j] += x[c + j] - shift;
  }
  double total = 0;
  for (; c < width; ++c) total += x[c] - shift;
  for (float p : partial) total += p;
  return total;
}

double row_sum_of_squares(const float* x, int64_t width, float shift) {
  float partial[16] = {};
  int64_t c = 0;
  for (; c + 16 <= width; c += 16) {
    for (int j = 0; j < 16; ++j) partial[j] += (x[c + j] - shift) * (x[c + j] - shift);
  }
  double total = 0;
  for (; c < width; ++c) total += static_cast<double>(x[c] - shift) * (x[c] - shift);
  for (float p : partial) total += p;
  return total;
}

void layer_norm_rows(const float* x, float* y, int64_t rows, int64_t width, const float* weight, const float* bias,
                     double eps) {
  parallel_rows(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = x + r * width;
      float* out = y + r * width;
      // The variance about the mean (a second pass) rather than E[x²] − mean²: no cancellation when the mean is
      // large against the spread.
      const float m = static_cast<float>(row_sum(in, width, 0.0f) / static_cast<double>(width));
      const double var = row_sum_of_squares(in, width, m) / static_cast<double>(width);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + eps));
      if (bias) {
        for (int64_t c = 0; c < width; ++c) out[c] = (in[c] - m) * inv * weight[c] + bias[c];
      } else {
        for (int64_t c = 0; c < width; ++c) out[c] = (in[c] - m) * inv * weight[c];
      }
    }
  });
}

void rms_norm_rows(const float* x, float* y, int64_t rows, int64_t width, const float* weight, double eps) {
  parallel_rows(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* in = x + r * width;
      float* out = y + r * width;
      const double squares = row_sum_of_squares(in, width, 0.0f);
      const float inv = static_cast<float>(1.0 / std::sqrt(squares / static_cast<double>(width) + eps));
      for (int64_t c = 0; c < width; ++c) out[c] = in[c] * inv * weight[c];
    }
  });
}

}  // namespace

struct ModelRunner::State {
  const graph::Graph& graph;
  const ModelWeights& weights;
  RunnerOptions options;
  ActivationArena arena;

  // Per node: where its value is and how many positions it has (1 for pooled values).
  struct Value {
    int slot = -1;
    float* data = nullptr;
    int64_t n = 0;
  };
  std::vector<Value> values;
  std::vector<Tensor> ids;  // per node: the int32 ids of an Input node
  std::vector<std::vector<int>> readers;
  int64_t batch = 0;
  Tensor output;
  std::map<std::string, const Tensor*> runtime_tensors;  // the int tensors patterns read, as given
  std::map<std::string, Tensor> runtime_tensor_copies;   // ... copied when decoding (kept across calls)

  // Decoding.
  std::string stream;         // the decoded input
  std::vector<bool> streams;  // per node: depends on the decoded input
  std::vector<bool> keep;     // per node: a static value a streamed node reads
  int64_t position = 0;       // positions decoded so far
  bool decoding = false;
  struct KvCache {
    Tensor k, v;  // [B, kv_heads, capacity, head_dim]
    int64_t capacity = 0;
    bool finite_values = true;  // every value row appended so far is finite: attention skips its per-call scan
    // bf16 attention storage: rows are rounded once, as they are appended. A float32 cache made every decoding
    // step round all of it (and copy it densely): GPT-2 at context 2048 took 30.7 ms per token in its attention
    // kernels against 7.1 with float32 storage.
    DType dtype = DType::Float32;
  };
  std::map<int, KvCache> caches;                      // streamed self-attention nodes
  std::map<int, std::pair<Tensor, Tensor>> fixed_kv;  // streamed queries over a static context: K, V heads
  std::map<int, Tensor> evolving_maps;  // by node: the attention map each evolving layer hands on (one pass)
  std::map<int, std::pair<Tensor, Tensor>> fused_qkv;
  RotaryTable rotary_table;  // the positions of the current pass, shared by its rotary layers
  std::map<std::string, double> profile;
  std::vector<int> last_use;  // per node: its last reader in the current pass
  Pass current_pass = Pass::Full;
  std::vector<bool> activated;  // per node: a Linear whose (single) activation reader was applied in its epilogue  //
                                // self-attention nodes: stacked Q, K, V weight and bias

  State(const graph::Graph& g, const ModelWeights& w, RunnerOptions o) : graph(g), weights(w), options(o) {
    values.resize(g.nodes.size());
    activated.assign(g.nodes.size(), false);
    ids.resize(g.nodes.size());
    readers.resize(g.nodes.size());
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (int in : g.nodes[i].inputs) readers.at(static_cast<size_t>(in)).push_back(static_cast<int>(i));
    }
  }

  const float* weight(const Node& node, const std::string& suffix) const {
    return weights.at(node.name + "." + suffix).data<float>();
  }
  const float* optional_weight(const Node& node, const std::string& suffix) const {
    const Tensor* t = weights.find(node.name + "." + suffix);
    return t ? t->data<float>() : nullptr;
  }

  bool runs_in(Pass pass, size_t i) const {
    switch (pass) {
      case Pass::Full: return true;
      case Pass::Static: return !streams[i];
      case Pass::Step: return streams[i];
    }
    return false;
  }

  void release_all() {
    for (Value& v : values) {
      if (v.slot >= 0) arena.release(v.slot);
      v = {};
    }
    evolving_maps.clear();
  }

  void load_inputs(const std::map<std::string, const Tensor*>& inputs, Pass pass, const Tensor* step_ids) {
    batch = -1;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      const Node& node = graph.nodes[i];
      if (node.op != OpKind::Input || !runs_in(pass, i)) continue;
      const Tensor* given = nullptr;
      if (pass == Pass::Step) {
        given = step_ids;
      } else {
        auto it = inputs.find(node.input_name);
        if (it == inputs.end() || it->second == nullptr) {
          throw ModelError(fmt::format("model '{}' needs input '{}' (token ids [B, N])", graph.name, node.input_name));
        }
        given = it->second;
      }
      if (given->rank() != 2) {
        throw TensorError(
            fmt::format("input '{}' is {}, expected token ids [B, N]", node.input_name, given->type_string()));
      }
      if (batch >= 0 && given->dim(0) != batch) {
        throw TensorError(fmt::format("input '{}' has batch {}, but another input has batch {}", node.input_name,
                                      given->dim(0), batch));
      }
      batch = given->dim(0);
      ids[i] = to_int32(*given, fmt::format("input '{}'", node.input_name));
      values[i].n = given->dim(1);
    }
    for (const ir::TensorDecl& decl : graph.runtime_tensors) {
      if (pass == Pass::Step) break;  // kept from begin_decoding
      auto it = inputs.find(decl.name);
      if (it == inputs.end() || it->second == nullptr) {
        throw ModelError(fmt::format("model '{}' needs run-time tensor '{}' (read by its attention patterns)",
                                     graph.name, decl.name));
      }
      runtime_tensors[decl.name] = it->second;
    }
  }

  // Runs the nodes of `pass` in order. Values are released after their last reader in this pass, except the
  // output and, in the static pass, values a streamed node will read.
  void execute(Pass pass) {
    last_use.assign(graph.nodes.size(), -1);
    current_pass = pass;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (!runs_in(pass, i)) continue;
      for (int r : readers[i]) {
        if (runs_in(pass, static_cast<size_t>(r))) last_use[i] = std::max(last_use[i], r);
      }
    }
    int64_t total = 0, done = 0;
    for (size_t i = 0; i < graph.nodes.size(); ++i) total += runs_in(pass, i) ? 1 : 0;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (!runs_in(pass, i)) continue;
      const auto start = std::chrono::steady_clock::now();
      run_node(pass, i);
      if (options.profile) profile[graph::op_name(graph.nodes[i].op)] += milliseconds_since(start);
      if (options.on_progress) options.on_progress(++done, total);
      for (int in : graph.nodes[i].inputs) {
        const size_t s = static_cast<size_t>(in);
        if (!runs_in(pass, s) || last_use[s] != static_cast<int>(i)) continue;
        if (static_cast<int>(s) == graph.output || (pass == Pass::Static && keep[s])) continue;
        if (values[s].slot >= 0) arena.release(values[s].slot);
        values[s].slot = -1;
        values[s].data = nullptr;
      }
    }
  }

  // Node i may overwrite input a's buffer when i is a's last reader (and a is not the output or a fixed value a
  // later decoding step reads): elementwise and row-wise steps then run in place, with no new buffer and one
  // pass less over memory.
  bool can_steal(size_t a, size_t i) const {
    return values[a].slot >= 0 && last_use[a] == static_cast<int>(i) && static_cast<int>(a) != graph.output &&
           graph.nodes[a].op != OpKind::Input && !(current_pass == Pass::Static && keep[a]);
  }

  float* steal(size_t i, size_t a) {
    values[i] = values[a];
    values[a] = {};
    values[a].n = values[i].n;
    return values[i].data;
  }

  float* allocate_or_steal(size_t i, size_t a, int64_t n, int64_t width) {
    return can_steal(a, i) ? steal(i, a) : allocate(i, n, width);
  }

  // The activation applied right after a Linear's GEMM, when the Linear's only reader is that activation.
  std::optional<OpKind> epilogue_activation(size_t i) const {
    const std::vector<int>& r = readers[i];
    if (r.size() != 1 || static_cast<int>(i) == graph.output) return std::nullopt;
    const OpKind op = graph.nodes[static_cast<size_t>(r[0])].op;
    if (op != OpKind::ReLU && op != OpKind::GELU && op != OpKind::GELUTanh && op != OpKind::SiLU) return std::nullopt;
    return op;
  }

  float* allocate(size_t i, int64_t n, int64_t width) {
    Value& v = values[i];
    v.n = n;
    const int64_t rows = graph.nodes[i].kind == ValueKind::Pooled ? batch : batch * n;
    v.slot = arena.acquire(std::max<int64_t>(1, rows * width));
    v.data = arena.data(v.slot);
    return v.data;
  }

  int64_t rows_of(size_t i) const { return graph.nodes[i].kind == ValueKind::Pooled ? batch : batch * values[i].n; }

  void run_node(Pass pass, size_t i) {
    const Node& node = graph.nodes[i];
    if (node.op == OpKind::Input) return;  // ids loaded already
    const size_t a = node.inputs.empty() ? i : static_cast<size_t>(node.inputs[0]);
    const int64_t n = values[a].n;
    const int64_t W = node.width;
    // Positions of a streamed node start after those decoded before.
    const int64_t offset = pass == Pass::Step ? position : 0;
    switch (node.op) {
      case OpKind::Input: return;
      case OpKind::Embedding: {
        const float* table = weight(node, "weight");
        const int32_t* tok = ids[a].data<int32_t>();
        float* out = allocate(i, n, W);
        for (int64_t r = 0; r < batch * n; ++r) {
          if (tok[r] < 0 || tok[r] >= node.vocab) {
            throw TensorError(fmt::format("{}: token id {} at [{}, {}] is outside [0, {})", describe(node), tok[r],
                                          r / n, r % n, node.vocab));
          }
          std::memcpy(out + r * W, table + static_cast<int64_t>(tok[r]) * W, static_cast<size_t>(W) * sizeof(float));
        }
        return;
      }
      case OpKind::LearnedPositions: {
        if (offset + n > node.length) {
          throw TensorError(fmt::format("{}: position {} is beyond its table of {} positions (the input has {} tokens)",
                                        describe(node), offset + n - 1, node.length, offset + n));
        }
        const float* table = weight(node, "weight");
        float* out = allocate(i, n, W);
        for (int64_t b = 0; b < batch; ++b) {
          std::memcpy(out + b * n * W, table + offset * W, static_cast<size_t>(n * W) * sizeof(float));
        }
        return;
      }
      case OpKind::SinusoidalPositions: {
        float* out = allocate(i, n, W);
        for (int64_t p = 0; p < n; ++p) {
          for (int64_t c = 0; c < W; ++c) {
            const double angle = static_cast<double>(offset + p) /
                                 std::pow(10000.0, static_cast<double>(c / 2 * 2) / static_cast<double>(W));
            out[p * W + c] = static_cast<float>(c % 2 == 0 ? std::sin(angle) : std::cos(angle));
          }
        }
        for (int64_t b = 1; b < batch; ++b)
          std::memcpy(out + b * n * W, out, static_cast<size_t>(n * W) * sizeof(float));
        return;
      }
      case OpKind::SegmentEmbedding: {
        const float* row = weight(node, "weight");
        float* out = allocate(i, n, W);
        for (int64_t r = 0; r < batch * n; ++r) std::memcpy(out + r * W, row, static_cast<size_t>(W) * sizeof(float));
        return;
      }
      case OpKind::LayerNorm: {
        const float* x = values[a].data;  // read before a stolen buffer's owner changes
        const int64_t rows = rows_of(a);
        float* out = allocate_or_steal(i, a, n, W);  // row-wise: each row is read whole before it is written
        layer_norm_rows(x, out, rows, W, weight(node, "weight"), optional_weight(node, "bias"), node.eps);
        return;
      }
      case OpKind::RMSNorm: {
        const float* x = values[a].data;
        const int64_t rows = rows_of(a);
        float* out = allocate_or_steal(i, a, n, W);
        rms_norm_rows(x, out, rows, W, weight(node, "weight"), node.eps);
        return;
      }
      case OpKind::Linear: {
        const Node& in = graph.nodes[a];
        const float* x = values[a].data;
        const int64_t rows = rows_of(a);
        float* out = allocate(i, n, W);
        const auto gemm_start = std::chrono::steady_clock::now();
        // A following activation in the GEMM's epilogue, on each row as its thread finishes it.
        const std::optional<OpKind> act = epilogue_activation(i);
        RowEpilogue epilogue;
        if (act) epilogue = [op = *act](float* row, int64_t count) { apply_activation(op, row, count); };
        linear(x, rows, in.width, weight(node, "weight"), node.has_bias ? weight(node, "bias") : nullptr, W, out,
               epilogue, gemm_blocking(rows, in.width, W));
        if (options.profile) profile["linear.gemm"] += milliseconds_since(gemm_start);
        activated[i] = act.has_value();
        return;
      }
      case OpKind::Unembed: {
        const Node& in = graph.nodes[a];
        const Node& table = graph.nodes.at(static_cast<size_t>(node.tied));
        float* out = allocate(i, n, W);
        linear(values[a].data, rows_of(a), in.width, weight(table, "weight"), nullptr, W, out, {},
               gemm_blocking(rows_of(a), in.width, W));
        return;
      }
      case OpKind::Add:
      case OpKind::Mul: {
        const size_t c = static_cast<size_t>(node.inputs.at(1));
        if (values[c].n != n) {
          throw TensorError(fmt::format("{}: its operands have {} and {} positions", describe(node), n, values[c].n));
        }
        const float* x = values[a].data;
        const float* y = values[c].data;
        float* out = can_steal(a, i) ? steal(i, a) : allocate_or_steal(i, c, n, W);
        const bool add = node.op == OpKind::Add;
        parallel_rows(rows_of(i), [&](int64_t begin, int64_t end) {
          for (int64_t e = begin * W; e < end * W; ++e) out[e] = add ? x[e] + y[e] : x[e] * y[e];
        });
        return;
      }
      case OpKind::Scale: {
        const float f = static_cast<float>(node.factor);
        const float* x = values[a].data;
        float* out = allocate_or_steal(i, a, n, W);
        parallel_rows(rows_of(i), [&](int64_t begin, int64_t end) {
          for (int64_t e = begin * W; e < end * W; ++e) out[e] = x[e] * f;
        });
        return;
      }
      case OpKind::ReLU:
      case OpKind::GELU:
      case OpKind::GELUTanh:
      case OpKind::SiLU: {
        const bool done = activated[a];  // applied in the Linear's epilogue already
        const float* x = values[a].data;
        if (done && can_steal(a, i)) {
          steal(i, a);
          return;
        }
        float* out = allocate_or_steal(i, a, n, W);
        const OpKind op = done ? OpKind::Input : node.op;  // Input: copy only
        parallel_rows(rows_of(i), [&](int64_t begin, int64_t end) {
          float* y = out + begin * W;
          const int64_t count = (end - begin) * W;
          if (y != x + begin * W) std::memcpy(y, x + begin * W, static_cast<size_t>(count) * sizeof(float));
          if (op != OpKind::Input) apply_activation(op, y, count);
        });
        return;
      }
      case OpKind::MeanPool:
      case OpKind::ClsPool: {
        float* out = allocate(i, 1, W);
        const float* x = values[a].data;
        for (int64_t b = 0; b < batch; ++b) {
          for (int64_t c = 0; c < W; ++c) {
            if (node.op == OpKind::ClsPool) {
              out[b * W + c] = n > 0 ? x[b * n * W + c] : 0.0f;
              continue;
            }
            double sum = 0;
            for (int64_t p = 0; p < n; ++p) sum += x[(b * n + p) * W + c];
            out[b * W + c] = n > 0 ? static_cast<float>(sum / static_cast<double>(n)) : 0.0f;
          }
        }
        return;
      }
      case OpKind::Normalize: {
        float* out = allocate(i, n, W);
        const float* x = values[a].data;
        for (int64_t r = 0; r < rows_of(i); ++r) {
          double squares = 0;
          for (int64_t c = 0; c < W; ++c) squares += static_cast<double>(x[r * W + c]) * x[r * W + c];
          const double norm = std::max(std::sqrt(squares), 1e-12);
          for (int64_t c = 0; c < W; ++c) out[r * W + c] = static_cast<float>(x[r * W + c] / norm);
        }
        return;
      }
      case OpKind::Attention: run_attention(pass, i); return;
    }
  }

  // How runtime::linear cuts this product into OpenBLAS calls: the tuning cache's blocking for its shape
  // (`tessera tune --model`), else the default.
  GemmBlocking gemm_blocking(int64_t rows, int64_t in, int64_t out) const {
    if (!options.attention.tuned) return {};
    return options.attention.tuned->gemm_blocking(cpu::GemmShape{rows, in, out});
  }

  // Projects `source` rows into [B, heads, n, head_dim] (a slot the caller releases).
  int project_heads(const Node& node, const std::string& which, size_t source, int64_t heads) {
    const int64_t rows = batch * values[source].n;
    const int64_t width = heads * node.head_dim;
    const int flat = arena.acquire(std::max<int64_t>(1, rows * width));
    linear(values[source].data, rows, graph.nodes[source].width, weight(node, which + ".weight"),
           node.has_bias ? weight(node, which + ".bias") : nullptr, width, arena.data(flat), {},
           gemm_blocking(rows, graph.nodes[source].width, width));
    const int split = arena.acquire(std::max<int64_t>(1, rows * width));
    split_heads(arena.data(flat), width, 0, arena.data(split), batch, values[source].n, heads, node.head_dim);
    arena.release(flat);
    return split;
  }

  // Self-attention projects queries, keys and values from the same rows: one GEMM with the three weights stacked
  // ([H·d + 2·G·d, W], built once per node) instead of three narrower ones. Returns the q, k, v head slots.
  std::array<int, 3> project_qkv(size_t i, size_t source) {
    const Node& node = graph.nodes[i];
    auto it = fused_qkv.find(static_cast<int>(i));
    if (it == fused_qkv.end()) {
      const int64_t W = graph.nodes[source].width;
      const int64_t rows_q = node.heads * node.head_dim, rows_kv = node.kv_heads * node.head_dim;
      Tensor w(DType::Float32, {rows_q + 2 * rows_kv, W});
      Tensor b(DType::Float32, {rows_q + 2 * rows_kv});
      int64_t row = 0;
      for (const auto& [which, count] :
           {std::pair<const char*, int64_t>{"query", rows_q}, {"key", rows_kv}, {"value", rows_kv}}) {
        std::memcpy(w.data<float>() + row * W, weight(node, std::string(which) + ".weight"),
                    static_cast<size_t>(count * W) * sizeof(float));
        if (node.has_bias) {
          std::memcpy(b.data<float>() + row, weight(node, std::string(which) + ".bias"),
                      static_cast<size_t>(count) * sizeof(float));
        }
        row += count;
      }
      it = fused_qkv.emplace(static_cast<int>(i), std::make_pair(std::move(w), std::move(b))).first;
    }
    const Tensor& w = it->second.first;
    const int64_t n = values[source].n, rows = batch * n, width = w.dim(0), d = node.head_dim;
    const int flat = arena.acquire(std::max<int64_t>(1, rows * width));
    const auto gemm_start = std::chrono::steady_clock::now();
    linear(values[source].data, rows, w.dim(1), w.data<float>(),
           node.has_bias ? it->second.second.data<float>() : nullptr, width, arena.data(flat), {},
           gemm_blocking(rows, w.dim(1), width));
    if (options.profile) profile["attention.qkv_gemm"] += milliseconds_since(gemm_start);
    const int64_t offsets[3] = {0, node.heads * d, (node.heads + node.kv_heads) * d};
    const int64_t heads[3] = {node.heads, node.kv_heads, node.kv_heads};
    std::array<int, 3> slots{};
    const auto split_start = std::chrono::steady_clock::now();
    for (int p = 0; p < 3; ++p) {
      slots[static_cast<size_t>(p)] = arena.acquire(std::max<int64_t>(1, rows * heads[p] * d));
      split_heads(arena.data(flat), width, offsets[p], arena.data(slots[static_cast<size_t>(p)]), batch, n, heads[p],
                  d);
    }
    if (options.profile) profile["attention.heads_layout"] += milliseconds_since(split_start);
    arena.release(flat);
    return slots;
  }

  void run_attention(Pass pass, size_t i) {
    const Node& node = graph.nodes[i];
    const size_t x = static_cast<size_t>(node.inputs[0]);
    const bool cross = node.inputs.size() > 1;
    const size_t ctx = cross ? static_cast<size_t>(node.inputs[1]) : x;
    const int64_t n = values[x].n;
    const int64_t H = node.heads, G = node.kv_heads, d = node.head_dim;

    int q_slot = -1, k_slot = -1, v_slot = -1;
    if (!cross) {
      const std::array<int, 3> qkv = project_qkv(i, x);
      q_slot = qkv[0];
      k_slot = qkv[1];
      v_slot = qkv[2];
      if (node.rotary) {
        // Queries and keys at their positions in the sequence: those decoded before come first.
        const auto rotary_start = std::chrono::steady_clock::now();
        rotary_table.prepare({node.rotary_base, node.rotary_dims}, pass == Pass::Step ? position : 0, n);
        apply_rotary(arena.data(q_slot), batch * H, d, rotary_table);
        apply_rotary(arena.data(k_slot), batch * G, d, rotary_table);
        if (options.profile) profile["attention.rotary"] += milliseconds_since(rotary_start);
      }
    } else {
      q_slot = project_heads(node, "query", x, H);
    }
    std::vector<int> scratch{q_slot};
    Tensor q = Tensor::borrow(DType::Float32, {batch, H, n, d}, arena.data(q_slot));
    Tensor k, v;
    int64_t cache_keys = -1;     // >= 0: k and v are a KV cache holding this many keys per head
    bool values_finite = false;  // known without a scan (the cache's appended rows were checked)
    if (pass == Pass::Step && !streams[ctx]) {
      // Queries streamed over a fixed context: its keys and values were projected once in begin_decoding.
      const auto& [fk, fv] = fixed_kv.at(static_cast<int>(i));
      k = Tensor::borrow(fk.dtype(), fk.shape(), const_cast<void*>(fk.raw_data()));
      v = Tensor::borrow(fv.dtype(), fv.shape(), const_cast<void*>(fv.raw_data()));
    } else {
      if (cross) {
        k_slot = project_heads(node, "key", ctx, G);
        v_slot = project_heads(node, "value", ctx, G);
      }
      scratch.push_back(k_slot);
      scratch.push_back(v_slot);
      const int64_t m = values[ctx].n;
      if (pass == Pass::Step) {
        // Self-attention while decoding: append the new keys and values, attend over all of them.
        KvCache& cache = caches[static_cast<int>(i)];
        if (cache.capacity == 0 && options.attention.storage == cpu::StorageType::BFloat16 && !node.evolving)
          cache.dtype = DType::BFloat16;
        const int64_t total = position + m;
        grow_cache(cache, total, G, d);
        for (int64_t bg = 0; bg < batch * G; ++bg) {
          const int64_t row = (bg * cache.capacity + position) * d;
          const float *k_rows = arena.data(k_slot) + bg * m * d, *v_rows = arena.data(v_slot) + bg * m * d;
          if (cache.dtype == DType::BFloat16) {
            round_to_bfloat16(k_rows, m * d, cache.k.data<uint16_t>() + row);
            round_to_bfloat16(v_rows, m * d, cache.v.data<uint16_t>() + row);
            // Finite float32 values may round to infinity: the stored rows are what the kernels read.
            cache.finite_values =
                cache.finite_values && tessera_cpu_driver::all_finite(cache.v.data<uint16_t>() + row, m * d);
          } else {
            std::memcpy(cache.k.data<float>() + row, k_rows, static_cast<size_t>(m * d) * sizeof(float));
            std::memcpy(cache.v.data<float>() + row, v_rows, static_cast<size_t>(m * d) * sizeof(float));
            cache.finite_values = cache.finite_values && tessera_cpu_driver::all_finite(v_rows, m * d);
          }
        }
        values_finite = cache.finite_values;
        if (node.evolving) {
          // Evolving attention reads K and V densely: gather those rows.
          const int gk = arena.acquire(batch * G * total * d);
          const int gv = arena.acquire(batch * G * total * d);
          scratch.push_back(gk);
          scratch.push_back(gv);
          for (int64_t bg = 0; bg < batch * G; ++bg) {
            std::memcpy(arena.data(gk) + bg * total * d, cache.k.data<float>() + bg * cache.capacity * d,
                        static_cast<size_t>(total * d) * sizeof(float));
            std::memcpy(arena.data(gv) + bg * total * d, cache.v.data<float>() + bg * cache.capacity * d,
                        static_cast<size_t>(total * d) * sizeof(float));
          }
          k = Tensor::borrow(DType::Float32, {batch, G, total, d}, arena.data(gk));
          v = Tensor::borrow(DType::Float32, {batch, G, total, d}, arena.data(gv));
        } else {
          // The kernels read the cache's first `total` rows per head where they lie (attention_over_cache_into),
          // and the few new queries rounded as the cache is.
          cache_keys = total;
          k = Tensor::borrow(cache.dtype, {batch, G, cache.capacity, d}, cache.k.raw_data());
          v = Tensor::borrow(cache.dtype, {batch, G, cache.capacity, d}, cache.v.raw_data());
        }
      } else {
        k = Tensor::borrow(DType::Float32, {batch, G, m, d}, arena.data(k_slot));
        v = Tensor::borrow(DType::Float32, {batch, G, m, d}, arena.data(v_slot));
      }
    }

    // Keys and values kept in bf16 (a KV cache, a fixed context) take the few new queries rounded as they were.
    if (k.dtype() == DType::BFloat16) q = to_bfloat16(q);
    targets::AttentionInputs inputs;
    inputs.q = &q;
    inputs.k = &k;
    inputs.v = &v;
    if (node.scale) inputs.scale = *node.scale;
    for (const ir::TensorDecl& decl : node.pattern->inputs) {
      if (decl.elem_type == ir::ElemType::Float32) {
        inputs.tensors[decl.name] = &weights.at(node.name + "." + decl.name);
      } else {
        inputs.tensors[decl.name] = runtime_tensors.at(decl.name);
      }
    }
    const int o_slot = arena.acquire(std::max<int64_t>(1, batch * H * n * d));
    scratch.push_back(o_slot);
    Tensor heads_out = Tensor::borrow(DType::Float32, {batch, H, n, d}, arena.data(o_slot));
    const auto kernel_start = std::chrono::steady_clock::now();
    // A decoding step has a few queries: a 128-row query tile would compute mostly padding.
    cpu::CpuOptions attention_options = options.attention;
    attention_options.schedule = cpu::few_query_schedule(attention_options.schedule, n);
    attention_options.values_finite = values_finite;
    if (node.evolving) {
      // The layer reads the map of the evolving layer before it and keeps its own for the next one.
      targets::EvolvingAttentionInputs evolving;
      evolving.attention = inputs;
      evolving.conv_weight = &weights.at(node.name + ".evolving.weight");
      evolving.conv_bias = &weights.at(node.name + ".evolving.bias");
      evolving.alpha = node.evolving_alpha;
      evolving.beta = node.evolving_beta;
      evolving.kind = *node.evolving;
      if (node.evolving_previous >= 0) evolving.previous = &evolving_maps.at(node.evolving_previous);
      cpu::EvolvingAttentionResult result = cpu::evolving_attention(*node.pattern, evolving);
      std::memcpy(heads_out.data<float>(), result.out.data<float>(), result.out.size_bytes());
      // Each map has one reader, the next layer of its chain: it is dropped once read.
      if (node.evolving_previous >= 0) evolving_maps.erase(node.evolving_previous);
      evolving_maps[static_cast<int>(i)] = std::move(result.map);
    } else if (cache_keys >= 0) {
      cpu::attention_over_cache_into(*node.pattern, inputs, cache_keys, heads_out, attention_options);
    } else {
      cpu::attention_into(*node.pattern, inputs, heads_out, attention_options);
    }
    if (options.profile) profile["attention.kernel"] += milliseconds_since(kernel_start);

    const int merged = arena.acquire(std::max<int64_t>(1, batch * n * H * d));
    scratch.push_back(merged);
    const auto merge_start = std::chrono::steady_clock::now();
    merge_heads(arena.data(o_slot), arena.data(merged), batch, n, H, d);
    if (options.profile) profile["attention.heads_layout"] += milliseconds_since(merge_start);
    float* out = allocate(i, n, node.width);
    const auto gemm_start = std::chrono::steady_clock::now();
    linear(arena.data(merged), batch * n, H * d, weight(node, "output.weight"),
           node.has_bias ? weight(node, "output.bias") : nullptr, node.width, out, {},
           gemm_blocking(batch * n, H * d, node.width));
    if (options.profile) profile["attention.out_gemm"] += milliseconds_since(gemm_start);
    for (int s : scratch) arena.release(s);
  }

  void grow_cache(KvCache& cache, int64_t needed, int64_t G, int64_t d) {
    if (needed <= cache.capacity) return;
    // Doubling keeps appends amortised O(1); 64 rows keep each head's block 64-byte aligned.
    const int64_t capacity = (std::max<int64_t>({64, needed, cache.capacity * 2}) + 63) & ~int64_t{63};
    Tensor k(cache.dtype, {batch, G, capacity, d});
    Tensor v(cache.dtype, {batch, G, capacity, d});
    const size_t element = dtype_size(cache.dtype);
    for (int64_t bg = 0; bg < batch * G && cache.capacity > 0; ++bg) {
      std::memcpy(static_cast<char*>(k.raw_data()) + bg * capacity * d * element,
                  static_cast<const char*>(cache.k.raw_data()) + bg * cache.capacity * d * element,
                  static_cast<size_t>(position * d) * element);
      std::memcpy(static_cast<char*>(v.raw_data()) + bg * capacity * d * element,
                  static_cast<const char*>(cache.v.raw_data()) + bg * cache.capacity * d * element,
                  static_cast<size_t>(position * d) * element);
    }
    cache.k = std::move(k);
    cache.v = std::move(v);
    cache.capacity = capacity;
  }

  const Tensor& finish() {
    const size_t o = static_cast<size_t>(graph.output);
    const Node& node = graph.nodes[o];
    std::vector<int64_t> shape = node.kind == ValueKind::Pooled ? std::vector<int64_t>{batch, node.width}
                                                                : std::vector<int64_t>{batch, values[o].n, node.width};
    if (output.shape() != shape) output = Tensor(DType::Float32, shape);
    std::memcpy(output.data<float>(), values[o].data, output.size_bytes());
    arena.release(values[o].slot);
    values[o] = {};
    return output;
  }
};

ModelRunner::ModelRunner(const graph::Graph& graph, const ModelWeights& weights, RunnerOptions options)
    : state_(std::make_unique<State>(graph, weights, options)) {
  if (graph.output < 0 || static_cast<size_t>(graph.output) >= graph.nodes.size()) {
    throw ModelError(fmt::format("model '{}' has no output", graph.name));
  }
}

ModelRunner::~ModelRunner() = default;

const Tensor& ModelRunner::forward(const std::map<std::string, const Tensor*>& inputs) {
  State& s = *state_;
  s.decoding = false;
  s.release_all();
  s.streams.assign(s.graph.nodes.size(), true);
  s.runtime_tensors.clear();
  s.load_inputs(inputs, Pass::Full, nullptr);
  try {
    s.execute(Pass::Full);
  } catch (...) {
    s.release_all();
    throw;
  }
  return s.finish();
}

void ModelRunner::begin_decoding(const std::map<std::string, const Tensor*>& fixed_inputs) {
  State& s = *state_;
  const graph::Graph& g = s.graph;
  s.release_all();
  s.decoding = false;
  std::vector<std::string> streamed;
  for (const std::string& name : g.inputs) {
    if (!fixed_inputs.count(name)) streamed.push_back(name);
  }
  if (streamed.size() != 1) {
    throw ModelError(
        fmt::format("model '{}': decoding streams exactly one input, but {} of its inputs ({}) were not given as fixed",
                    g.name, streamed.size(), fmt::join(streamed, ", ")));
  }
  s.stream = streamed[0];
  const size_t count = g.nodes.size();
  s.streams.assign(count, false);
  s.keep.assign(count, false);
  for (size_t i = 0; i < count; ++i) {
    const Node& node = g.nodes[i];
    if (node.op == OpKind::Input) s.streams[i] = node.input_name == s.stream;
    for (int in : node.inputs) s.streams[i] = s.streams[i] || s.streams[static_cast<size_t>(in)];
  }
  if (!s.streams[static_cast<size_t>(g.output)]) {
    throw ModelError(
        fmt::format("model '{}': its output does not depend on input '{}', nothing to decode", g.name, s.stream));
  }
  for (size_t i = 0; i < count; ++i) {
    const Node& node = g.nodes[i];
    if (s.streams[i] && node.evolving) {
      throw ModelError(
          fmt::format("model '{}': {} is an evolving attention layer, whose convolution over the whole "
                      "attention map cannot be decoded incrementally",
                      g.name, describe(node)));
    }
    if (s.streams[i] && (node.op == OpKind::MeanPool || node.op == OpKind::ClsPool)) {
      throw ModelError(
          fmt::format("model '{}': {} pools over the whole sequence and cannot be decoded "
                      "incrementally",
                      g.name, describe(node)));
    }
  }
  for (size_t i = 0; i < count; ++i) {
    const Node& node = g.nodes[i];
    if (!s.streams[i]) continue;
    for (int in : node.inputs) {
      if (!s.streams[static_cast<size_t>(in)]) s.keep[static_cast<size_t>(in)] = true;
    }
    if (node.op != OpKind::Attention) continue;
    const size_t x = static_cast<size_t>(node.inputs[0]);
    const size_t ctx = node.inputs.size() > 1 ? static_cast<size_t>(node.inputs[1]) : x;
    if (!s.streams[x]) {
      throw ModelError(
          fmt::format("model '{}': {} takes its queries from a fixed value and its keys from "
                      "the decoded input; it cannot be decoded incrementally",
                      g.name, describe(node)));
    }
    if (s.streams[ctx] && !node.causal_in_time) {
      throw ModelError(
          fmt::format("model '{}': {} uses pattern '{}', which may let a query see a later key, so decoding with a KV "
                      "cache would change its result",
                      g.name, describe(node), node.pattern->name));
    }
    if (!s.streams[ctx]) s.keep[ctx] = true;
  }
  s.runtime_tensors.clear();
  s.runtime_tensor_copies.clear();
  s.load_inputs(fixed_inputs, Pass::Static, nullptr);
  // The run-time tensors must outlive this call: every decode() step reads them.
  for (auto& [name, tensor] : s.runtime_tensors) {
    s.runtime_tensor_copies[name] = tensor->clone();
    tensor = &s.runtime_tensor_copies[name];
  }
  s.execute(Pass::Static);
  // Streamed queries over a fixed context: project its keys and values once.
  s.fixed_kv.clear();
  for (size_t i = 0; i < count; ++i) {
    const Node& node = g.nodes[i];
    if (!s.streams[i] || node.op != OpKind::Attention || node.inputs.size() < 2) continue;
    const size_t ctx = static_cast<size_t>(node.inputs[1]);
    if (s.streams[ctx]) continue;
    const int64_t m = s.values[ctx].n;
    const int k_slot = s.project_heads(node, "key", ctx, node.kv_heads);
    const int v_slot = s.project_heads(node, "value", ctx, node.kv_heads);
    Tensor k(DType::Float32, {s.batch, node.kv_heads, m, node.head_dim});
    Tensor v(DType::Float32, {s.batch, node.kv_heads, m, node.head_dim});
    std::memcpy(k.data<float>(), s.arena.data(k_slot), k.size_bytes());
    std::memcpy(v.data<float>(), s.arena.data(v_slot), v.size_bytes());
    s.arena.release(k_slot);
    s.arena.release(v_slot);
    // bf16 attention storage: rounded once here, not at every step (as the KV cache's rows are).
    if (s.options.attention.storage == cpu::StorageType::BFloat16 && !node.evolving) {
      k = to_bfloat16(k);
      v = to_bfloat16(v);
    }
    s.fixed_kv[static_cast<int>(i)] = {std::move(k), std::move(v)};
  }
  // Fixed values only cross-attention read are no longer needed.
  for (size_t i = 0; i < count; ++i) {
    if (s.streams[i] || s.values[i].slot < 0) continue;
    bool read_by_step = false;
    for (int r : s.readers[i]) {
      const Node& reader = g.nodes[static_cast<size_t>(r)];
      const bool as_context = reader.op == OpKind::Attention && reader.inputs.size() > 1 &&
                              reader.inputs[1] == static_cast<int>(i) && reader.inputs[0] != static_cast<int>(i);
      if (s.streams[static_cast<size_t>(r)] && !as_context) read_by_step = true;
    }
    if (!read_by_step) {
      s.arena.release(s.values[i].slot);
      s.values[i].slot = -1;
      s.values[i].data = nullptr;
      s.keep[i] = false;
    }
  }
  s.caches.clear();
  s.position = 0;
  s.decoding = true;
  if (g.inputs.size() == 1) s.batch = -1;  // the first decode() sets it
}

const Tensor& ModelRunner::decode(const Tensor& ids) {
  State& s = *state_;
  if (!s.decoding) throw std::logic_error("ModelRunner::decode called before begin_decoding");
  if (ids.rank() != 2) {
    throw TensorError(fmt::format("decoded ids for input '{}' are {}, expected [B, n]", s.stream, ids.type_string()));
  }
  const int64_t fixed_batch = s.batch;
  if (fixed_batch >= 0 && ids.dim(0) != fixed_batch) {
    throw TensorError(
        fmt::format("decoded ids for input '{}' have batch {}, expected {}", s.stream, ids.dim(0), fixed_batch));
  }
  s.load_inputs({}, Pass::Step, &ids);
  if (fixed_batch >= 0) s.batch = fixed_batch;
  try {
    s.execute(Pass::Step);
  } catch (...) {
    // A failed step leaves the cache as it was before it: the positions it would have added are not counted.
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (s.streams[i] && s.values[i].slot >= 0) {
        s.arena.release(s.values[i].slot);
        s.values[i] = {};
      }
    }
    throw;
  }
  const Tensor& out = s.finish();
  s.position += ids.dim(1);
  return out;
}

int64_t ModelRunner::decoded_positions() const { return state_->position; }
const std::string& ModelRunner::decoded_input() const { return state_->stream; }
const ActivationArena& ModelRunner::arena() const { return state_->arena; }
const std::map<std::string, double>& ModelRunner::profile() const { return state_->profile; }

}  // namespace tessera::runtime
