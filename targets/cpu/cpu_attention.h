// The CPU target: attention computed by fused, flash-style kernels generated with Halide (JIT, cached).
//
// The sparsity planner (compiler/planner/) splits the pattern into components, each with views where it is
// dense. Per component one Halide pipeline (attention_pipeline.h) walks, for each query tile of a view, the
// chunks of FULL (unmasked) and PARTIAL (mask inlined) key tiles; EMPTY tiles are never visited. Every
// component merges into one running (row max, row sum, accumulator) state; the output is acc / sum.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"
#include "targets/cpu/attention_driver.h"

namespace tessera::cpu {

class TunedSchedules;

// How the kernels run: explicit values with measured defaults; cpu_schedule_space.h declares them to the tuner.
// The member defaults are AVX-512's; default_schedule() gives each instruction set its own.
struct CpuSchedule {
  int64_t block_q = 128;  // queries per tile
  // The narrowest query tile a plan component may take instead of block_q (ComponentTiling in execution_plan.h),
  // where the cost model finds it cheaper: dilated(32, 4)'s residue classes take 32 x 32 tiles, 1.5x faster at
  // N=4096 than the 64-row floor this had (bench/RESULTS.md, 2026-12-06); strided(stride=128)'s band and residue
  // classes keep 64 rows at N=16384 (91-102 ms against 108-111 with 128), causal its 128 from N=4096 up.
  int64_t min_block_q = 16;
  int64_t block_k = 64;  // keys per tile (the granularity of tile classification), which a component may halve
  // Keys per chunk: runs of consecutive tiles of one kind, up to this many keys. 64 rather than 128 since a merge
  // takes one exp per row: the chunk's score and probability tiles stay in L1. Against 128, single-thread AOT at
  // N=4096 (bench/RESULTS.md, 2026-12-03): fixed 18-22% faster on AVX2 and AVX-512, causal and full 1-10%.
  int64_t chunk_k = 64;
  int64_t vector_width = 16;
  int64_t reindex = 1;  // 1: the planner may re-index (any planner::ComponentKind); 0: tile-sparse only
  // Register tiles of the two small matrix products: at most `row_vectors` vectors of query rows by as many
  // keys (Q.K) or value columns (P.V) as fit in `qk_tile` / `pv_tile` accumulators (AVX-512 has 32 registers).
  int64_t row_vectors = 4;
  int64_t qk_tile = 24;
  int64_t pv_tile = 16;
  int64_t grain = 4;  // at most this many query tiles per kernel call (fewer when that would starve threads)
  // Parts each work item's keys are split into (tessera_cpu_driver::Problem::kv_splits): for decoding, whose
  // (batch, head) items may be fewer than the threads.
  int64_t kv_splits = 1;
  int64_t threads = 0;  // 0: every hardware thread
};

// The most queries a call may have for the tuner to split its keys (kv_splits): longer calls have query tiles
// enough to share among threads.
inline constexpr int64_t kMaxSplitKvQueries = 64;

// The schedule's fields by name, in the order they are printed (every field but threads): the one list that
// --schedule parsing, describe() and the tuner's schedule space (cpu_schedule_space.h) read.
struct ScheduleField {
  const char* name;
  int64_t CpuSchedule::*member;
};
inline constexpr ScheduleField kScheduleFields[] = {
    {"block_q", &CpuSchedule::block_q},           {"min_block_q", &CpuSchedule::min_block_q},
    {"block_k", &CpuSchedule::block_k},           {"chunk_k", &CpuSchedule::chunk_k},
    {"vector_width", &CpuSchedule::vector_width}, {"reindex", &CpuSchedule::reindex},
    {"row_vectors", &CpuSchedule::row_vectors},   {"qk_tile", &CpuSchedule::qk_tile},
    {"pv_tile", &CpuSchedule::pv_tile},           {"grain", &CpuSchedule::grain},
    {"kv_splits", &CpuSchedule::kv_splits}};

// The field called `name`, or nullptr.
int64_t* schedule_field(CpuSchedule& schedule, std::string_view name);

// "block_q=128,min_block_q=16,block_k=64,chunk_k=64,vector_width=16,reindex=1,row_vectors=4,qk_tile=24,pv_tile=16,
// grain=4,kv_splits=1"
// (every field but threads): what --schedule parses, what bench and the AOT header print.
std::string describe(const CpuSchedule& schedule);

// The Halide target string the kernels are compiled for on this machine (explicit features, see cpu_target.cpp).
std::string halide_target_string();

// The default schedule for a Halide target string ("x86-64-linux-avx2-fma-..."): CpuSchedule's member defaults
// with AVX-512, else register tiles for 16 vector registers of 8 floats (vector_width 8, 2 row vectors, 12 Q.K and
// 8 P.V accumulators) in 64-row query tiles; 16-lane vectors and 4 x 24 tiles spill there (causal at N=4096 ran at
// 53 GFLOP/s against 85-99 with these, on the AVX2 VM of bench/RESULTS.md). Chunks are 64 keys on both.
CpuSchedule default_schedule(const std::string& halide_target);
// default_schedule(halide_target_string()): this machine's.
const CpuSchedule& host_default_schedule();

enum class StorageType { Float32, BFloat16 };

struct CpuOptions {
  CpuSchedule schedule = host_default_schedule();
  // BFloat16: Q, K, V stored as bf16 (rounded, unless given as bf16 tensors), fp32 accumulation; where P.V runs as
  // vdpbf16ps, probabilities are rounded to bf16 for it, as FlashAttention's bf16 kernels round them.
  StorageType storage = StorageType::Float32;
  // When set, each call runs the schedule the tuning cache holds for its pattern and shape (threads are kept from
  // `schedule`); calls the cache knows nothing about run `schedule`.
  std::shared_ptr<const TunedSchedules> tuned;
  // The caller knows V holds no Inf or NaN (a KV cache that checked each row as it was appended), so the per-call
  // scan that picks the kernels guarding non-finite values is skipped. Wrong when set for a V that holds one:
  // masked keys' values then reach rows as 0 * Inf = NaN.
  bool values_finite = false;
};

// Computes attention with `pattern` on the CPU. Same contract and errors as reference::attention, except that with
// bf16 storage Q, K and V may also be bf16 tensors (all three), read as they are instead of rounded per call.
runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                          const CpuOptions& options = {});

