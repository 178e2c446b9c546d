// `model` declarations: parsing, elaboration into the graph IR (shapes, weight names and sizes, unrolled stacks,
// patterns per layer, run-time tensors, overrides) and every error with its message and location.
#include "compiler/sema/model_elaboration.h"

#include <gtest/gtest.h>

#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "compiler/graph/graph.h"
#include "dsl/ast.h"
#include "dsl/parser.h"

namespace tessera::sema {
namespace {

using graph::Graph;
using graph::Node;
using graph::OpKind;
using graph::ValueKind;
using Lines = std::vector<std::string>;
using Overrides = std::map<std::string, std::string>;

std::string read_example(const std::string& name) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/examples/models/" + name);
  EXPECT_TRUE(in) << name;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// "file:line:col: severity: message" of every diagnostic, in the order printed.
Lines headers(const dsl::Diagnostics& diags) {
  Lines out;
  std::string all = diags.str();
  std::istringstream in(all);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(": error: ") != std::string::npos || line.find(": note: ") != std::string::npos) out.push_back(line);
  }
  return out;
}

struct Fixture {
  PatternLibrary lib;
  dsl::Diagnostics diags;

  bool add(const std::string& text, const std::string& file = "m.attn") {
    return lib.add_file(std::make_shared<const dsl::SourceFile>(file, text), diags);
  }
  std::optional<Graph> elaborate(const std::string& name, const Overrides& overrides = {}) {
    return elaborate_model(lib, name, overrides, diags);
  }
};

Graph example(const std::string& file, const std::string& model, const Overrides& overrides = {}) {
  Fixture f;
  EXPECT_TRUE(f.add(read_example(file), file)) << f.diags.str();
  auto g = f.elaborate(model, overrides);
  EXPECT_TRUE(g.has_value()) << f.diags.str();
  return g ? std::move(*g) : Graph{};
}

// The errors elaborating model `m` of `text` reports (the file itself must be free of declaration errors).
Lines model_errors(const std::string& text, const Overrides& overrides = {}) {
  Fixture f;
  EXPECT_TRUE(f.add(text)) << f.diags.str();
  EXPECT_FALSE(f.elaborate("m", overrides).has_value());
  return headers(f.diags);
}

// The errors adding `text` to a library reports (syntax and declaration errors).
Lines file_errors(const std::string& text) {
  Fixture f;
  EXPECT_FALSE(f.add(text));
  return headers(f.diags);
}

// A one-model file around `body` with an input `tokens` and a sequence `seq` of width 8.
std::string model_with(const std::string& body, const std::string& params = "") {
  return "model m" + params + " {\n  input tokens;\n  seq = embedding(tokens, vocab = 10, width = 8);\n" + body +
         "\n}\n";
}

int64_t parameter_count(const Graph& g) {
  int64_t total = 0;
  for (const auto& w : g.weights()) {
    total += std::accumulate(w.shape.begin(), w.shape.end(), int64_t{1}, std::multiplies<>());
  }
  return total;
}

const Node* find_node(const Graph& g, const std::string& name) {
  for (const auto& n : g.nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

std::map<std::string, std::vector<int64_t>> weight_map(const Graph& g) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& w : g.weights()) EXPECT_TRUE(out.emplace(w.name, w.shape).second) << "duplicate " << w.name;
  return out;
}

// ---- parsing ----

TEST(ModelParser, EveryExampleRoundTripsThroughTheAstDump) {
  for (const char* file : {"minilm.attn", "gpt.attn", "transformer.attn", "sparse_transformer.attn",
                           "image_transformer.attn", "music_transformer.attn", "llama_like.attn"}) {
    dsl::Diagnostics diags;
    auto first = dsl::parse_module(std::make_shared<const dsl::SourceFile>(file, read_example(file)), diags);
    ASSERT_FALSE(diags.has_errors()) << diags.str();
    ASSERT_EQ(first->declarations.size(), 1u) << file;
    ASSERT_TRUE(std::holds_alternative<dsl::ast::ModelDecl>(first->declarations[0])) << file;
    std::string dump = dsl::ast::dump(*first);
    auto second = dsl::parse_module(std::make_shared<const dsl::SourceFile>("dump", dump), diags);
    ASSERT_FALSE(diags.has_errors()) << diags.str() << dump;
    EXPECT_EQ(dsl::ast::dump(*second), dump) << file;
  }
}

TEST(ModelParser, DumpShowsTheStructure) {
  dsl::Diagnostics diags;
  auto m = dsl::parse_module(std::make_shared<const dsl::SourceFile>(
                                 "t",
                                 "model m(n: int >= 1 = 2) { input t; e = embedding(t, vocab=3, width=4);\n"
                                 "stack s[n * 2](x = 2 * e + e) { a = attention(x, heads=1, pattern=[causal, "
                                 "local(window=n)]); return x * -0.5 + a; }\n output mean_pool(s); }"),
                             diags);
  ASSERT_FALSE(diags.has_errors()) << diags.str();
  EXPECT_EQ(dsl::ast::dump(*m),
            "model m(n: int >= 1 = 2) {\n"
            "  input t;\n"
            "  e = embedding(t, vocab=3, width=4);\n"
            "  stack s[(n * 2)](x = ((2 * e) + e)) {\n"
            "    a = attention(x, heads=1, pattern=[causal, local(window=n)]);\n"
            "    return ((x * (-0.5)) + a);\n"
            "  }\n"
            "  output mean_pool(s);\n"
            "}\n");
}

TEST(ModelParser, ModelIsAContextualWord) {
  // `model`, `input`, `stack`, `output` stay ordinary names in patterns and as binding names.
  Fixture f;
  ASSERT_TRUE(
      f.add("pattern p(model: int = 1, input: int = 2) { let stack = model + input; mask: k <= q + stack; }\n"
            "model m { input tokens; output = embedding(tokens, vocab=2, width=2); input2 = output;\n"
            "  output mean_pool(input2); }"))
      << f.diags.str();
  EXPECT_NE(f.lib.find("p"), nullptr);
  EXPECT_EQ(f.lib.model_names(), Lines{"m"});
  EXPECT_TRUE(f.elaborate("m").has_value()) << f.diags.str();
}

