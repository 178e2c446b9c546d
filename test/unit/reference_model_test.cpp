// The float64 model executor against values computed here with straightforward loops, op by op, on hand-built
// graphs with small random weights; attention (self, cross, GQA, relative, document) also against
// reference::attention_f64; a two-layer decoder for causality; and the error messages.
//
// Graphs are built by hand so these tests do not depend on the DSL front end (nothing declared in graph.h is
// called: its .cpp may not be linked).
#include "targets/reference/reference_model.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "compiler/graph/graph.h"
#include "runtime/tensor.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/expect_error.h"
#include "test/unit/prelude_patterns.h"

namespace tessera::reference {
namespace {

using graph::Node;
using graph::OpKind;
using graph::ValueKind;
using runtime::DType;
using runtime::Tensor;
using runtime::TensorError;
using TensorMap = std::map<std::string, const Tensor*>;

// ------------------------------------------------------------------------------------------------------------
// Building graphs and their weights.

Tensor random_tensor(const std::vector<int64_t>& shape, std::mt19937& rng) {
  Tensor t(DType::Float32, shape);
  std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
  float* p = t.data<float>();
  for (int64_t e = 0; e < t.numel(); ++e) p[e] = dist(rng);
  return t;
}

TensorMap pointers(const std::map<std::string, Tensor>& tensors) {
  TensorMap map;
  for (const auto& [name, t] : tensors) map.emplace(name, &t);
  return map;
}

// Appends nodes with their kinds, widths and weights set as the front end sets them, and random weights.
class ModelBuilder {
 public:
  explicit ModelBuilder(uint32_t seed) : rng_(seed) {}

  int input(const std::string& name) {
    graph.inputs.push_back(name);
    Node n = node(OpKind::Input, "", {}, ValueKind::TokenIds, 0);
    n.input_name = name;
    return add(std::move(n));
  }
  int embedding(const std::string& name, int ids, int64_t vocab, int64_t width) {
    Node n = node(OpKind::Embedding, name, {ids}, ValueKind::Sequence, width);
    n.vocab = vocab;
    n.weights = {{name + ".weight", {vocab, width}}};
    return add(std::move(n));
  }
  int learned_positions(const std::string& name, int in, int64_t length, int64_t width) {
    Node n = node(OpKind::LearnedPositions, name, {in}, ValueKind::Sequence, width);
    n.length = length;
    n.weights = {{name + ".weight", {length, width}}};
    return add(std::move(n));
  }
  int sinusoidal(int in, int64_t width) {
    return add(node(OpKind::SinusoidalPositions, "", {in}, ValueKind::Sequence, width));
  }
  int segment_embedding(const std::string& name, int ids, int64_t types, int64_t width) {
    Node n = node(OpKind::SegmentEmbedding, name, {ids}, ValueKind::Sequence, width);
    n.types = types;
    n.weights = {{name + ".weight", {types, width}}};
    return add(std::move(n));
  }
  int layer_norm(const std::string& name, int in, double eps) {
    const int64_t w = width(in);
    Node n = node(OpKind::LayerNorm, name, {in}, kind(in), w);
    n.eps = eps;
    n.weights = {{name + ".weight", {w}}, {name + ".bias", {w}}};
    return add(std::move(n));
  }
  int rms_norm(const std::string& name, int in, double eps) {
    const int64_t w = width(in);
    Node n = node(OpKind::RMSNorm, name, {in}, kind(in), w);
    n.eps = eps;
    n.weights = {{name + ".weight", {w}}};
    return add(std::move(n));
  }
  int linear(const std::string& name, int in, int64_t out, bool bias) {
    Node n = node(OpKind::Linear, name, {in}, kind(in), out);
    n.has_bias = bias;
    n.weights = {{name + ".weight", {out, width(in)}}};
    if (bias) n.weights.push_back({name + ".bias", {out}});
    return add(std::move(n));
  }
  // ctx < 0: self-attention. extra: the pattern's float tensors, NAME.<tensor> with the given shapes.
  int attention(const std::string& name, int x, int ctx, int64_t heads, int64_t kv_heads, int64_t head_dim,
                const ir::Pattern& pattern, bool bias, std::optional<double> scale = std::nullopt,
                const std::vector<graph::Weight>& extra = {}) {
    const int64_t w = width(x);
    const int64_t cw = width(ctx < 0 ? x : ctx);
    Node n =
        node(OpKind::Attention, name, ctx < 0 ? std::vector<int>{x} : std::vector<int>{x, ctx}, ValueKind::Sequence, w);
    n.heads = heads;
    n.kv_heads = kv_heads;
    n.head_dim = head_dim;
    n.has_bias = bias;
    n.scale = scale;
    n.pattern = pattern;
    n.weights.push_back({name + ".query.weight", {heads * head_dim, w}});
    if (bias) n.weights.push_back({name + ".query.bias", {heads * head_dim}});
    n.weights.push_back({name + ".key.weight", {kv_heads * head_dim, cw}});
    if (bias) n.weights.push_back({name + ".key.bias", {kv_heads * head_dim}});
    n.weights.push_back({name + ".value.weight", {kv_heads * head_dim, cw}});
    if (bias) n.weights.push_back({name + ".value.bias", {kv_heads * head_dim}});
    n.weights.push_back({name + ".output.weight", {w, heads * head_dim}});
    if (bias) n.weights.push_back({name + ".output.bias", {w}});
    for (const graph::Weight& e : extra) n.weights.push_back({name + "." + e.name, e.shape});
    return add(std::move(n));
  }
  int binary(OpKind op, int a, int b) { return add(node(op, "", {a, b}, kind(a), width(a))); }
  int unary(OpKind op, int in, double factor = 1) {
    Node n = node(op, "", {in}, kind(in), width(in));
    n.factor = factor;
    return add(std::move(n));
  }
  int pool(OpKind op, int in) { return add(node(op, "", {in}, ValueKind::Pooled, width(in))); }
  int unembed(int in, int tied) {
    Node n = node(OpKind::Unembed, "", {in}, kind(in), graph.nodes[static_cast<size_t>(tied)].vocab);
    n.vocab = n.width;
    n.tied = tied;
    return add(std::move(n));
  }

