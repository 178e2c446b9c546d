#include "targets/reference/reference_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <utility>

#include "compiler/ir/evaluate.h"
#include "targets/common/attention_problem.h"
#include "targets/reference/double_query_score.h"
#include "targets/reference/evolving_attention.h"

namespace tessera::reference {

namespace {

using graph::Graph;
using graph::Node;
using graph::OpKind;
using graph::ValueKind;
using runtime::DType;
using runtime::Tensor;
using runtime::TensorError;

// A node's result. A pooled value is stored as one row per batch entry (length 1), so row-wise ops treat
// sequences and pooled values alike.
struct Value {
  ValueKind kind = ValueKind::Sequence;
  int64_t batch = 0;
  int64_t length = 0;        // N for ids and sequences, 1 for pooled values
  int64_t width = 0;         // 0 for ids
  std::vector<double> x;     // [batch * length, width]
  std::vector<int64_t> ids;  // [batch, length], ids only

  int64_t rows() const { return batch * length; }
  std::vector<int64_t> shape() const {
    if (kind == ValueKind::TokenIds) return {batch, length};
    if (kind == ValueKind::Pooled) return {batch, width};
    return {batch, length, width};
  }
  double* row(int64_t r) { return x.data() + r * width; }
  const double* row(int64_t r) const { return x.data() + r * width; }
};

Value make_value(ValueKind kind, int64_t batch, int64_t length, int64_t width) {
  Value v;
  v.kind = kind;
  v.batch = batch;
  v.length = length;
  v.width = width;
  v.x.assign(static_cast<size_t>(batch * length * width), 0.0);
  return v;
}

// y[r] = x[r] · Wᵀ + b for every row, W [out, in] float32, accumulated in double.
std::vector<double> project(const std::vector<double>& x, int64_t rows, int64_t in, const float* w, const float* b,
                            int64_t out) {
  std::vector<double> y(static_cast<size_t>(rows * out));
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x.data() + r * in;
    for (int64_t o = 0; o < out; ++o) {
      const float* wo = w + o * in;
      double sum = 0;
      for (int64_t i = 0; i < in; ++i) sum += xr[i] * static_cast<double>(wo[i]);
      if (b != nullptr) sum += static_cast<double>(b[o]);
      y[static_cast<size_t>(r * out + o)] = sum;
    }
  }
  return y;
}

class ModelRun {
 public:
  ModelRun(const Graph& graph, const std::map<std::string, const Tensor*>& weights,
           const std::map<std::string, const Tensor*>& inputs)
      : graph_(graph), weights_(weights), inputs_(inputs) {}

  ModelTensor run() {
    if (graph_.output < 0 || static_cast<size_t>(graph_.output) >= graph_.nodes.size()) {
      throw std::invalid_argument(fmt::format("malformed graph '{}': its output node {} is not one of its {} nodes",
                                              graph_.name, graph_.output, graph_.nodes.size()));
    }
    check_listed_weights();
    check_inputs();
    values_.reserve(graph_.nodes.size());
    for (size_t index = 0; index < graph_.nodes.size(); ++index) {
      Value v = evaluate(index);
      const Node& node = graph_.nodes[index];
      if (v.kind != node.kind || (v.kind != ValueKind::TokenIds && v.width != node.width)) {
        throw std::invalid_argument(fmt::format(
            "malformed graph: {} is declared {} of width {} but computes {} of "
            "width {}",
            describe(index), graph::value_kind_name(node.kind), node.width, graph::value_kind_name(v.kind), v.width));
      }
      values_.push_back(std::move(v));
    }
    Value& out = values_[static_cast<size_t>(graph_.output)];
    ModelTensor result;
    result.shape = out.shape();
    if (out.kind == ValueKind::TokenIds) {
      result.values.assign(out.ids.begin(), out.ids.end());
    } else {
      result.values = std::move(out.x);
    }
    return result;
  }

 private:
  // ---------------------------------------------------------------------------------------------------------
  // Checks and lookups.

  std::string describe(size_t index) const {
    const Node& node = graph_.nodes[index];
    if (node.name.empty()) return fmt::format("node {} ({})", index, graph::op_name(node.op));
    return fmt::format("node {} ({} '{}')", index, graph::op_name(node.op), node.name);
  }