TEST(ModelParser, SyntaxErrors) {
  EXPECT_EQ(
      file_errors("model m { input t; stack s[2](x = t) { stack u[2](y = x) { return y; } return x; } output t; }"),
      Lines{"m.attn:1:40: error: stacks do not nest: a stack's body holds `NAME = VALUE;` bindings and its "
            "`return`"});
  EXPECT_EQ(file_errors("model m { input t; stack s[2](x = t) { input u; return x; } output t; }"),
            Lines{"m.attn:1:40: error: inputs are declared at the top level of a model, not inside a stack"});
  EXPECT_EQ(file_errors("model m { input t; stack s[2](x = t) { y = x; } output t; }"),
            Lines{"m.attn:1:47: error: stack 's' must end with `return VALUE;` (the value the next layer takes as "
                  "'x')"});
  EXPECT_EQ(file_errors("model m { input t; stack s[2](x = t) { return x; y = x; } output t; }"),
            Lines{"m.attn:1:50: error: statement after the `return` of stack 's': `return` must be the last "
                  "statement of a stack's body"});
  EXPECT_EQ(file_errors("model m { input t; return t; }"),
            Lines{"m.attn:1:20: error: `return` ends a stack's body; a model ends with `output VALUE;`"});
  EXPECT_EQ(file_errors("model m { input t; foo bar; }"),
            Lines{"m.attn:1:20: error: expected `input NAME;`, `NAME = VALUE;`, `stack NAME[COUNT](NAME = VALUE) { "
                  "... }` or `output VALUE;` in a model, got identifier 'foo'"});
  EXPECT_EQ(file_errors("model m { input t; e = embedding(t vocab = 2); }"),
            Lines{"m.attn:1:36: error: expected ')' after the operator's arguments, got identifier 'vocab'"});
  // Recovery: every statement's error is reported, and the next declaration still parses.
  Fixture f;
  EXPECT_FALSE(f.add("model m {\n  x = ;\n  y = relu(;\n}\npattern after { mask: k <= q; }"));
  EXPECT_EQ(headers(f.diags), (Lines{"m.attn:2:7: error: expected a value (a name, an operator call such as "
                                     "`linear(x, out=256)`, or a number scaling a value), got ';'",
                                     "m.attn:3:12: error: expected a value (a name, an operator call such as "
                                     "`linear(x, out=256)`, or a number scaling a value), got ';'"}));
  EXPECT_NE(f.lib.find("after"), nullptr);
}

TEST(ModelParser, ModelsAndPatternsShareOneNamespace) {
  EXPECT_EQ(file_errors("model causal { input t; output t; }"),
            (Lines{"m.attn:1:7: error: model 'causal' has the name of a pattern (patterns and models share one "
                   "namespace)",
                   "<prelude>:13:9: note: pattern 'causal' is defined here"}));
  EXPECT_EQ(file_errors("model m { input t; output t; }\npattern m { mask: k <= q; }"),
            (Lines{"m.attn:2:9: error: pattern 'm' has the name of a model (patterns and models share one namespace)",
                   "m.attn:1:7: note: model 'm' is defined here"}));
  EXPECT_EQ(file_errors("model m { input t; output t; }\nmodel m { input t; output t; }"),
            (Lines{"m.attn:2:7: error: redefinition of model 'm'", "m.attn:1:7: note: 'm' was first defined here"}));
  EXPECT_EQ(file_errors("model m(n: int >= 1 = 0) { input t; output t; }"),
            Lines{"m.attn:1:23: error: the default value of 'n' must be >= 1, got 0"});
}

// ---- shapes and weights ----

TEST(ModelElaboration, MiniLmMatchesTheCheckpointLayout) {
  Graph g = example("minilm.attn", "minilm");
  EXPECT_EQ(g.name, "minilm");
  EXPECT_EQ(g.inputs, Lines{"tokens"});
  ASSERT_GE(g.output, 0);
  EXPECT_EQ(g.output_node().op, OpKind::Normalize);
  EXPECT_EQ(g.output_node().kind, ValueKind::Pooled);
  EXPECT_EQ(g.output_node().width, 384);
  // all-MiniLM-L6-v2 holds 22,713,216 parameters, 147,840 of them in BERT's pooler, which this model does not use.
  EXPECT_EQ(parameter_count(g), 22713216 - 147840);
  auto weights = weight_map(g);
  EXPECT_EQ(weights.size(), 5u + 6u * 16u);
  EXPECT_EQ(weights.at("word.weight"), (std::vector<int64_t>{30522, 384}));
  EXPECT_EQ(weights.at("position.weight"), (std::vector<int64_t>{512, 384}));
  EXPECT_EQ(weights.at("token_type.weight"), (std::vector<int64_t>{2, 384}));
  EXPECT_EQ(weights.at("embed_norm.bias"), (std::vector<int64_t>{384}));
  for (int i = 0; i < 6; ++i) {
    std::string p = "layer." + std::to_string(i) + ".";
    for (const char* part : {"query", "key", "value", "output"}) {
      EXPECT_EQ(weights.at(p + "attention." + part + ".weight"), (std::vector<int64_t>{384, 384})) << p << part;
      EXPECT_EQ(weights.at(p + "attention." + part + ".bias"), (std::vector<int64_t>{384})) << p << part;
    }
    EXPECT_EQ(weights.at(p + "attention_norm.weight"), (std::vector<int64_t>{384}));
    EXPECT_EQ(weights.at(p + "ffn_in.weight"), (std::vector<int64_t>{1536, 384}));
    EXPECT_EQ(weights.at(p + "ffn_in.bias"), (std::vector<int64_t>{1536}));
    EXPECT_EQ(weights.at(p + "ffn_out.weight"), (std::vector<int64_t>{384, 1536}));
    EXPECT_EQ(weights.at(p + "ffn_norm.bias"), (std::vector<int64_t>{384}));
    const Node* attention = find_node(g, p + "attention");
    ASSERT_NE(attention, nullptr);
    EXPECT_EQ(attention->heads, 12);
    EXPECT_EQ(attention->kv_heads, 12);
    EXPECT_EQ(attention->head_dim, 32);
    EXPECT_EQ(attention->pattern->name, "full");
    EXPECT_FALSE(attention->causal_in_time);
    EXPECT_DOUBLE_EQ(find_node(g, p + "ffn_norm")->eps, 1e-12);
  }
  // Topological order, Input nodes first, every input an earlier node.
  EXPECT_EQ(g.nodes[0].op, OpKind::Input);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int in : g.nodes[i].inputs) EXPECT_LT(in, static_cast<int>(i));
    if (i > 0) {
      EXPECT_NE(g.nodes[i].op, OpKind::Input);
    }
  }
}