  ModelTensor run(const TensorMap& inputs, int output) {
    graph.output = output;
    return run_model_f64(graph, pointers(weights), inputs);
  }

  const Tensor& w(const std::string& name) const { return weights.at(name); }

  graph::Graph graph;
  std::map<std::string, Tensor> weights;

 private:
  static Node node(OpKind op, const std::string& name, std::vector<int> inputs, ValueKind kind, int64_t width) {
    Node n;
    n.op = op;
    n.name = name;
    n.inputs = std::move(inputs);
    n.kind = kind;
    n.width = width;
    return n;
  }
  int add(Node n) {
    for (const graph::Weight& w : n.weights) {
      if (!weights.contains(w.name)) weights.emplace(w.name, random_tensor(w.shape, rng_));
    }
    graph.nodes.push_back(std::move(n));
    return static_cast<int>(graph.nodes.size()) - 1;
  }
  int64_t width(int n) const { return graph.nodes[static_cast<size_t>(n)].width; }
  ValueKind kind(int n) const { return graph.nodes[static_cast<size_t>(n)].kind; }

  std::mt19937 rng_;
};

Tensor ids_tensor(int64_t B, int64_t N, const std::vector<int64_t>& ids, DType dtype = DType::Int32) {
  Tensor t(dtype, {B, N});
  for (size_t e = 0; e < ids.size(); ++e) {
    if (dtype == DType::Int32) {
      t.data<int32_t>()[e] = static_cast<int32_t>(ids[e]);
    } else {
      t.data<int64_t>()[e] = ids[e];
    }
  }
  return t;
}

std::vector<int64_t> random_ids(int64_t count, int64_t vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(count));
  for (int64_t& id : ids) id = dist(rng);
  return ids;
}

// ------------------------------------------------------------------------------------------------------------
// The independent computation: rows of doubles and plain loops.

using Rows = std::vector<std::vector<double>>;

double at(const Tensor& t, int64_t flat) { return static_cast<double>(t.data<float>()[flat]); }

// Row r of a [rows, cols] float tensor (or the one row of a [cols] tensor).
std::vector<double> tensor_row(const Tensor& t, int64_t r) {
  const int64_t cols = t.shape().back();
  std::vector<double> row(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) row[static_cast<size_t>(c)] = at(t, r * cols + c);
  return row;
}

Rows gather(const Tensor& table, const std::vector<int64_t>& ids) {
  Rows rows;
  for (int64_t id : ids) rows.push_back(tensor_row(table, id));
  return rows;
}

Rows linear_ref(const Rows& x, const Tensor& w, const Tensor* b) {
  Rows y;
  for (const auto& row : x) {
    std::vector<double> out(static_cast<size_t>(w.dim(0)));
    for (int64_t o = 0; o < w.dim(0); ++o) {
      double sum = b ? at(*b, o) : 0.0;
      for (int64_t i = 0; i < w.dim(1); ++i) sum += row[static_cast<size_t>(i)] * at(w, o * w.dim(1) + i);
      out[static_cast<size_t>(o)] = sum;
    }
    y.push_back(out);
  }
  return y;
}

Rows zip(const Rows& a, const Rows& b, const std::function<double(double, double)>& f) {
  Rows c = a;
  for (size_t r = 0; r < a.size(); ++r) {
    for (size_t k = 0; k < a[r].size(); ++k) c[r][k] = f(a[r][k], b[r][k]);
  }
  return c;
}

Rows each(const Rows& a, const std::function<double(double)>& f) {
  return zip(a, a, [&](double x, double) { return f(x); });
}

Rows layer_norm_ref(const Rows& x, const Tensor& gain, const Tensor& bias, double eps) {
  Rows y = x;
  for (size_t r = 0; r < x.size(); ++r) {
    const auto w = static_cast<double>(x[r].size());
    double mean = 0, var = 0;
    for (double v : x[r]) mean += v / w;
    for (double v : x[r]) var += (v - mean) * (v - mean) / w;
    for (size_t c = 0; c < x[r].size(); ++c) {
      y[r][c] = (x[r][c] - mean) / std::sqrt(var + eps) * at(gain, static_cast<int64_t>(c)) +
                at(bias, static_cast<int64_t>(c));
    }
  }
  return y;
}

void expect_near(const ModelTensor& got, const std::vector<int64_t>& shape, const Rows& want, double tol) {
  ASSERT_EQ(got.shape, shape);
  std::vector<double> flat;
  for (const auto& row : want) flat.insert(flat.end(), row.begin(), row.end());
  ASSERT_EQ(got.values.size(), flat.size());
  for (size_t e = 0; e < flat.size(); ++e) {
    ASSERT_NEAR(got.values[e], flat[e], tol * std::max(1.0, std::abs(flat[e]))) << "at flat index " << e;
  }
}

// Multi-head attention as the brief defines it, for x of B*N rows and ctx of B*M rows.
struct AttentionRef {
  int64_t B, N, M, H, Hkv, D;
  double scale;
  std::function<bool(int64_t b, int64_t h, int64_t i, int64_t j)> allowed;
  // The score of an allowed pair from its scaled logit s and query vector q (identity by default).
  std::function<double(int64_t b, int64_t h, int64_t i, int64_t j, double s, const std::vector<double>& q)> score;