  [[noreturn]] void malformed(size_t index, const std::string& what) const {
    throw std::invalid_argument(fmt::format("malformed graph: {} {}", describe(index), what));
  }

  // The float32 weight `name` of node `index`, which must have exactly `shape`.
  const float* weight(size_t index, const std::string& name, const std::vector<int64_t>& shape) const {
    const std::string expected = fmt::format("float32{}", runtime::shape_string(shape));
    auto it = weights_.find(name);
    if (it == weights_.end() || it->second == nullptr) {
      throw TensorError(fmt::format("weight '{}' of {} was not given (expected {})", name, describe(index), expected));
    }
    const Tensor& t = *it->second;
    if (t.dtype() != DType::Float32 || t.shape() != shape) {
      throw TensorError(
          fmt::format("weight '{}' of {} must be {}, got {}", name, describe(index), expected, t.type_string()));
    }
    return t.data<float>();
  }

  // The same weight as a tensor.
  const Tensor* tensor(size_t index, const std::string& name, const std::vector<int64_t>& shape) const {
    weight(index, name, shape);
    return weights_.at(name);
  }

  // Every weight the graph lists, before any work: a missing or mis-shaped one is reported by its listed name
  // and shape even if the node reading it comes late.
  void check_listed_weights() const {
    for (size_t index = 0; index < graph_.nodes.size(); ++index) {
      for (const graph::Weight& w : graph_.nodes[index].weights) weight(index, w.name, w.shape);
    }
  }

  // Token-id inputs (one batch size for all) and the run-time tensors the patterns read.
  void check_inputs() {
    std::string batch_from;
    for (const std::string& name : graph_.inputs) {
      auto it = inputs_.find(name);
      if (it == inputs_.end() || it->second == nullptr) {
        throw TensorError(fmt::format("model input '{}' was not given (token ids, int32 or int64 [B, N])", name));
      }
      const Tensor& t = *it->second;
      if ((t.dtype() != DType::Int32 && t.dtype() != DType::Int64) || t.rank() != 2) {
        throw TensorError(
            fmt::format("model input '{}' must be token ids int32 or int64 [B, N], got {}", name, t.type_string()));
      }
      if (batch_from.empty()) {
        batch_ = t.dim(0);
        batch_from = name;
      } else if (t.dim(0) != batch_) {
        throw TensorError(fmt::format("model inputs '{}' {} and '{}' {} disagree on the batch size B", batch_from,
                                      inputs_.at(batch_from)->shape_string(), name, t.shape_string()));
      }
    }
    for (const ir::TensorDecl& decl : graph_.runtime_tensors) {
      const std::string form = fmt::format("{}[{}]", ir::elem_type_name(decl.elem_type), fmt::join(decl.dims, ", "));
      auto it = inputs_.find(decl.name);
      if (it == inputs_.end() || it->second == nullptr) {
        throw TensorError(fmt::format("run-time tensor '{}' ({}) was not given", decl.name, form));
      }
      const Tensor& t = *it->second;
      const bool int_ok =
          decl.elem_type == ir::ElemType::Int32 && (t.dtype() == DType::Int32 || t.dtype() == DType::Int64);
      const bool float_ok = decl.elem_type == ir::ElemType::Float32 && t.dtype() == DType::Float32;
      if ((!int_ok && !float_ok) || static_cast<size_t>(t.rank()) != decl.dims.size()) {
        throw TensorError(fmt::format("run-time tensor '{}' must be {}{}, got {}", decl.name, form,
                                      int_ok || decl.elem_type != ir::ElemType::Int32 ? "" : " (int32 or int64)",
                                      t.type_string()));
      }
      for (size_t d = 0; d < decl.dims.size(); ++d) {
        if (decl.dims[d] == "B" && !batch_from.empty() && t.dim(static_cast<int64_t>(d)) != batch_) {
          throw TensorError(
              fmt::format("run-time tensor '{}' {} ({}) disagrees with the batch size B = {} of input "
                          "'{}'",
                          decl.name, t.shape_string(), form, batch_, batch_from));
        }
      }
    }
  }

  void expect_arity(size_t index, size_t lo, size_t hi) const {
    const size_t n = graph_.nodes[index].inputs.size();
    if (n < lo || n > hi) {
      malformed(index, lo == hi ? fmt::format("has {} inputs, expected {}", n, lo)
                                : fmt::format("has {} inputs, expected {} to {}", n, lo, hi));
    }
  }

