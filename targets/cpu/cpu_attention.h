// The CPU target: attention computed by fused, flash-style kernels generated with Halide (JIT, cached).
//
// One Halide pipeline processes a chunk of consecutive key tiles for one query tile of one (batch, head):
// scores, the inlined mask and score modifier, and an online-softmax merge into the running state (row max,
// row sum, unnormalised accumulator). The driver walks the tile classification of the pattern: EMPTY chunks
// are skipped, FULL chunks run the pipeline variant without the mask, PARTIAL chunks the masked variant.
#pragma once

#include <cstdint>
#include <string>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"

namespace tessera::cpu {

// How the kernels run; explicit values with measured defaults, the autotuner's search space later.
struct CpuSchedule {
  int64_t block_q = 128;  // queries per tile
  int64_t block_k = 64;   // keys per tile (the granularity of tile classification)
  int64_t chunk_k = 128;  // keys per chunk: runs of consecutive tiles of one kind, up to this many keys
  int64_t vector_width = 16;
  int64_t threads = 0;  // 0: every hardware thread
};

enum class StorageType { Float32, BFloat16 };

struct CpuOptions {
  CpuSchedule schedule;
  StorageType storage = StorageType::Float32;  // BFloat16: Q, K and V rounded to bf16, fp32 accumulation
};

// Computes attention with `pattern` on the CPU. Same contract and errors as reference::attention.
runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                          const CpuOptions& options = {});

// Parses "block_q=128,chunk_k=512" (any subset; the rest keep their defaults). Throws std::invalid_argument.
CpuSchedule parse_schedule(const std::string& text);

// The Halide target string the kernels are compiled for on this machine (explicit features, see cpu_target.cpp).
std::string halide_target_string();

}  // namespace tessera::cpu