  Rows operator()(const ModelBuilder& m, const std::string& name, const Rows& x, const Rows& ctx, bool bias) const {
    auto w = [&](const std::string& part) { return &m.w(name + "." + part); };
    const Rows q = linear_ref(x, *w("query.weight"), bias ? w("query.bias") : nullptr);
    const Rows k = linear_ref(ctx, *w("key.weight"), bias ? w("key.bias") : nullptr);
    const Rows v = linear_ref(ctx, *w("value.weight"), bias ? w("value.bias") : nullptr);
    Rows heads(static_cast<size_t>(B * N), std::vector<double>(static_cast<size_t>(H * D), 0.0));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t g = h / (H / Hkv);
        for (int64_t i = 0; i < N; ++i) {
          const auto& qrow = q[static_cast<size_t>(b * N + i)];
          std::vector<double> qh(qrow.begin() + h * D, qrow.begin() + (h + 1) * D);
          std::vector<std::pair<int64_t, double>> logits;
          for (int64_t j = 0; j < M; ++j) {
            if (!allowed(b, h, i, j)) continue;
            const auto& krow = k[static_cast<size_t>(b * M + j)];
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += qh[static_cast<size_t>(d)] * krow[static_cast<size_t>(g * D + d)];
            const double s = scale * dot;
            logits.emplace_back(j, score ? score(b, h, i, j, s, qh) : s);
          }
          if (logits.empty()) continue;
          double max = logits[0].second;
          for (const auto& [j, s] : logits) max = std::max(max, s);
          double total = 0;
          for (const auto& [j, s] : logits) total += std::exp(s - max);
          for (const auto& [j, s] : logits) {
            const double p = std::exp(s - max) / total;
            for (int64_t d = 0; d < D; ++d) {
              heads[static_cast<size_t>(b * N + i)][static_cast<size_t>(h * D + d)] +=
                  p * v[static_cast<size_t>(b * M + j)][static_cast<size_t>(g * D + d)];
            }
          }
        }
      }
    }
    return linear_ref(heads, *w("output.weight"), bias ? w("output.bias") : nullptr);
  }
};

// ------------------------------------------------------------------------------------------------------------
// Ops one by one.

constexpr int64_t kB = 2, kN = 5, kVocab = 11, kWidth = 6;

// input "ids" -> embedding "embed", the start of most graphs here.
struct Embedded {
  ModelBuilder m{7};
  int ids = m.input("ids");
  int x = m.embedding("embed", ids, kVocab, kWidth);
  std::mt19937 rng{11};
  std::vector<int64_t> tokens = random_ids(kB * kN, kVocab, rng);
  Tensor ids_tensor_ = ids_tensor(kB, kN, tokens);
  TensorMap inputs{{"ids", &ids_tensor_}};

  Rows x_rows() const { return gather(m.w("embed.weight"), tokens); }
  ModelTensor run(int output) { return m.run(inputs, output); }
};

const std::vector<int64_t> kSeqShape{kB, kN, kWidth};

TEST(ReferenceModel, EmbeddingAndPositionTables) {
  Embedded e;
  const int pos = e.m.learned_positions("pos", e.ids, 8, kWidth);
  const int sin = e.m.sinusoidal(e.x, kWidth);
  const int seg = e.m.segment_embedding("seg", e.ids, 2, kWidth);
  const int sum = e.m.binary(OpKind::Add, e.m.binary(OpKind::Add, e.m.binary(OpKind::Add, e.x, pos), sin), seg);

  Rows want = e.x_rows();
  for (int64_t r = 0; r < kB * kN; ++r) {
    const int64_t p = r % kN;
    for (int64_t c = 0; c < kWidth; ++c) {
      const double angle = static_cast<double>(p) / std::pow(10000.0, static_cast<double>(c / 2 * 2) / kWidth);
      want[static_cast<size_t>(r)][static_cast<size_t>(c)] += at(e.m.w("pos.weight"), p * kWidth + c) +
                                                              (c % 2 == 0 ? std::sin(angle) : std::cos(angle)) +
                                                              at(e.m.w("seg.weight"), c);
    }
  }
  expect_near(e.run(sum), kSeqShape, want, 1e-14);
  expect_near(e.run(e.x), kSeqShape, e.x_rows(), 0);  // the embedding rows exactly
}

TEST(ReferenceModel, SinusoidalTableValues) {
  // Known values of Vaswani et al.'s table for an odd width: position 0 is (0, 1, 0, 1, 0).
  Embedded e;
  const int sin = e.m.sinusoidal(e.ids, 5);
  const ModelTensor out = e.run(sin);
  ASSERT_EQ(out.shape, (std::vector<int64_t>{kB, kN, 5}));
  const std::vector<double> p0{0, 1, 0, 1, 0};
  for (int c = 0; c < 5; ++c) EXPECT_EQ(out.values[static_cast<size_t>(c)], p0[static_cast<size_t>(c)]);
  const double* p3 = out.values.data() + (kN + 3) * 5;  // batch 1, position 3
  EXPECT_NEAR(p3[0], std::sin(3.0), 1e-15);
  EXPECT_NEAR(p3[1], std::cos(3.0), 1e-15);
  EXPECT_NEAR(p3[2], std::sin(3.0 / std::pow(10000.0, 0.4)), 1e-15);
  EXPECT_NEAR(p3[3], std::cos(3.0 / std::pow(10000.0, 0.4)), 1e-15);
  EXPECT_NEAR(p3[4], std::sin(3.0 / std::pow(10000.0, 0.8)), 1e-15);
}

