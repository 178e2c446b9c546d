// The model runtime's building blocks, each against an independent computation: the vectorisable activation
// functions against libm in double, checkpoint renaming (BERT) and re-layout (GPT-2's fused, transposed c_attn)
// against the layout rules written out here, the activation arena's reuse, and token choice for generation.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "runtime/model/activation_arena.h"
#include "runtime/model/activation_functions.h"
#include "runtime/model/checkpoint_naming.h"
#include "runtime/model/generation.h"
#include "runtime/safetensors.h"
#include "test/unit/expect_error.h"

namespace tessera::runtime {
namespace {

std::vector<float> sweep() {
  std::vector<float> xs;
  for (double x = -30; x <= 30; x += 0.0137) xs.push_back(static_cast<float>(x));
  for (float x : {0.0f, -0.0f, 1e-8f, -1e-8f, 1e-4f, 5.0f, -5.0f, 88.0f, -88.0f}) xs.push_back(x);
  return xs;
}

// A few float ulps of the result plus `absolute` (the approximation's own error, scaled as the function scales it).
void expect_close(double got, double want, double x, double absolute) {
  EXPECT_NEAR(got, want, 4e-7 * std::fabs(want) + absolute) << "at x = " << x;
}

TEST(ActivationFunctions, ExpMatchesLibmToAFewUlps) {
  for (double x = -87.0; x <= 88.0; x += 0.01) {
    const float xf = static_cast<float>(x);
    const double want = std::exp(static_cast<double>(xf));
    EXPECT_NEAR(fast_exp(xf), want, 3e-7 * want) << "at x = " << xf;
  }
  EXPECT_EQ(fast_exp(-100.0f), 0.0f);
  EXPECT_EQ(fast_exp(100.0f), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
}

TEST(ActivationFunctions, GeluFormsAndSiluMatchDoublePrecision) {
  const std::vector<float> xs = sweep();
  std::vector<float> gelu = xs, gelu_tanh = xs, silu = xs, relu = xs;
  gelu_inplace(gelu.data(), static_cast<int64_t>(gelu.size()));
  gelu_tanh_inplace(gelu_tanh.data(), static_cast<int64_t>(gelu_tanh.size()));
  silu_inplace(silu.data(), static_cast<int64_t>(silu.size()));
  relu_inplace(relu.data(), static_cast<int64_t>(relu.size()));
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i];
    const double g = 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    const double gt = 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    const double s = x / (1 + std::exp(-x));
    // GELU = x·(1 + erf)/2 with erf's absolute error ≤ 1.5e-7 (Abramowitz & Stegun 7.1.26) plus its evaluation in
    // float (about two ulps of 1.0, 1.2e-7): at most 1.5e-7·|x|. The exp-based ones inherit exp's relative error.
    expect_close(gelu[i], g, x, 1.5e-7 * std::fabs(x) + 1e-30);
    expect_close(gelu_tanh[i], gt, x, 1e-7 * std::fabs(x) + 1e-30);
    expect_close(silu[i], s, x, 1e-7 * std::fabs(x) + 1e-30);
    EXPECT_EQ(relu[i], x > 0 ? xs[i] : 0.0f);
  }
}

Tensor filled(std::vector<int64_t> shape, float start) {
  Tensor t(DType::Float32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = start + static_cast<float>(i);
  return t;
}

TEST(CheckpointNaming, DetectsBertGpt2AndLlama) {
  EXPECT_EQ(detect_checkpoint_naming({"bert.embeddings.word_embeddings.weight", "x"}), CheckpointNaming::Bert);
  EXPECT_EQ(detect_checkpoint_naming({"embeddings.word_embeddings.weight"}), CheckpointNaming::Bert);
  EXPECT_EQ(detect_checkpoint_naming({"transformer.wte.weight"}), CheckpointNaming::Gpt2);
  EXPECT_EQ(detect_checkpoint_naming({"wte.weight", "h.0.ln_1.weight"}), CheckpointNaming::Gpt2);
  EXPECT_EQ(detect_checkpoint_naming({"word.weight"}), CheckpointNaming::Tessera);
  EXPECT_EQ(detect_checkpoint_naming({"lm_head.weight", "model.embed_tokens.weight"}), CheckpointNaming::Llama);
  EXPECT_EQ(parse_checkpoint_naming("llama"), CheckpointNaming::Llama);
  test::expect_error<ModelError>([] { parse_checkpoint_naming("roberta"); },
                                 {"roberta", "tessera, bert, gpt2 or llama"});
}

TEST(CheckpointNaming, BertNamesMapToTheMiniLMSpec) {
  std::map<std::string, Tensor> file;
  file["embeddings.word_embeddings.weight"] = filled({5, 2}, 0);
  file["embeddings.LayerNorm.gamma"] = filled({2}, 10);
  file["embeddings.LayerNorm.beta"] = filled({2}, 20);
  file["encoder.layer.3.attention.self.key.bias"] = filled({2}, 30);
  file["encoder.layer.3.attention.output.dense.weight"] = filled({2, 2}, 40);
  file["encoder.layer.3.attention.output.LayerNorm.weight"] = filled({2}, 50);
  file["encoder.layer.11.intermediate.dense.weight"] = filled({4, 2}, 60);
  file["encoder.layer.11.output.dense.bias"] = filled({2}, 70);
  file["encoder.layer.11.output.LayerNorm.bias"] = filled({2}, 80);
  file["pooler.dense.weight"] = filled({2, 2}, 90);
  const MappedCheckpoint mapped = map_checkpoint(std::move(file), CheckpointNaming::Bert);
  const std::map<std::string, float> first_values = {
      {"word.weight", 0},
      {"embed_norm.weight", 10},
      {"embed_norm.bias", 20},
      {"layer.3.attention.key.bias", 30},
      {"layer.3.attention.output.weight", 40},
      {"layer.3.attention_norm.weight", 50},
      {"layer.11.ffn_in.weight", 60},
      {"layer.11.ffn_out.bias", 70},
      {"layer.11.ffn_norm.bias", 80},
  };
  EXPECT_EQ(mapped.tensors.size(), first_values.size());
  for (const auto& [name, first] : first_values) {
    ASSERT_TRUE(mapped.tensors.count(name)) << name;
    EXPECT_EQ(mapped.tensors.at(name).data<float>()[0], first) << name;
  }
  EXPECT_EQ(mapped.unused, std::vector<std::string>{"pooler.dense.weight"});
}

TEST(CheckpointNaming, Gpt2SplitsCAttnAndTransposesConv1D) {
  const int64_t W = 3;
  std::map<std::string, Tensor> file;
  file["transformer.h.0.attn.c_attn.weight"] = filled({W, 3 * W}, 0);  // [in, out]: q | k | v columns
  file["transformer.h.0.attn.c_attn.bias"] = filled({3 * W}, 100);
  file["transformer.h.0.mlp.c_fc.weight"] = filled({W, 4 * W}, 200);
  file["transformer.h.0.attn.bias"] = filled({1, 1, 4, 4}, 0);  // the causal-mask buffer
  file["transformer.ln_f.weight"] = filled({W}, 300);
  const MappedCheckpoint mapped = map_checkpoint(std::move(file), CheckpointNaming::Gpt2);
  const char* parts[] = {"query", "key", "value"};
  for (int p = 0; p < 3; ++p) {
    const Tensor& w = mapped.tensors.at(fmt::format("layer.0.attention.{}.weight", parts[p]));
    ASSERT_EQ(w.shape(), (std::vector<int64_t>{W, W}));
    for (int64_t o = 0; o < W; ++o) {
      for (int64_t i = 0; i < W; ++i) {
        // nn.Linear [out, in] element (o, i) is Conv1D element (i, p*W + o).
        EXPECT_EQ(w.data<float>()[o * W + i], static_cast<float>(i * 3 * W + p * W + o));
      }
    }
    const Tensor& b = mapped.tensors.at(fmt::format("layer.0.attention.{}.bias", parts[p]));
    for (int64_t o = 0; o < W; ++o) EXPECT_EQ(b.data<float>()[o], static_cast<float>(100 + p * W + o));
  }
  const Tensor& fc = mapped.tensors.at("layer.0.ffn_in.weight");
  ASSERT_EQ(fc.shape(), (std::vector<int64_t>{4 * W, W}));
  EXPECT_EQ(fc.data<float>()[1 * W + 2], static_cast<float>(200 + 2 * 4 * W + 1));
  EXPECT_TRUE(mapped.tensors.count("final_norm.weight"));
  EXPECT_EQ(mapped.unused, std::vector<std::string>{"transformer.h.0.attn.bias"});

  std::map<std::string, Tensor> bad;
  bad["h.0.attn.c_attn.weight"] = filled({3, 7}, 0);
  test::expect_error<TensorError>([&] { map_checkpoint(std::move(bad), CheckpointNaming::Gpt2); },
                                  {"h.0.attn.c_attn.weight", "[3, 7]", "divisible by 3"});
}

TEST(ActivationArena, ReusesBuffersAfterTheFirstPass) {
  ActivationArena arena;
  auto pass = [&] {
    const int a = arena.acquire(1000);
    const int b = arena.acquire(4000);
    arena.release(a);
    const int c = arena.acquire(800);  // fits in a's buffer
    EXPECT_EQ(c, a);
    arena.release(b);
    arena.release(c);
  };
  pass();
  const int64_t after_first = arena.allocations();
  for (int i = 0; i < 5; ++i) pass();
  EXPECT_EQ(arena.allocations(), after_first);
  EXPECT_EQ(arena.slot_count(), 2u);
  EXPECT_THROW(arena.release(0), std::logic_error);
}

TEST(Generation, GreedyTakesTheFirstMaximum) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_EQ(choose_token(logits.data(), 5, 0.0, 0, 0.99), 1);
  const std::vector<float> nan_first = {std::numeric_limits<float>::quiet_NaN(), -3.0f, -2.0f};
  EXPECT_EQ(choose_token(nan_first.data(), 3, 0.0, 0, 0.0), 2);
}

TEST(Generation, SamplingFollowsTheSoftmaxAndTopK) {
  const std::vector<float> logits = {std::log(0.1f), std::log(0.6f), std::log(0.3f)};
  // Cumulative in order of likelihood: id 1 up to 0.6, id 2 up to 0.9, id 0 up to 1.
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 0, 0.59), 1);
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 0, 0.61), 2);
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 0, 0.95), 0);
  // top-k 2 renormalises over ids 1 and 2: 0.6/0.9 = 0.667.
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 2, 0.65), 1);
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 2, 0.70), 2);
  EXPECT_EQ(choose_token(logits.data(), 3, 1.0, 2, 0.999), 2);
  // A frequency check of the whole distribution at T = 2 (weights ∝ p^(1/2)).
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<int> counts(3);
  const int draws = 200000;
  for (int i = 0; i < draws; ++i) ++counts[static_cast<size_t>(choose_token(logits.data(), 3, 2.0, 0, u(rng)))];
  const double z = std::sqrt(0.1) + std::sqrt(0.6) + std::sqrt(0.3);
  EXPECT_NEAR(counts[0] / double(draws), std::sqrt(0.1) / z, 0.005);
  EXPECT_NEAR(counts[1] / double(draws), std::sqrt(0.6) / z, 0.005);
}

}  // namespace
}  // namespace tessera::runtime

