// Tessera's C++ API for whole models: load a model declared in the DSL with its weights, run it, generate from
// it, embed text with it. Everything runs on the CPU (the fused attention kernels Tessera compiles, OpenBLAS
// GEMMs); kernels are JIT-compiled on first use and cached for the process.
//
//   #include <tessera/model.h>
//   tessera::Model model = tessera::Model::load("minilm.attn", "model.safetensors", {.vocab = "vocab.txt"});
//   std::vector<float> e = model.embed("A man is eating food.");
//
// CMake: find_package(Tessera REQUIRED) and link Tessera::tessera. This header needs only the standard library.
// Every failure — a spec error (with file:line:col), a missing or mis-shaped weight, bad token ids — throws
// tessera::Error, whose message says what and where. A Model is not safe to use from two threads at once (it
// reuses its buffers between calls); a moved-from Model throws tessera::Error when used.
//
// Threads: the attention kernels take LoadOptions::threads; the GEMMs split their rows across OpenBLAS's thread
// count (every core, or OPENBLAS_NUM_THREADS), each thread calling OpenBLAS, and the first GEMM sets OpenBLAS
// itself to one thread for the whole process: an application's own BLAS calls then run single-threaded.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Token ids of `batch` sequences of `length` tokens each (length >= 1), row-major: ids[b * length + i]. Also
// the form of the int32 run-time tensors attention patterns read (`document`'s segments [B, M]).
struct TokenIds {
  std::vector<int32_t> ids;
  int64_t batch = 1;
  int64_t length = 0;

  static TokenIds sequence(std::vector<int32_t> ids);  // one sequence (batch 1)
};

// A float32 result in C order: [batch, length, width] for a model returning a sequence (hidden states, logits),
// [batch, width] for a pooled one (sentence embeddings).
struct Output {
  std::vector<float> values;
  std::vector<int64_t> shape;
};

struct LoadOptions {
  std::string name;                               // which model of the spec; empty: the spec's only model
  std::map<std::string, std::string> parameters;  // the model's parameters, overridden ("layers" -> "2")
  std::string naming = "auto";                    // checkpoint names: auto, tessera, bert, gpt2 or llama
  std::string vocab;                              // a WordPiece vocab.txt, needed by embed()
  bool bf16_attention = false;                    // attention inputs stored as bf16 (fp32 accumulation)
  int threads = 0;                                // attention kernel threads (>= 0); 0: every core
  // Schedules tuned by `tessera tune` for this machine: read from `tune_cache` (empty: the default path,
  // $XDG_CACHE_HOME/tessera/tune_cache.json) unless use_tune_cache is false.
  bool use_tune_cache = true;
  std::string tune_cache;
};

struct GenerateOptions {
  int64_t max_new_tokens = 16;  // >= 0
  double temperature = 0;       // 0: greedy; > 0: sample softmax(logits / temperature)
  int64_t top_k = 0;            // >= 0; with sampling, only the k most likely tokens (0: all)
  uint64_t seed = 0;            // the same seed gives the same tokens
};

class Model {
 public:
  // Parses the spec, elaborates the model and reads its weights (.safetensors).
  static Model load(const std::string& spec_path, const std::string& weights_path, const LoadOptions& options = {});

  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();

  const std::string& name() const;
  const std::vector<std::string>& inputs() const;    // the model's token inputs, in declaration order
  std::vector<std::string> runtime_tensors() const;  // int32 tensors its patterns read (segments [B, M])
  std::string graph() const;                         // the elaborated graph, as `tessera check --emit=graph` prints it
  std::vector<std::string> unused_weights() const;   // checkpoint tensors the model does not read

  // A forward pass. `inputs` maps every name of inputs() and runtime_tensors() to its ids; an unknown name is an
  // error. All share the batch. The single-input form is for a model with one input and no run-time tensors.
  Output run(const TokenIds& tokens);
  Output run(const std::map<std::string, TokenIds>& inputs);

  // Autoregressive generation with a KV cache, for a model whose output is logits. Returns, per batch row, the
  // prompt followed by the new tokens. `fixed_inputs` are the other inputs (an encoder–decoder's source) and the
  // run-time tensors; one sized by the sequence (`document`'s segments [B, M]) cannot be decoded yet: Error.
  std::vector<std::vector<int32_t>> generate(const TokenIds& prompt, const GenerateOptions& options = {},
                                             const std::map<std::string, TokenIds>& fixed_inputs = {});

  // The model's pooled output for one text, tokenized with LoadOptions::vocab ([CLS] ... [SEP]).
  std::vector<float> embed(const std::string& text);

 private:
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  Impl& impl() const;  // throws Error on a moved-from Model
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