TEST(ReferenceModel, NormsAndLinearOnSequencesAndPooledValues) {
  Embedded e;
  const int ln = e.m.layer_norm("ln", e.x, 1e-5);
  const int rms = e.m.rms_norm("rms", e.x, 1e-6);
  const int lin = e.m.linear("lin", e.x, 4, /*bias=*/true);
  const int lin_nb = e.m.linear("lin_nb", e.x, 3, /*bias=*/false);
  const int pooled = e.m.pool(OpKind::MeanPool, e.x);
  const int pooled_ln = e.m.layer_norm("pln", pooled, 1e-5);
  const int pooled_lin = e.m.linear("plin", pooled_ln, 2, true);

  const Rows x = e.x_rows();
  expect_near(e.run(ln), kSeqShape, layer_norm_ref(x, e.m.w("ln.weight"), e.m.w("ln.bias"), 1e-5), 1e-13);

  Rows want_rms = x;
  for (auto& row : want_rms) {
    double squares = 0;
    for (double v : row) squares += v * v;
    const double denominator = std::sqrt(squares / kWidth + 1e-6);
    for (size_t c = 0; c < row.size(); ++c)
      row[c] = row[c] / denominator * at(e.m.w("rms.weight"), static_cast<int64_t>(c));
  }
  expect_near(e.run(rms), kSeqShape, want_rms, 1e-13);

  expect_near(e.run(lin), {kB, kN, 4}, linear_ref(x, e.m.w("lin.weight"), &e.m.w("lin.bias")), 1e-14);
  expect_near(e.run(lin_nb), {kB, kN, 3}, linear_ref(x, e.m.w("lin_nb.weight"), nullptr), 1e-14);

  Rows mean(kB, std::vector<double>(kWidth, 0.0));
  for (int64_t r = 0; r < kB * kN; ++r) {
    for (int64_t c = 0; c < kWidth; ++c) mean[static_cast<size_t>(r / kN)][static_cast<size_t>(c)] += x[r][c] / kN;
  }
  expect_near(e.run(pooled), {kB, kWidth}, mean, 1e-14);
  const Rows want_pooled = linear_ref(layer_norm_ref(mean, e.m.w("pln.weight"), e.m.w("pln.bias"), 1e-5),
                                      e.m.w("plin.weight"), &e.m.w("plin.bias"));
  expect_near(e.run(pooled_lin), {kB, 2}, want_pooled, 1e-13);
}

TEST(ReferenceModel, ElementwiseOpsAndActivations) {
  Embedded e;
  const int y = e.m.embedding("embed2", e.ids, kVocab, kWidth);
  const int add = e.m.binary(OpKind::Add, e.x, y);
  const int mul = e.m.binary(OpKind::Mul, e.x, y);
  const int scale = e.m.unary(OpKind::Scale, e.x, 0.37);
  const int relu = e.m.unary(OpKind::ReLU, e.x);
  const int gelu = e.m.unary(OpKind::GELU, e.x);
  const int gelu_tanh = e.m.unary(OpKind::GELUTanh, e.x);
  const int silu = e.m.unary(OpKind::SiLU, e.x);

  const Rows x = e.x_rows();
  const Rows yr = gather(e.m.w("embed2.weight"), e.tokens);
  expect_near(e.run(add), kSeqShape, zip(x, yr, [](double a, double b) { return a + b; }), 0);
  expect_near(e.run(mul), kSeqShape, zip(x, yr, [](double a, double b) { return a * b; }), 0);
  expect_near(e.run(scale), kSeqShape, each(x, [](double a) { return a * 0.37; }), 0);
  expect_near(e.run(relu), kSeqShape, each(x, [](double a) { return a < 0 ? 0.0 : a; }), 0);
  expect_near(e.run(gelu), kSeqShape, each(x, [](double a) { return a * 0.5 * std::erfc(-a / std::sqrt(2.0)); }),
              1e-14);
  expect_near(e.run(gelu_tanh), kSeqShape,
              each(x,
                   [](double a) {
                     const double inner = std::sqrt(2.0 / std::numbers::pi) * (a + 0.044715 * a * a * a);
                     return 0.5 * a * (1.0 + std::tanh(inner));
                   }),
              1e-14);
  expect_near(e.run(silu), kSeqShape, each(x, [](double a) { return a * (1.0 / (1.0 + std::exp(-a))); }), 1e-14);
}

TEST(ReferenceModel, ActivationsAtKnownPoints) {
  // One-token input whose embedding row is set by hand; the expected values are the functions' known values.
  ModelBuilder m(3);
  const int ids = m.input("ids");
  const int x = m.embedding("embed", ids, 1, 6);
  const std::vector<float> points{1.0f, -1.0f, 0.5f, 2.0f, 0.0f, -3.0f};
  std::copy(points.begin(), points.end(), m.weights.at("embed.weight").data<float>());
  const int gelu = m.unary(OpKind::GELU, x);
  const int gelu_tanh = m.unary(OpKind::GELUTanh, x);
  const int silu = m.unary(OpKind::SiLU, x);
  const Tensor one = ids_tensor(1, 1, {0});
  const TensorMap inputs{{"ids", &one}};
  expect_near(
      m.run(inputs, gelu), {1, 1, 6},
      {{0.8413447460685429, -0.15865525393145707, 0.34573123063700656, 1.9544997361036416, 0.0, -0.00404969409489031}},
      1e-15);
  expect_near(
      m.run(inputs, gelu_tanh), {1, 1, 6},
      {{0.8411919906082768, -0.15880800939172324, 0.34571400982514394, 1.954597694087775, 0.0, -0.0036373920817729943}},
      1e-15);
  expect_near(
      m.run(inputs, silu), {1, 1, 6},
      {{0.7310585786300049, -0.2689414213699951, 0.3112296656009273, 1.7615941559557646, 0.0, -0.14227761953270035}},
      1e-15);
}