  // Input k of node `index`, which must be an earlier node producing one of `kinds`.
  const Value& operand(size_t index, size_t k, std::initializer_list<ValueKind> kinds) const {
    const int source = graph_.nodes[index].inputs[k];
    if (source < 0 || static_cast<size_t>(source) >= index) {
      malformed(index, fmt::format("reads node {} as input {}, which does not come before it", source, k));
    }
    const Value& v = values_[static_cast<size_t>(source)];
    if (std::find(kinds.begin(), kinds.end(), v.kind) == kinds.end()) {
      std::vector<std::string> names;
      for (ValueKind kind : kinds) names.emplace_back(graph::value_kind_name(kind));
      malformed(index, fmt::format("takes {} as input {}, got {} from {}", fmt::join(names, " or "), k,
                                   graph::value_kind_name(v.kind), describe(static_cast<size_t>(source))));
    }
    return v;
  }

  // The single operand of a row-wise op on sequences and pooled values.
  const Value& rowwise_operand(size_t index) const {
    expect_arity(index, 1, 1);
    return operand(index, 0, {ValueKind::Sequence, ValueKind::Pooled});
  }

  // ---------------------------------------------------------------------------------------------------------
  // Ops.

  Value evaluate(size_t index) {
    const Node& node = graph_.nodes[index];
    switch (node.op) {
      case OpKind::Input: return input(index);
      case OpKind::Embedding: return embedding(index);
      case OpKind::LearnedPositions: return learned_positions(index);
      case OpKind::SinusoidalPositions: return sinusoidal_positions(index);
      case OpKind::SegmentEmbedding: return segment_embedding(index);
      case OpKind::LayerNorm: return layer_norm(index);
      case OpKind::RMSNorm: return rms_norm(index);
      case OpKind::Linear: return linear(index);
      case OpKind::Attention: return attention(index);
      case OpKind::Add: return elementwise(index, [](double a, double b) { return a + b; });
      case OpKind::Mul: return elementwise(index, [](double a, double b) { return a * b; });
      case OpKind::Scale: {
        const double factor = node.factor;
        return map(index, [factor](double x) { return x * factor; });
      }
      case OpKind::ReLU: return map(index, [](double x) { return x > 0 ? x : 0.0; });
      case OpKind::GELU:
        return map(index, [](double x) { return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2)); });
      case OpKind::GELUTanh:
        return map(index, [](double x) {
          const double c = std::sqrt(2.0 / std::numbers::pi);
          return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
        });
      case OpKind::SiLU: return map(index, [](double x) { return x / (1.0 + std::exp(-x)); });
      case OpKind::MeanPool: return pool(index, /*mean=*/true);
      case OpKind::ClsPool: return pool(index, /*mean=*/false);
      case OpKind::Normalize: return normalize(index);
      case OpKind::Unembed: return unembed(index);
    }
    malformed(index, "has an unknown op");
  }

  Value input(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 0, 0);
    if (std::find(graph_.inputs.begin(), graph_.inputs.end(), node.input_name) == graph_.inputs.end()) {
      malformed(index, fmt::format("reads '{}', which is not one of the model's inputs [{}]", node.input_name,
                                   fmt::join(graph_.inputs, ", ")));
    }
    const Tensor& t = *inputs_.at(node.input_name);  // present and [B, N] int (check_inputs)
    Value v;
    v.kind = ValueKind::TokenIds;
    v.batch = t.dim(0);
    v.length = t.dim(1);
    v.ids.resize(static_cast<size_t>(t.numel()));
    if (t.dtype() == DType::Int32) {
      std::copy(t.data<int32_t>(), t.data<int32_t>() + t.numel(), v.ids.begin());
    } else {
      std::copy(t.data<int64_t>(), t.data<int64_t>() + t.numel(), v.ids.begin());
    }
    return v;
  }

  Value embedding(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 1, 1);
    const Value& ids = operand(index, 0, {ValueKind::TokenIds});
    const float* table = weight(index, node.name + ".weight", {node.vocab, node.width});
    Value v = make_value(ValueKind::Sequence, ids.batch, ids.length, node.width);
    for (int64_t r = 0; r < ids.rows(); ++r) {
      const int64_t id = ids.ids[static_cast<size_t>(r)];
      if (id < 0 || id >= node.vocab) {
        throw std::invalid_argument(
            fmt::format("{}: token id {} at [{}, {}] is outside [0, {}) (the vocabulary of "
                        "'{}.weight')",
                        describe(index), id, r / ids.length, r % ids.length, node.vocab, node.name));
      }
      std::transform(table + id * node.width, table + (id + 1) * node.width, v.row(r),
                     [](float w) { return static_cast<double>(w); });
    }
    return v;
  }

  Value learned_positions(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 1, 1);
    const Value& in = operand(index, 0, {ValueKind::TokenIds, ValueKind::Sequence});
    const float* table = weight(index, node.name + ".weight", {node.length, node.width});
    if (in.length > node.length) {
      throw std::invalid_argument(
          fmt::format("{}: position {} is beyond the table's length {} ('{}.weight' {}): "
                      "the input has N = {} positions",
                      describe(index), in.length - 1, node.length, node.name,
                      runtime::shape_string({node.length, node.width}), in.length));
    }
    Value v = make_value(ValueKind::Sequence, in.batch, in.length, node.width);
    for (int64_t r = 0; r < v.rows(); ++r) {
      const int64_t p = r % v.length;
      std::transform(table + p * node.width, table + (p + 1) * node.width, v.row(r),
                     [](float w) { return static_cast<double>(w); });
    }
    return v;
  }

  Value sinusoidal_positions(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 1, 1);
    const Value& in = operand(index, 0, {ValueKind::TokenIds, ValueKind::Sequence});
    if (node.width < 1) malformed(index, fmt::format("has width {}", node.width));
    Value v = make_value(ValueKind::Sequence, in.batch, in.length, node.width);
    const auto width = static_cast<double>(node.width);
    for (int64_t r = 0; r < v.rows(); ++r) {
      const auto p = static_cast<double>(r % v.length);
      double* out = v.row(r);
      for (int64_t c = 0; c < node.width; ++c) {
        const int64_t two_j = c - c % 2;
        const double angle = p / std::pow(10000.0, static_cast<double>(two_j) / width);
        out[c] = c % 2 == 0 ? std::sin(angle) : std::cos(angle);
      }
    }
    return v;
  }

  Value segment_embedding(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 1, 1);
    const Value& ids = operand(index, 0, {ValueKind::TokenIds});
    const float* table = weight(index, node.name + ".weight", {node.types, node.width});
    if (node.types < 1) malformed(index, "has no segment types");
    Value v = make_value(ValueKind::Sequence, ids.batch, ids.length, node.width);
    for (int64_t r = 0; r < v.rows(); ++r) {
      std::transform(table, table + node.width, v.row(r), [](float w) { return static_cast<double>(w); });
    }
    return v;
  }

  Value layer_norm(size_t index) {
    const Node& node = graph_.nodes[index];
    const Value& in = rowwise_operand(index);
    const int64_t w = in.width;
    const float* gain = weight(index, node.name + ".weight", {w});
    const float* bias = weight(index, node.name + ".bias", {w});
    Value v = make_value(in.kind, in.batch, in.length, w);
    for (int64_t r = 0; r < in.rows(); ++r) {
      const double* x = in.row(r);
      double mean = 0;
      for (int64_t c = 0; c < w; ++c) mean += x[c];
      mean /= static_cast<double>(w);
      double var = 0;
      for (int64_t c = 0; c < w; ++c) var += (x[c] - mean) * (x[c] - mean);
      var /= static_cast<double>(w);
      const double inv = 1.0 / std::sqrt(var + node.eps);
      for (int64_t c = 0; c < w; ++c) {
        v.row(r)[c] = (x[c] - mean) * inv * static_cast<double>(gain[c]) + static_cast<double>(bias[c]);
      }
    }
    return v;
  }

  Value rms_norm(size_t index) {
    const Node& node = graph_.nodes[index];
    const Value& in = rowwise_operand(index);
    const int64_t w = in.width;
    const float* gain = weight(index, node.name + ".weight", {w});
    Value v = make_value(in.kind, in.batch, in.length, w);
    for (int64_t r = 0; r < in.rows(); ++r) {
      const double* x = in.row(r);
      double squares = 0;
      for (int64_t c = 0; c < w; ++c) squares += x[c] * x[c];
      const double inv = 1.0 / std::sqrt(squares / static_cast<double>(w) + node.eps);
      for (int64_t c = 0; c < w; ++c) v.row(r)[c] = x[c] * inv * static_cast<double>(gain[c]);
    }
    return v;
  }

  Value linear(size_t index) {
    const Node& node = graph_.nodes[index];
    const Value& in = rowwise_operand(index);
    const float* w = weight(index, node.name + ".weight", {node.width, in.width});
    const float* b = node.has_bias ? weight(index, node.name + ".bias", {node.width}) : nullptr;
    Value v;
    v.kind = in.kind;
    v.batch = in.batch;
    v.length = in.length;
    v.width = node.width;
    v.x = project(in.x, in.rows(), in.width, w, b, node.width);
    return v;
  }

  Value attention(size_t index) {
    const Node& node = graph_.nodes[index];
    expect_arity(index, 1, 2);
    const Value& x = operand(index, 0, {ValueKind::Sequence});
    const Value& ctx = node.inputs.size() == 2 ? operand(index, 1, {ValueKind::Sequence}) : x;
    if (!node.pattern) malformed(index, "has no pattern");
    if (node.heads < 1 || node.kv_heads < 1 || node.head_dim < 1 || node.heads % node.kv_heads != 0) {
      malformed(index, fmt::format("has heads = {}, kv_heads = {}, head_dim = {} (all must be at least 1, heads a "
                                   "multiple of kv_heads)",
                                   node.heads, node.kv_heads, node.head_dim));
    }
    const ir::Pattern& pattern = *node.pattern;
    const int64_t B = x.batch, H = node.heads, Hkv = node.kv_heads, D = node.head_dim, N = x.length, M = ctx.length;
    const std::string& name = node.name;
    const float* wq = weight(index, name + ".query.weight", {H * D, x.width});
    const float* wk = weight(index, name + ".key.weight", {Hkv * D, ctx.width});
    const float* wv = weight(index, name + ".value.weight", {Hkv * D, ctx.width});
    const float* wo = weight(index, name + ".output.weight", {node.width, H * D});
    const float* bq = nullptr;
    const float* bk = nullptr;
    const float* bv = nullptr;
    const float* bo = nullptr;
    if (node.has_bias) {
      bq = weight(index, name + ".query.bias", {H * D});
      bk = weight(index, name + ".key.bias", {Hkv * D});
      bv = weight(index, name + ".value.bias", {Hkv * D});
      bo = weight(index, name + ".output.bias", {node.width});
    }
    const double scale = node.scale ? *node.scale : targets::natural_scale(pattern, D);
    if (!std::isfinite(scale)) malformed(index, fmt::format("has a non-finite logit scale {}", scale));

    // Row (b, n) of q holds every head side by side: head h is columns h*D..(h+1)*D.
    std::vector<double> q = project(x.x, x.rows(), x.width, wq, bq, H * D);
    std::vector<double> k = project(ctx.x, ctx.rows(), ctx.width, wk, bk, Hkv * D);
    if (node.rotary) {
      if (node.inputs.size() != 1) malformed(index, "has rotary position embeddings on cross-attention");
      if (node.rotary_dims < 2 || node.rotary_dims % 2 != 0 || node.rotary_dims > D) {
        malformed(index, fmt::format("has rotary_dims = {} (must be even, 2 to head_dim = {})", node.rotary_dims, D));
      }
      rotate(q, B, N, H, D, node.rotary_dims, node.rotary_base);
      rotate(k, B, M, Hkv, D, node.rotary_dims, node.rotary_base);
    }
    const std::vector<double> v = project(ctx.x, ctx.rows(), ctx.width, wv, bv, Hkv * D);

    // The pattern's float tensors are this node's weights, its int tensors the model's run-time inputs.
    targets::AttentionInputs tensors;
    for (const ir::TensorDecl& decl : pattern.inputs) {
      if (decl.elem_type == ir::ElemType::Float32) {
        auto it = weights_.find(name + "." + decl.name);
        if (it == weights_.end() || it->second == nullptr) {
          throw TensorError(fmt::format("weight '{}.{}' of {} was not given (pattern '{}' reads {}: float32[{}])", name,
                                        decl.name, describe(index), pattern.name, decl.name,
                                        fmt::join(decl.dims, ", ")));
        }
        tensors.tensors.emplace(decl.name, it->second);
      } else if (auto it = inputs_.find(decl.name); it != inputs_.end() && it->second != nullptr) {
        tensors.tensors.emplace(decl.name, it->second);
      }  // else ir::PatternEvaluator reports it missing
    }

    if (auto feature = ir::beyond_dot_product_softmax(pattern)) {
      // Not silently computed as plain softmax attention: the model oracle's attention loop knows only the dot
      // product and the softmax.
      throw TensorError(fmt::format("{}: the float64 model reference does not run the {} of '{}' yet", describe(index),
                                    *feature, pattern.name));
    }
    std::vector<double> heads(static_cast<size_t>(B * N * H * D), 0.0);
    try {
      const targets::RuntimeTensorViews views = targets::runtime_tensor_views(pattern, tensors);
      const ir::AttentionSizes sizes{B, H, Hkv, N, M, D, D};
      const ir::PatternEvaluator evaluator(pattern, sizes, views.views, scale);
      if (node.evolving) {
        evolving(index, pattern, tensors, sizes, q, k, v, heads);
      } else {
        DoubleQueryScore scorer(pattern, evaluator, views.views, scale);
        attend(evaluator, scorer, sizes, scale, q, k, v, heads);
      }
    } catch (const ir::EvalError& e) {
      throw TensorError(fmt::format("{}: {}", describe(index), e.what()));
    } catch (const TensorError& e) {
      throw TensorError(fmt::format("{}: {}", describe(index), e.what()));
    }

    Value out;
    out.kind = ValueKind::Sequence;
    out.batch = B;
    out.length = N;
    out.width = node.width;
    out.x = project(heads, B * N, H * D, wo, bo, node.width);
    return out;
  }

  // Rotary position embeddings on rows (b, p) of `x` holding `heads` heads of D side by side: in each head, feature
  // c < dims/2 and feature c + dims/2 turn by the angle p * base^(-2c/dims).
  static void rotate(std::vector<double>& x, int64_t B, int64_t length, int64_t heads, int64_t D, int64_t dims,
                     double base) {
    const int64_t half = dims / 2;
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t p = 0; p < length; ++p) {
        for (int64_t h = 0; h < heads; ++h) {
          double* head = x.data() + ((b * length + p) * heads + h) * D;
          for (int64_t c = 0; c < half; ++c) {
            const double angle = static_cast<double>(p) * std::pow(base, -2.0 * static_cast<double>(c) / dims);
            const double u = head[c], w = head[c + half];
            head[c] = u * std::cos(angle) - w * std::sin(angle);
            head[c + half] = w * std::cos(angle) + u * std::sin(angle);
          }
        }
      }
    }
  }

  // An evolving layer (targets/common/evolving_attention_problem.h) through reference::evolving_attention_f64: Q, K
  // and V (float64, [B * len, heads * D]) become float32 [B, heads, len, D] tensors (the layer's inputs are float32
  // on every target), the previous evolving layer's map is read, this layer's kept.
  void evolving(size_t index, const ir::Pattern& pattern, targets::AttentionInputs attention,
                const ir::AttentionSizes& sz, const std::vector<double>& q, const std::vector<double>& k,
                const std::vector<double>& v, std::vector<double>& heads) {
    const Node& node = graph_.nodes[index];
    auto to_heads = [&](const std::vector<double>& rows, int64_t count, int64_t length) {
      Tensor t(DType::Float32, {sz.B, count, length, sz.D});
      float* out = t.data<float>();
      for (int64_t b = 0; b < sz.B; ++b)
        for (int64_t h = 0; h < count; ++h)
          for (int64_t n = 0; n < length; ++n)
            for (int64_t d = 0; d < sz.D; ++d)
              out[((b * count + h) * length + n) * sz.D + d] =
                  static_cast<float>(rows[static_cast<size_t>(((b * length + n) * count + h) * sz.D + d)]);
      return t;
    };
    const Tensor qt = to_heads(q, sz.H, sz.N), kt = to_heads(k, sz.Hkv, sz.M), vt = to_heads(v, sz.Hkv, sz.M);
    attention.q = &qt;
    attention.k = &kt;
    attention.v = &vt;
    targets::EvolvingAttentionInputs in;
    in.attention = attention;
    in.conv_weight = tensor(index, node.name + ".evolving.weight", {sz.H, sz.H, 3, 3});
    in.conv_bias = tensor(index, node.name + ".evolving.bias", {sz.H});
    in.alpha = node.evolving_alpha;
    in.beta = node.evolving_beta;
    in.kind = *node.evolving;
    if (node.evolving_previous >= 0) in.previous = &maps_.at(node.evolving_previous);
    const reference::EvolvingAttentionResult result = evolving_attention_f64(pattern, in);
    for (int64_t b = 0; b < sz.B; ++b)
      for (int64_t h = 0; h < sz.H; ++h)
        for (int64_t n = 0; n < sz.N; ++n)
          for (int64_t d = 0; d < sz.D; ++d)
            heads[static_cast<size_t>(((b * sz.N + n) * sz.H + h) * sz.D + d)] =
                result.out[static_cast<size_t>(((b * sz.H + h) * sz.N + n) * sz.D + d)];
    Tensor map(DType::Float32, {sz.B, sz.H, sz.N, sz.M});
    for (int64_t e = 0; e < map.numel(); ++e)
      map.data<float>()[e] = static_cast<float>(result.map[static_cast<size_t>(e)]);
    maps_[static_cast<int>(index)] = std::move(map);
  }

  // Softmax attention of every (b, h, query row) as reference::attention_f64 computes it, on float64 Q, K, V
  // laid out [B * len, heads * D]; writes the result into `out` [B * N, H * D].
  static void attend(const ir::PatternEvaluator& evaluator, DoubleQueryScore& scorer, const ir::AttentionSizes& sz,
                     double scale, const std::vector<double>& q, const std::vector<double>& k,
                     const std::vector<double>& v, std::vector<double>& out) {
    const int64_t group = sz.H / sz.Hkv;
    const int64_t q_stride = sz.H * sz.D;
    const int64_t kv_stride = sz.Hkv * sz.D;
    std::vector<int64_t> keys;   // allowed key columns of the current row
    std::vector<double> scores;  // their scores
    std::vector<double> acc(static_cast<size_t>(sz.D));
    QueryPieces pieces;
    for (int64_t b = 0; b < sz.B; ++b) {
      for (int64_t h = 0; h < sz.H; ++h) {
        const int64_t kvh = h / group;
        for (int64_t i = 0; i < sz.N; ++i) {
          const double* q_vec = q.data() + (b * sz.N + i) * q_stride + h * sz.D;
          pieces.assign(q_vec, sz.D);
          keys.clear();
          scores.clear();
          double max_score = -std::numeric_limits<double>::infinity();
          bool saw_nan = false;
          for (int64_t j = 0; j < sz.M; ++j) {
            if (!evaluator.allowed(b, h, i, j)) continue;
            const double* k_vec = k.data() + (b * sz.M + j) * kv_stride + kvh * sz.D;
            double dot = 0;
            for (int64_t d = 0; d < sz.D; ++d) dot += q_vec[d] * k_vec[d];
            const double score = scorer.score(b, h, i, j, scale * dot, pieces);
            keys.push_back(j);
            scores.push_back(score);
            if (std::isnan(score)) saw_nan = true;
            if (score > max_score) max_score = score;
          }
          double* o = out.data() + (b * sz.N + i) * q_stride + h * sz.D;
          if (keys.empty()) continue;  // nothing to attend to: the row stays zero
          if (saw_nan) {               // a NaN logit makes the whole row's softmax undefined
            std::fill(o, o + sz.D, std::numeric_limits<double>::quiet_NaN());
            continue;
          }
          // Every allowed key scored -inf: masking by score, not a 0/0.
          if (max_score == -std::numeric_limits<double>::infinity()) continue;
          std::fill(acc.begin(), acc.end(), 0.0);
          double sum = 0;
          for (size_t n = 0; n < keys.size(); ++n) {
            const double p = std::exp(scores[n] - max_score);
            sum += p;
            const double* v_vec = v.data() + (b * sz.M + keys[n]) * kv_stride + kvh * sz.D;
            for (int64_t d = 0; d < sz.D; ++d) acc[static_cast<size_t>(d)] += p * v_vec[d];
          }
          for (int64_t d = 0; d < sz.D; ++d) o[d] = acc[static_cast<size_t>(d)] / sum;
        }
      }
    }
  }

  template <typename F>
  Value elementwise(size_t index, F f) {
    expect_arity(index, 2, 2);
    const Value& a = operand(index, 0, {ValueKind::Sequence, ValueKind::Pooled});
    const Value& b = operand(index, 1, {ValueKind::Sequence, ValueKind::Pooled});
    if (a.kind != b.kind || a.shape() != b.shape()) {
      throw std::invalid_argument(fmt::format(
          "{}: its operands have different shapes, {} {} and {} {}", describe(index), graph::value_kind_name(a.kind),
          runtime::shape_string(a.shape()), graph::value_kind_name(b.kind), runtime::shape_string(b.shape())));
    }
    Value v = make_value(a.kind, a.batch, a.length, a.width);
    for (size_t e = 0; e < v.x.size(); ++e) v.x[e] = f(a.x[e], b.x[e]);
    return v;
  }

  template <typename F>
  Value map(size_t index, F f) {
    const Value& in = rowwise_operand(index);
    Value v = make_value(in.kind, in.batch, in.length, in.width);
    for (size_t e = 0; e < v.x.size(); ++e) v.x[e] = f(in.x[e]);
    return v;
  }

  Value pool(size_t index, bool mean) {
    expect_arity(index, 1, 1);
    const Value& in = operand(index, 0, {ValueKind::Sequence});
    if (in.length < 1) {
      throw std::invalid_argument(
          fmt::format("{}: pooling needs at least one position, the input has N = 0", describe(index)));
    }
    Value v = make_value(ValueKind::Pooled, in.batch, 1, in.width);
    for (int64_t b = 0; b < in.batch; ++b) {
      double* out = v.row(b);
      if (!mean) {
        std::copy(in.row(b * in.length), in.row(b * in.length) + in.width, out);
        continue;
      }
      for (int64_t n = 0; n < in.length; ++n) {
        const double* x = in.row(b * in.length + n);
        for (int64_t c = 0; c < in.width; ++c) out[c] += x[c];
      }
      for (int64_t c = 0; c < in.width; ++c) out[c] /= static_cast<double>(in.length);
    }
    return v;
  }

  Value normalize(size_t index) {
    const Value& in = rowwise_operand(index);
    Value v = make_value(in.kind, in.batch, in.length, in.width);
    for (int64_t r = 0; r < in.rows(); ++r) {
      const double* x = in.row(r);
      double squares = 0;
      for (int64_t c = 0; c < in.width; ++c) squares += x[c] * x[c];
      const double denominator = std::max(std::sqrt(squares), 1e-12);
      for (int64_t c = 0; c < in.width; ++c) v.row(r)[c] = x[c] / denominator;
    }
    return v;
  }

  Value unembed(size_t index) {
    const Node& node = graph_.nodes[index];
    const Value& in = rowwise_operand(index);
    if (node.tied < 0 || static_cast<size_t>(node.tied) >= graph_.nodes.size() ||
        graph_.nodes[static_cast<size_t>(node.tied)].op != OpKind::Embedding) {
      malformed(index, fmt::format("is tied to node {}, which is not an embedding", node.tied));
    }
    const std::string table = graph_.nodes[static_cast<size_t>(node.tied)].name + ".weight";
    const float* e = weight(index, table, {node.vocab, in.width});
    Value v;
    v.kind = in.kind;
    v.batch = in.batch;
    v.length = in.length;
    v.width = node.vocab;
    v.x = project(in.x, in.rows(), in.width, e, nullptr, node.vocab);
    return v;
  }

  const Graph& graph_;
  const std::map<std::string, const Tensor*>& weights_;
  const std::map<std::string, const Tensor*>& inputs_;
  int64_t batch_ = 0;
  std::vector<Value> values_;   // values_[i] is node i's result
  std::map<int, Tensor> maps_;  // by node: the map each evolving layer hands on
};

}  // namespace

ModelTensor run_model_f64(const graph::Graph& graph, const std::map<std::string, const runtime::Tensor*>& weights,
                          const std::map<std::string, const runtime::Tensor*>& inputs) {
  return ModelRun(graph, weights, inputs).run();
}

}  // namespace tessera::reference