TEST(ModelElaboration, Gpt2SmallHasItsKnownParameterCount) {
  Graph g = example("gpt.attn", "gpt");
  // GPT-2 small: 124,439,808 parameters (output matrix tied to the token embedding).
  EXPECT_EQ(parameter_count(g), 124439808);
  const Node& logits = g.output_node();
  EXPECT_EQ(logits.op, OpKind::Unembed);
  EXPECT_EQ(logits.width, 50257);
  EXPECT_EQ(logits.vocab, 50257);
  ASSERT_GE(logits.tied, 0);
  EXPECT_EQ(g.nodes[static_cast<size_t>(logits.tied)].name, "word");
  EXPECT_TRUE(logits.weights.empty());
  for (int i = 0; i < 12; ++i) {
    const Node* a = find_node(g, "layer." + std::to_string(i) + ".attention");
    ASSERT_NE(a, nullptr);
    EXPECT_TRUE(a->causal_in_time);
    // Pre-norm: attention reads the layer's attention_norm.
    EXPECT_EQ(g.nodes[static_cast<size_t>(a->inputs[0])].name, "layer." + std::to_string(i) + ".attention_norm");
  }
}

TEST(ModelElaboration, OverridesChangeTheGraph) {
  Graph small = example("minilm.attn", "minilm", {{"layers", "2"}, {"width", "64"}, {"heads", "4"}});
  auto weights = weight_map(small);
  EXPECT_EQ(weights.size(), 5u + 2u * 16u);
  EXPECT_EQ(weights.at("layer.1.attention.query.weight"), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(find_node(small, "layer.1.attention")->head_dim, 16);
  EXPECT_EQ(weights.count("layer.2.attention.query.weight"), 0u);
}

TEST(ModelElaboration, SparseTransformerCyclesItsPatternList) {
  Graph g = example("sparse_transformer.attn", "sparse_transformer", {{"layers", "5"}, {"stride", "64"}});
  for (int i = 0; i < 5; ++i) {
    const Node* a = find_node(g, "layer." + std::to_string(i) + ".attention");
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->pattern->name, i % 2 == 0 ? "strided(stride=64)" : "fixed(block=128, summary=8)") << i;
    EXPECT_TRUE(a->causal_in_time);
  }
  EXPECT_EQ(find_node(g, "position")->length, 65536);
}

TEST(ModelElaboration, PatternListOfThreeCyclesModuloItsLength) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  stack s[7](x = seq) {\n    a = attention(x, heads = 2, pattern = [causal, full, "
                       "local(window = w)]);\n    return a;\n  }\n  output mean_pool(s);",
                       "(w: int = 3)")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  const char* expected[] = {"causal", "full", "local(window=3)"};
  for (int i = 0; i < 7; ++i) {
    EXPECT_EQ(find_node(*g, "s." + std::to_string(i) + ".a")->pattern->name, expected[i % 3]) << i;
  }
}

TEST(ModelElaboration, TransformerCrossAttendsToTheEncoder) {
  Graph g = example("transformer.attn", "transformer", {{"layers", "2"}});
  EXPECT_EQ(g.inputs, (Lines{"source", "target"}));
  EXPECT_EQ(g.nodes[0].op, OpKind::Input);
  EXPECT_EQ(g.nodes[1].op, OpKind::Input);
  const Node* encoder_out = find_node(g, "encoder.1.ffn_norm");
  ASSERT_NE(encoder_out, nullptr);
  for (int i = 0; i < 2; ++i) {
    const Node* cross = find_node(g, "decoder." + std::to_string(i) + ".cross_attention");
    ASSERT_NE(cross, nullptr);
    ASSERT_EQ(cross->inputs.size(), 2u);
    EXPECT_EQ(&g.nodes[static_cast<size_t>(cross->inputs[1])], encoder_out);
    EXPECT_FALSE(cross->causal_in_time);
    EXPECT_TRUE(find_node(g, "decoder." + std::to_string(i) + ".self_attention")->causal_in_time);
  }
  const Node* scale = nullptr;
  for (const auto& n : g.nodes) {
    if (n.op == OpKind::Scale) scale = &n;
  }
  ASSERT_NE(scale, nullptr);
  EXPECT_DOUBLE_EQ(scale->factor, 22.627417);
  EXPECT_EQ(g.output_node().op, OpKind::Linear);
  EXPECT_FALSE(g.output_node().has_bias);
  EXPECT_EQ(g.output_node().weights.size(), 1u);
  EXPECT_EQ(find_node(g, "source_positions")->op, OpKind::SinusoidalPositions);
  EXPECT_TRUE(find_node(g, "source_positions")->weights.empty());
}

TEST(ModelElaboration, CrossAttentionProjectsTheContextFromItsOwnWidth) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  wide = embedding(tokens, vocab = 10, width = 24);\n"
                       "  cross = attention(seq, wide, heads = 2, kv_heads = 1);\n  output mean_pool(cross);")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  auto w = weight_map(*g);
  EXPECT_EQ(w.at("cross.query.weight"), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(w.at("cross.key.weight"), (std::vector<int64_t>{4, 24}));
  EXPECT_EQ(w.at("cross.value.weight"), (std::vector<int64_t>{4, 24}));
  EXPECT_EQ(w.at("cross.value.bias"), (std::vector<int64_t>{4}));
  EXPECT_EQ(w.at("cross.output.weight"), (std::vector<int64_t>{8, 8}));
  EXPECT_EQ(g->output_node().width, 8);
}

