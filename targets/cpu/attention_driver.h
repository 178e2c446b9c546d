// The host side of the CPU kernels, shared by the JIT path (cpu_attention.cpp) and the static libraries that
// `tessera compile` writes: it walks a plan's components and views, calls one kernel per (view, batch, head,
// group of query tiles) on a pool of threads, and normalises the merged state into the output.
//
// It is self-contained (the C++ standard library and Halide's runtime header only) because `tessera compile`
// copies it verbatim into every library it writes, which must build and link without Tessera or Halide's
// compiler. Plans arrive as plain data (views and chunk tables as int32 arrays); kernels as callables, either a
// JIT pipeline or an ahead-of-time compiled Halide function.
#pragma once

#include <HalideRuntime.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

// Beside this file wherever it is, in the repository and in the libraries `tessera compile` writes.
#include "kept_threads.h"

namespace tessera_cpu_driver {

// Local index x < count selects original index origin + stride * (x / group) + x % group.
struct IndexView {
  int64_t origin = 0, stride = 1, count = 0, group = 1;

  int64_t original(int64_t x) const { return origin + stride * (x / group) + x % group; }
};

// Where the rows of a [B, heads, rows, width] operand lie, in elements from the pointer given for it; its width is
// contiguous. FlashAttention's layout, [B, rows, heads, width], has row stride heads * width and head stride
// width; a fused projection that writes Q, K and V side by side in each row puts K's `start` at heads * width.
// Strides all zero: dense [B, heads, rows, width] from `start`.
struct RowStrides {
  int64_t row = 0, head = 0, batch = 0, start = 0;

  bool dense() const { return row == 0 && head == 0 && batch == 0 && start == 0; }
  // These strides, or the dense ones of a [B, heads, rows, width] tensor where the strides are all zero.
  RowStrides or_dense(int64_t heads, int64_t rows, int64_t width) const {
    if (row != 0 || head != 0 || batch != 0) return *this;
    const int64_t w = width > 0 ? width : 1;
    return {w, rows * w, heads * rows * w, start};
  }
  int64_t offset(int64_t b, int64_t h, int64_t r) const { return start + b * batch + h * head + r * row; }
};

// One view's chunk tables in the layout the kernels read: per query tile, the runs of FULL and of PARTIAL key
// tiles as (first key, key count) pairs, `max_*` slots per tile (at least one, zero-filled), and the counts.
struct ChunkTables {
  const int32_t* full = nullptr;  // [tile_rows][max(1, max_full)][2]
  const int32_t* partial = nullptr;
  const int32_t* full_counts = nullptr;  // [tile_rows]
  const int32_t* partial_counts = nullptr;
  int32_t max_full = 0, max_partial = 0, tile_rows = 0;
};

struct ViewPlan {
  IndexView queries, keys;
  ChunkTables tables;
};

// Where the value of each symbol a component's kernel reads comes from.
enum class SymbolSource : int32_t { QueryOrigin, KeyOrigin, Constant };
struct SymbolValue {
  SymbolSource source = SymbolSource::Constant;
  int64_t value = 0;  // for Constant
};

struct ComponentPlan {
  std::vector<ViewPlan> views;
  std::vector<std::vector<size_t>> waves;  // views whose query rows are disjoint, run in parallel
  std::vector<SymbolValue> symbols;        // in the order the kernel takes them
  size_t kernel = 0;                       // index into the kernels given to run()
  int64_t block_q = 0;                     // the query tile its kernel is compiled for
};

// The arguments of one kernel call, in the order every kernel takes them.
struct KernelCall {
  size_t view = 0;  // which view of the component (lets a JIT kernel reuse per-view state)
  const halide_buffer_t *q, *k, *v;
  const halide_buffer_t *acc_in, *max_in, *sum_in;
  const halide_buffer_t *full_chunks, *partial_chunks, *full_counts, *partial_counts;
  int32_t max_full, max_partial, heads, group, n_queries, m_keys, key_origin;
  int32_t keys_begin, keys_end;  // the view-local keys this call's chunks hold (a nonempty range within the view)
  float scale;
  const halide_buffer_t* const* tensors;  // the pattern's run-time tensors, ordered by name
  const int32_t* symbols;                 // in the order of ComponentPlan::symbols
  halide_buffer_t *acc_out, *max_out, *sum_out;
};

// Returns 0 or a Halide error code (and may throw, which run() passes on).
using Kernel = std::function<int(const KernelCall&)>;

struct Problem {
  const void *q = nullptr, *k = nullptr, *v = nullptr;            // [B,H,N,D], [B,Hkv,M,D], [B,Hkv,M,Dv]
  halide_type_t qkv_type = halide_type_t(halide_type_float, 32);  // or uint16: bf16 bits
  float* out = nullptr;                                           // [B,H,N,Dv]
  int64_t B = 0, H = 0, Hkv = 0, N = 0, M = 0, D = 0, Dv = 0;
  int64_t key_rows = 0;  // rows per K/V head in memory, M of them keys (a KV cache with room to grow); 0: M
  RowStrides q_strides, k_strides, v_strides, out_strides;  // zero: dense (K and V: key_rows rows per head)
  float scale = 1.0f;
  std::vector<const halide_buffer_t*> tensors;  // ordered by name
  int64_t max_tiles_per_call = 4;               // the parallel grain: query tiles one kernel call computes, at most
  // Split-KV: each work item's runs of key tiles are divided into this many parts of about equal keys, computed by
  // separate calls into private states and merged by log-sum-exp after their wave. What keeps every thread busy
  // when (batch, head, query tile) items are fewer than threads, as in decoding with one or three heads.
  int64_t kv_splits = 1;
  int64_t threads = 0;  // 0: every hardware thread
};

inline int64_t element_bytes(const halide_type_t& type) { return (type.bits + 7) / 8; }

// A halide_buffer_t with room for its dimensions; copies keep pointing at their own.
struct Buffer {
  halide_buffer_t buf{};
  halide_dimension_t dims[8]{};

