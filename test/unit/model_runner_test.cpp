// The model runtime against the float64 oracle (targets/reference/reference_model.h): every example spec with
// small random weights, forward passes and incremental decoding with the KV cache.
#include "runtime/model/model_runner.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/model/generation.h"
#include "runtime/model/random_weights.h"
#include "runtime/safetensors.h"
#include "targets/cpu/gemm_tuning.h"
#include "targets/cpu/tuned_schedules.h"
#include "targets/reference/reference_model.h"
#include "test/unit/expect_error.h"
#include "test/unit/model_test_support.h"

namespace tessera::runtime {
namespace {

struct Example {
  std::string file, name;
  std::map<std::string, std::string> overrides;
  std::map<std::string, int64_t> lengths;  // positions per input
};

std::vector<Example> examples() {
  return {
      {"minilm.attn",
       "minilm",
       {{"layers", "2"}, {"width", "48"}, {"heads", "4"}, {"ffn", "96"}, {"vocab", "97"}},
       {{"tokens", 37}}},
      {"gpt.attn",
       "gpt",
       {{"layers", "2"}, {"width", "32"}, {"heads", "4"}, {"ffn", "64"}, {"vocab", "61"}, {"context", "64"}},
       {{"tokens", 45}}},
      {"transformer.attn",
       "transformer",
       {{"layers", "2"}, {"width", "32"}, {"heads", "2"}, {"ffn", "48"}, {"vocab", "53"}},
       {{"source", 29}, {"target", 17}}},
      {"sparse_transformer.attn",
       "sparse_transformer",
       {{"layers", "2"},
        {"width", "32"},
        {"heads", "2"},
        {"ffn", "48"},
        {"vocab", "31"},
        {"stride", "8"},
        {"block", "8"},
        {"summary", "2"}},
       {{"tokens", 70}}},
      {"image_transformer.attn",
       "image_transformer",
       {{"layers", "2"},
        {"width", "32"},
        {"heads", "2"},
        {"ffn", "48"},
        {"image_width", "8"},
        {"block_h", "2"},
        {"block_w", "4"},
        {"halo_h", "2"},
        {"halo_w", "2"}},
       {{"pixels", 64}}},
      {"music_transformer.attn",
       "music_transformer",
       {{"layers", "2"}, {"width", "32"}, {"heads", "4"}, {"ffn", "48"}, {"vocab", "41"}, {"distances", "9"}},
       {{"events", 33}}},
      {"llama_like.attn",
       "llama_like",
       {{"layers", "2"}, {"width", "32"}, {"heads", "4"}, {"kv_heads", "2"}, {"ffn", "40"}, {"vocab", "43"}},
       {{"tokens", 27}}},
      // Evolving attention: encoder, decoder and cross chains of maps across two layers.
      {"ea_transformer.attn",
       "ea_transformer",
       {{"layers", "2"}, {"width", "32"}, {"heads", "2"}, {"ffn", "48"}, {"vocab", "53"}, {"alpha", "0.3"}},
       {{"source", 23}, {"target", 19}}},
  };
}

struct Prepared {
  graph::Graph graph;
  std::unique_ptr<ModelWeights> weights;
  std::map<std::string, Tensor> ids;
  std::map<std::string, const Tensor*> inputs;
};

Prepared prepare(const Example& ex, int64_t B, uint32_t seed) {
  Prepared p;
  p.graph = test::example_model(ex.file, ex.name, ex.overrides);
  p.weights = std::make_unique<ModelWeights>(p.graph, test::random_weights(p.graph, seed));
  for (const std::string& input : p.graph.inputs) {
    p.ids[input] = test::random_ids(B, ex.lengths.at(input), test::input_vocab(p.graph, input), seed + 1);
  }
  for (auto& [name, t] : p.ids) p.inputs[name] = &t;
  return p;
}

std::map<std::string, const Tensor*> weight_views(const Prepared& p) {
  std::map<std::string, const Tensor*> views;
  for (const graph::Weight& w : p.graph.weights()) views[w.name] = &p.weights->at(w.name);
  return views;
}

// max |got - want| relative to the largest |want|.
double relative_error(const Tensor& got, const reference::ModelTensor& want) {
  EXPECT_EQ(got.shape(), want.shape);
  double scale = 1e-30, worst = 0;
  for (double v : want.values) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < want.values.size() && i < static_cast<size_t>(got.numel()); ++i) {
    const double d = std::fabs(got.data<float>()[i] - want.values[i]);
    worst = std::max(worst, std::isnan(d) ? INFINITY : d);
  }
  return worst / scale;
}

TEST(ModelRunner, EveryExampleMatchesTheFloat64Reference) {
  for (const Example& ex : examples()) {
    SCOPED_TRACE(ex.file);
    Prepared p = prepare(ex, 2, 11);
    if (p.graph.nodes.empty()) continue;
    ModelRunner runner(p.graph, *p.weights);
    const Tensor& out = runner.forward(p.inputs);
    const reference::ModelTensor want = reference::run_model_f64(p.graph, weight_views(p), p.inputs);
    EXPECT_LT(relative_error(out, want), 2e-5);
  }
}

// GEMMs cut into blocks by a tuned blocking (`tessera tune --model`) compute the same model. One cache entry is
// the nearest for every GEMM shape, so every projection, FFN and head of these models runs blocked, in blocks that
// leave ragged edges; without the lookup in the runner they would all run the default.
TEST(ModelRunner, TunedGemmBlockingsMatchTheFloat64Reference) {
  tuner::TuneCache cache;
  tuner::TuneEntry entry;
  entry.key = cpu::gemm_tune_key({64, 32, 32});
  entry.schedule = {{"row_block", 7}, {"feature_block", 5}};
  cache.put(entry);
  RunnerOptions options;
  options.attention.tuned = std::make_shared<const cpu::TunedSchedules>(cache);
  EXPECT_EQ(options.attention.tuned->gemm_blocking({90, 32, 96}), (GemmBlocking{7, 5}));
  for (const Example& ex : examples()) {
    if (ex.name != "gpt" && ex.name != "transformer" && ex.name != "llama_like") continue;
    SCOPED_TRACE(ex.file);
    Prepared p = prepare(ex, 2, 11);
    ModelRunner runner(p.graph, *p.weights, options);
    const Tensor& out = runner.forward(p.inputs);
    const reference::ModelTensor want = reference::run_model_f64(p.graph, weight_views(p), p.inputs);
    EXPECT_LT(relative_error(out, want), 2e-5);
  }
}

// The EA-Transformer's decoder: changing the target tokens after position t (so every later query, key and value
// of the decoder, and its later map rows and columns) leaves the logits of positions up to t unchanged.
TEST(ModelRunner, EvolvingDecoderNeverSeesALaterToken) {
  const std::vector<Example> all = examples();
  const Example& ex = all.back();
  ASSERT_EQ(ex.file, "ea_transformer.attn");
  Prepared p = prepare(ex, 2, 17);
  ModelRunner runner(p.graph, *p.weights);
  const Tensor before = runner.forward(p.inputs).clone();
  Tensor& target = p.ids.at("target");
  const int64_t N = target.dim(1), t = 8;
  for (int64_t b = 0; b < target.dim(0); ++b) {
    for (int64_t n = t + 1; n < N; ++n)
      target.data<int32_t>()[b * N + n] = (target.data<int32_t>()[b * N + n] + 7) % 53;
  }
  const Tensor& after = runner.forward(p.inputs);
  const int64_t vocab = before.dim(2);
  bool later_changed = false;
  for (int64_t b = 0; b < before.dim(0); ++b) {
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t v = 0; v < vocab; ++v) {
        const int64_t at = (b * N + n) * vocab + v;
        if (n <= t) {
          ASSERT_EQ(before.data<float>()[at], after.data<float>()[at]) << "batch " << b << " position " << n;
        } else {
          later_changed |= before.data<float>()[at] != after.data<float>()[at];
        }
      }
    }
  }
  EXPECT_TRUE(later_changed);  // the change did reach the model
}