TEST(ModelElaboration, LlamaLikeUsesGroupedQueriesAndNoBiases) {
  Graph g = example("llama_like.attn", "llama_like", {{"layers", "1"}});
  auto w = weight_map(g);
  EXPECT_EQ(w.at("layer.0.attention.query.weight"), (std::vector<int64_t>{512, 512}));
  EXPECT_EQ(w.at("layer.0.attention.key.weight"), (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(w.at("layer.0.attention.value.weight"), (std::vector<int64_t>{128, 512}));
  EXPECT_EQ(w.at("layer.0.attention.output.weight"), (std::vector<int64_t>{512, 512}));
  for (const auto& [name, shape] : w) EXPECT_EQ(name.find(".bias"), std::string::npos) << name;
  EXPECT_EQ(w.at("layer.0.attention_norm.weight"), (std::vector<int64_t>{512}));
  const Node* a = find_node(g, "layer.0.attention");
  EXPECT_EQ(a->kv_heads, 2);
  EXPECT_FALSE(a->has_bias);
  EXPECT_DOUBLE_EQ(find_node(g, "final_norm")->eps, 1e-5);
  // swiglu: silu(gate) * up is an elementwise product of two [.., ffn] sequences.
  const Node* down = find_node(g, "layer.0.ffn_out");
  const Node& product = g.nodes[static_cast<size_t>(down->inputs[0])];
  EXPECT_EQ(product.op, OpKind::Mul);
  EXPECT_EQ(product.width, 1376);
  EXPECT_EQ(g.nodes[static_cast<size_t>(product.inputs[0])].op, OpKind::SiLU);
}

TEST(ModelElaboration, RotaryEmbeddingsRotateTheHeadsOrThePartGiven) {
  const Graph llama = example("llama_like.attn", "llama_like", {{"layers", "1"}});
  const Node* a = find_node(llama, "layer.0.attention");
  EXPECT_TRUE(a->rotary);
  EXPECT_EQ(a->rotary_dims, 64);
  EXPECT_DOUBLE_EQ(a->rotary_base, 10000.0);
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  a = attention(seq, heads = 2, rotary = true, rotary_dims = 2, rotary_base = 500.0);"
                       "\n  b = attention(seq, heads = 2);\n  output mean_pool(a + b);")))
      << f.diags.str();
  std::optional<Graph> g = f.elaborate("m", {});
  ASSERT_TRUE(g.has_value()) << f.diags.str();
  EXPECT_EQ(find_node(*g, "a")->rotary_dims, 2);
  EXPECT_DOUBLE_EQ(find_node(*g, "a")->rotary_base, 500.0);
  EXPECT_FALSE(find_node(*g, "b")->rotary);
  // Rotation adds no weights.
  EXPECT_EQ(find_node(*g, "a")->weights.size(), find_node(*g, "b")->weights.size());
}

TEST(ModelElaboration, RelativeAttentionOwnsItsEmbeddings) {
  Graph g = example("music_transformer.attn", "music_transformer", {{"layers", "2"}, {"distances", "64"}});
  auto w = weight_map(g);
  EXPECT_EQ(w.at("layer.0.attention.rel"), (std::vector<int64_t>{8, 64, 64}));
  EXPECT_EQ(w.at("layer.1.attention.rel"), (std::vector<int64_t>{8, 64, 64}));
  EXPECT_TRUE(g.runtime_tensors.empty());
  EXPECT_TRUE(find_node(g, "layer.0.attention")->causal_in_time);
}

TEST(ModelElaboration, ImageTransformerUsesLocal2dOverTheImage) {
  Graph g = example("image_transformer.attn", "image_transformer", {{"layers", "1"}});
  const Node* a = find_node(g, "layer.0.attention");
  EXPECT_EQ(a->pattern->name, "local2d(width=32, block_h=8, block_w=16, halo_h=8, halo_w=8)");
  EXPECT_TRUE(a->causal_in_time);
  EXPECT_EQ(find_node(g, "position")->length, 1024);
}

TEST(ModelElaboration, RunTimeTensorsAreDeduplicated) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  stack s[3](x = seq) {\n    a = attention(x, heads = 2, pattern = [causal & document, "
                       "document]);\n    return a;\n  }\n  b = attention(s, heads = 2, pattern = document);\n"
                       "  output mean_pool(b);")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  ASSERT_EQ(g->runtime_tensors.size(), 1u);
  EXPECT_EQ(g->runtime_tensors[0].name, "segments");
  EXPECT_EQ(g->runtime_tensors[0].elem_type, ir::ElemType::Int32);
  EXPECT_EQ(g->runtime_tensors[0].dims, (Lines{"B", "M"}));
  EXPECT_TRUE(find_node(*g, "s.0.a")->causal_in_time);   // causal & document
  EXPECT_FALSE(find_node(*g, "s.1.a")->causal_in_time);  // document alone lets a query see later keys
  EXPECT_FALSE(find_node(*g, "b")->causal_in_time);
}

TEST(ModelElaboration, PatternArgumentsUseModelParameters) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  a = attention(seq, heads = 2, pattern = causal & sliding_window(window = 2 * w), "
                       "scale = 0.25, head_dim = hd);\n  output mean_pool(a);",
                       "(w: int = 3, hd: int = 5)")))
      << f.diags.str();
  auto g = f.elaborate("m", {{"w", "5"}});
  ASSERT_TRUE(g) << f.diags.str();
  const Node* a = find_node(*g, "a");
  EXPECT_EQ(a->pattern->name, "causal & sliding_window(window=10)");
  EXPECT_TRUE(a->causal_in_time);
  ASSERT_TRUE(a->scale.has_value());
  EXPECT_DOUBLE_EQ(*a->scale, 0.25);
  EXPECT_EQ(a->head_dim, 5);
  EXPECT_EQ(weight_map(*g).at("a.query.weight"), (std::vector<int64_t>{10, 8}));
  EXPECT_EQ(weight_map(*g).at("a.output.weight"), (std::vector<int64_t>{8, 10}));
}

TEST(ModelElaboration, CausalInTimeOfThePreludePatterns) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {"causal", true},
      {"strided(stride = 4)", true},
      {"fixed(block = 4, summary = 1)", true},
      {"sliding_window(window = 3)", true},
      {"dilated(window = 3, dilation = 2)", true},
      {"causal & document", true},
      {"causal & alibi", true},
      {"local2d(width = 4, block_h = 2, block_w = 2, halo_h = 1, halo_w = 1)", true},
      {"full", false},
      {"local(window = 3)", false},
      {"alibi", false},
      {"document", false},
      {"prefix_lm(prefix = 4)", false},
      {"causal | local(window = 2)", false},
  };
  for (const auto& [pattern, causal] : cases) {
    Fixture f;
    ASSERT_TRUE(
        f.add(model_with("  a = attention(seq, heads = 2, pattern = " + pattern + ");\n  output mean_pool(a);")))
        << f.diags.str();
    auto g = f.elaborate("m");
    ASSERT_TRUE(g) << pattern << "\n" << f.diags.str();
    EXPECT_EQ(find_node(*g, "a")->causal_in_time, causal) << pattern;
  }
}