TEST(ReferenceModel, PoolingNormalizeAndUnembed) {
  Embedded e;
  // Token 0's row is zero: normalizing it gives zeros, not NaN.
  std::fill_n(e.m.weights.at("embed.weight").data<float>(), kWidth, 0.0f);
  e.tokens[1] = 0;
  e.ids_tensor_ = ids_tensor(kB, kN, e.tokens);
  const int cls = e.m.pool(OpKind::ClsPool, e.x);
  const int norm = e.m.unary(OpKind::Normalize, e.x);
  const int pooled_norm = e.m.unary(OpKind::Normalize, cls);
  const int logits = e.m.unembed(e.x, e.x);
  const int pooled_logits = e.m.unembed(cls, e.x);

  const Rows x = e.x_rows();
  const Rows first{x[0], x[kN]};
  expect_near(e.run(cls), {kB, kWidth}, first, 0);
  auto normalized = [](Rows rows) {
    for (auto& row : rows) {
      double squares = 0;
      for (double v : row) squares += v * v;
      for (double& v : row) v = squares == 0 ? 0.0 : v / std::sqrt(squares);
    }
    return rows;
  };
  expect_near(e.run(norm), kSeqShape, normalized(x), 1e-15);
  for (int64_t c = 0; c < kWidth; ++c) EXPECT_EQ(e.run(norm).values[static_cast<size_t>(kWidth + c)], 0.0);
  expect_near(e.run(pooled_norm), {kB, kWidth}, normalized(first), 1e-15);

  // Logits: the dot product of each row with every embedding row.
  const Tensor& table = e.m.w("embed.weight");
  auto unembed = [&](const Rows& rows) {
    Rows out;
    for (const auto& row : rows) {
      std::vector<double> l;
      for (int64_t t = 0; t < kVocab; ++t) {
        const std::vector<double> et = tensor_row(table, t);
        double dot = 0;
        for (size_t c = 0; c < row.size(); ++c) dot += row[c] * et[c];
        l.push_back(dot);
      }
      out.push_back(l);
    }
    return out;
  };
  expect_near(e.run(logits), {kB, kN, kVocab}, unembed(x), 1e-14);
  expect_near(e.run(pooled_logits), {kB, kVocab}, unembed(first), 1e-14);
}

// ------------------------------------------------------------------------------------------------------------
// Attention.

TEST(ReferenceModel, SelfAttentionCausalGroupedQuery) {
  Embedded e;
  const ir::Pattern causal = test::instantiate("causal");
  const int attn = e.m.attention("attn", e.x, -1, 4, 2, 3, causal, /*bias=*/true);
  const int scaled = e.m.attention("attn2", e.x, -1, 4, 1, 2, causal, /*bias=*/false, /*scale=*/0.3);

  AttentionRef ref{
      kB, kN, kN, 4, 2, 3, 1 / std::sqrt(3.0), [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i; }, nullptr};
  expect_near(e.run(attn), kSeqShape, ref(e.m, "attn", e.x_rows(), e.x_rows(), true), 1e-13);
  AttentionRef ref2{kB, kN, kN, 4, 1, 2, 0.3, ref.allowed, nullptr};
  expect_near(e.run(scaled), kSeqShape, ref2(e.m, "attn2", e.x_rows(), e.x_rows(), false), 1e-13);
}

TEST(ReferenceModel, CrossAttentionWithFewerQueriesThanKeys) {
  // Decoder target of N = 3 tokens (width 6) attends to an encoder source of M = 7 (width 5), GQA 4:2.
  ModelBuilder m(5);
  const int src = m.input("src");
  const int tgt = m.input("tgt");
  const int ctx = m.embedding("src_embed", src, kVocab, 5);
  const int x = m.embedding("tgt_embed", tgt, kVocab, kWidth);
  const int full = m.attention("cross", x, ctx, 4, 2, 3, test::instantiate("full"), true);
  const int causal = m.attention("cross_causal", x, ctx, 4, 2, 3, test::instantiate("causal"), true);

  std::mt19937 rng(17);
  const std::vector<int64_t> src_ids = random_ids(kB * 7, kVocab, rng), tgt_ids = random_ids(kB * 3, kVocab, rng);
  const Tensor src_t = ids_tensor(kB, 7, src_ids, DType::Int64), tgt_t = ids_tensor(kB, 3, tgt_ids);
  const TensorMap inputs{{"src", &src_t}, {"tgt", &tgt_t}};
  const Rows xr = gather(m.w("tgt_embed.weight"), tgt_ids), cr = gather(m.w("src_embed.weight"), src_ids);

  AttentionRef ref{kB,     3, 7, 4, 2, 3, 1 / std::sqrt(3.0), [](int64_t, int64_t, int64_t, int64_t) { return true; },
                   nullptr};
  expect_near(m.run(inputs, full), {kB, 3, kWidth}, ref(m, "cross", xr, cr, true), 1e-13);
  // Query row i sits at key position i + M - N.
  ref.allowed = [](int64_t, int64_t, int64_t i, int64_t j) { return j <= i + 7 - 3; };
  expect_near(m.run(inputs, causal), {kB, 3, kWidth}, ref(m, "cross_causal", xr, cr, true), 1e-13);
}