TEST(ModelRunner, Bf16AttentionStaysWithinBf16Precision) {
  const Example ex = examples()[1];  // gpt
  Prepared p = prepare(ex, 1, 5);
  RunnerOptions options;
  options.attention.storage = cpu::StorageType::BFloat16;
  ModelRunner runner(p.graph, *p.weights, options);
  const reference::ModelTensor want = reference::run_model_f64(p.graph, weight_views(p), p.inputs);
  const double err = relative_error(runner.forward(p.inputs), want);
  EXPECT_LT(err, 3e-2);  // Q, K, V rounded to 8 mantissa bits in every layer
  EXPECT_GT(err, 1e-6);  // and the rounding really happened
}

TEST(ModelRunner, SecondForwardOfTheSameShapeAllocatesNothing) {
  Prepared p = prepare(examples()[0], 2, 3);
  ModelRunner runner(p.graph, *p.weights);
  runner.forward(p.inputs);
  const int64_t allocations = runner.arena().allocations();
  const Tensor first = runner.forward(p.inputs).clone();
  EXPECT_EQ(runner.arena().allocations(), allocations);
  // A shorter batch reuses the same buffers too.
  Tensor shorter = test::random_ids(2, 20, 97, 9);
  runner.forward({{"tokens", &shorter}});
  EXPECT_EQ(runner.arena().allocations(), allocations);
  const Tensor& again = runner.forward(p.inputs);
  for (int64_t i = 0; i < first.numel(); ++i) ASSERT_EQ(again.data<float>()[i], first.data<float>()[i]);
}

