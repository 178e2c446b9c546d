// Autoregressive generation on a ModelRunner: the prompt is decoded in one step (prefill), then one token per
// step from the last position's logits, greedy or sampled, each step reading the KV cache.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "runtime/model/model_runner.h"
#include "runtime/tensor.h"

namespace tessera::runtime {

struct GenerationOptions {
  int64_t max_new_tokens = 16;
  double temperature = 0;  // 0: greedy (argmax, ties to the lowest id); > 0: sample softmax(logits / T)
  int64_t top_k = 0;       // with sampling: only the k most likely tokens (0: all)
  uint64_t seed = 0;       // sampling is reproducible for a given seed
  // Called after each new token with (tokens generated so far, max_new_tokens).
  std::function<void(int64_t, int64_t)> on_token;
};

// The model's output must be logits (a sequence whose width is the vocabulary). `prompt` is [B, N] token ids
// (N >= 1); `fixed_inputs` are the other inputs (an encoder–decoder's source) and run-time tensors. Returns
// [B, N + max_new_tokens] int32: the prompt followed by the generated tokens.
Tensor generate(ModelRunner& runner, const Tensor& prompt, const GenerationOptions& options,
                const std::map<std::string, const Tensor*>& fixed_inputs = {});

// The next token from one row of logits (exposed for tests). `draw` is a uniform number in [0, 1).
int32_t choose_token(const float* logits, int64_t vocab, double temperature, int64_t top_k, double draw);

}  // namespace tessera::runtime