  Buffer() = default;
  Buffer(const Buffer& other) : buf(other.buf) {
    std::copy(std::begin(other.dims), std::end(other.dims), dims);
    buf.dim = dims;
  }
  Buffer& operator=(const Buffer& other) {
    buf = other.buf;
    std::copy(std::begin(other.dims), std::end(other.dims), dims);
    buf.dim = dims;
    return *this;
  }

  static constexpr int kMaxDims = 8;

  // A dense buffer over `data` with `extents` innermost first (at most kMaxDims of them).
  static Buffer dense(void* data, halide_type_t type, const std::vector<int64_t>& extents) {
    if (extents.size() > static_cast<size_t>(kMaxDims)) throw std::invalid_argument("tensor rank above 8");
    Buffer b;
    int32_t stride = 1;
    int d = 0;
    for (int64_t e : extents) {
      b.dims[d++] = halide_dimension_t{0, static_cast<int32_t>(e), stride, 0};
      stride *= static_cast<int32_t>(e);
    }
    b.init(data, type, d);
    return b;
  }

  // Rows origin + stride * x (x < count) of a [B, heads, rows, width] tensor laid out as `strides` say (zero:
  // C-ordered), width innermost; width 0 drops that dimension ([B, heads, rows]).
  static Buffer rows(const void* data, int64_t B, int64_t heads, int64_t rows, int64_t width, const IndexView& view,
                     halide_type_t type = halide_type_t(halide_type_float, 32), RowStrides strides = {}) {
    const RowStrides s = strides.or_dense(heads, rows, width);
    Buffer b;
    int d = 0;
    if (width > 0) b.dims[d++] = halide_dimension_t{0, static_cast<int32_t>(width), 1, 0};
    b.dims[d++] = halide_dimension_t{0, static_cast<int32_t>(view.count), static_cast<int32_t>(view.stride * s.row), 0};
    b.dims[d++] = halide_dimension_t{0, static_cast<int32_t>(heads), static_cast<int32_t>(s.head), 0};
    b.dims[d++] = halide_dimension_t{0, static_cast<int32_t>(B), static_cast<int32_t>(s.batch), 0};
    b.init(static_cast<uint8_t*>(const_cast<void*>(data)) + (s.start + view.origin * s.row) * element_bytes(type), type,
           d);
    return b;
  }

  // The same buffer restricted to [min, min + extent) along dimension d (coordinates keep their meaning; `host`
  // always points at the element of the minimum coordinates).
  Buffer cropped(int d, int64_t min, int64_t extent) const {
    Buffer c = *this;
    c.buf.host += (min - dims[d].min) * dims[d].stride * element_bytes(buf.type);
    c.dims[d].min = static_cast<int32_t>(min);
    c.dims[d].extent = static_cast<int32_t>(extent);
    return c;
  }