// Decoding one position at a time must give what one forward pass gives at the same positions.
void check_decoding_matches_forward(const Example& ex, const std::string& stream, int64_t prefill,
                                    const RunnerOptions& options = {}) {
  SCOPED_TRACE(ex.file);
  Prepared p = prepare(ex, 2, 21);
  if (p.graph.nodes.empty()) return;
  ModelRunner runner(p.graph, *p.weights, options);
  const Tensor full = runner.forward(p.inputs).clone();
  const Tensor& ids = p.ids.at(stream);
  const int64_t B = ids.dim(0), N = ids.dim(1), W = full.dim(2);
  std::map<std::string, const Tensor*> fixed = p.inputs;
  fixed.erase(stream);
  runner.begin_decoding(fixed);
  EXPECT_EQ(runner.decoded_input(), stream);
  int64_t done = 0;
  while (done < N) {
    const int64_t n = done == 0 ? prefill : 1;
    Tensor step(DType::Int32, {B, n});
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < n; ++i) step.data<int32_t>()[b * n + i] = ids.data<int32_t>()[b * N + done + i];
    }
    const Tensor& out = runner.decode(step);
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{B, n, W}));
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t c = 0; c < W; ++c) {
          const float want = full.data<float>()[(b * N + done + i) * W + c];
          ASSERT_NEAR(out.data<float>()[(b * n + i) * W + c], want, 2e-5 * (1 + std::fabs(want)))
              << "b " << b << " position " << done + i << " column " << c;
        }
      }
    }
    done += n;
  }
  EXPECT_EQ(runner.decoded_positions(), N);
}

TEST(ModelRunner, DecodingWithTheKvCacheEqualsTheFullForwardPass) {
  const std::vector<Example> all = examples();
  check_decoding_matches_forward(all[1], "tokens", 7);  // gpt: learned positions, tied head
  check_decoding_matches_forward(all[2], "target", 4);  // encoder–decoder: cross-attention K/V fixed
  check_decoding_matches_forward(all[3], "tokens", 1);  // sparse transformer: strided/fixed re-indexed
  check_decoding_matches_forward(all[5], "events", 3);  // music transformer: relative term
  check_decoding_matches_forward(all[6], "tokens", 5);  // GQA, RMSNorm, SwiGLU
}

// With bf16 attention storage the KV cache holds bf16 rows, rounded once as they are appended (a fixed context's
// keys and values once when decoding begins), and the new queries are rounded as a forward pass rounds them: the
// same rounded operands then give the forward pass's result up to the order of float32 sums. With 16-lane vectors a
// forward pass's kernels would round the probabilities to bf16 before P.V, which a decoding step's few-query
// kernels do not (both within 2^-8 max|V|, see CpuAttention.BFloat16StorageComputesOnTheRoundedInputs): 8-lane
// vectors keep P in float32 in both, so that what is compared is only how the operands were rounded.
TEST(ModelRunner, Bf16DecodingWithItsBf16CacheEqualsTheBf16ForwardPass) {
  const std::vector<Example> all = examples();
  RunnerOptions options;
  options.attention.storage = cpu::StorageType::BFloat16;
  options.attention.schedule = cpu::default_schedule("x86-64-linux-avx2-fma");
  check_decoding_matches_forward(all[1], "tokens", 7, options);  // gpt
  check_decoding_matches_forward(all[2], "target", 4, options);  // cross-attention K/V rounded once
  check_decoding_matches_forward(all[6], "tokens", 5, options);  // GQA
}

