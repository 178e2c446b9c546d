#include "runtime/model/generation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

#include "runtime/model/model_error.h"

namespace tessera::runtime {

int32_t choose_token(const float* logits, int64_t vocab, double temperature, int64_t top_k, double draw) {
  if (vocab < 1) throw std::invalid_argument("choose_token: empty vocabulary");
  if (temperature <= 0) {
    // max_element returns the first maximum: ties go to the lowest id. NaN logits never win.
    int64_t best = 0;
    for (int64_t t = 1; t < vocab; ++t) {
      if (logits[t] > logits[best] || (std::isnan(logits[best]) && !std::isnan(logits[t]))) best = t;
    }
    return static_cast<int32_t>(best);
  }
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = top_k > 0 ? std::min(top_k, vocab) : vocab;
  // Highest logits first, ties by id, so the candidate set and its order do not depend on the sort's internals.
  auto higher = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), higher);
  const double top = logits[order[0]];
  std::vector<double> weights(static_cast<size_t>(k));
  double total = 0;
  for (int64_t i = 0; i < k; ++i) {
    weights[static_cast<size_t>(i)] = std::exp((logits[order[static_cast<size_t>(i)]] - top) / temperature);
    total += weights[static_cast<size_t>(i)];
  }
  double target = draw * total;
  for (int64_t i = 0; i < k; ++i) {
    target -= weights[static_cast<size_t>(i)];
    if (target < 0) return order[static_cast<size_t>(i)];
  }
  return order[static_cast<size_t>(k - 1)];
}

Tensor generate(ModelRunner& runner, const Tensor& prompt, const GenerationOptions& options,
                const std::map<std::string, const Tensor*>& fixed_inputs) {
  if (prompt.rank() != 2 || prompt.dim(1) < 1) {
    throw TensorError(fmt::format("the prompt is {}, expected token ids [B, N] with N >= 1", prompt.type_string()));
  }
  if (options.max_new_tokens < 0) throw ModelError("max_new_tokens must be >= 0");
  const Tensor ids = to_int32(prompt, "the prompt");
  const int64_t B = ids.dim(0), N = ids.dim(1);
  Tensor result(DType::Int32, {B, N + options.max_new_tokens});
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(ids.data<int32_t>() + b * N, N, result.data<int32_t>() + b * (N + options.max_new_tokens));
  }
  runner.begin_decoding(fixed_inputs);
  std::mt19937_64 rng(options.seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const Tensor* step = &ids;
  Tensor next(DType::Int32, {B, 1});
  for (int64_t t = 0; t < options.max_new_tokens; ++t) {
    const Tensor& logits = runner.decode(*step);
    if (logits.rank() != 3) {
      throw ModelError(fmt::format("generation needs a model whose output is logits per position, but it returns {}",
                                   logits.type_string()));
    }
    const int64_t n = logits.dim(1), vocab = logits.dim(2);
    for (int64_t b = 0; b < B; ++b) {
      const double draw = uniform(rng);  // drawn even when greedy, so a seed's stream does not depend on T
      const int32_t token =
          choose_token(logits.data<float>() + (b * n + n - 1) * vocab, vocab, options.temperature, options.top_k, draw);
      next.data<int32_t>()[b] = token;
      result.data<int32_t>()[b * (N + options.max_new_tokens) + N + t] = token;
    }
    step = &next;
    if (options.on_token) options.on_token(t + 1, options.max_new_tokens);
  }
  return result;
}

}  // namespace tessera::runtime