// The same, overwriting `out`, a float32 [B, H, N, Dv] tensor the caller owns: the model runtime keeps its
// activation buffers across forward passes instead of allocating an output per layer. Throws TensorError naming
// `out` if its shape or dtype is wrong.
void attention_into(const ir::Pattern& pattern, const targets::AttentionInputs& inputs, runtime::Tensor& out,
                    const CpuOptions& options = {});

// Where Q, K, V and the output of attention_strided_into lie: each a [B, heads, rows, width] operand whose width
// is contiguous, with free row, head and batch strides (all zero: dense).
using RowStrides = tessera_cpu_driver::RowStrides;
struct OperandStrides {
  RowStrides q, k, v, out;
};

// attention_into over operands laid out as `strides` say: the tensors of `inputs` and `out` carry the logical
// shapes ([B, H, N, D], ...) and point at the storage the strides start from. FlashAttention's layout, [B, N, heads,
// D] (a fused projection's output read in place), is one such. Plain softmax attention on float32 storage reads
// the operands where they lie; other cases (bf16 storage, hardmax, additive or bilinear scoring, run-time tensor
// indices not proven in bounds) compute on dense copies. Not faster than transposing first where keys are re-read
// from far-apart rows: MiniLM's layers (N = 128, 12 heads of 32) took as long either way (bench/RESULTS.md,
// 2026-12-03 fifth session), so the model runtime still transposes.
void attention_strided_into(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                            const OperandStrides& strides, runtime::Tensor& out, const CpuOptions& options = {});

// Parses "block_q=128,chunk_k=512" (any subset; the rest keep their values in `base`). Throws
// std::invalid_argument.
CpuSchedule parse_schedule(const std::string& text, const CpuSchedule& base = host_default_schedule());

// Throws std::invalid_argument naming the sizes when the kernels cannot run `schedule`.
void validate_schedule(const CpuSchedule& schedule);

// `schedule` for a call with `queries` queries per head, fewer than its query tile (a decoding step): the kernels
// vectorise over query rows, so a tile of block_q rows would compute mostly padding. One query runs in a one-row
// tile (its own schedule: vectors across features, keys and value columns), 3 or 4 in a 4-row tile of
// 4 lanes, 2 in one-row tiles (two-lane vectors are refused: validate_schedule), up to 16 in tiles of at most 16 rows
// (measured for 1-16 queries over 2048 keys in bench/RESULTS.md), more in tiles of the next power of two (a vector at
// least). Unchanged for `queries` >= block_q.
CpuSchedule few_query_schedule(CpuSchedule schedule, int64_t queries);

// Attention over a KV cache: K [B, Hkv, capacity, D] and V [B, Hkv, capacity, Dv] in `inputs` hold `keys` valid
// rows per head (keys <= capacity) followed by room to grow. The kernels read the first `keys` rows of each head
// where they lie (a decoding step no longer copies the cache into dense tensors); patterns the fused softmax
// kernels do not run (hardmax, additive or bilinear scoring) and bf16 storage get a dense copy first.
void attention_over_cache_into(const ir::Pattern& pattern, const targets::AttentionInputs& inputs, int64_t keys,
                               runtime::Tensor& out, const CpuOptions& options = {});

}  // namespace tessera::cpu