TEST(ModelElaboration, NamesAndAliases) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  alias = seq;\n  sum = alias + seq;\n  pooled = mean_pool(sum);\n"
                       "  first = cls_pool(sum);\n  both = pooled * first;\n  head = linear(both, out = 3);\n"
                       "  output normalize(head);")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  // An alias adds no node; nodes bound by name carry it, others have none.
  const Node* sum = find_node(*g, "sum");
  ASSERT_NE(sum, nullptr);
  EXPECT_EQ(sum->op, OpKind::Add);
  EXPECT_EQ(sum->inputs[0], sum->inputs[1]);
  EXPECT_EQ(find_node(*g, "alias"), nullptr);
  EXPECT_EQ(find_node(*g, "both")->kind, ValueKind::Pooled);
  EXPECT_EQ(find_node(*g, "head")->kind, ValueKind::Pooled);
  EXPECT_EQ(find_node(*g, "head")->width, 3);
  EXPECT_EQ(g->output_node().op, OpKind::Normalize);
  EXPECT_TRUE(g->output_node().name.empty());
}

TEST(ModelElaboration, PositionsTakeTheSequencesWidthByDefault) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  p = learned_positions(seq, length = 16);\n  s = sinusoidal_positions(seq);\n"
                       "  t = sinusoidal_positions(tokens, width = 6);\n  output mean_pool(seq + p + s);")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  EXPECT_EQ(weight_map(*g).at("p.weight"), (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(find_node(*g, "s")->width, 8);
  EXPECT_EQ(find_node(*g, "t")->width, 6);
}

TEST(ModelElaboration, StacksSeeOuterNamesAndNameTheirLastLayer) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  stack s[3](x = seq) {\n    y = x + seq;\n    return y;\n  }\n  output mean_pool(s);")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  const Node* seq = find_node(*g, "seq");
  const Node* last = find_node(*g, "s.2.y");
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(&g->nodes[static_cast<size_t>(last->inputs[1])], seq);
  EXPECT_EQ(&g->nodes[static_cast<size_t>(last->inputs[0])], find_node(*g, "s.1.y"));
  EXPECT_EQ(&g->nodes[static_cast<size_t>(g->output_node().inputs[0])], last);
}

TEST(ModelElaboration, GraphText) {
  Fixture f;
  ASSERT_TRUE(
      f.add(model_with("  stack s[1](x = 0.5 * seq) {\n    a = attention(x, heads = 2, pattern = causal & document, "
                       "bias = false);\n    n = rmsnorm(x + a);\n    return n;\n  }\n"
                       "  logits = unembed(s, seq);\n  output logits;")))
      << f.diags.str();
  auto g = f.elaborate("m");
  ASSERT_TRUE(g) << f.diags.str();
  EXPECT_EQ(graph::to_string(*g),
            "graph m(tokens: ids[B, N]) -> seq[B, N, 10] {\n"
            "  runtime segments: int32[B, M]\n"
            "  %0 tokens = input : ids[B, N]\n"
            "  %1 seq = embedding(%0) vocab=10 : seq[B, N, 8] {seq.weight[10, 8]}\n"
            "  %2 = 0.5 * %1 : seq[B, N, 8]\n"
            "  %3 s.0.a = attention(%2) heads=2 kv_heads=2 head_dim=4 pattern=\"causal & document\" "
            "causal_in_time=true bias=false : seq[B, N, 8] {s.0.a.query.weight[8, 8], s.0.a.key.weight[8, 8], "
            "s.0.a.value.weight[8, 8], s.0.a.output.weight[8, 8]}\n"
            "  %4 = %2 + %3 : seq[B, N, 8]\n"
            "  %5 s.0.n = rmsnorm(%4) eps=1e-6 : seq[B, N, 8] {s.0.n.weight[8]}\n"
            "  %6 logits = unembed(%5) tied=%1 : seq[B, N, 10]\n"
            "  output %6\n"
            "}\n");
}

// ---- errors ----

TEST(ModelErrors, UnknownModelListsTheModels) {
  Fixture f;
  ASSERT_TRUE(
      f.add("model encoder { input t; output mean_pool(embedding(t, vocab=2, width=2)); }\n"
            "model decoder { input t; e = embedding(t, vocab=2, width=2); output e; }"));
  EXPECT_FALSE(f.elaborate("encodr").has_value());
  EXPECT_EQ(f.diags.str(),
            "tessera: error: unknown model 'encodr'; did you mean 'encoder'? (the files declare: encoder, decoder)\n");
  Fixture empty;
  EXPECT_FALSE(empty.elaborate("m").has_value());
  EXPECT_EQ(empty.diags.str(), "tessera: error: unknown model 'm' (the files declare no model)\n");
}

TEST(ModelErrors, Operators) {
  EXPECT_EQ(model_errors(model_with("  h = lineer(seq, out = 4);\n  output mean_pool(seq);")),
            Lines{"m.attn:4:7: error: unknown operator 'lineer'; did you mean 'linear'?"});
  EXPECT_EQ(model_errors(model_with("  output mean_pool(relu(linear(seq, out = 4)));")),
            Lines{"m.attn:4:25: error: `linear` has weights and must be bound to a name, e.g. `proj = linear(...)`"});
  EXPECT_EQ(model_errors(model_with("  h = relu(seq, seq);\n  output mean_pool(h);")),
            Lines{"m.attn:4:7: error: relu takes 1 value (relu(x)), got 2"});
  EXPECT_EQ(model_errors(model_with("  h = attention(heads = 2);\n  output mean_pool(h);")),
            Lines{"m.attn:4:7: error: attention takes 1 or 2 values (attention(x [, context], heads=INT, "
                  "kv_heads=INT, head_dim=INT, pattern=PATTERN, bias=BOOL, scale=FLOAT, evolving=BOOL, alpha=FLOAT, "
                  "beta=FLOAT, rotary=BOOL, rotary_base=FLOAT, rotary_dims=INT)), got 0"});
  EXPECT_EQ(model_errors(model_with("  h = relu;\n  output mean_pool(seq);")),
            Lines{"m.attn:4:7: error: 'relu' is an operator, not a value; call it, as in `relu(x)`"});
  EXPECT_EQ(model_errors(model_with("  h = 2 * 3;\n  output mean_pool(seq);")),
            Lines{"m.attn:4:7: error: '*' of two numbers: one side must be a value (numbers scale values, as in `2.0 "
                  "* x`)"});
  EXPECT_EQ(model_errors(model_with("  h = 2;\n  output mean_pool(seq);")),
            Lines{"m.attn:4:7: error: a number is not a value on its own; numbers scale values, as in `2.0 * x`"});
}