// Relative attention: with identity projections and float32 embeddings Q = K = V = x exactly, so the model's
// attention is reference::attention_f64 on those tensors.
TEST(ReferenceModel, RelativeAttentionMatchesTheAttentionReference) {
  constexpr int64_t H = 2, D = 3, R = 4, W = H * D;
  ModelBuilder m(9);
  const int ids = m.input("ids");
  const int x = m.embedding("embed", ids, kVocab, W);
  const int attn = m.attention("attn", x, -1, H, H, D, test::instantiate("causal & relative"), false, std::nullopt,
                               {{"rel", {H, R, D}}});
  for (const char* part : {"query", "key", "value", "output"}) {
    float* w = m.weights.at(fmt::format("attn.{}.weight", part)).data<float>();
    for (int64_t r = 0; r < W; ++r) {
      for (int64_t c = 0; c < W; ++c) w[r * W + c] = r == c ? 1.0f : 0.0f;
    }
  }
  std::mt19937 rng(23);
  const std::vector<int64_t> tokens = random_ids(kB * kN, kVocab, rng);
  const Tensor ids_t = ids_tensor(kB, kN, tokens);
  const ModelTensor got = m.run({{"ids", &ids_t}}, attn);

  // Q/K/V [B, H, N, D] from the embedding rows: head h is columns h*D..
  Tensor qkv(DType::Float32, {kB, H, kN, D});
  const Tensor& table = m.w("embed.weight");
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t n = 0; n < kN; ++n) {
        for (int64_t d = 0; d < D; ++d) {
          qkv.data<float>()[((b * H + h) * kN + n) * D + d] = table.data<float>()[tokens[b * kN + n] * W + h * D + d];
        }
      }
    }
  }
  AttentionInputs in;
  in.q = in.k = in.v = &qkv;
  in.tensors = {{"rel", &m.w("attn.rel")}};
  const std::vector<double> want = attention_f64(test::instantiate("causal & relative"), in);
  ASSERT_EQ(got.shape, (std::vector<int64_t>{kB, kN, W}));
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t n = 0; n < kN; ++n) {
        for (int64_t d = 0; d < D; ++d) {
          EXPECT_NEAR(got.values[static_cast<size_t>((b * kN + n) * W + h * D + d)],
                      want[static_cast<size_t>(((b * H + h) * kN + n) * D + d)], 1e-14);
        }
      }
    }
  }
}

// With real projections the query is a float64 activation: the relative term must use it unrounded (rounding
// q to float32 for dot(q_vec, rel[...]) would be off by ~1e-9 here, far above the tolerance).
TEST(ReferenceModel, RelativeAttentionUsesTheFloat64Query) {
  constexpr int64_t H = 4, Hkv = 2, D = 3, R = 3;
  Embedded e;
  const int attn = e.m.attention("attn", e.x, -1, H, Hkv, D, test::instantiate("relative"), true, std::nullopt,
                                 {{"rel", {H, R, D}}});
  const Tensor& rel = e.m.w("attn.rel");
  const double scale = 1 / std::sqrt(static_cast<double>(D));
  AttentionRef ref{kB,
                   kN,
                   kN,
                   H,
                   Hkv,
                   D,
                   scale,
                   [](int64_t, int64_t, int64_t, int64_t) { return true; },
                   [&](int64_t, int64_t h, int64_t i, int64_t j, double s, const std::vector<double>& q) {
                     const int64_t idx = std::clamp<int64_t>(i - j, 0, R - 1);
                     double dot = 0;
                     for (int64_t d = 0; d < D; ++d) dot += q[static_cast<size_t>(d)] * at(rel, (h * R + idx) * D + d);
                     return s + scale * dot;
                   }};
  expect_near(e.run(attn), kSeqShape, ref(e.m, "attn", e.x_rows(), e.x_rows(), true), 1e-13);
}

// A score whose dot is guarded: select(0 <= q - k < R, s + dot(q_vec, rel[h, q - k]), s). Evaluated eagerly, the
// dot would index rel out of bounds for keys after the query; the guard must keep that from being an error.
TEST(ReferenceModel, GuardedDotIsEvaluatedOnlyWhereTheScoreReadsIt) {
  constexpr int64_t H = 2, D = 3, R = 2;
  using ir::BinaryOp;
  const ir::Expr d = ir::binary(BinaryOp::Sub, ir::var(ir::Var::Q), ir::var(ir::Var::K));
  const ir::Expr guard = ir::binary(BinaryOp::And, ir::binary(BinaryOp::Ge, d, ir::int_imm(0)),
                                    ir::binary(BinaryOp::Lt, d, ir::symbol("R")));
  const ir::Expr s = ir::var(ir::Var::Score);
  ir::Pattern pattern;
  pattern.name = "guarded_relative";
  pattern.mask = ir::bool_imm(true);
  pattern.score =
      ir::call(ir::Fn::Select, {guard, ir::binary(BinaryOp::Add, s, ir::dot_q("rel", {ir::var(ir::Var::Head), d})), s});
  pattern.inputs = {{"rel", ir::ElemType::Float32, {"H", "R", "D"}, {}}};

  Embedded e;
  const int attn = e.m.attention("attn", e.x, -1, H, H, D, pattern, true, std::nullopt, {{"rel", {H, R, D}}});
  const Tensor& rel = e.m.w("attn.rel");
  AttentionRef ref{kB,
                   kN,
                   kN,
                   H,
                   H,
                   D,
                   1 / std::sqrt(static_cast<double>(D)),
                   [](int64_t, int64_t, int64_t, int64_t) { return true; },
                   [&](int64_t, int64_t h, int64_t i, int64_t j, double s, const std::vector<double>& q) {
                     if (i - j < 0 || i - j >= R) return s;
                     double dot = 0;
                     for (int64_t c = 0; c < D; ++c)
                       dot += q[static_cast<size_t>(c)] * at(rel, (h * R + i - j) * D + c);
                     return s + dot;
                   }};
  expect_near(e.run(attn), kSeqShape, ref(e.m, "attn", e.x_rows(), e.x_rows(), true), 1e-13);
}

