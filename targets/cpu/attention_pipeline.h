// The CPU kernel of one pattern: a JIT-compiled Halide pipeline computing fused, flash-style attention for a
// range of query tiles of one (batch, head).
//
// The pipeline works on *views* (see compiler/planner/sparsity_plan.h): its rows and keys are the view's local
// indices, and the buffers it is given are strided views of Q, K, V and of the running state, which every
// component of a plan updates in turn. The driver (attention_driver.h, fed by execution_plan.h) classifies the tiles of
// the mask and hands the pipeline, per query tile, two tables of key chunks (runs of consecutive non-empty key tiles):
// FULL chunks, computed without the mask, and PARTIAL ones, with the mask inlined. EMPTY tiles appear in neither table
// and cost nothing. For each chunk the pipeline computes the scores of the query tile against the chunk's keys, the
// score modifier (and mask), the chunk's row max, exp(score - max), its row sums and P·V, and merges them into a
// running (acc, max, sum) state by log-sum-exp rescaling. No buffer larger than a query tile by a key chunk exists.
//
// Because each chunk's probabilities are taken relative to the chunk's own max, nothing computed for a chunk
// depends on the running state; only the merge does. That is what lets Halide express the walk over chunks
// as an update of the state over a reduction domain of chunks (with per-tile extents given by `where`).
#pragma once

#include <Halide.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compiler/ir/pattern.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

struct AttentionPipelineKey {
  std::string pattern_ir;  // ir::to_string of the pattern: the kernel depends on nothing else of it
  int64_t D, Dv;
  int64_t key_stride = 1, key_group = 1;    // keys of a view: origin + stride * (x / group) + x % group
  std::map<std::string, int> tensor_ranks;  // run-time tensors read, with their ranks
  std::vector<std::string> symbols;         // every Symbol the pattern reads, in the order the kernel takes them
  CpuSchedule schedule;
  StorageType storage;
  std::string target;
  bool guard_values = false;  // masked keys skip their V rows (needed only when V holds NaN or Inf)
  // Additive scoring: Q and K hold e^(2q), e^(2k) of the projections (see cpu_attention.cpp), not q and k.
  bool additive_exponentials = false;

  std::string str() const;  // the cache key
};

// A compiled pipeline with the parameters its callers bind per call (through a thread-safe ParamMap).
struct AttentionPipeline {
  Halide::Pipeline pipeline;   // outputs: acc (e, n, h, b), max (n, h, b), sum (n, h, b): the merged state
  Halide::ImageParam q, k, v;  // [B,H,N,D], [B,Hkv,M,D], [B,Hkv,M,Dv] as (d, n, h, b)
  Halide::ImageParam acc_in, max_in, sum_in;       // the running state the chunks are merged into
  Halide::ImageParam full_chunks, partial_chunks;  // (field: first key, key count; slot; query tile)
  Halide::ImageParam full_counts, partial_counts;  // chunks per query tile
  Halide::Param<int32_t> max_full, max_partial;    // the tables' slot extents
  std::map<std::string, Halide::ImageParam> tensors;
  Halide::Param<int32_t> heads, group, n_queries, m_keys;  // n_queries, m_keys: the view's local counts
  Halide::Param<int32_t> key_origin;                       // the view's first key (K and V are whole tensors)
  // The view-local keys [keys_begin, keys_end) this call's chunks read: the region of K and V a call packs
  // (Algorithm::pack_keys) is that, not the whole view.
  Halide::Param<int32_t> keys_begin, keys_end;
  std::vector<std::pair<std::string, Halide::Param<int32_t>>> symbols;  // in AttentionPipelineKey::symbols order
  Halide::Param<float> scale;
};

// Builds and schedules the pipeline of `pattern`, not compiled.
std::shared_ptr<AttentionPipeline> build_attention_pipeline(const ir::Pattern& pattern,
                                                            const AttentionPipelineKey& key);

// The pipeline's parameters in the order of tessera_cpu_driver::KernelCall (outputs follow: acc, max, sum):
// the signature of an ahead-of-time compiled kernel.
std::vector<Halide::Argument> kernel_arguments(const AttentionPipeline& p);

// The Halide target the kernels are compiled for.
Halide::Target cpu_target();

// cpu_target() with avx512_sapphirerapids, for bf16 kernels whose Q.K runs as vdpbf16ps, where the host has
// AVX512-BF16; else cpu_target(). Only for those kernels: with that feature LLVM 14 targets a Sapphire Rapids
// (mcpu) and moves 16-bit elements with vmovw, an AVX512-FP16 instruction Zen 4 lacks (SIGILL), so a kernel
// compiled for it must not gather bf16 elements one by one.
const Halide::Target& bf16_dot_target();

// Whether the kernel of `key` computes Q.K with vdpbf16ps: bf16 storage (a view stepping over keys packs them
// first), query tiles of 16-lane vectors, an even head dimension, dot-product scoring, and a target with
// avx512_sapphirerapids.
bool bf16_dot_applies(const AttentionPipelineKey& key, const ir::Pattern& pattern);

}  // namespace tessera::cpu