TEST(ModelRunner, GreedyGenerationEqualsRecomputingWithoutTheCache) {
  Prepared p = prepare(examples()[1], 2, 31);
  ModelRunner runner(p.graph, *p.weights);
  const Tensor& ids = p.ids.at("tokens");
  Tensor prompt(DType::Int32, {2, 6});
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t i = 0; i < 6; ++i) prompt.data<int32_t>()[b * 6 + i] = ids.data<int32_t>()[b * ids.dim(1) + i];
  }
  GenerationOptions options;
  options.max_new_tokens = 12;
  const Tensor generated = generate(runner, prompt, options);
  ASSERT_EQ(generated.shape(), (std::vector<int64_t>{2, 18}));
  // Recompute: a full forward pass over the sequence so far, argmax of the last position, append.
  Tensor sequence = prompt.clone();
  for (int64_t t = 0; t < options.max_new_tokens; ++t) {
    const int64_t n = sequence.dim(1);
    const Tensor& logits = runner.forward({{"tokens", &sequence}});
    const int64_t vocab = logits.dim(2);
    Tensor longer(DType::Int32, {2, n + 1});
    for (int64_t b = 0; b < 2; ++b) {
      std::copy_n(sequence.data<int32_t>() + b * n, n, longer.data<int32_t>() + b * (n + 1));
      longer.data<int32_t>()[b * (n + 1) + n] =
          choose_token(logits.data<float>() + (b * n + n - 1) * vocab, vocab, 0.0, 0, 0.0);
    }
    sequence = std::move(longer);
  }
  for (int64_t i = 0; i < generated.numel(); ++i) {
    EXPECT_EQ(generated.data<int32_t>()[i], sequence.data<int32_t>()[i]) << "flat index " << i;
  }
  // Sampling with a seed is reproducible.
  options.temperature = 0.8;
  options.top_k = 5;
  options.seed = 42;
  const Tensor a = generate(runner, prompt, options);
  const Tensor b = generate(runner, prompt, options);
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a.data<int32_t>()[i], b.data<int32_t>()[i]);
}

TEST(ModelRunner, BadInputsAreNamed) {
  Prepared p = prepare(examples()[1], 1, 41);
  ModelRunner runner(p.graph, *p.weights);
  Tensor bad = test::random_ids(1, 5, 61, 1);
  bad.data<int32_t>()[3] = 61;
  test::expect_error<TensorError>(
      [&] {
        runner.forward({{"tokens", &bad}});
      },
      {"embedding 'word'", "token id 61", "[0, 3]", "[0, 61)"});
  Tensor too_long = test::random_ids(1, 65, 61, 1);
  test::expect_error<TensorError>(
      [&] {
        runner.forward({{"tokens", &too_long}});
      },
      {"learned_positions 'position'", "64 positions"});
  test::expect_error<ModelError>([&] { runner.forward({}); }, {"needs input 'tokens'"});
  // The runner still works after errors.
  EXPECT_NO_THROW(runner.forward(p.inputs));

  Prepared minilm = prepare(examples()[0], 1, 2);
  ModelRunner encoder(minilm.graph, *minilm.weights);
  test::expect_error<ModelError>([&] { encoder.begin_decoding(); }, {"mean_pool", "incrementally"});
}

TEST(ModelWeights, MissingAndMisshapedWeightsAreNamed) {
  const graph::Graph graph = test::example_model("gpt.attn", "gpt", examples()[1].overrides);
  std::map<std::string, Tensor> weights = test::random_weights(graph, 1);
  weights.erase("layer.1.ffn_in.bias");
  weights["layer.1.ffn_in.biass"] = Tensor(DType::Float32, {64});
  test::expect_error<TensorError>([&] { ModelWeights(graph, std::move(weights)); },
                                  {"layer.1.ffn_in.bias", "[64]", "did you mean 'layer.1.ffn_in.biass'"});
  std::map<std::string, Tensor> wrong = test::random_weights(graph, 1);
  wrong["layer.0.attention.query.weight"] = Tensor(DType::Float32, {32, 31});
  test::expect_error<TensorError>([&] { ModelWeights(graph, std::move(wrong)); },
                                  {"layer.0.attention.query.weight", "[32, 31]", "expected [32, 32]"});
  std::map<std::string, Tensor> extra = test::random_weights(graph, 1);
  extra["pooler.weight"] = Tensor(DType::Float32, {2});
  const ModelWeights loaded(graph, std::move(extra));
  EXPECT_EQ(loaded.extra(), std::vector<std::string>{"pooler.weight"});
}

}  // namespace
}  // namespace tessera::runtime

