// Random attention inputs for trying and timing patterns without Python: normal Q/K/V and the run-time tensors
// a pattern reads, with values of the kind they hold in practice. `tessera inputs` writes them to .npy files,
// `tessera bench` times attention on them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"

namespace tessera::cli {

struct RandomInputShape {
  int64_t batch = 1, heads = 1, kv_heads = 1, seq = 0, keys = 0, head_dim = 0, value_dim = 0;
  int64_t rel_distances = 64;  // the size of free tensor dimensions such as R
  int64_t documents = 3;       // documents per row of `segments`
};

struct RandomInputs {
  runtime::Tensor q, k, v;  // float32 [B,H,N,D], [B,Hkv,M,D], [B,Hkv,M,Dv], standard normal
  // The run-time tensors the pattern reads, in the pattern's order of first use.
  std::vector<std::pair<std::string, runtime::Tensor>> tensors;
};

// Draws Q, K, V and then (when `pattern` is given) each tensor it reads from one generator seeded with `seed`,
// in that order, so a seed names the same inputs everywhere. float32 tensors are standard normal; `segments`
// [B, M] holds non-decreasing document ids as packed sequences do; other int32 tensors hold 0 or 1.
RandomInputs random_inputs(const RandomInputShape& shape, const ir::Pattern* pattern, uint64_t seed);

// random_inputs for `pattern` and the AttentionInputs pointing into them (neither copied nor moved: the pointers
// are into this object), for commands that run attention on them (bench, tune).
struct RandomAttentionInputs {
  RandomInputs data;
  targets::AttentionInputs inputs;

  RandomAttentionInputs(const RandomInputShape& shape, const ir::Pattern& pattern, uint64_t seed);
  RandomAttentionInputs(const RandomAttentionInputs&) = delete;
  RandomAttentionInputs& operator=(const RandomAttentionInputs&) = delete;
};

}  // namespace tessera::cli