TEST(ReferenceModel, DocumentAttentionReadsRunTimeSegments) {
  Embedded e;
  e.m.graph.runtime_tensors.push_back({"segments", ir::ElemType::Int32, {"B", "M"}, {}});
  const int attn = e.m.attention("attn", e.x, -1, 2, 2, 3, test::instantiate("document & causal"), true);
  const std::vector<int64_t> segments{0, 0, 1, 1, 1, 4, 7, 7, 7, 9};
  const Tensor seg32 = ids_tensor(kB, kN, segments), seg64 = ids_tensor(kB, kN, segments, DType::Int64);

  AttentionRef ref{kB,
                   kN,
                   kN,
                   2,
                   2,
                   3,
                   1 / std::sqrt(3.0),
                   [&](int64_t b, int64_t, int64_t i, int64_t j) {
                     return j <= i &&
                            segments[static_cast<size_t>(b * kN + i)] == segments[static_cast<size_t>(b * kN + j)];
                   },
                   nullptr};
  const Rows want = ref(e.m, "attn", e.x_rows(), e.x_rows(), true);
  e.inputs["segments"] = &seg32;
  expect_near(e.run(attn), kSeqShape, want, 1e-13);
  e.inputs["segments"] = &seg64;
  expect_near(e.run(attn), kSeqShape, want, 1e-13);
}

// ------------------------------------------------------------------------------------------------------------
// A two-layer pre-norm decoder: causality as a property.

struct Decoder {
  ModelBuilder m{31};
  int ids = m.input("ids");
  int logits = -1;
  static constexpr int64_t kLength = 6;

  Decoder() {
    const int embed = m.embedding("embed", ids, kVocab, 8);
    int x = m.binary(OpKind::Add, embed, m.learned_positions("pos", ids, 16, 8));
    const ir::Pattern causal = test::instantiate("causal");
    for (int layer = 0; layer < 2; ++layer) {
      const std::string p = fmt::format("layer.{}.", layer);
      const int a = m.attention(p + "attention", m.layer_norm(p + "norm1", x, 1e-5), -1, 4, 2, 2, causal, true);
      x = m.binary(OpKind::Add, x, a);
      const int up = m.linear(p + "ff.up", m.layer_norm(p + "norm2", x, 1e-5), 16, true);
      x = m.binary(OpKind::Add, x, m.linear(p + "ff.down", m.unary(OpKind::GELU, up), 8, true));
    }
    logits = m.unembed(m.layer_norm("final_norm", x, 1e-5), embed);
  }

  ModelTensor run(const std::vector<int64_t>& tokens) {
    const Tensor t = ids_tensor(2, kLength, tokens);
    return m.run({{"ids", &t}}, logits);
  }
};

TEST(ReferenceModel, DecoderIsCausal) {
  Decoder dec;
  std::mt19937 rng(41);
  const std::vector<int64_t> tokens = random_ids(2 * Decoder::kLength, kVocab, rng);
  const ModelTensor base = dec.run(tokens);
  ASSERT_EQ(base.shape, (std::vector<int64_t>{2, Decoder::kLength, kVocab}));
  for (double v : base.values) ASSERT_TRUE(std::isfinite(v));

  const auto row_size = static_cast<size_t>(kVocab);
  for (int64_t t = 0; t < Decoder::kLength; ++t) {
    std::vector<int64_t> changed = tokens;
    changed[static_cast<size_t>(t)] = (changed[static_cast<size_t>(t)] + 1) % kVocab;  // batch row 0 only
    const ModelTensor out = dec.run(changed);
    for (int64_t p = 0; p < Decoder::kLength; ++p) {
      const auto begin = static_cast<size_t>(p) * row_size;
      const bool same =
          std::equal(out.values.begin() + begin, out.values.begin() + begin + row_size, base.values.begin() + begin);
      if (p < t) {
        EXPECT_TRUE(same) << "changing token " << t << " changed the output at earlier position " << p;
      } else {
        EXPECT_FALSE(same) << "changing token " << t << " did not change the output at position " << p;
      }
    }
    // Batch row 1 is untouched.
    const size_t row1 = static_cast<size_t>(Decoder::kLength) * row_size;
    EXPECT_TRUE(std::equal(out.values.begin() + row1, out.values.end(), base.values.begin() + row1));
  }
}

// ------------------------------------------------------------------------------------------------------------
// Errors.