TEST(ModelErrors, NamedArguments) {
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, outt = 4);\n  output mean_pool(h);")),
            (Lines{"m.attn:4:7: error: missing argument 'out' of linear(x, out=INT, bias=BOOL)",
                   "m.attn:4:19: error: linear has no argument 'outt'; did you mean 'out'?"}));
  EXPECT_EQ(
      model_errors(model_with("  h = linear(seq, out = 4, out = 5);\n  output mean_pool(h);")),
      (Lines{"m.attn:4:28: error: duplicate argument 'out' of linear", "m.attn:4:19: note: it was first given here"}));
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, out = 4.5);\n  output mean_pool(h);")),
            Lines{"m.attn:4:25: error: argument 'out' of linear must be int, got float"});
  EXPECT_EQ(model_errors(model_with("  h = layernorm(seq, eps = true);\n  output mean_pool(h);")),
            Lines{"m.attn:4:28: error: argument 'eps' of layernorm must be float, got bool"});
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, bias = 1, out = 2);\n  output mean_pool(h);")),
            Lines{"m.attn:4:26: error: argument 'bias' of linear must be bool, got int"});
  EXPECT_EQ(model_errors(model_with("  h = linear(out = 4, seq);\n  output mean_pool(h);")),
            (Lines{"m.attn:4:7: error: linear takes 1 value (linear(x, out=INT, bias=BOOL)), got 0",
                   "m.attn:4:23: error: positional argument after a named argument"}));
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, out = q);\n  output mean_pool(h);")),
            Lines{"m.attn:4:25: error: 'q' cannot be used in a model argument (it must be a constant expression)"});
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, out = widht);\n  output mean_pool(h);", "(width: int = 4)")),
            Lines{"m.attn:4:25: error: unknown name 'widht'; did you mean 'width'?"});
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, out = 0);\n  output mean_pool(h);")),
            Lines{"m.attn:4:19: error: argument 'out' of linear must be >= 1, got 0"});
  EXPECT_EQ(model_errors(model_with("  h = linear(seq, out = 4 / (w - 2));\n  output mean_pool(h);", "(w: int = 2)")),
            Lines{"m.attn:4:30: error: division by zero"});
}

TEST(ModelErrors, Names) {
  EXPECT_EQ(model_errors(model_with("  a = relu(b);\n  b = relu(seq);\n  output mean_pool(a);")),
            (Lines{"m.attn:4:12: error: 'b' is used before it is bound", "m.attn:5:3: note: 'b' is bound here"}));
  EXPECT_EQ(model_errors(model_with("  a = relu(sqe);\n  output mean_pool(a);")),
            Lines{"m.attn:4:12: error: unknown name 'sqe'; did you mean 'seq'?"});
  EXPECT_EQ(model_errors(model_with("  seq = relu(tokens);\n  output mean_pool(seq);")),
            (Lines{"m.attn:4:3: error: duplicate binding 'seq': names are bound once in a scope",
                   "m.attn:3:3: note: 'seq' was first bound here",
                   "m.attn:4:14: error: relu needs a sequence or a pooled value, but `tokens` is token ids"}));
  EXPECT_EQ(model_errors(model_with("  a = relu(width);\n  output mean_pool(a);", "(width: int = 4)")),
            Lines{"m.attn:4:12: error: 'width' is a parameter of model 'm', not a value; parameters are used in "
                  "named arguments, as in `out = width`"});
  EXPECT_EQ(model_errors(model_with("  stack s[2](x = seq) {\n    y = relu(x);\n    return y;\n  }\n"
                                    "  output mean_pool(y);")),
            Lines{"m.attn:8:20: error: unknown name 'y': it is bound inside stack 's' and not visible here (after the "
                  "stack, 's' names its last layer's result)"});
  EXPECT_EQ(model_errors(model_with("  stack s[2](x = seq) {\n    x = relu(x);\n    return x;\n  }\n"
                                    "  output mean_pool(s);")),
            (Lines{"m.attn:5:5: error: duplicate binding 'x': names are bound once in a scope",
                   "m.attn:4:14: note: 'x' was first bound here"}));
  EXPECT_EQ(model_errors(model_with("  stack s[2](x = seq) {\n    y = x + s;\n    return y;\n  }\n"
                                    "  output mean_pool(s);")),
            (Lines{"m.attn:5:13: error: 's' is used before it is bound", "m.attn:4:9: note: 's' is bound here"}));
  // An error in a value is reported once; the name it binds is not reported again where it is used.
  EXPECT_EQ(model_errors(model_with("  a = relu(nope);\n  b = a + a;\n  output mean_pool(b);")),
            Lines{"m.attn:4:12: error: unknown name 'nope'"});
}

TEST(ModelErrors, KindsAndWidths) {
  EXPECT_EQ(model_errors(model_with("  w = embedding(tokens, vocab = 10, width = 16);\n  output mean_pool(seq + w);")),
            Lines{"m.attn:5:20: error: width mismatch in '+': `seq` has width 8 and `w` has width 16"});
  EXPECT_EQ(model_errors(model_with("  output mean_pool(seq) * seq;")),
            Lines{"m.attn:4:10: error: operands of '*' must both be sequences or both be pooled, but "
                  "`mean_pool(seq)` is pooled[B, 8] and `seq` is seq[B, N, 8]"});
  EXPECT_EQ(model_errors(model_with("  output mean_pool(tokens + seq);")),
            Lines{"m.attn:4:20: error: '+' needs a sequence or a pooled value, but `tokens` is token ids"});
  EXPECT_EQ(model_errors(model_with("  output mean_pool(2.0 * tokens);")),
            Lines{"m.attn:4:26: error: '*' needs a sequence or a pooled value, but `tokens` is token ids"});
  EXPECT_EQ(model_errors(model_with("  e = embedding(seq, vocab = 3, width = 8);\n  output mean_pool(e);")),
            Lines{"m.attn:4:17: error: embedding needs token ids, but `seq` is a sequence (seq[B, N, 8])"});
  EXPECT_EQ(model_errors(model_with("  n = layernorm(tokens);\n  output mean_pool(n);")),
            Lines{"m.attn:4:17: error: layernorm needs a sequence or a pooled value, but `tokens` is token ids"});
  EXPECT_EQ(model_errors(model_with("  output mean_pool(tokens);")),
            Lines{"m.attn:4:20: error: mean_pool needs a sequence, but `tokens` is token ids"});
  EXPECT_EQ(model_errors(model_with("  output cls_pool(mean_pool(seq));")),
            Lines{"m.attn:4:19: error: cls_pool needs a sequence, but `mean_pool(seq)` is already pooled "
                  "(pooled[B, 8])"});
  EXPECT_EQ(model_errors(model_with("  p = learned_positions(mean_pool(seq), length = 4);\n  output mean_pool(p);")),
            Lines{"m.attn:4:25: error: learned_positions needs token ids or a sequence, but `mean_pool(seq)` is "
                  "pooled (pooled[B, 8])"});
  EXPECT_EQ(model_errors(model_with("  p = learned_positions(tokens, length = 4);\n  output mean_pool(p);")),
            Lines{"m.attn:4:7: error: learned_positions of token ids needs `width = INT`: `tokens` has no width to "
                  "take"});
  EXPECT_EQ(model_errors(model_with("  output tokens;")),
            Lines{"m.attn:4:10: error: the output of model 'm' is token ids; a model outputs a sequence or a pooled "
                  "value"});
}