namespace tessera::runtime {
namespace {

TEST(SafetensorsWriter, RoundTripsThroughTheReader) {
  const std::string path = testing::TempDir() + "/tessera_writer_test.safetensors";
  Tensor a(DType::Float32, {3, 5});
  Tensor b(DType::Float32, {7});
  Tensor empty(DType::Float32, {0, 4});
  for (int64_t i = 0; i < a.numel(); ++i) a.data<float>()[i] = 0.5f * static_cast<float>(i) - 3;
  for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = -static_cast<float>(i) * 1e-3f;
  write_safetensors(path, {{"layer.0.w", &a}, {"b", &b}, {"empty", &empty}}, {{"note", "x"}});
  const SafetensorsFile file = SafetensorsFile::open(path);
  EXPECT_EQ(file.names(), (std::vector<std::string>{"b", "empty", "layer.0.w"}));
  EXPECT_EQ(file.metadata().at("note"), "x");
  const Tensor a2 = file.to_float32("layer.0.w");
  ASSERT_EQ(a2.shape(), a.shape());
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a2.data<float>()[i], a.data<float>()[i]);
  EXPECT_EQ(file.to_float32("b").data<float>()[6], b.data<float>()[6]);
  EXPECT_EQ(file.info("empty").shape, (std::vector<int64_t>{0, 4}));

  Tensor ints(DType::Int32, {2});
  test::expect_error<TensorError>([&] { write_safetensors(path, {{"ids", &ints}}); }, {"'ids'", "int32", "float32"});
  test::expect_error<TensorError>(
      [&] {
        write_safetensors("/nonexistent/dir/w.safetensors", {{"b", &b}});
      },
      {"/nonexistent/dir/w.safetensors", "cannot open"});
}

}  // namespace
}  // namespace tessera::runtime