TEST(ReferenceModel, ReportsMissingAndMisshapedWeights) {
  Embedded e;
  const int ln = e.m.layer_norm("ln", e.x, 1e-5);
  e.m.graph.output = ln;
  TensorMap weights = pointers(e.m.weights);

  weights.erase("ln.bias");
  test::expect_error<TensorError>([&] { run_model_f64(e.m.graph, weights, e.inputs); },
                                  {"ln.bias", "not given", "float32[6]"});

  const Tensor wrong_shape(DType::Float32, {kVocab, 5});
  weights = pointers(e.m.weights);
  weights["embed.weight"] = &wrong_shape;
  test::expect_error<TensorError>([&] { run_model_f64(e.m.graph, weights, e.inputs); },
                                  {"embed.weight", "float32[11, 6]", "float32[11, 5]"});

  const Tensor wrong_type(DType::Int32, {kWidth});
  weights = pointers(e.m.weights);
  weights["ln.weight"] = &wrong_type;
  test::expect_error<TensorError>([&] { run_model_f64(e.m.graph, weights, e.inputs); },
                                  {"ln.weight", "float32[6]", "int32[6]"});

  // A pattern tensor the node does not list is still required when the attention runs.
  ModelBuilder m(1);
  const int x = m.embedding("embed", m.input("ids"), kVocab, kWidth);
  const int attn = m.attention("attn", x, -1, 2, 2, 3, test::instantiate("relative"), true);
  test::expect_error<TensorError>([&] { m.run(e.inputs, attn); }, {"attn.rel", "not given", "relative"});
}

TEST(ReferenceModel, ReportsBadInputs) {
  Embedded e;
  e.m.graph.output = e.x;
  const TensorMap weights = pointers(e.m.weights);
  test::expect_error<TensorError>([&] { run_model_f64(e.m.graph, weights, {}); }, {"model input 'ids'", "not given"});

  const Tensor floats(DType::Float32, {kB, kN});
  test::expect_error<TensorError>(
      [&] {
        run_model_f64(e.m.graph, weights, {{"ids", &floats}});
      },
      {"ids", "float32[2, 5]", "int32 or int64 [B, N]"});

  const Tensor rank3(DType::Int32, {kB, kN, 1});
  test::expect_error<TensorError>(
      [&] {
        run_model_f64(e.m.graph, weights, {{"ids", &rank3}});
      },
      {"ids", "int32[2, 5, 1]"});

  // Two inputs disagreeing on B.
  ModelBuilder m(2);
  const int a = m.embedding("a", m.input("src"), kVocab, 4);
  m.embedding("b", m.input("tgt"), kVocab, 4);
  const Tensor src = ids_tensor(2, 3, {0, 1, 2, 3, 4, 5}), tgt = ids_tensor(3, 1, {0, 1, 2});
  test::expect_error<TensorError>(
      [&] {
        m.run({{"src", &src}, {"tgt", &tgt}}, a);
      },
      {"'src' [2, 3]", "'tgt' [3, 1]", "batch size"});

  // A run-time tensor a pattern reads: missing, and mis-shaped.
  e.m.graph.runtime_tensors.push_back({"segments", ir::ElemType::Int32, {"B", "M"}, {}});
  const int attn = e.m.attention("attn", e.x, -1, 2, 2, 3, test::instantiate("document"), true);
  test::expect_error<TensorError>([&] { e.run(attn); }, {"segments", "not given"});
  const Tensor long_segments(DType::Int32, {kB, kN + 1});
  e.inputs["segments"] = &long_segments;
  test::expect_error<TensorError>([&] { e.run(attn); }, {"attention 'attn'", "segments", "[2, 6]"});
}

TEST(ReferenceModel, ReportsIdsOutOfRangeAndPositionsBeyondTheTable) {
  Embedded e;
  const int pos = e.m.learned_positions("pos", e.ids, 4, kWidth);  // N = 5 > 4
  std::vector<int64_t> tokens = e.tokens;
  tokens[7] = kVocab;
  const Tensor too_big = ids_tensor(kB, kN, tokens);
  test::expect_error<std::invalid_argument>(
      [&] {
        e.m.run({{"ids", &too_big}}, e.x);
      },
      {"embedding 'embed'", "token id 11", "[1, 2]", "[0, 11)"});
  tokens[7] = -1;
  const Tensor negative = ids_tensor(kB, kN, tokens, DType::Int64);
  test::expect_error<std::invalid_argument>(
      [&] {
        e.m.run({{"ids", &negative}}, e.x);
      },
      {"embedding 'embed'", "token id -1"});
  test::expect_error<std::invalid_argument>([&] { e.run(pos); },
                                            {"learned_positions 'pos'", "position 4", "length 4", "N = 5"});
  // Four positions fit.
  const Tensor short_ids = ids_tensor(kB, 4, {1, 2, 3, 4, 5, 6, 7, 8});
  EXPECT_EQ(e.m.run({{"ids", &short_ids}}, pos).shape, (std::vector<int64_t>{kB, 4, kWidth}));
}

TEST(ReferenceModel, ReportsMalformedGraphs) {
  Embedded e;
  const int ln = e.m.layer_norm("ln", e.x, 1e-5);
  e.m.graph.nodes[static_cast<size_t>(ln)].inputs = {ln};  // reads itself
  test::expect_error<std::invalid_argument>([&] { e.run(ln); }, {"node 2 (layernorm 'ln')", "does not come before"});

  Embedded f;
  const int pool = f.m.pool(OpKind::MeanPool, f.ids);  // ids are not a sequence
  test::expect_error<std::invalid_argument>([&] { f.run(pool); }, {"mean_pool", "takes seq", "got ids"});

  Embedded g;
  const int relu = g.m.unary(OpKind::ReLU, g.x);
  g.m.graph.nodes[static_cast<size_t>(relu)].width = 7;
  test::expect_error<std::invalid_argument>([&] { g.run(relu); }, {"relu", "width 7", "width 6"});
  test::expect_error<std::invalid_argument>([&] { g.run(99); }, {"output node 99"});
}

}  // namespace
}  // namespace tessera::reference
