// The public C++ API (runtime/include/tessera/model.h) against the runtime it wraps and the float64 oracle, on
// random weights written to a real .safetensors file; and its errors, all tessera::Error with what and where.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

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
  test::expect_error<Error>([&] { model.run(TokenIds::sequence({})); }, {"0 ids", "length must be >= 1"});
  test::expect_error<Error>([&] { model.embed("hello"); }, {"LoadOptions::vocab"});
}

TEST(CppApi, BadOptionsAndNamesAreErrorsNamingThem) {
  const graph::Graph graph = test::example_model("gpt.attn", "gpt", kGptSmall);
  std::map<std::string, runtime::Tensor> weights;
  const std::string path = write_weights(graph, "gpt_options", weights);
  const std::string spec = spec_path("gpt.attn");
  LoadOptions options;
  options.parameters = kGptSmall;

  LoadOptions changed = options;
  changed.parameters["layerz"] = "2";
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"no parameter 'layerz'", "'layers'"});
  changed = options;
  changed.parameters["layers"] = "two";
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"'layers'", "must be int", "'two'"});
  changed = options;
  changed.name = "gtp";
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"unknown model 'gtp'", "'gpt'"});
  changed = options;
  changed.naming = "roberta";
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"naming 'roberta'"});
  changed = options;
  changed.vocab = "/no/such/vocab.txt";
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"/no/such/vocab.txt"});
  changed = options;
  changed.threads = -2;
  test::expect_error<Error>([&] { Model::load(spec, path, changed); }, {"LoadOptions::threads is -2"});

  Model model = Model::load(spec, path, options);
  EXPECT_TRUE(model.runtime_tensors().empty());
  const TokenIds ids = TokenIds::sequence({1, 2, 3});
  test::expect_error<Error>(
      [&] {
        model.run({{"tokens", ids}, {"tokns", ids}});
      },
      {"model 'gpt' has no input 'tokns'", "it reads: tokens"});
  test::expect_error<Error>([&] { model.run(std::map<std::string, TokenIds>{}); }, {"needs input 'tokens'"});
  test::expect_error<Error>([&] { model.run(TokenIds::sequence(std::vector<int32_t>(65, 1))); },
                            {"position 64", "64 positions"});
  GenerateOptions generate;
  generate.temperature = -1;
  test::expect_error<Error>([&] { model.generate(ids, generate); }, {"temperature is -1"});
  generate.temperature = std::nan("");
  test::expect_error<Error>([&] { model.generate(ids, generate); }, {"temperature is nan"});
  generate.temperature = 1;
  generate.top_k = -1;
  test::expect_error<Error>([&] { model.generate(ids, generate); }, {"top_k is -1"});
  generate = {};
  generate.max_new_tokens = -1;
  test::expect_error<Error>([&] { model.generate(ids, generate); }, {"max_new_tokens"});
  test::expect_error<Error>([&] { model.generate(ids, {}, {{"source", ids}}); }, {"no input 'source'"});

  Model moved_into = std::move(model);
  EXPECT_EQ(moved_into.name(), "gpt");
  test::expect_error<Error>([&] { model.run(ids); }, {"moved from"});  // NOLINT(bugprone-use-after-move)
}

// A model whose attention reads a run-time tensor (`document`'s segments): it is passed by name with the tokens.
TEST(CppApi, RunTimeTensorsArePassedByNameAndRead) {
  const std::string spec = testing::TempDir() + "/tessera_api_packed.attn";
  std::ofstream(spec) << "model packed(vocab: int >= 1 = 13, width: int >= 1 = 16) {\n"
                         "  input tokens;\n"
                         "  word = embedding(tokens, vocab = vocab, width = width);\n"
                         "  position = learned_positions(tokens, length = 32, width = width);\n"
                         "  x = word + position;\n"
                         "  norm = layernorm(x, eps = 1e-5);\n"
                         "  mixed = attention(norm, heads = 2, pattern = causal & document);\n"
                         "  final_norm = layernorm(x + mixed, eps = 1e-5);\n"
                         "  output unembed(final_norm, word);\n"
                         "}\n";
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  library.add_file(std::make_shared<dsl::SourceFile>(spec, test::read_source(spec)), diags);
  const std::optional<graph::Graph> graph = sema::elaborate_model(library, "packed", {}, diags);
  std::ostringstream messages;
  diags.print(messages);
  ASSERT_TRUE(graph && !diags.has_errors()) << messages.str();
  std::map<std::string, runtime::Tensor> weights;
  const std::string path = write_weights(*graph, "packed", weights);
  Model model = Model::load(spec, path);
  EXPECT_EQ(model.runtime_tensors(), std::vector<std::string>{"segments"});

  TokenIds tokens, segments, one_document;
  tokens.batch = segments.batch = one_document.batch = 2;
  tokens.length = segments.length = one_document.length = 7;
  tokens.ids = {1, 5, 9, 2, 12, 0, 7, 3, 3, 8, 11, 4, 6, 10};
  segments.ids = {0, 0, 0, 1, 1, 2, 2, 0, 1, 1, 1, 1, 5, 5};
  one_document.ids.assign(14, 0);
  test::expect_error<Error>([&] { model.run(tokens); }, {"run-time tensors", "by name"});
  test::expect_error<Error>([&] { model.run({{"tokens", tokens}}); }, {"run-time tensor 'segments'"});
  const Output out = model.run({{"tokens", tokens}, {"segments", segments}});
  ASSERT_EQ(out.shape, (std::vector<int64_t>{2, 7, 13}));

  runtime::Tensor ids(runtime::DType::Int32, {2, 7}), segs(runtime::DType::Int32, {2, 7});
  std::copy(tokens.ids.begin(), tokens.ids.end(), ids.data<int32_t>());
  std::copy(segments.ids.begin(), segments.ids.end(), segs.data<int32_t>());
  std::map<std::string, const runtime::Tensor*> views;
  for (const auto& [name, t] : weights) views[name] = &t;
  const reference::ModelTensor want = reference::run_model_f64(*graph, views, {{"tokens", &ids}, {"segments", &segs}});
  double scale = 0;
  for (double v : want.values) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.values.size(); ++i) ASSERT_NEAR(out.values[i], want.values[i], 2e-5 * scale) << i;

  // The segments are read: one document changes every position after a document boundary.
  const Output joined = model.run({{"tokens", tokens}, {"segments", one_document}});
  const int64_t vocab = 13, last_row = (2 * 7 - 1) * vocab;
  EXPECT_GT(std::fabs(joined.values[static_cast<size_t>(last_row)] - out.values[static_cast<size_t>(last_row)]), 1e-6);

  // The runner keeps run-time tensors from the prefill, so decoding one sized by the sequence is refused up front.
  test::expect_error<Error>(
      [&] {
        model.generate(TokenIds::sequence({4, 9, 1}), {}, {{"segments", segments}});
      },
      {"run-time tensor 'segments' [B, M]", "generate()", "run()"});
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