TEST(ModelErrors, Attention) {
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 3);\n  output mean_pool(a);")),
            Lines{"m.attn:4:22: error: heads (3) must divide the width (8) when head_dim is not given"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 4, kv_heads = 3);\n  output mean_pool(a);")),
            Lines{"m.attn:4:33: error: kv_heads (3) must divide heads (4): each kv head serves a group of query "
                  "heads"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, tokens, heads = 2);\n  output mean_pool(a);")),
            Lines{"m.attn:4:22: error: cross-attention needs an encoder output: `tokens` is token ids"});
  EXPECT_EQ(model_errors(model_with("  a = attention(tokens, heads = 2);\n  output mean_pool(a);")),
            Lines{"m.attn:4:17: error: attention needs a sequence, but `tokens` is token ids"});
  EXPECT_EQ(
      model_errors(model_with("  a = attention(seq, heads = 2, pattern = [causal, full]);\n  output mean_pool(a);")),
      Lines{"m.attn:4:33: error: a pattern list gives one pattern per layer of a stack; outside a stack, give "
            "one pattern"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, pattern = casual);\n  output mean_pool(a);")),
            Lines{"m.attn:4:43: error: unknown pattern 'casual'; did you mean 'causal'?"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, pattern = sliding_window(window = w - 4));\n"
                                    "  output mean_pool(a);",
                                    "(w: int = 4)")),
            (Lines{"m.attn:4:58: error: argument 'window' of sliding_window must be >= 1, got 0",
                   "<prelude>:18:24: note: parameter 'window' is declared here"}));
  EXPECT_EQ(
      model_errors(model_with("  a = attention(seq, heads = 2, pattern = relative);\n  output mean_pool(a);")),
      Lines{"m.attn:4:7: error: attention with pattern 'relative' needs `R = INT`: the size R of its weight 'rel' "
            "(float32[H, R, D])"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, R = 4);\n  output mean_pool(a);")),
            Lines{"m.attn:4:33: error: attention has no argument 'R'"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, kv_head = 1);\n  output mean_pool(a);")),
            Lines{"m.attn:4:33: error: attention has no argument 'kv_head'; did you mean 'kv_heads'?"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, pattern = relative, R = 0);\n"
                                    "  output mean_pool(a);")),
            Lines{"m.attn:4:53: error: argument 'R' of attention must be between 1 and 2147483647, got 0"});
  // A list's every entry is checked, even one no layer uses.
  EXPECT_EQ(model_errors(model_with("  stack s[1](x = seq) {\n    a = attention(x, heads = 2, pattern = [causal, "
                                    "relative]);\n    return a;\n  }\n  output mean_pool(s);")),
            Lines{"m.attn:5:9: error: attention with pattern 'relative' needs `R = INT`: the size R of its weight "
                  "'rel' (float32[H, R, D])"});
}

TEST(ModelErrors, RotaryEmbeddings) {
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, rotary_base = 500.0);\n  output mean_pool(a);")),
            Lines{"m.attn:4:33: error: 'rotary_base' is an argument of rotary position embeddings: it needs `rotary = "
                  "true`"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, seq, heads = 2, rotary = true);\n  output mean_pool(a);")),
            Lines{"m.attn:4:38: error: rotary position embeddings need self-attention: cross-attention's keys come "
                  "from another sequence"});
  EXPECT_EQ(model_errors(
                model_with("  a = attention(seq, heads = 2, rotary = true, rotary_dims = 3);\n  output mean_pool(a);")),
            Lines{"m.attn:4:48: error: rotary_dims must be even and between 2 and head_dim (4), got 3"});
  EXPECT_EQ(model_errors(
                model_with("  a = attention(seq, heads = 2, rotary = true, rotary_dims = 6);\n  output mean_pool(a);")),
            Lines{"m.attn:4:48: error: rotary_dims must be even and between 2 and head_dim (4), got 6"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, head_dim = 5, rotary = true);\n"
                                    "  output mean_pool(a);")),
            Lines{"m.attn:4:47: error: rotary position embeddings rotate feature pairs: head_dim (5) is odd; give an "
                  "even rotary_dims"});
  EXPECT_EQ(model_errors(model_with("  a = attention(seq, heads = 2, rotary = true, rotary_base = 0.0);\n"
                                    "  output mean_pool(a);")),
            Lines{"m.attn:4:48: error: rotary_base must be positive and finite, got 0"});
}

TEST(ModelErrors, Unembed) {
  EXPECT_EQ(model_errors(model_with("  n = layernorm(seq);\n  output unembed(seq, n);")),
            Lines{"m.attn:5:23: error: unembed needs an `embedding` binding as its second argument (its table is the "
                  "output matrix), but `n` is computed by `layernorm`"});
  EXPECT_EQ(model_errors(model_with("  output unembed(seq, tokens);")),
            Lines{"m.attn:4:23: error: unembed needs an `embedding` binding as its second argument (its table is the "
                  "output matrix), but `tokens` is an input"});
  EXPECT_EQ(model_errors(model_with("  wide = embedding(tokens, vocab = 5, width = 4);\n  output unembed(seq, wide);")),
            Lines{"m.attn:5:10: error: unembed: `seq` has width 8 but the table of `wide` has width 4"});
}