 private:
  void init(void* data, halide_type_t type, int dimensions) {
    buf.host = static_cast<uint8_t*>(data);
    buf.type = type;
    buf.dimensions = dimensions;
    buf.dim = dims;
  }
};

// Kernels allocate their intermediate buffers (query tile, state, chunk scores: hundreds of KiB) per call;
// through malloc that maps and unmaps them from the kernel every call, measured at ~45 us per call, as much as a
// small view's whole computation. Blocks are kept per thread and reused instead.
namespace block_cache {
constexpr size_t kAlignment = 64;
constexpr size_t kMaxBlocks = 64;
struct Block {
  size_t size;
  void* data;
};
struct Cache {
  std::vector<Block> free_blocks;
  ~Cache() {
    for (const Block& b : free_blocks) std::free(static_cast<char*>(b.data) - kAlignment);
  }
};
inline thread_local Cache cache;

inline void* allocate(size_t size) {
  auto& blocks = cache.free_blocks;
  for (size_t n = 0; n < blocks.size(); ++n) {
    if (blocks[n].size >= size && blocks[n].size <= 2 * size + 4096) {
      void* data = blocks[n].data;
      blocks[n] = blocks.back();
      blocks.pop_back();
      return data;
    }
  }
  // The size is stored in front of the block so release() can keep it; the block itself stays aligned.
  size_t total = (size + 2 * kAlignment - 1) / kAlignment * kAlignment;
  auto* base = static_cast<char*>(std::aligned_alloc(kAlignment, total));
  if (base == nullptr) return nullptr;
  *reinterpret_cast<size_t*>(base) = total - kAlignment;
  return base + kAlignment;
}

inline void release(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kAlignment;
  auto& blocks = cache.free_blocks;
  if (blocks.size() >= kMaxBlocks) {
    std::free(static_cast<char*>(blocks.front().data) - kAlignment);
    blocks.front() = blocks.back();
    blocks.pop_back();
  }
  blocks.push_back({*reinterpret_cast<size_t*>(base), data});
}
}  // namespace block_cache

// Whether every value is finite: kernels that let masked keys skip non-finite V rows are needed only otherwise.
inline bool all_finite(const float* data, int64_t count) {
  // An all-ones exponent is Inf or NaN; integer tests reduce with `|`, which vectorises (a float sum would not).
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < count; start += kBlock) {
    uint32_t non_finite = 0;
    const int64_t end = std::min(count, start + kBlock);
    for (int64_t n = start; n < end; ++n) {
      uint32_t bits;
      std::memcpy(&bits, &data[n], sizeof bits);
      non_finite |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (non_finite) return false;
  }
  return true;
}

// The same for bf16 bits.
inline bool all_finite(const uint16_t* data, int64_t count) {
  uint32_t non_finite = 0;
  for (int64_t n = 0; n < count; ++n) non_finite |= static_cast<uint32_t>((data[n] & 0x7f80u) == 0x7f80u);
  return non_finite == 0;
}

namespace detail {

// What stays the same for every call on one view (and key split).
struct ViewArgs {
  Buffer q, k, v, acc, max, sum;
  Buffer full, partial, full_counts, partial_counts;
  ChunkTables tables;
  std::vector<int32_t> symbols;
};

// The state a view's calls merge into: the accumulator laid out as `acc_strides` say, row max and sum dense.
struct StateArrays {
  float *acc, *max, *sum;
  RowStrides acc_strides;
};

// The query rows of a view whose rows come in runs (group > 1: a column block's columns of every image row), and
// their state, copied into dense arrays: a kernel addresses query rows as one stride apart, and such a view's
// calls run on these copies, gathered before its wave and scattered back after.
struct PackedRows {
  std::vector<uint8_t> q;            // [B, H, count, D] elements of the query type
  std::vector<float> acc, max, sum;  // [B, H, count, Dv], [B, H, count] twice
};

// Packed rows kept from call to call on this thread: fresh pages for them cost more than copying the rows in (a
// third of local2d's time at N=4096, 36 against 25 ms). run() lets go of them above kKeptPackedBytes, which a
// long context's copies would otherwise hold for the thread's lifetime.
inline std::vector<PackedRows>& kept_packed_rows() {
  static thread_local std::vector<PackedRows> packed;
  return packed;
}
inline constexpr size_t kKeptPackedBytes = size_t{256} << 20;

// `packed`: where the view's query rows are packed (see PackedRows), else null.
inline ViewArgs view_args(const Problem& p, const ComponentPlan& component, const ViewPlan& view, const ChunkTables& t,
                          const StateArrays& state, PackedRows* packed = nullptr) {
  ViewArgs a;
  const IndexView all_keys{0, 1, p.M, 1};  // the kernels address a view's keys themselves
  const int64_t key_rows = p.key_rows > 0 ? p.key_rows : p.M;
  a.k = Buffer::rows(p.k, p.B, p.Hkv, key_rows, p.D, all_keys, p.qkv_type, p.k_strides);
  a.v = Buffer::rows(p.v, p.B, p.Hkv, key_rows, p.Dv, all_keys, p.qkv_type, p.v_strides);
  const halide_type_t f32(halide_type_float, 32);
  if (packed != nullptr) {
    const int64_t count = view.queries.count;
    const IndexView rows{0, 1, count, 1};
    // Sized now, filled by gather_rows: the buffers only point into them.
    const size_t n = static_cast<size_t>(p.B * p.H * count);
    packed->q.resize(n * static_cast<size_t>(p.D * element_bytes(p.qkv_type)));
    packed->acc.resize(n * static_cast<size_t>(p.Dv));
    packed->max.resize(n);
    packed->sum.resize(n);
    a.q = Buffer::rows(packed->q.data(), p.B, p.H, count, p.D, rows, p.qkv_type);
    a.acc = Buffer::rows(packed->acc.data(), p.B, p.H, count, p.Dv, rows, f32);
    a.max = Buffer::rows(packed->max.data(), p.B, p.H, count, 0, rows);
    a.sum = Buffer::rows(packed->sum.data(), p.B, p.H, count, 0, rows);
  } else {
    a.q = Buffer::rows(p.q, p.B, p.H, p.N, p.D, view.queries, p.qkv_type, p.q_strides);
    a.acc = Buffer::rows(state.acc, p.B, p.H, p.N, p.Dv, view.queries, f32, state.acc_strides);
    a.max = Buffer::rows(state.max, p.B, p.H, p.N, 0, view.queries);
    a.sum = Buffer::rows(state.sum, p.B, p.H, p.N, 0, view.queries);
  }
  a.tables = t;
  const halide_type_t i32(halide_type_int, 32);
  a.full = Buffer::dense(const_cast<int32_t*>(t.full), i32, {2, std::max(1, t.max_full), t.tile_rows});
  a.partial = Buffer::dense(const_cast<int32_t*>(t.partial), i32, {2, std::max(1, t.max_partial), t.tile_rows});
  a.full_counts = Buffer::dense(const_cast<int32_t*>(t.full_counts), i32, {t.tile_rows});
  a.partial_counts = Buffer::dense(const_cast<int32_t*>(t.partial_counts), i32, {t.tile_rows});
  for (const SymbolValue& s : component.symbols) {
    int64_t value = s.source == SymbolSource::QueryOrigin ? view.queries.origin
                    : s.source == SymbolSource::KeyOrigin ? view.keys.origin
                                                          : s.value;
    a.symbols.push_back(static_cast<int32_t>(value));
  }
  return a;
}

// `cost`: the keys a work item's query tiles visit, plus block_q per tile for the work that does not depend on the
// keys (the query tile, the state), its relative cost. [keys_begin, keys_end): the view-local keys its runs cover,
// from the first run's start to the last's end; [0, 1) where there is no run (a kernel call reads at least one key
// row, clamped, as its region of K and V).
struct ItemWork {
  int64_t cost = 0;
  int32_t keys_begin = 0, keys_end = 1;
};

struct WorkItem {
  size_t view;
  int64_t b, h, first_row, rows;
  ItemWork work;
  size_t split = 0;  // which part of the keys (Problem::kv_splits): 0 merges into the running state directly
};

// Calls fn(first key, key count, FULL?) for each run of query tile `tile` of `t`: its FULL runs, then its PARTIAL
// ones, in table order.
template <typename Fn>
void for_each_run(const ChunkTables& t, int64_t tile, Fn fn) {
  for (int kind = 0; kind < 2; ++kind) {
    const int32_t* table = kind == 0 ? t.full : t.partial;
    const int32_t slots = std::max(1, kind == 0 ? t.max_full : t.max_partial);
    const int32_t count = (kind == 0 ? t.full_counts : t.partial_counts)[tile];
    for (int32_t r = 0; r < count; ++r) {
      const int32_t* run = table + 2 * (tile * slots + r);
      fn(run[0], run[1], kind == 0);
    }
  }
}

// Chunk tables that own their arrays (a part of a view's keys, see split_tables).
struct OwnedTables {
  std::vector<int32_t> full, partial, full_counts, partial_counts;
  ChunkTables view() const {
    return {full.data(), partial.data(), full_counts.data(), partial_counts.data(), max_full, max_partial, tile_rows};
  }
  int32_t max_full = 0, max_partial = 0, tile_rows = 0;
};

// The runs of every query tile of `t`, in key order, divided into `parts` groups of consecutive runs holding about
// equal numbers of keys; part s's tables hold group s of each tile (none where a tile has fewer runs than parts).
inline std::vector<OwnedTables> split_tables(const ChunkTables& t, int64_t parts) {
  struct Run {
    int32_t first, count;
    bool full;
  };
  std::vector<std::vector<std::vector<Run>>> runs(static_cast<size_t>(parts));  // [part][tile] -> runs
  for (auto& part : runs) part.resize(static_cast<size_t>(t.tile_rows));
  std::vector<Run> tile_runs;
  for (int32_t tile = 0; tile < t.tile_rows; ++tile) {
    tile_runs.clear();
    int64_t keys = 0;
    for_each_run(t, tile, [&](int32_t first, int32_t count, bool full) {
      tile_runs.push_back({first, count, full});
      keys += count;
    });
    std::sort(tile_runs.begin(), tile_runs.end(), [](const Run& x, const Run& y) { return x.first < y.first; });
    int64_t before = 0;
    for (const Run& run : tile_runs) {
      // The part the run's middle key falls in: consecutive runs, parts of about keys / parts each.
      const int64_t part =
          std::min<int64_t>(parts - 1, (2 * before + run.count) * parts / std::max<int64_t>(1, 2 * keys));
      runs[static_cast<size_t>(part)][static_cast<size_t>(tile)].push_back(run);
      before += run.count;
    }
  }
  std::vector<OwnedTables> out(static_cast<size_t>(parts));
  for (size_t part = 0; part < out.size(); ++part) {
    OwnedTables& o = out[part];
    o.tile_rows = t.tile_rows;
    for (const auto& tile : runs[part]) {
      int32_t full = 0, partial = 0;
      for (const Run& run : tile) (run.full ? full : partial) += 1;
      o.max_full = std::max(o.max_full, full);
      o.max_partial = std::max(o.max_partial, partial);
    }
    const size_t full_slots = static_cast<size_t>(std::max(1, o.max_full));
    const size_t partial_slots = static_cast<size_t>(std::max(1, o.max_partial));
    o.full.assign(2 * full_slots * static_cast<size_t>(t.tile_rows), 0);
    o.partial.assign(2 * partial_slots * static_cast<size_t>(t.tile_rows), 0);
    o.full_counts.assign(static_cast<size_t>(t.tile_rows), 0);
    o.partial_counts.assign(static_cast<size_t>(t.tile_rows), 0);
    for (size_t tile = 0; tile < runs[part].size(); ++tile) {
      for (const Run& run : runs[part][tile]) {
        std::vector<int32_t>& table = run.full ? o.full : o.partial;
        int32_t& count = (run.full ? o.full_counts : o.partial_counts)[tile];
        const size_t slot = tile * (run.full ? full_slots : partial_slots) + static_cast<size_t>(count++);
        table[2 * slot] = run.first;
        table[2 * slot + 1] = run.count;
      }
    }
  }
  return out;
}

// The element of `b` at `coords` (innermost first, as Halide orders them).
inline float* element(const Buffer& b, std::initializer_list<int64_t> coords) {
  int64_t offset = 0;
  int d = 0;
  for (int64_t c : coords) {
    offset += (c - b.dims[d].min) * b.dims[d].stride;
    ++d;
  }
  return reinterpret_cast<float*>(b.buf.host) + offset;
}

// Merges the state `from` of rows [first_row, first_row + rows) of head h, batch b (a work item's rows) into
// `into`, by log-sum-exp as the kernels merge chunks, and resets `from` to the empty state. NaN in either passes
// on (times a zero weight it stays NaN); exp is never taken of -inf - -inf.
inline void merge_state(const ViewArgs& into, const ViewArgs& from, int64_t first_row, int64_t rows, int64_t h,
                        int64_t b, int64_t Dv) {
  constexpr float kEmpty = -std::numeric_limits<float>::infinity();
  for (int64_t x = first_row; x < first_row + rows; ++x) {
    float* max0 = element(into.max, {x, h, b});
    float* max1 = element(from.max, {x, h, b});
    float* sum0 = element(into.sum, {x, h, b});
    float* sum1 = element(from.sum, {x, h, b});
    float* acc0 = element(into.acc, {0, x, h, b});
    float* acc1 = element(from.acc, {0, x, h, b});
    const float m = std::max(*max0, *max1);
    const float w0 = *max0 == kEmpty ? 0.0f : std::exp(*max0 - m);
    const float w1 = *max1 == kEmpty ? 0.0f : std::exp(*max1 - m);
    for (int64_t e = 0; e < Dv; ++e) {
      acc0[e] = acc0[e] * w0 + acc1[e] * w1;
      acc1[e] = 0.0f;
    }
    *sum0 = *sum0 * w0 + *sum1 * w1;
    *max0 = m;
    *sum1 = 0.0f;
    *max1 = kEmpty;
  }
}

// What a work item over a view's query tiles [first_tile, end_tile) computes (see ItemWork).
inline ItemWork item_work(const ChunkTables& t, int64_t first_tile, int64_t end_tile, int64_t block_q) {
  ItemWork w;
  int32_t begin = std::numeric_limits<int32_t>::max(), end = 0;
  for (int64_t tile = first_tile; tile < std::min<int64_t>(end_tile, t.tile_rows); ++tile) {
    w.cost += block_q;
    for_each_run(t, tile, [&](int32_t first, int32_t count, bool) {
      w.cost += count;
      if (count < 1) return;
      begin = std::min(begin, first);
      end = std::max(end, first + count);
    });
  }
  if (begin < end) {
    w.keys_begin = begin;
    w.keys_end = end;
  }
  return w;
}

// Runs body(begin, end) over [0, count) split evenly across up to `threads` threads (this one included), each
// given at least `min_per_thread`: below that, handing work to another thread costs more than it saves.
template <typename Body>
void parallel_ranges(size_t count, size_t min_per_thread, int64_t threads, Body body) {
  const size_t n =
      std::max<size_t>(1, std::min<size_t>(static_cast<size_t>(threads), count / std::max<size_t>(1, min_per_thread)));
  kept_threads::run(static_cast<int64_t>(n), [&](int64_t t) {
    const auto part = static_cast<size_t>(t);
    body(count * part / n, count * (part + 1) / n);
  });
}

inline bool needs_packing(const IndexView& queries) { return queries.group > 1 && queries.count > 0; }

// Calls fn(r, b, h, row) for packed row r of a view's queries: batch b, head h, original query row `row`; rows
// spread over the threads.
template <typename Fn>
void for_each_packed_row(const Problem& p, const IndexView& queries, int64_t threads, Fn fn) {
  const size_t count = static_cast<size_t>(queries.count);
  parallel_ranges(static_cast<size_t>(p.B * p.H) * count, 4096, threads, [&](size_t begin, size_t end) {
    for (size_t r = begin; r < end; ++r) {
      const auto bh = static_cast<int64_t>(r / count);
      fn(r, bh / p.H, bh % p.H, queries.original(static_cast<int64_t>(r % count)));
    }
  });
}

// Into `packed`, as view_args sized it.
inline void gather_rows(const Problem& p, const IndexView& queries, const StateArrays& state, PackedRows* packed,
                        int64_t threads) {
  const auto bytes = static_cast<size_t>(p.D * element_bytes(p.qkv_type)), Dv = static_cast<size_t>(p.Dv);
  const RowStrides q_strides = p.q_strides.or_dense(p.H, p.N, p.D);
  const RowStrides acc_strides = state.acc_strides.or_dense(p.H, p.N, p.Dv);
  const auto* q = static_cast<const uint8_t*>(p.q);
  for_each_packed_row(p, queries, threads, [&](size_t r, int64_t b, int64_t h, int64_t row) {
    std::memcpy(&packed->q[r * bytes], q + q_strides.offset(b, h, row) * element_bytes(p.qkv_type), bytes);
    std::copy_n(state.acc + acc_strides.offset(b, h, row), Dv, &packed->acc[r * Dv]);
    packed->max[r] = state.max[(b * p.H + h) * p.N + row];
    packed->sum[r] = state.sum[(b * p.H + h) * p.N + row];
  });
}

inline void scatter_rows(const Problem& p, const IndexView& queries, const PackedRows& packed, const StateArrays& state,
                         int64_t threads) {
  const auto Dv = static_cast<size_t>(p.Dv);
  const RowStrides acc_strides = state.acc_strides.or_dense(p.H, p.N, p.Dv);
  for_each_packed_row(p, queries, threads, [&](size_t r, int64_t b, int64_t h, int64_t row) {
    std::copy_n(&packed.acc[r * Dv], Dv, state.acc + acc_strides.offset(b, h, row));
    state.max[(b * p.H + h) * p.N + row] = packed.max[r];
    state.sum[(b * p.H + h) * p.N + row] = packed.sum[r];
  });
}

}  // namespace detail

// Runs every component of a plan and writes the normalised output. Returns 0 or the first kernel's error code;
// exceptions thrown by kernels are rethrown after every thread has stopped.
inline int run(const Problem& p, const std::vector<ComponentPlan>& components, const std::vector<Kernel>& kernels) {
  const size_t rows = static_cast<size_t>(p.B * p.H * p.N);
  // The running state every component merges into, then normalised: out = acc / sum.
  // The accumulator lives in the output (normalised in place at the end): one buffer of B*H*N*Dv fewer to
  // allocate and fault in per call.
  const int64_t max_threads = p.threads > 0 ? p.threads : std::max(1u, std::thread::hardware_concurrency());
  float* acc = p.out;
  // Zeroing and normalising the output run on every thread: on one, they took ~3% of causal's time (N=4096, H=8).
  const size_t Dv = static_cast<size_t>(p.Dv);
  constexpr size_t kMinFloatsPerThread = size_t{1} << 16;
  // Output row r = (b * H + h) * N + i, wherever out_strides put it.
  const RowStrides out_strides = p.out_strides.or_dense(p.H, p.N, p.Dv);
  const auto out_row = [&](size_t r) {
    const auto i = static_cast<int64_t>(r) % p.N, bh = static_cast<int64_t>(r) / p.N;
    return acc + out_strides.offset(bh / p.H, bh % p.H, i);
  };
  if (p.out_strides.dense()) {
    detail::parallel_ranges(rows * Dv, kMinFloatsPerThread, max_threads,
                            [&](size_t begin, size_t end) { std::fill(acc + begin, acc + end, 0.0f); });
  } else {
    detail::parallel_ranges(rows, kMinFloatsPerThread / std::max<size_t>(Dv, 1), max_threads,
                            [&](size_t begin, size_t end) {
                              for (size_t r = begin; r < end; ++r) std::fill_n(out_row(r), Dv, 0.0f);
                            });
  }
  std::vector<float> row_max(rows, -std::numeric_limits<float>::infinity());
  std::vector<float> row_sum(rows, 0.0f);
  // Split-KV: part 0 of each item's keys merges into the running state as an unsplit item does; part s > 0 into
  // private state s - 1 (dense, empty between waves), merged into the running state after its wave.
  const int64_t splits = std::max<int64_t>(1, p.kv_splits);
  const size_t private_states = static_cast<size_t>(splits - 1);
  std::vector<std::vector<float>> split_acc(private_states), split_max(private_states), split_sum(private_states);
  for (size_t s = 0; s < private_states; ++s) {
    split_acc[s].assign(rows * Dv, 0.0f);
    split_max[s].assign(rows, -std::numeric_limits<float>::infinity());
    split_sum[s].assign(rows, 0.0f);
  }
  const auto state = [&](size_t part) {
    return part == 0 ? detail::StateArrays{acc, row_max.data(), row_sum.data(), p.out_strides}
                     : detail::StateArrays{split_acc[part - 1].data(), split_max[part - 1].data(),
                                           split_sum[part - 1].data(), RowStrides{}};
  };

  for (const ComponentPlan& component : components) {
    const Kernel& kernel = kernels.at(component.kernel);
    const size_t view_count = component.views.size();
    // args[part * view_count + view]: each part of a view has its own tables and state. That index is also the
    // view a kernel call names, since a JIT kernel keeps its inputs per view.
    std::vector<std::vector<detail::OwnedTables>> part_tables;
    std::vector<detail::ViewArgs> args(view_count * static_cast<size_t>(splits));
    std::vector<detail::PackedRows>& packed = detail::kept_packed_rows();
    if (packed.size() < args.size()) packed.resize(args.size());
    const auto packed_for = [&](size_t arg) {
      return detail::needs_packing(component.views[arg % view_count].queries) ? &packed[arg] : nullptr;
    };
    for (size_t v = 0; v < view_count; ++v) {
      const ViewPlan& view = component.views[v];
      if (splits == 1) {
        args[v] = detail::view_args(p, component, view, view.tables, state(0), packed_for(v));
        continue;
      }
      const std::vector<detail::OwnedTables>& parts =
          part_tables.emplace_back(detail::split_tables(view.tables, splits));
      for (size_t part = 0; part < parts.size(); ++part) {
        const size_t arg = part * view_count + v;
        args[arg] = detail::view_args(p, component, view, parts[part].view(), state(part), packed_for(arg));
      }
    }
    // Waves run one after another, as they merge into the same rows.
    for (const std::vector<size_t>& wave : component.waves) {
      std::vector<detail::WorkItem> items;
      // A few query tiles per call amortise the call and let its tiles share the keys they read while warm in
      // cache; enough calls remain to balance the threads: either each (view, batch, head) is split in 8 or
      // more, or there are that many of them (a plan's residue classes: many views of a few tiles each).
      const bool many_views = static_cast<int64_t>(wave.size()) * p.B * p.H >= 8 * max_threads;
      const int64_t bq = component.block_q;
      if (bq < 1) throw std::invalid_argument("tessera_cpu_driver::run: a component plan without a query tile");
      for (size_t vi : wave) {
        const int64_t count = component.views[vi].queries.count;
        const int64_t tile_rows = (count + bq - 1) / bq;
        const int64_t tiles_per_item =
            std::max<int64_t>(1, std::min<int64_t>(p.max_tiles_per_call, many_views ? tile_rows : tile_rows / 8));
        for (int64_t b = 0; b < p.B; ++b) {
          for (int64_t h = 0; h < p.H; ++h) {
            for (int64_t first = 0; first < count; first += tiles_per_item * bq) {
              const int64_t first_tile = first / bq;
              for (size_t part = 0; part < static_cast<size_t>(splits); ++part) {
                items.push_back({vi, b, h, first, std::min(tiles_per_item * bq, count - first),
                                 detail::item_work(args[part * view_count + vi].tables, first_tile,
                                                   first_tile + tiles_per_item, bq),
                                 part});
              }
            }
          }
        }
      }
      for (size_t vi : wave) {
        for (size_t part = 0; part < static_cast<size_t>(splits); ++part) {
          if (detail::PackedRows* rows = packed_for(part * view_count + vi)) {
            detail::gather_rows(p, component.views[vi].queries, state(part), rows, max_threads);
          }
        }
      }
      // Costliest first (longest processing time first): the threads then finish together, where in row order
      // the last items (causal's longest rows) left one thread working alone.
      std::stable_sort(items.begin(), items.end(),
                       [](const detail::WorkItem& x, const detail::WorkItem& y) { return x.work.cost > y.work.cost; });
      std::atomic<size_t> next{0};
      std::atomic<int> error{0};
      std::exception_ptr failure;
      std::mutex failure_mutex;
      auto worker = [&] {
        try {
          for (size_t n; (n = next.fetch_add(1)) < items.size();) {
            const detail::WorkItem& item = items[n];
            const size_t arg = item.split * view_count + item.view;
            const detail::ViewArgs& a = args[arg];
            const ViewPlan& view = component.views[item.view];
            Buffer acc_out = a.acc.cropped(1, item.first_row, item.rows).cropped(2, item.h, 1).cropped(3, item.b, 1);
            Buffer max_out = a.max.cropped(0, item.first_row, item.rows).cropped(1, item.h, 1).cropped(2, item.b, 1);
            Buffer sum_out = a.sum.cropped(0, item.first_row, item.rows).cropped(1, item.h, 1).cropped(2, item.b, 1);
            KernelCall call{arg,
                            &a.q.buf,
                            &a.k.buf,
                            &a.v.buf,
                            &a.acc.buf,
                            &a.max.buf,
                            &a.sum.buf,
                            &a.full.buf,
                            &a.partial.buf,
                            &a.full_counts.buf,
                            &a.partial_counts.buf,
                            a.tables.max_full,
                            a.tables.max_partial,
                            static_cast<int32_t>(p.H),
                            static_cast<int32_t>(p.H / p.Hkv),
                            static_cast<int32_t>(view.queries.count),
                            static_cast<int32_t>(view.keys.count),
                            static_cast<int32_t>(view.keys.origin),
                            item.work.keys_begin,
                            item.work.keys_end,
                            p.scale,
                            p.tensors.data(),
                            a.symbols.data(),
                            &acc_out.buf,
                            &max_out.buf,
                            &sum_out.buf};
            if (int code = kernel(call); code != 0) {
              int expected = 0;
              error.compare_exchange_strong(expected, code);
              next = items.size();
            }
          }
        } catch (...) {
          std::lock_guard<std::mutex> lock(failure_mutex);
          if (!failure) failure = std::current_exception();
          next = items.size();
        }
      };
      const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(max_threads, static_cast<int64_t>(items.size())));
      kept_threads::run(threads, [&](int64_t) { worker(); });
      if (failure) std::rethrow_exception(failure);
      if (error != 0) return error;
      if (splits > 1) {
        // Each item's parts write the same rows: one thread merges all of an item's parts, items in parallel.
        std::vector<const detail::WorkItem*> merged;
        for (const detail::WorkItem& item : items) {
          if (item.split == 0) merged.push_back(&item);
        }
        detail::parallel_ranges(merged.size(), 64, max_threads, [&](size_t begin, size_t end) {
          for (size_t n = begin; n < end; ++n) {
            const detail::WorkItem& item = *merged[n];
            for (size_t part = 1; part < static_cast<size_t>(splits); ++part) {
              detail::merge_state(args[item.view], args[part * view_count + item.view], item.first_row, item.rows,
                                  item.h, item.b, p.Dv);
            }
          }
        });
      }
      // Private states end each wave empty (merge_state empties them): only part 0's rows go back.
      for (size_t vi : wave) {
        if (const detail::PackedRows* rows = packed_for(vi)) {
          detail::scatter_rows(p, component.views[vi].queries, *rows, state(0), max_threads);
        }
      }
    }
  }

  size_t kept_bytes = 0;
  for (const detail::PackedRows& rows : detail::kept_packed_rows()) {
    kept_bytes += rows.q.capacity() + 4 * (rows.acc.capacity() + rows.max.capacity() + rows.sum.capacity());
  }
  if (kept_bytes > detail::kKeptPackedBytes) std::vector<detail::PackedRows>().swap(detail::kept_packed_rows());

  // A row with no allowed key has sum 0 and outputs zeros.
  detail::parallel_ranges(rows, kMinFloatsPerThread / std::max<size_t>(Dv, 1), max_threads,
                          [&](size_t begin, size_t end) {
                            for (size_t r = begin; r < end; ++r) {
                              const float sum = row_sum[r];
                              const bool empty = !(sum > 0) && !std::isnan(sum);
                              float* row = out_row(r);
                              for (size_t e = 0; e < Dv; ++e) row[e] = empty ? 0.0f : row[e] / sum;
                            }
                          });
  return 0;
}

}  // namespace tessera_cpu_driver