namespace tessera::runtime {
namespace {

// The same random weights saved once in Tessera's names and once as a GPT-2 checkpoint lays them out (Conv1D
// [in, out] matrices, Q|K|V fused in c_attn, a tied lm_head and the causal-mask buffers as extras): loading the
// second with the detected naming must give the same model, bit for bit.
TEST(ModelWeights, AGpt2CheckpointLoadsAsTheSameModel) {
  const std::map<std::string, std::string> sizes = {{"layers", "2"}, {"width", "32"}, {"heads", "4"},
                                                    {"ffn", "64"},   {"vocab", "61"}, {"context", "64"}};
  const graph::Graph graph = test::example_model("gpt.attn", "gpt", sizes);
  std::map<std::string, Tensor> ours = random_weights(graph, 17);
  auto transposed = [](const Tensor& t) {
    Tensor out(DType::Float32, {t.dim(1), t.dim(0)});
    for (int64_t r = 0; r < t.dim(0); ++r) {
      for (int64_t c = 0; c < t.dim(1); ++c) out.data<float>()[c * t.dim(0) + r] = t.data<float>()[r * t.dim(1) + c];
    }
    return out;
  };
  std::map<std::string, Tensor> gpt2;
  gpt2["wte.weight"] = ours.at("word.weight").clone();
  gpt2["wpe.weight"] = ours.at("position.weight").clone();
  gpt2["lm_head.weight"] = ours.at("word.weight").clone();
  for (int l = 0; l < 2; ++l) {
    const std::string p = fmt::format("layer.{}.", l), h = fmt::format("h.{}.", l);
    for (const char* param : {"weight", "bias"}) {
      gpt2[h + "ln_1." + param] = ours.at(p + "attention_norm." + param).clone();
      gpt2[h + "ln_2." + param] = ours.at(p + "ffn_norm." + param).clone();
    }
    Tensor c_attn(DType::Float32, {32, 96}), c_attn_bias(DType::Float32, {96});
    const char* parts[] = {"query", "key", "value"};
    for (int part = 0; part < 3; ++part) {
      const Tensor w = transposed(ours.at(p + "attention." + parts[part] + ".weight"));  // [in, out]
      for (int64_t r = 0; r < 32; ++r) {
        for (int64_t c = 0; c < 32; ++c) c_attn.data<float>()[r * 96 + part * 32 + c] = w.data<float>()[r * 32 + c];
      }
      for (int64_t c = 0; c < 32; ++c) {
        c_attn_bias.data<float>()[part * 32 + c] = ours.at(p + "attention." + parts[part] + ".bias").data<float>()[c];
      }
    }
    gpt2[h + "attn.c_attn.weight"] = std::move(c_attn);
    gpt2[h + "attn.c_attn.bias"] = std::move(c_attn_bias);
    gpt2[h + "attn.c_proj.weight"] = transposed(ours.at(p + "attention.output.weight"));
    gpt2[h + "attn.c_proj.bias"] = ours.at(p + "attention.output.bias").clone();
    gpt2[h + "mlp.c_fc.weight"] = transposed(ours.at(p + "ffn_in.weight"));
    gpt2[h + "mlp.c_fc.bias"] = ours.at(p + "ffn_in.bias").clone();
    gpt2[h + "mlp.c_proj.weight"] = transposed(ours.at(p + "ffn_out.weight"));
    gpt2[h + "mlp.c_proj.bias"] = ours.at(p + "ffn_out.bias").clone();
    gpt2[h + "attn.bias"] = Tensor(DType::Float32, {1, 1, 64, 64});
  }
  gpt2["ln_f.weight"] = ours.at("final_norm.weight").clone();
  gpt2["ln_f.bias"] = ours.at("final_norm.bias").clone();

  const std::string ours_path = testing::TempDir() + "/tessera_ours.safetensors";
  const std::string gpt2_path = testing::TempDir() + "/tessera_gpt2.safetensors";
  std::map<std::string, const Tensor*> a, b;
  for (const auto& [name, t] : ours) a[name] = &t;
  for (const auto& [name, t] : gpt2) b["transformer." + name] = &t;
  write_safetensors(ours_path, a);
  write_safetensors(gpt2_path, b);

  const ModelWeights direct = ModelWeights::load(ours_path, graph);
  const ModelWeights mapped = ModelWeights::load(gpt2_path, graph);
  EXPECT_EQ(direct.naming(), CheckpointNaming::Tessera);
  EXPECT_EQ(mapped.naming(), CheckpointNaming::Gpt2);
  EXPECT_EQ(mapped.extra(), (std::vector<std::string>{"transformer.h.0.attn.bias", "transformer.h.1.attn.bias",
                                                      "transformer.lm_head.weight"}));
  const Tensor ids = test::random_ids(2, 11, 61, 3);
  ModelRunner r1(graph, direct), r2(graph, mapped);
  const Tensor out1 = r1.forward({{"tokens", &ids}}).clone();
  const Tensor& out2 = r2.forward({{"tokens", &ids}});
  ASSERT_EQ(out1.shape(), out2.shape());
  for (int64_t i = 0; i < out1.numel(); ++i) ASSERT_EQ(out1.data<float>()[i], out2.data<float>()[i]) << i;
}

// A llama_like model saved in Hugging Face's LlamaForCausalLM names (plus the rotary inv_freq buffers some
// checkpoints carry) loads as the same model, bit for bit.
TEST(ModelWeights, ALlamaCheckpointLoadsAsTheSameModel) {
  const std::map<std::string, std::string> sizes = {{"layers", "2"},   {"width", "32"}, {"heads", "4"},
                                                    {"kv_heads", "2"}, {"ffn", "40"},   {"vocab", "43"}};
  const graph::Graph graph = test::example_model("llama_like.attn", "llama_like", sizes);
  std::map<std::string, Tensor> ours = random_weights(graph, 23);
  std::map<std::string, Tensor> hf;
  hf["model.embed_tokens.weight"] = ours.at("word.weight").clone();
  hf["model.norm.weight"] = ours.at("final_norm.weight").clone();
  hf["lm_head.weight"] = ours.at("logits.weight").clone();
  const std::vector<std::pair<std::string, std::string>> per_layer = {{"input_layernorm", "attention_norm"},
                                                                      {"self_attn.q_proj", "attention.query"},
                                                                      {"self_attn.k_proj", "attention.key"},
                                                                      {"self_attn.v_proj", "attention.value"},
                                                                      {"self_attn.o_proj", "attention.output"},
                                                                      {"post_attention_layernorm", "ffn_norm"},
                                                                      {"mlp.gate_proj", "gate"},
                                                                      {"mlp.up_proj", "up"},
                                                                      {"mlp.down_proj", "ffn_out"}};
  for (int l = 0; l < 2; ++l) {
    for (const auto& [theirs, spec] : per_layer) {
      hf[fmt::format("model.layers.{}.{}.weight", l, theirs)] =
          ours.at(fmt::format("layer.{}.{}.weight", l, spec)).clone();
    }
    hf[fmt::format("model.layers.{}.self_attn.rotary_emb.inv_freq", l)] = Tensor(DType::Float32, {4});
  }
  EXPECT_EQ(hf.size(), ours.size() + 2);
  const std::string ours_path = testing::TempDir() + "/tessera_llama_ours.safetensors";
  const std::string hf_path = testing::TempDir() + "/tessera_llama_hf.safetensors";
  std::map<std::string, const Tensor*> a, b;
  for (const auto& [name, t] : ours) a[name] = &t;
  for (const auto& [name, t] : hf) b[name] = &t;
  write_safetensors(ours_path, a);
  write_safetensors(hf_path, b);

  const ModelWeights direct = ModelWeights::load(ours_path, graph);
  const ModelWeights mapped = ModelWeights::load(hf_path, graph);
  EXPECT_EQ(mapped.naming(), CheckpointNaming::Llama);
  EXPECT_EQ(mapped.extra(), (std::vector<std::string>{"model.layers.0.self_attn.rotary_emb.inv_freq",
                                                      "model.layers.1.self_attn.rotary_emb.inv_freq"}));
  const Tensor ids = test::random_ids(2, 13, 43, 3);
  ModelRunner r1(graph, direct), r2(graph, mapped);
  const Tensor out1 = r1.forward({{"tokens", &ids}}).clone();
  const Tensor& out2 = r2.forward({{"tokens", &ids}});
  ASSERT_EQ(out1.shape(), out2.shape());
  for (int64_t i = 0; i < out1.numel(); ++i) ASSERT_EQ(out1.data<float>()[i], out2.data<float>()[i]) << i;
}

}  // namespace
}  // namespace tessera::runtime