TEST(ModelErrors, StacksAndStructure) {
  EXPECT_EQ(
      model_errors(model_with("  stack s[n](x = seq) {\n    return x;\n  }\n  output mean_pool(s);", "(n: int = 0)")),
      Lines{"m.attn:4:11: error: stack 's' needs at least 1 layer, got 0"});
  EXPECT_EQ(model_errors(model_with("  stack s[2](x = seq) {\n    y = linear(x, out = 3);\n    return y;\n  }\n"
                                    "  output mean_pool(s);")),
            Lines{"m.attn:6:12: error: stack 's' returns seq[B, N, 3] but its carried value 'x' starts as "
                  "seq[B, N, 8]; each layer must return what the next one takes"});
  EXPECT_EQ(model_errors(model_with("  stack s[1.5](x = seq) {\n    return x;\n  }\n  output mean_pool(s);")),
            Lines{"m.attn:4:11: error: the layer count of stack 's' must be int, got float"});
  // Errors inside a stack's body are reported once, not once per layer.
  EXPECT_EQ(model_errors(model_with("  stack s[4](x = seq) {\n    y = relu(nope);\n    return x;\n  }\n"
                                    "  output mean_pool(s);")),
            Lines{"m.attn:5:14: error: unknown name 'nope'"});
  EXPECT_EQ(
      model_errors(model_with("  output mean_pool(seq);\n  output cls_pool(seq);")),
      (Lines{"m.attn:5:3: error: model 'm' has more than one output", "m.attn:4:3: note: the first output is here"}));
  EXPECT_EQ(model_errors("model m {\n  input t;\n  e = embedding(t, vocab = 2, width = 2);\n}\n"),
            Lines{"m.attn:1:7: error: model 'm' has no output; end it with `output VALUE;`"});
  EXPECT_EQ(model_errors("model m(w: int = 2) {\n  e = w;\n}\n"),
            (Lines{"m.attn:1:7: error: model 'm' has no input; declare one with `input tokens;`",
                   "m.attn:1:7: error: model 'm' has no output; end it with `output VALUE;`",
                   "m.attn:2:7: error: 'w' is a parameter of model 'm', not a value; parameters are used in named "
                   "arguments, as in `out = w`"}));
}

TEST(ModelErrors, Overrides) {
  std::string text =
      model_with("  output mean_pool(seq);", "(layers: int >= 1 = 2, eps: float = 1e-5, on: bool = true)");
  EXPECT_EQ(model_errors(text, {{"layer", "3"}}),
            Lines{"<--set>:1:1: error: model 'm' has no parameter 'layer'; did you mean 'layers'?"});
  EXPECT_EQ(model_errors(text, {{"layers", "0"}}),
            (Lines{"<--set>:1:8: error: parameter 'layers' of model 'm' must be >= 1, got 0",
                   "m.attn:1:9: note: parameter 'layers' is declared here"}));
  EXPECT_EQ(model_errors(text, {{"layers", "two"}}),
            (Lines{"<--set>:1:8: error: parameter 'layers' of model 'm' must be int, got 'two'",
                   "m.attn:1:9: note: parameter 'layers' is declared here"}));
  EXPECT_EQ(model_errors(text, {{"eps", "small"}}),
            (Lines{"<--set>:1:5: error: parameter 'eps' of model 'm' must be float, got 'small'",
                   "m.attn:1:31: note: parameter 'eps' is declared here"}));
  EXPECT_EQ(model_errors(text, {{"on", "1"}}),
            (Lines{"<--set>:1:4: error: parameter 'on' of model 'm' must be bool, got '1'",
                   "m.attn:1:50: note: parameter 'on' is declared here"}));
  Fixture f;
  ASSERT_TRUE(f.add(text));
  EXPECT_TRUE(f.elaborate("m", {{"eps", "3"}, {"on", "false"}, {"layers", "7"}}).has_value()) << f.diags.str();
  EXPECT_EQ(model_errors(model_with("  output mean_pool(seq);", "(n: int)")),
            Lines{"m.attn:1:7: error: model 'm' needs a value for its parameter 'n' (it has no default): give one "
                  "with --set n=VALUE"});
}

// ---- robustness ----

// Mutated examples and token soups: parsing and elaboration terminate, never crash, report an error whenever
// they fail, and every graph that elaborates is well formed (inputs earlier, weight names unique).
TEST(ModelFuzz, MutationsNeverCrash) {
  std::mt19937 rng(7);
  std::vector<std::string> sources;
  for (const char* file : {"minilm.attn", "gpt.attn", "transformer.attn", "sparse_transformer.attn",
                           "music_transformer.attn", "llama_like.attn"}) {
    sources.push_back(read_example(file));
  }
  const std::vector<std::string> words = {
      "model", "stack", "input", "output", "return",    "pattern",   "=",     ";",      "{",         "}",
      "(",     ")",     "[",     "]",      ",",         "+",         "*",     "-",      "2.0",       "0",
      "x",     "layer", "seq",   "linear", "attention", "embedding", "heads", "causal", "mean_pool", "unembed",
      "&",     "|",     "out",   "width",  "-1",        "1e400",     "\n"};
  for (int n = 0; n < 1500; ++n) {
    std::string text = sources[rng() % sources.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % (text.size() + 1);
      switch (rng() % 3) {
        case 0: text.erase(at, 1 + rng() % 12); break;
        case 1: text.insert(at, " " + words[rng() % words.size()] + " "); break;
        default: text.insert(at, text.substr(rng() % text.size(), rng() % 40)); break;
      }
    }
    if (n % 5 == 0) {
      text.clear();
      for (size_t i = 0, len = rng() % 60; i < len; ++i) text += words[rng() % words.size()] + " ";
    }
    Fixture f;
    f.add(text);
    for (const auto& name : f.lib.model_names()) {
      int errors_before = f.diags.error_count();
      auto g = f.elaborate(name, {});
      EXPECT_EQ(g.has_value(), f.diags.error_count() == errors_before) << text;
      if (!g) continue;
      ASSERT_GE(g->output, 0) << text;
      std::set<std::string> names;
      for (size_t i = 0; i < g->nodes.size(); ++i) {
        for (int in : g->nodes[i].inputs) EXPECT_TRUE(in >= 0 && in < static_cast<int>(i)) << text;
      }
      for (const auto& w : g->weights()) EXPECT_TRUE(names.insert(w.name).second) << w.name << "\n" << text;
    }
    for (const auto& d : f.diags.all()) dsl::format_diagnostic(d);
  }
}

}  // namespace
}  // namespace tessera::sema
