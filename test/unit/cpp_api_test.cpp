// The public C++ API (runtime/include/tessera/model.h) against the runtime it wraps and the float64 oracle, on
// random weights written to a real .safetensors file; and its errors, all tessera::Error with what and where.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "runtime/safetensors.h"
#include "targets/reference/reference_model.h"
#include "tessera/model.h"
#include "test/unit/expect_error.h"
#include "test/unit/model_test_support.h"

namespace tessera {
namespace {

const std::map<std::string, std::string> kGptSmall = {{"layers", "2"}, {"width", "32"}, {"heads", "4"},
                                                      {"ffn", "64"},   {"vocab", "61"}, {"context", "64"}};

std::string spec_path(const std::string& file) { return std::string(TESSERA_SOURCE_DIR) + "/examples/models/" + file; }

// Random weights for `file`'s model, written as .safetensors; returns the path and the weights.
std::string write_weights(const graph::Graph& graph, const std::string& tag,
                          std::map<std::string, runtime::Tensor>& weights) {
  weights = runtime::random_weights(graph, 5);
  std::map<std::string, const runtime::Tensor*> views;
  for (const auto& [name, t] : weights) views[name] = &t;
  const std::string path = testing::TempDir() + "/tessera_api_" + tag + ".safetensors";
  runtime::write_safetensors(path, views);
  return path;
}

TEST(CppApi, RunAndGenerateAgreeWithTheFloat64Reference) {
  const graph::Graph graph = test::example_model("gpt.attn", "gpt", kGptSmall);
  std::map<std::string, runtime::Tensor> weights;
  const std::string path = write_weights(graph, "gpt", weights);
  LoadOptions options;
  options.parameters = kGptSmall;
  Model model = Model::load(spec_path("gpt.attn"), path, options);
  EXPECT_EQ(model.name(), "gpt");
  EXPECT_EQ(model.inputs(), std::vector<std::string>{"tokens"});
  EXPECT_NE(model.graph().find("layer.1.attention"), std::string::npos);

  TokenIds tokens;
  tokens.batch = 2;
  tokens.length = 9;
  for (int i = 0; i < 18; ++i) tokens.ids.push_back((i * 7) % 61);
  const Output out = model.run(tokens);
  ASSERT_EQ(out.shape, (std::vector<int64_t>{2, 9, 61}));

  runtime::Tensor ids(runtime::DType::Int32, {2, 9});
  std::copy(tokens.ids.begin(), tokens.ids.end(), ids.data<int32_t>());
  std::map<std::string, const runtime::Tensor*> views;
  for (const auto& [name, t] : weights) views[name] = &t;
  const reference::ModelTensor want = reference::run_model_f64(graph, views, {{"tokens", &ids}});
  double scale = 0;
  for (double v : want.values) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.values.size(); ++i) ASSERT_NEAR(out.values[i], want.values[i], 2e-5 * scale) << i;

  // Greedy generation continues the prompt with each step's argmax of a full forward pass.
  GenerateOptions generate;
  generate.max_new_tokens = 4;
  const std::vector<std::vector<int32_t>> rows = model.generate(TokenIds::sequence({3, 1, 4}), generate);
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].size(), 7u);
  std::vector<int32_t> sequence = {3, 1, 4};
  for (int t = 0; t < 4; ++t) {
    const Output logits = model.run(TokenIds::sequence(sequence));
    const int64_t n = logits.shape[1], vocab = logits.shape[2];
    const float* last = logits.values.data() + (n - 1) * vocab;
    sequence.push_back(static_cast<int32_t>(std::max_element(last, last + vocab) - last));
  }
  EXPECT_EQ(rows[0], sequence);
}

TEST(CppApi, ErrorsAreTesseraErrorsThatSayWhatAndWhere) {
  const graph::Graph graph = test::example_model("gpt.attn", "gpt", kGptSmall);
  std::map<std::string, runtime::Tensor> weights;
  const std::string path = write_weights(graph, "gpt_errors", weights);
  LoadOptions options;
  options.parameters = kGptSmall;
  test::expect_error<Error>([&] { Model::load("/no/such/spec.attn", path, options); },
                            {"cannot read the spec", "/no/such/spec.attn"});
  test::expect_error<Error>([&] { Model::load(spec_path("gpt.attn"), "/no/such/w.safetensors", options); },
                            {"/no/such/w.safetensors"});

  const std::string bad_spec = testing::TempDir() + "/tessera_api_bad.attn";
  std::ofstream(bad_spec) << "model m {\n  input tokens;\n  x = embedding(tokens, vocab = 10, width = 8);\n"
                             "  y = linaer(x, out = 4);\n  output y;\n}\n";
  test::expect_error<Error>([&] { Model::load(bad_spec, path); }, {"tessera_api_bad.attn:4:7", "linaer", "linear"});

  LoadOptions wider = options;
  wider.parameters["width"] = "48";
  test::expect_error<Error>([&] { Model::load(spec_path("gpt.attn"), path, wider); },
                            {"word.weight", "[61, 32]", "expected [61, 48]"});

  Model model = Model::load(spec_path("gpt.attn"), path, options);
  test::expect_error<Error>([&] { model.run(TokenIds::sequence({1, 2, 99})); }, {"token id 99", "[0, 2]"});
  TokenIds ragged;
  ragged.batch = 2;
  ragged.length = 3;
  ragged.ids = {1, 2, 3};
  test::expect_error<Error>([&] { model.run(ragged); }, {"3 ids do not make 2 sequences of 3 tokens"});
  test::expect_error<Error>([&] { model.embed("hello"); }, {"LoadOptions::vocab"});
}

TEST(CppApi, EmbedTokenizesWithTheVocabulary) {
  const std::map<std::string, std::string> small = {
      {"layers", "1"}, {"width", "16"}, {"heads", "2"}, {"ffn", "32"}, {"vocab", "8"}};
  const graph::Graph graph = test::example_model("minilm.attn", "minilm", small);
  std::map<std::string, runtime::Tensor> weights;
  const std::string path = write_weights(graph, "minilm", weights);
  const std::string vocab = testing::TempDir() + "/tessera_api_vocab.txt";
  std::ofstream(vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n!\n";
  LoadOptions options;
  options.parameters = small;
  options.vocab = vocab;
  Model model = Model::load(spec_path("minilm.attn"), path, options);
  const std::vector<float> e = model.embed("Hello world!");
  const Output direct = model.run(TokenIds::sequence({2, 5, 6, 7, 3}));  // [CLS] hello world ! [SEP]
  ASSERT_EQ(e.size(), 16u);
  for (size_t i = 0; i < e.size(); ++i) EXPECT_EQ(e[i], direct.values[i]);
  double norm = 0;
  for (float v : e) norm += static_cast<double>(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);  // the spec ends with normalize()
}

}  // namespace
}  // namespace tessera
