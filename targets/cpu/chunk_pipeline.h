// One JIT-compiled Halide pipeline: a chunk of keys for a tile of queries of one (batch, head), merged into
// the online-softmax state.
//
//   in:  q_tile (D x rows), k_chunk (D x cols), v_chunk (Dv x cols), state m_in(rows), l_in(rows),
//        acc_in(Dv x rows), the run-time tensors the pattern reads, and scalars (first query row, first key
//        column, b, h, sizes, scale)
//   out: m_out = max(m_in, row max of the chunk's scores), l_out and acc_out rescaled to m_out plus the chunk's
//        exp(score - m_out) sums and P·V.
//
// The driver (cpu_attention.cpp) runs it over the chunks of each query tile and normalises acc / l at the end.
// Halide 14 has no way to express the sequential, coupled (max, sum, accumulator) update across key chunks
// inside one pipeline without recomputing scores, so the walk over chunks lives in C++ and each call does a
// chunk of several tiles to amortise the call.
#pragma once

#include <Halide.h>

#include <map>
#include <memory>
#include <string>

#include "compiler/ir/pattern.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

// Which variant of a pattern's chunk kernel: FULL tiles skip the mask, PARTIAL ones evaluate it inline.
enum class MaskMode { Unmasked, Masked };

struct ChunkPipelineKey {
  std::string pattern_ir;  // ir::to_string of the pattern: the kernel depends on nothing else of it
  MaskMode mode;
  int64_t D, Dv;
  std::map<std::string, int> tensor_ranks;  // run-time tensors read, with their ranks
  CpuSchedule schedule;
  StorageType storage;
  std::string target;

  std::string str() const;  // the cache key
};

// A compiled pipeline with the parameters its callers bind per call (through a thread-safe ParamMap).
struct ChunkPipeline {
  Halide::Pipeline pipeline;
  Halide::ImageParam q_tile, k_chunk, v_chunk, m_in, l_in, acc_in;
  std::map<std::string, Halide::ImageParam> tensors;
  Halide::Param<int32_t> first_row, first_col, batch, head, heads, n_queries, m_keys;
  std::map<std::string, Halide::Param<int32_t>> symbols;
  Halide::Param<float> scale;
};

// Builds, schedules and JIT-compiles the chunk pipeline of `pattern` (compiled once per key, then cached).
std::shared_ptr<const ChunkPipeline> chunk_pipeline(const ir::Pattern& pattern, const ChunkPipelineKey& key);

// The Halide target the kernels are compiled for.
Halide::Target cpu_target();

}  // namespace tessera::cpu
