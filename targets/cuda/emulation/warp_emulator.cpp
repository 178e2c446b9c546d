// The warp emulator: a block's threads are ucontext fibers on the calling OS thread, run round-robin, each
// running until it reaches a collective operation (or finishes). A warp collective is computed by the last lane
// to arrive, from the operands every lane deposited; bar.sync releases its waiters once every thread that has not
// exited is waiting.
//
// The semantics follow the PTX ISA (version 8.x/9.x, "Parallel Thread Execution ISA"), not what any kernel expects:
//   - 9.7.14.5.8 (9.7.13.4.8 in older editions) "Matrix Fragments for mma.m16n8k16 with floating point type":
//     the A, B and C/D fragment tables used by mma_m16n8k16();
//   - "Warp-level matrix load instruction: ldmatrix", its address table (threads 0-7 give addr0-addr7, the rows of
//     the first matrix, 8-15 the second, ...) and Figure "ldmatrix fragment layout for one 8x8 Matrix with 16-bit
//     elements" (thread l receives row l / 4, columns 2 * (l % 4) and + 1; .trans loads the matrix column-major);
//   - "cp.async", "cp.async.commit_group", "cp.async.wait_group";
//   - "cvt" (.rn.f16x2.f32 / .rn.bf16x2.f32: input a goes to the upper half, b to the lower half);
//   - "shfl.sync" (.bfly: source lane = laneid ^ b[4:0]; .idx: source lane = b[4:0]; with c = 0x1f and membermask
//     0xffffffff every lane is in range);
//   - "bar.sync" (barrier 0 with no thread count: every thread of the CTA);
//   - "ex2.approx.ftz.f32";
//   - 9.7.15 "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions" (wgmma): 9.7.15.5.1.1.1
//     "Matrix Fragments for wgmma.mma_async.m64nNk16" (Figures "WGMMA .m64nNk16 register fragment layout for
//     matrix A" and "... for accumulator matrix D"), 9.7.15.5.1.2 "Shared Memory Matrix Layout" with
//     9.7.15.5.1.2.1 "Major-ness supported by Strides" and 9.7.15.5.1.2.1.3 "Canonical Layouts",
//     9.7.15.5.1.2.2 "Matrix Descriptor Format", and 9.7.15.7 wgmma.fence / commit_group / wait_group.
#include "targets/cuda/emulation/warp_emulator.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <deque>
#include <exception>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define TESSERA_FIBERS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TESSERA_FIBERS_UNDER_ASAN 1
#endif
#endif
#ifdef TESSERA_FIBERS_UNDER_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace tessera_cuda::emulation {
namespace {

static_assert(std::endian::native == std::endian::little,
              "shared memory is read as little-endian 16-bit elements, as on the GPU");

constexpr unsigned kWarpSize = 32;
constexpr unsigned kWarpgroupSize = 128;    // four consecutive warps, the first a multiple of 4
constexpr int kMaxWgmmaAccumulators = 128;  // n / 2 f32 registers per thread for n <= 256
constexpr unsigned kMaxThreads = 1024;      // per block, on every architecture since sm_20
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kSharedAlignment = 128;
constexpr unsigned char kPoison = 0xFF;  // 0xFFFF is a NaN in f16 and bf16, 0xFFFFFFFF a NaN in f32

enum class Op { None, BlockSync, Shfl, ShflIndex, Mma, Ldmatrix, WgmmaFence, Wgmma, WgmmaCommit, WgmmaWait };

const char* op_name(Op op) {
  switch (op) {
    case Op::None: return "nothing";
    case Op::BlockSync: return "block_sync (bar.sync)";
    case Op::Shfl: return "shfl_xor (shfl.sync.bfly)";
    case Op::ShflIndex: return "shfl_index (shfl.sync.idx)";
    case Op::Mma: return "mma_m16n8k16 (mma.sync)";
    case Op::Ldmatrix: return "ldmatrix_x4 (ldmatrix.sync)";
    case Op::WgmmaFence: return "wgmma_fence (wgmma.fence)";
    case Op::Wgmma: return "wgmma_m64k16 (wgmma.mma_async)";
    case Op::WgmmaCommit: return "wgmma_commit_group (wgmma.commit_group)";
    case Op::WgmmaWait: return "wgmma_wait_group (wgmma.wait_group)";
  }
  return "?";
}

bool is_warp_op(Op op) { return op == Op::Shfl || op == Op::ShflIndex || op == Op::Mma || op == Op::Ldmatrix; }
bool is_warpgroup_op(Op op) {
  return op == Op::WgmmaFence || op == Op::Wgmma || op == Op::WgmmaCommit || op == Op::WgmmaWait;
}
bool is_collective(Op op) { return is_warp_op(op) || is_warpgroup_op(op); }

enum class State { NotStarted, Runnable, Waiting, Finished };

struct PendingCopy {
  char* destination = nullptr;
  std::array<unsigned char, 16> bytes{};
};
using CopyGroup = std::vector<PendingCopy>;

// The shared memory one wgmma.mma_async read (B), kept to catch a write to it before the operation is known to be
// complete: a kernel that overwrites a B tile while the wgmma reading it may still be running races on a GPU.
struct WgmmaSource {
  std::vector<uint32_t> offsets;  // byte offsets in dynamic shared memory, element [k * n + col]
  std::vector<uint16_t> bits;     // what was read there
  bool checked = false;           // compared again at the first wait_group (of any thread) that retired it
};

// One thread's share of an issued wgmma.mma_async: its D fragment, written to `d` when its group is retired (so `d`
// must stay valid until then, as the registers it stands for do).
struct PendingWgmma {
  float* d = nullptr;
  int count = 0;
  std::array<float, kMaxWgmmaAccumulators> values{};
  std::shared_ptr<WgmmaSource> source;
};
using WgmmaGroup = std::vector<PendingWgmma>;

// AddressSanitizer knows one stack per OS thread unless it is told of every switch. Untold, an exception unwinding
// a fiber's frames left their redzones poisoned, and later frames on that stack tripped over them (false
// stack-buffer-overflows in the emulator's error tests). A switch announces the stack it goes to; the side that
// arrives completes it, learning the stack it came from. Without ASan these do nothing.
#ifdef TESSERA_FIBERS_UNDER_ASAN
void start_stack_switch(void** fake_stack, const void* bottom, size_t size) {
  __sanitizer_start_switch_fiber(fake_stack, bottom, size);
}
void finish_stack_switch(void* fake_stack, const void** from_bottom, size_t* from_size) {
  __sanitizer_finish_switch_fiber(fake_stack, from_bottom, from_size);
}
#else
void start_stack_switch(void**, const void*, size_t) {}
void finish_stack_switch(void*, const void**, size_t*) {}
#endif

// Resumed into a suspended fiber to unwind its stack (running its destructors) when the launch is abandoned. Not a
// std::exception, so that a kernel's catch (const std::exception&) does not swallow it.
struct FiberCancelled {};

// A fiber's stack with a PROT_NONE guard page below it, so that an overflow faults at once instead of silently
// overwriting the heap.
class FiberStack {
 public:
  FiberStack() : page_(static_cast<size_t>(sysconf(_SC_PAGESIZE))) {
    storage_ = std::make_unique_for_overwrite<std::byte[]>(kStackBytes + 2 * page_);
    const auto start = reinterpret_cast<uintptr_t>(storage_.get());
    guard_ = reinterpret_cast<std::byte*>((start + page_ - 1) / page_ * page_);
    guarded_ = mprotect(guard_, page_, PROT_NONE) == 0;
  }
  ~FiberStack() {
    // free() may write allocator metadata into the block, so the page must be writable again.
    if (guarded_) mprotect(guard_, page_, PROT_READ | PROT_WRITE);
  }
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;

  void* base() const { return guard_ + page_; }  // the stack grows down towards the guard page

 private:
  size_t page_;
  std::unique_ptr<std::byte[]> storage_;
  std::byte* guard_ = nullptr;
  bool guarded_ = false;
};

struct Fiber {
  ucontext_t context{};  // not movable once initialised (glibc points uc_mcontext.fpregs into it): Fibers live
                         // behind unique_ptr
  FiberStack stack;
  void* asan_fake_stack = nullptr;  // this fiber's, kept by ASan while it is switched out
  State state = State::NotStarted;
  Op op = Op::None;
  bool cancel = false;

  // Operands deposited at a warp collective and the lane's result, filled in by the last lane to arrive.
  float shfl_value = 0.0f;
  int shfl_mask = 0;
  float shfl_result = 0.0f;
  Element element = Element::BFloat16;
  std::array<float, 4> accumulators{};
  std::array<uint32_t, 4> a{};
  std::array<uint32_t, 2> b{};
  const void* row = nullptr;
  bool transpose = false;
  std::array<uint32_t, 4> loaded{};

  // cp.async: copies not yet committed, and the committed groups not yet waited for, oldest first.
  CopyGroup open_group;
  std::deque<CopyGroup> committed_groups;

  // wgmma operands deposited at the warpgroup collective (element and a above are shared with mma); the
  // accumulators go in (scale_d) and the product comes out in wgmma_accumulators.
  int wgmma_n = 0;
  uint64_t wgmma_b_desc = 0;
  bool wgmma_trans_b = false;
  bool wgmma_scale_d = false;
  int wgmma_pending = 0;
  std::array<float, kMaxWgmmaAccumulators> wgmma_accumulators{};
  std::shared_ptr<WgmmaSource> wgmma_source;
  // wgmma.mma_async operations not yet in a group, and the committed groups not yet retired, oldest first.
  WgmmaGroup wgmma_open_group;
  std::deque<WgmmaGroup> wgmma_committed_groups;
};

struct Launch {
  Launch(const LaunchShape& s, const std::function<void()>& k) : shape(s), kernel(k) {}

  const LaunchShape& shape;
  const std::function<void()>& kernel;
  std::vector<std::unique_ptr<Fiber>> fibers;
  const void* scheduler_stack = nullptr;  // the scheduler's stack, as ASan reports it on a switch into a fiber
  size_t scheduler_stack_size = 0;
  std::unique_ptr<std::byte[]> shared_storage;
  char* shared = nullptr;
  std::array<unsigned, 3> block{};
  unsigned current = 0;   // the fiber running (when in_fiber)
  bool in_fiber = false;  // false while the scheduler runs
  ucontext_t scheduler{};
  std::exception_ptr error;
};

// Per OS thread, so that launches on different threads are independent; launch() saves and restores it, so a
// kernel may itself call launch().
thread_local Launch* t_launch = nullptr;

Launch& active(const char* operation) {
  if (t_launch == nullptr || !t_launch->in_fiber)
    throw EmulationError(fmt::format("{} called outside a kernel run by launch()", operation));
  return *t_launch;
}

Fiber& self(Launch& launch) { return *launch.fibers[launch.current]; }

std::string where(const Launch& launch, unsigned thread) {
  return fmt::format("block ({}, {}, {}) thread {} (warp {}, lane {})", launch.block[0], launch.block[1],
                     launch.block[2], thread, thread / kWarpSize, thread % kWarpSize);
}

// Back to the scheduler until this fiber is made runnable again (or the launch is abandoned).
void suspend(Launch& launch, Fiber& fiber) {
  start_stack_switch(&fiber.asan_fake_stack, launch.scheduler_stack, launch.scheduler_stack_size);
  swapcontext(&fiber.context, &launch.scheduler);
  finish_stack_switch(fiber.asan_fake_stack, &launch.scheduler_stack, &launch.scheduler_stack_size);
  if (fiber.cancel) throw FiberCancelled{};
}

void check_not_cancelled(const Fiber& fiber) {
  if (fiber.cancel) throw FiberCancelled{};
}

// bar.sync 0: releases the waiters once every thread that has not exited waits (threads that have exited are not
// waited for, as on sm_70 and newer).
void release_barrier_if_complete(Launch& launch) {
  unsigned waiting = 0, live = 0;
  for (const auto& fiber : launch.fibers) {
    if (fiber->state == State::Finished) continue;
    ++live;
    if (fiber->state == State::Waiting && fiber->op == Op::BlockSync) ++waiting;
  }
  if (waiting == 0 || waiting != live) return;
  for (auto& fiber : launch.fibers) {
    if (fiber->state == State::Waiting && fiber->op == Op::BlockSync) {
      fiber->state = State::Runnable;
      fiber->op = Op::None;
    }
  }
}

void compute_shfl(Launch& launch, unsigned first, bool butterfly);
void compute_mma(Launch& launch, unsigned first);
void compute_ldmatrix(Launch& launch, unsigned first);
void compute_wgmma(Launch& launch, unsigned first);
void check_wgmma_wait(Launch& launch, unsigned first);

// Whether a thread waiting at collective `op` can never meet one that has reached a different collective: a lane of
// the same warp waiting at any warp or warpgroup collective (.sync: the warp executes them together), or a thread
// of another warp of the warpgroup waiting at a different warpgroup collective (.aligned: the warpgroup executes
// the same sequence). Another warp that waits at a warp collective or bar.sync may simply be behind.
bool cannot_meet(bool same_warp, Op op) { return same_warp ? is_collective(op) : is_warpgroup_op(op); }

std::string participant(unsigned thread, bool same_warp) {
  return same_warp ? fmt::format("lane {} of its warp", thread % kWarpSize)
                   : fmt::format("thread {} (warp {}) of its warpgroup", thread, thread / kWarpSize);
}

// The calling thread has deposited its operands for `op`, a collective over its warp (shfl, mma, ldmatrix) or its
// warpgroup (the wgmma instructions). Checks that no participant has exited or waits where it cannot meet this
// one; the last participant to arrive computes the result for all.
void arrive_at_collective(Launch& launch, Op op) {
  Fiber& me = self(launch);
  check_not_cancelled(me);
  const unsigned size = is_warpgroup_op(op) ? kWarpgroupSize : kWarpSize;
  const unsigned first = launch.current / size * size;
  if (first + size > launch.fibers.size()) {
    throw EmulationError(fmt::format(
        "{} reached {}, but its warpgroup {} (threads {}-{}) is incomplete: the block has {} threads",
        where(launch, launch.current), op_name(op), first / size, first, first + size - 1, launch.fibers.size()));
  }
  bool complete = true;
  for (unsigned t = first; t < first + size; ++t) {
    if (t == launch.current) continue;
    const Fiber& other = *launch.fibers[t];
    const bool same_warp = t / kWarpSize == launch.current / kWarpSize;
    const char* scope = same_warp ? "warp" : "warpgroup";
    if (other.state == State::Finished) {
      throw EmulationError(fmt::format("divergent {}: {} reached {} but {} has exited", scope,
                                       where(launch, launch.current), op_name(op), participant(t, same_warp)));
    }
    if (other.state == State::Waiting && other.op != op && cannot_meet(same_warp, other.op)) {
      throw EmulationError(fmt::format("divergent {}: {} reached {} while {} waits at {}", scope,
                                       where(launch, launch.current), op_name(op), participant(t, same_warp),
                                       op_name(other.op)));
    }
    if (other.state != State::Waiting || other.op != op) complete = false;
  }
  me.state = State::Waiting;
  me.op = op;
  if (!complete) {
    suspend(launch, me);
    return;
  }
  switch (op) {
    case Op::Shfl: compute_shfl(launch, first, true); break;
    case Op::ShflIndex: compute_shfl(launch, first, false); break;
    case Op::Mma: compute_mma(launch, first); break;
    case Op::Ldmatrix: compute_ldmatrix(launch, first); break;
    case Op::Wgmma: compute_wgmma(launch, first); break;
    case Op::WgmmaWait: check_wgmma_wait(launch, first); break;
    default: break;
  }
  for (unsigned t = first; t < first + size; ++t) {
    launch.fibers[t]->state = State::Runnable;
    launch.fibers[t]->op = Op::None;
  }
}

// shfl.sync.{bfly,idx}.b32 with membermask 0xffffffff and c = 0x1f: lane l reads the value of lane l ^ b[4:0]
// (bfly) or of lane b[4:0] (idx).
void compute_shfl(Launch& launch, unsigned first, bool butterfly) {
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    Fiber& fiber = *launch.fibers[first + lane];
    const unsigned b = static_cast<unsigned>(fiber.shfl_mask) & 0x1fu;
    const unsigned source = butterfly ? lane ^ b : b;
    fiber.shfl_result = launch.fibers[first + source]->shfl_value;
  }
}

float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

float f16_to_float(uint16_t bits) {
  const float sign = (bits & 0x8000u) ? -1.0f : 1.0f;
  const int exponent = (bits >> 10) & 0x1f;
  const int mantissa = bits & 0x3ff;
  if (exponent == 0x1f)
    return mantissa ? std::numeric_limits<float>::quiet_NaN() : sign * std::numeric_limits<float>::infinity();
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);  // subnormal (or zero)
  return sign * std::ldexp(static_cast<float>(0x400 | mantissa), exponent - 25);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, fragments per the PTX ISA's "Matrix Fragments
// for mma.m16n8k16 with floating point type" (groupID = laneid >> 2, threadID_in_group = laneid % 4; in each .b32
// register the lower-numbered element is in the low 16 bits):
//   A (a0..a7 in 4 registers): row = groupID for a0, a1, a4, a5, groupID + 8 otherwise;
//                              col = threadID_in_group * 2 + (i & 1), + 8 for i >= 4;
//   B (b0..b3 in 2 registers): row = threadID_in_group * 2 + (i & 1), + 8 for i >= 2; col = groupID;
//   C/D (c0..c3):              row = groupID for c0, c1, groupID + 8 for c2, c3; col = threadID_in_group * 2 + (i & 1).
// The products of 16-bit inputs are exact in double and the sum is rounded to f32 once.
void compute_mma(Launch& launch, unsigned first) {
  const Element element = launch.fibers[first]->element;
  for (unsigned lane = 1; lane < kWarpSize; ++lane) {
    if (launch.fibers[first + lane]->element != element) {
      throw EmulationError(fmt::format("divergent warp: {}: lanes 0 and {} run mma.sync with different input types",
                                       where(launch, first), lane));
    }
  }
  const auto widen = [element](uint32_t reg, int half) {
    const auto bits = static_cast<uint16_t>(half == 0 ? reg & 0xffffu : reg >> 16);
    return static_cast<double>(element == Element::BFloat16 ? bf16_to_float(bits) : f16_to_float(bits));
  };
  std::array<std::array<double, 16>, 16> a{};
  std::array<std::array<double, 8>, 16> b{};  // [k][n]
  std::array<std::array<double, 8>, 16> c{};
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    const Fiber& fiber = *launch.fibers[first + lane];
    const unsigned group = lane >> 2, in_group = lane % 4;
    for (int i = 0; i < 8; ++i) {
      const unsigned row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      const unsigned col = in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      a[row][col] = widen(fiber.a[i / 2], i % 2);
    }
    for (int i = 0; i < 4; ++i) {
      const unsigned row = in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      b[row][group] = widen(fiber.b[i / 2], i % 2);
    }
    for (int i = 0; i < 4; ++i) c[i < 2 ? group : group + 8][in_group * 2 + (i & 1)] = fiber.accumulators[i];
  }
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    Fiber& fiber = *launch.fibers[first + lane];
    const unsigned group = lane >> 2, in_group = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const unsigned row = i < 2 ? group : group + 8, col = in_group * 2 + (i & 1);
      double sum = c[row][col];
      for (int k = 0; k < 16; ++k) sum += a[row][k] * b[k][col];
      fiber.accumulators[i] = static_cast<float>(sum);
    }
  }
}

// Why [address, address + 16) is not a valid ldmatrix row or cp.async.cg destination (it must lie in the block's
// dynamic shared memory, 16-byte aligned), or "" when it is.
std::string shared_range_problem(const Launch& launch, const void* address) {
  const auto base = reinterpret_cast<uintptr_t>(launch.shared);
  const auto at = reinterpret_cast<uintptr_t>(address);
  const size_t size = launch.shape.shared_bytes;
  if (at < base || size < 16 || at - base > size - 16) {
    return fmt::format("address {} (shared memory offset {}) is not inside the {} bytes of dynamic shared memory",
                       fmt::ptr(address), static_cast<long long>(at - base), size);
  }
  if ((at - base) % 16 != 0) return fmt::format("shared memory offset {} is not 16-byte aligned", at - base);
  return {};
}

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16, per the PTX ISA's "Warp-level matrix load instruction:
// ldmatrix": lane l supplies the address of row l % 8 of matrix l / 8 (16 contiguous bytes); register m of lane l
// receives, from matrix m, the elements (row l / 4, columns 2 * (l % 4) and 2 * (l % 4) + 1), the first in the low
// half ("ldmatrix fragment layout for one 8x8 Matrix with 16-bit elements"). With .trans the matrix is read
// column-major, i.e. the same layout applied to its transpose: elements (2 * (l % 4) + j, l / 4).
void compute_ldmatrix(Launch& launch, unsigned first) {
  const bool transpose = launch.fibers[first]->transpose;
  std::array<std::array<std::array<uint16_t, 8>, 8>, 4> matrices{};  // [matrix][row][column]
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    const Fiber& fiber = *launch.fibers[first + lane];
    if (fiber.transpose != transpose) {
      throw EmulationError(
          fmt::format("divergent warp: {}: lanes 0 and {} disagree on ldmatrix .trans", where(launch, first), lane));
    }
    if (const std::string problem = shared_range_problem(launch, fiber.row); !problem.empty()) {
      throw EmulationError(fmt::format("ldmatrix row address of {}: {}", where(launch, first + lane), problem));
    }
    std::memcpy(matrices[lane / 8][lane % 8].data(), fiber.row, 16);
  }
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    Fiber& fiber = *launch.fibers[first + lane];
    const unsigned row = lane / 4, col = 2 * (lane % 4);
    for (unsigned m = 0; m < 4; ++m) {
      const auto& matrix = matrices[m];
      const uint16_t lo = transpose ? matrix[col][row] : matrix[row][col];
      const uint16_t hi = transpose ? matrix[col + 1][row] : matrix[row][col + 1];
      fiber.loaded[m] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}

// The matrix descriptor (9.7.15.5.1.2.2 "Matrix Descriptor Format"): bits 0-13 matrix-descriptor-encode(start
// address), 16-29 encode(leading dimension byte offset), 32-45 encode(stride dimension byte offset), 49-51 the
// matrix base offset, 62-63 the swizzling mode (0: none, 1: 128B, 2: 64B, 3: 32B), where
// matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4. The other bits are not defined by the ISA; a descriptor that
// sets them was most likely built with a field in the wrong place, so it is rejected.
struct Descriptor {
  uint32_t start = 0;  // bytes, in the shared state space
  uint32_t leading = 0;
  uint32_t stride = 0;
};

Descriptor decode_descriptor(uint64_t desc) {
  const auto swizzle = static_cast<unsigned>(desc >> 62);
  if (swizzle != 0) {
    static constexpr std::array<const char*, 4> kModes = {"none", "128-byte", "64-byte", "32-byte"};
    throw EmulationError(
        fmt::format("wgmma B descriptor {:#018x}: swizzle mode {} ({} swizzle) is not supported; "
                    "the emulator implements mode 0 (no swizzle) only",
                    desc, swizzle, kModes[swizzle]));
  }
  if (const auto base_offset = static_cast<unsigned>((desc >> 49) & 0x7u); base_offset != 0) {
    throw EmulationError(fmt::format("wgmma B descriptor {:#018x}: matrix base offset {} must be 0 without swizzling",
                                     desc, base_offset));
  }
  constexpr uint64_t kUndefined =
      (uint64_t{0x3} << 14) | (uint64_t{0x3} << 30) | (uint64_t{0x7} << 46) | (uint64_t{0x3ff} << 52);
  if ((desc & kUndefined) != 0) {
    throw EmulationError(
        fmt::format("wgmma B descriptor {:#018x}: bits {:#018x} are outside every field (bits 0-13, 16-29, 32-45, "
                    "49-51, 62-63)",
                    desc, desc & kUndefined));
  }
  Descriptor d;
  d.start = static_cast<uint32_t>(desc & 0x3fffu) << 4;
  d.leading = static_cast<uint32_t>((desc >> 16) & 0x3fffu) << 4;
  d.stride = static_cast<uint32_t>((desc >> 32) & 0x3fffu) << 4;
  return d;
}

// The byte address of B[k][col] (k < 16, col < n) for 16-bit elements without swizzling, from 9.7.15.5.1.2.1.3
// "Canonical Layouts" (CuTe notation over (MN, K) coordinates, in elements; T = 128 / 16 = 8 elements per 16
// bytes), with the strides named in 9.7.15.5.1.2.1.1-2 ("Leading / Stride Dimension Byte Offset"):
//   K-major (imm-trans-b 0):  ((8,m),(T,2k)):((1T,SBO),(1,LBO))
//     byte(B[k][n]) = start + (n % 8) * 16 + (n / 8) * SBO + (k % 8) * 2 + (k / 8) * LBO
//   MN-major (imm-trans-b 1): ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
//     byte(B[k][n]) = start + (n % 8) * 2 + (n / 8) * SBO + (k % 8) * 16 + (k / 8) * LBO
// Either way the matrix is built of core matrices of 8 rows x 16 contiguous bytes (128 contiguous bytes; the rows
// run along N for K-major, along K for MN-major), LBO is the distance between core matrices adjacent along K and
// SBO between core matrices adjacent along N. (The ISA's worked example "MN-Major, no-swizzling and bf16 type",
// ((8,1,2),(8,2)):((1,8,64),(8,128)) with LBO = 128 and SBO = 64 elements, is this formula.)
uint32_t b_address(const Descriptor& d, bool mn_major, unsigned k, unsigned col) {
  const uint32_t within = mn_major ? (col % 8) * 2 + (k % 8) * 16 : (col % 8) * 16 + (k % 8) * 2;
  return d.start + (col / 8) * d.stride + (k / 8) * d.leading + within;
}

// wgmma.mma_async.sync.aligned.m64nNk16.f32.{bf16,f16}.{bf16,f16} with A in registers, per 9.7.15.5.1.1.1 "Matrix
// Fragments for wgmma.mma_async.m64nNk16" (Figures "WGMMA .m64nNk16 register fragment layout for matrix A" and
// "... for accumulator matrix D"). With w = the warp's rank in the warpgroup, groupID = laneid >> 2,
// threadID_in_group = laneid % 4, and the lower-numbered element of a .b32 register in its low 16 bits:
//   A (a0..a7 in 4 registers): row = 16 w + groupID + 8 * ((i / 2) % 2), col = 2 * threadID_in_group + i % 2
//                              + 8 * (i / 4);
//   D (d0..d(N/2-1)):          row = 16 w + groupID + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * threadID_in_group
//                              + i % 2;
// i.e. each warp holds rows 16w..16w+15 as the mma.m16n8k16 A fragment, and D as the m16n8 C fragment repeated
// for every 8 columns. (CUTLASS's ALayout_64x16 and CLayout_64xN in cute/atom/mma_traits_sm90_gmma.hpp encode the
// same figures.) The products of 16-bit inputs are exact in double and the sum is rounded to f32 once.
void compute_wgmma(Launch& launch, unsigned first) {
  const Fiber& lead = *launch.fibers[first];
  for (unsigned t = first + 1; t < first + kWarpgroupSize; ++t) {
    const Fiber& other = *launch.fibers[t];
    const char* what = other.element != lead.element               ? "input types"
                       : other.wgmma_n != lead.wgmma_n             ? "n"
                       : other.wgmma_b_desc != lead.wgmma_b_desc   ? "B descriptors"
                       : other.wgmma_trans_b != lead.wgmma_trans_b ? "imm-trans-b"
                       : other.wgmma_scale_d != lead.wgmma_scale_d ? "scale-d"
                                                                   : nullptr;
    if (what != nullptr) {
      throw EmulationError(
          fmt::format("divergent warpgroup: {}: threads {} and {} run wgmma.mma_async with different {}",
                      where(launch, first), first, t, what));
    }
  }
  const Element element = lead.element;
  const auto n = static_cast<unsigned>(lead.wgmma_n);
  const Descriptor desc = decode_descriptor(lead.wgmma_b_desc);
  const auto widen = [element](uint16_t bits) {
    return static_cast<double>(element == Element::BFloat16 ? bf16_to_float(bits) : f16_to_float(bits));
  };

  auto source = std::make_shared<WgmmaSource>();
  source->offsets.resize(16 * n);
  source->bits.resize(16 * n);
  std::vector<double> b(16 * n);  // [k][col]
  for (unsigned k = 0; k < 16; ++k) {
    for (unsigned col = 0; col < n; ++col) {
      const uint32_t at = b_address(desc, lead.wgmma_trans_b, k, col);
      if (static_cast<size_t>(at) + 2 > launch.shape.shared_bytes) {
        throw EmulationError(fmt::format(
            "wgmma B operand of {}: B[{}][{}] at shared address {} (descriptor {:#018x}: start {}, LBO {}, SBO {}, "
            "{}-major) is not inside the {} bytes of dynamic shared memory",
            where(launch, first), k, col, at, lead.wgmma_b_desc, desc.start, desc.leading, desc.stride,
            lead.wgmma_trans_b ? "MN" : "K", launch.shape.shared_bytes));
      }
      uint16_t bits;
      std::memcpy(&bits, launch.shared + at, sizeof bits);
      source->offsets[k * n + col] = at;
      source->bits[k * n + col] = bits;
      b[k * n + col] = widen(bits);
    }
  }

  std::array<std::array<double, 16>, 64> a{};
  for (unsigned r = 0; r < kWarpgroupSize; ++r) {
    const Fiber& fiber = *launch.fibers[first + r];
    const unsigned lane = r % kWarpSize, group = lane >> 2, in_group = lane % 4;
    for (unsigned i = 0; i < 8; ++i) {
      const unsigned row = 16 * (r / kWarpSize) + group + 8 * ((i / 2) % 2);
      const unsigned col = 2 * in_group + i % 2 + 8 * (i / 4);
      const uint32_t reg = fiber.a[i / 2];
      a[row][col] = widen(static_cast<uint16_t>(i % 2 == 0 ? reg & 0xffffu : reg >> 16));
    }
  }
  for (unsigned r = 0; r < kWarpgroupSize; ++r) {
    Fiber& fiber = *launch.fibers[first + r];
    const unsigned lane = r % kWarpSize, group = lane >> 2, in_group = lane % 4;
    for (unsigned i = 0; i < n / 2; ++i) {
      const unsigned row = 16 * (r / kWarpSize) + group + 8 * ((i / 2) % 2);
      const unsigned col = 8 * (i / 4) + 2 * in_group + i % 2;
      double sum = lead.wgmma_scale_d ? static_cast<double>(fiber.wgmma_accumulators[i]) : 0.0;
      for (unsigned k = 0; k < 16; ++k) sum += a[row][k] * b[k * n + col];
      fiber.wgmma_accumulators[i] = static_cast<float>(sum);
    }
    fiber.wgmma_source = source;
  }
}

// wgmma.wait_group is .aligned: the warpgroup executes the same instruction, with the same N.
void check_wgmma_wait(Launch& launch, unsigned first) {
  const int pending = launch.fibers[first]->wgmma_pending;
  for (unsigned t = first + 1; t < first + kWarpgroupSize; ++t) {
    if (launch.fibers[t]->wgmma_pending != pending) {
      throw EmulationError(
          fmt::format("divergent warpgroup: {}: thread {} runs wgmma.wait_group {} and thread {} wgmma.wait_group {}",
                      where(launch, first), first, pending, t, launch.fibers[t]->wgmma_pending));
    }
  }
}

// Makes the oldest committed wgmma group of `fiber` complete: the products land in its accumulator registers. The
// first retirement of an operation by any thread of its warpgroup also checks that the shared memory it read is
// unchanged: until then no thread knows the operation complete, so a write there raced with it.
void retire_oldest_wgmma_group(const Launch& launch, Fiber& fiber) {
  for (const PendingWgmma& op : fiber.wgmma_committed_groups.front()) {
    if (op.source && !op.source->checked) {
      op.source->checked = true;
      const auto n = static_cast<unsigned>(op.source->bits.size() / 16);
      for (size_t e = 0; e < op.source->offsets.size(); ++e) {
        uint16_t now;
        std::memcpy(&now, launch.shared + op.source->offsets[e], sizeof now);
        if (now != op.source->bits[e]) {
          throw EmulationError(fmt::format(
              "shared memory read by a wgmma.mma_async (B[{}][{}] at shared address {}) was overwritten before "
              "a wgmma.wait_group retired the operation (found at {})",
              e / n, e % n, op.source->offsets[e], where(launch, launch.current)));
        }
      }
    }
    std::copy(op.values.begin(), op.values.begin() + op.count, op.d);
  }
  fiber.wgmma_committed_groups.pop_front();
}

// Makes the oldest committed group of `fiber` complete: its copies land in shared memory.
void retire_oldest_group(Fiber& fiber) {
  for (const PendingCopy& copy : fiber.committed_groups.front())
    std::memcpy(copy.destination, copy.bytes.data(), copy.bytes.size());
  fiber.committed_groups.pop_front();
}

// After the kernel returns in a fiber (or unwinds): a lane exiting while others of its warp wait at a warp
// collective can never be matched. Pending cp.async groups are dropped (a kernel must wait for its copies).
void finish_fiber(Launch& launch, Fiber& fiber) {
  fiber.state = State::Finished;
  fiber.op = Op::None;
  fiber.open_group.clear();
  fiber.committed_groups.clear();
  fiber.wgmma_open_group.clear();
  fiber.wgmma_committed_groups.clear();
  fiber.wgmma_source.reset();
  if (fiber.cancel || launch.error) return;
  const unsigned first = launch.current / kWarpgroupSize * kWarpgroupSize;
  const auto end = static_cast<unsigned>(std::min<size_t>(first + kWarpgroupSize, launch.fibers.size()));
  for (unsigned t = first; t < end; ++t) {
    const Fiber& other = *launch.fibers[t];
    const bool same_warp = t / kWarpSize == launch.current / kWarpSize;
    if (other.state == State::Waiting && cannot_meet(same_warp, other.op)) {
      launch.error = std::make_exception_ptr(
          EmulationError(fmt::format("divergent {}: {} exited while {} waits at {}", same_warp ? "warp" : "warpgroup",
                                     where(launch, launch.current), participant(t, same_warp), op_name(other.op))));
      return;
    }
  }
  release_barrier_if_complete(launch);
}

void fiber_entry() {
  Launch& launch = *t_launch;
  Fiber& fiber = self(launch);
  finish_stack_switch(nullptr, &launch.scheduler_stack, &launch.scheduler_stack_size);
  // No context switch may happen inside these handlers: the C++ runtime's record of caught exceptions is per OS
  // thread, shared by all fibers.
  try {
    launch.kernel();
  } catch (const FiberCancelled&) {
  } catch (...) {
    if (!launch.error) launch.error = std::current_exception();
  }
  finish_fiber(launch, fiber);
  // Returning resumes uc_link, the scheduler; this stack's frames are done with (no fake stack to keep).
  start_stack_switch(nullptr, launch.scheduler_stack, launch.scheduler_stack_size);
}

void switch_to(Launch& launch, unsigned thread) {
  Fiber& fiber = *launch.fibers[thread];
  if (fiber.state == State::NotStarted) fiber.state = State::Runnable;
  launch.current = thread;
  launch.in_fiber = true;
  void* scheduler_fake_stack = nullptr;
  start_stack_switch(&scheduler_fake_stack, fiber.stack.base(), kStackBytes);
  swapcontext(&launch.scheduler, &fiber.context);
  finish_stack_switch(scheduler_fake_stack, nullptr, nullptr);
  launch.in_fiber = false;
}

// Unwinds every suspended fiber (so the objects on its stack are destroyed) after an error; fibers that never ran
// are simply dropped.
void abandon_block(Launch& launch) {
  for (auto& fiber : launch.fibers) {
    if (fiber->state == State::NotStarted) fiber->state = State::Finished;
  }
  // A kernel that catches FiberCancelled with catch (...) and reaches another collective is cancelled again; one
  // that then never reaches a collective would hang here, as it would on its own.
  for (int attempt = 0; attempt < 8; ++attempt) {
    bool any = false;
    for (unsigned t = 0; t < launch.fibers.size(); ++t) {
      Fiber& fiber = *launch.fibers[t];
      if (fiber.state == State::Finished) continue;
      any = true;
      fiber.cancel = true;
      switch_to(launch, t);
    }
    if (!any) return;
  }
}

std::string describe_waiters(const Launch& launch) {
  std::string out;
  for (unsigned first = 0; first < launch.fibers.size(); first += kWarpSize) {
    std::string warp;
    unsigned lane = 0;
    while (lane < kWarpSize) {
      const Fiber& start = *launch.fibers[first + lane];
      unsigned end = lane + 1;
      while (end < kWarpSize && launch.fibers[first + end]->state == start.state &&
             launch.fibers[first + end]->op == start.op)
        ++end;
      const std::string what = start.state == State::Finished ? "exited" : fmt::format("at {}", op_name(start.op));
      const std::string lanes =
          end - lane == 1 ? fmt::format("lane {}", lane) : fmt::format("lanes {}-{}", lane, end - 1);
      warp += fmt::format("{}{} {}", warp.empty() ? "" : ", ", lanes, what);
      lane = end;
    }
    out += fmt::format("; warp {}: {}", first / kWarpSize, warp);
  }
  return out;
}

void run_block(Launch& launch) {
  std::memset(launch.shared, kPoison, launch.shape.shared_bytes);
  for (auto& fiber_ptr : launch.fibers) {
    Fiber& fiber = *fiber_ptr;
    fiber.state = State::NotStarted;
    fiber.op = Op::None;
    fiber.cancel = false;
    fiber.open_group.clear();
    fiber.committed_groups.clear();
    fiber.wgmma_open_group.clear();
    fiber.wgmma_committed_groups.clear();
    fiber.wgmma_source.reset();
    if (getcontext(&fiber.context) != 0) throw EmulationError("getcontext failed");
    fiber.context.uc_stack.ss_sp = fiber.stack.base();
    fiber.context.uc_stack.ss_size = kStackBytes;
    fiber.context.uc_link = &launch.scheduler;
    makecontext(&fiber.context, fiber_entry, 0);
  }
  while (!launch.error) {
    bool ran = false;
    for (unsigned t = 0; t < launch.fibers.size() && !launch.error; ++t) {
      const State state = launch.fibers[t]->state;
      if (state != State::NotStarted && state != State::Runnable) continue;
      switch_to(launch, t);
      ran = true;
    }
    if (launch.error || ran) continue;
    bool all_finished = true;
    for (const auto& fiber : launch.fibers) all_finished = all_finished && fiber->state == State::Finished;
    if (all_finished) return;
    launch.error = std::make_exception_ptr(
        EmulationError(fmt::format("deadlock in block ({}, {}, {}): no thread can proceed{}", launch.block[0],
                                   launch.block[1], launch.block[2], describe_waiters(launch))));
  }
  abandon_block(launch);
  std::rethrow_exception(launch.error);
}

uint16_t float_to_bf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  // The payload of a converted NaN is not specified; this is the canonical NaN cuda_bf16.hpp's host path gives.
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fff;
  // Round to nearest even on the 16 dropped bits; a carry out of the mantissa correctly bumps the exponent (up to
  // infinity). Subnormals need no special case: bf16 has f32's exponent range.
  const uint32_t rounded = bits + 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

uint16_t float_to_f16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return 0x7fff;  // NaN stays NaN (canonical, as cuda_fp16.hpp's host path)
  if (magnitude == 0x7f800000u) return sign | 0x7c00u;
  const int exponent = static_cast<int>(magnitude >> 23) - 127;
  if (exponent > 15) return sign | 0x7c00u;  // |x| >= 2^16 > 65520 rounds to infinity (no .satfinite)
  if (exponent < -25) return sign;           // below half the smallest subnormal (2^-25): zero
  // The 24-bit significand (f32 subnormals, exponent field 0, are far below 2^-26 and returned above).
  const uint32_t significand = (magnitude & 0x7fffffu) | 0x800000u;
  // Normal f16 keeps 10 fraction bits (shift 13); a subnormal counts units of 2^-24, value = significand *
  // 2^(exponent - 23), so shift by -(exponent + 1).
  const int shift = exponent >= -14 ? 13 : -(exponent + 1);
  uint32_t result = significand >> shift;
  const uint32_t remainder = significand & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1);
  if (remainder > half || (remainder == half && (result & 1u))) ++result;
  // For normals, drop the implicit bit into the biased exponent field; a mantissa carry moves to the next binade
  // (or to infinity, 0x7c00), and a subnormal rounding up to 0x400 becomes the smallest normal: both are exactly
  // the encodings wanted.
  if (exponent >= -14) result = (static_cast<uint32_t>(exponent + 15) << 10) + (result - 0x400u);
  return static_cast<uint16_t>(sign | result);
}

}  // namespace

void launch(const LaunchShape& shape, const std::function<void()>& kernel) {
  if (shape.threads == 0 || shape.threads % kWarpSize != 0 || shape.threads > kMaxThreads) {
    throw EmulationError(
        fmt::format("launch: {} threads per block; the emulator needs a multiple of 32 in 32..1024", shape.threads));
  }
  if (shape.grid_x == 0 || shape.grid_y == 0 || shape.grid_z == 0) {
    throw EmulationError(fmt::format("launch: empty grid ({}, {}, {})", shape.grid_x, shape.grid_y, shape.grid_z));
  }
  if (!kernel) throw EmulationError("launch: no kernel");

  Launch state(shape, kernel);
  state.fibers.reserve(shape.threads);
  for (unsigned t = 0; t < shape.threads; ++t) state.fibers.push_back(std::make_unique<Fiber>());
  state.shared_storage = std::make_unique_for_overwrite<std::byte[]>(shape.shared_bytes + kSharedAlignment);
  const auto raw = reinterpret_cast<uintptr_t>(state.shared_storage.get());
  state.shared = reinterpret_cast<char*>(state.shared_storage.get()) +
                 ((kSharedAlignment - raw % kSharedAlignment) % kSharedAlignment);

  struct Restore {
    Launch* previous;
    ~Restore() { t_launch = previous; }
  } restore{t_launch};
  t_launch = &state;
  for (unsigned z = 0; z < shape.grid_z; ++z) {
    for (unsigned y = 0; y < shape.grid_y; ++y) {
      for (unsigned x = 0; x < shape.grid_x; ++x) {
        state.block = {x, y, z};
        run_block(state);
      }
    }
  }
}

unsigned thread_index() { return active("thread_index()").current; }

unsigned block_index(int axis) {
  Launch& launch = active("block_index()");
  if (axis < 0 || axis > 2) throw EmulationError(fmt::format("block_index: axis {} is not 0, 1 or 2", axis));
  return launch.block[static_cast<size_t>(axis)];
}

void block_sync() {
  Launch& launch = active("block_sync()");
  Fiber& me = self(launch);
  check_not_cancelled(me);
  me.state = State::Waiting;
  me.op = Op::BlockSync;
  release_barrier_if_complete(launch);
  if (me.state == State::Waiting) suspend(launch, me);
}

namespace {
// shfl.sync in either mode: b is the lane mask (Op::Shfl) or the source lane (Op::ShflIndex).
float shuffle(const char* caller, float value, int b, Op op) {
  Launch& launch = active(caller);
  Fiber& me = self(launch);
  me.shfl_value = value;
  me.shfl_mask = b;
  arrive_at_collective(launch, op);
  return me.shfl_result;
}
}  // namespace

float shfl_xor(float value, int lane_mask) { return shuffle("shfl_xor()", value, lane_mask, Op::Shfl); }

float shfl_index(float value, int source_lane) { return shuffle("shfl_index()", value, source_lane, Op::ShflIndex); }

char* dynamic_shared_memory() { return active("dynamic_shared_memory()").shared; }

void mma_m16n8k16(Element element, float d[4], const uint32_t a[4], const uint32_t b[2]) {
  Launch& launch = active("mma_m16n8k16()");
  Fiber& me = self(launch);
  me.element = element;
  std::copy(d, d + 4, me.accumulators.begin());
  std::copy(a, a + 4, me.a.begin());
  std::copy(b, b + 2, me.b.begin());
  arrive_at_collective(launch, Op::Mma);
  std::copy(me.accumulators.begin(), me.accumulators.end(), d);
}

void ldmatrix_x4(uint32_t r[4], const void* row, bool transpose) {
  Launch& launch = active("ldmatrix_x4()");
  Fiber& me = self(launch);
  me.row = row;
  me.transpose = transpose;
  arrive_at_collective(launch, Op::Ldmatrix);
  std::copy(me.loaded.begin(), me.loaded.end(), r);
}

// cp.async.cg.shared.global [dst], [src], 16, src-size: src-size 0 (not `valid`) reads nothing and fills the 16
// bytes with zeros. The copy lands when cp.async.wait_group retires its group; until then the destination holds
// the poison pattern, so a read that skips the wait shows up. The source is read now: kernels do not write global
// memory that a pending copy reads.
void cp_async_16(void* shared, const void* global, bool valid) {
  Launch& launch = active("cp_async_16()");
  Fiber& me = self(launch);
  if (const std::string problem = shared_range_problem(launch, shared); !problem.empty()) {
    throw EmulationError(fmt::format("cp.async destination of {}: {}", where(launch, launch.current), problem));
  }
  PendingCopy copy;
  copy.destination = static_cast<char*>(shared);
  if (valid) {
    // cp.async requires both addresses aligned to the copy size.
    if (reinterpret_cast<uintptr_t>(global) % 16 != 0) {
      throw EmulationError(fmt::format("cp.async source {} of {} is not 16-byte aligned", fmt::ptr(global),
                                       where(launch, launch.current)));
    }
    std::memcpy(copy.bytes.data(), global, copy.bytes.size());
  }
  std::memset(copy.destination, kPoison, copy.bytes.size());
  me.open_group.push_back(copy);
}

// cp.async.commit_group: every cp.async not yet in a group forms one (possibly empty) group.
void cp_async_commit() {
  Fiber& me = self(active("cp_async_commit()"));
  me.committed_groups.push_back(std::move(me.open_group));
  me.open_group.clear();
}

// cp.async.wait_group N: waits until at most N of this thread's most recent committed groups are pending, and all
// older ones are complete. Copies not yet committed are in no group and are not waited for.
void cp_async_wait(int pending) {
  Launch& launch = active("cp_async_wait()");
  if (pending < 0) {
    throw EmulationError(
        fmt::format("cp.async.wait_group {} in {}: the count must be >= 0", pending, where(launch, launch.current)));
  }
  Fiber& me = self(launch);
  while (me.committed_groups.size() > static_cast<size_t>(pending)) retire_oldest_group(me);
}

namespace {

// The accumulator registers `d` (count floats) as a wgmma issued now reads them: where an earlier wgmma of this
// thread, not yet retired, writes the same registers, its product. PTX orders accumulator accesses between
// wgmma.mma_async instructions of the same shape without a fence or wait (wgmma.fence: "except when these are
// accumulator register accesses across multiple wgmma.mma_async instructions of the same shape"), so k-steps
// issued back to back accumulate; any other overlap with an operation in flight needs a wgmma.wait_group first.
void read_accumulators(const Launch& launch, Fiber& me, float* d, int count, bool scale_d) {
  // Indeterminate until the kernel writes them: D is not read at all when scale-d is false.
  if (scale_d) std::copy(d, d + count, me.wgmma_accumulators.begin());
  const auto overlaps = [d, count](const PendingWgmma& op) {
    const auto begin = reinterpret_cast<uintptr_t>(d), end = reinterpret_cast<uintptr_t>(d + count);
    const auto op_begin = reinterpret_cast<uintptr_t>(op.d), op_end = reinterpret_cast<uintptr_t>(op.d + op.count);
    return begin < op_end && op_begin < end;
  };
  const auto apply = [&](const PendingWgmma& op) {
    if (!overlaps(op)) return;
    if (op.d != d || op.count != count) {
      throw EmulationError(fmt::format(
          "wgmma_m64k16 in {}: accumulators overlap those of a wgmma.mma_async of another shape (n = {}, here {}) "
          "that no wgmma.wait_group has retired",
          where(launch, launch.current), 2 * op.count, 2 * count));
    }
    if (scale_d) std::copy(op.values.begin(), op.values.begin() + count, me.wgmma_accumulators.begin());
  };
  for (const WgmmaGroup& group : me.wgmma_committed_groups) {
    for (const PendingWgmma& op : group) apply(op);
  }
  for (const PendingWgmma& op : me.wgmma_open_group) apply(op);
}

}  // namespace

void wgmma_m64k16(Element element, int n, float* d, const uint32_t a[4], uint64_t b_desc, bool trans_b, bool scale_d) {
  Launch& launch = active("wgmma_m64k16()");
  Fiber& me = self(launch);
  if (n < 8 || n > 256 || n % 8 != 0) {
    throw EmulationError(
        fmt::format("wgmma_m64k16 in {}: n = {} is not a multiple of 8 in 8..256", where(launch, launch.current), n));
  }
  read_accumulators(launch, me, d, n / 2, scale_d);
  me.element = element;
  me.wgmma_n = n;
  std::copy(a, a + 4, me.a.begin());
  me.wgmma_b_desc = b_desc;
  me.wgmma_trans_b = trans_b;
  me.wgmma_scale_d = scale_d;
  arrive_at_collective(launch, Op::Wgmma);
  PendingWgmma op;
  op.d = d;
  op.count = n / 2;
  std::copy(me.wgmma_accumulators.begin(), me.wgmma_accumulators.begin() + op.count, op.values.begin());
  op.source = std::move(me.wgmma_source);
  me.wgmma_open_group.push_back(std::move(op));
}

void wgmma_fence() {
  Launch& launch = active("wgmma_fence()");
  arrive_at_collective(launch, Op::WgmmaFence);
}

// wgmma.commit_group: every wgmma.mma_async of this thread not yet in a group forms one (possibly empty) group.
void wgmma_commit_group() {
  Launch& launch = active("wgmma_commit_group()");
  arrive_at_collective(launch, Op::WgmmaCommit);
  Fiber& me = self(launch);
  me.wgmma_committed_groups.push_back(std::move(me.wgmma_open_group));
  me.wgmma_open_group.clear();
}

// wgmma.wait_group N: waits until at most the N most recent committed groups are pending and all older ones are
// complete. Operations not yet committed are in no group and are not waited for.
void wgmma_wait_group(int pending) {
  Launch& launch = active("wgmma_wait_group()");
  if (pending < 0) {
    throw EmulationError(
        fmt::format("wgmma.wait_group {} in {}: the count must be >= 0", pending, where(launch, launch.current)));
  }
  Fiber& me = self(launch);
  me.wgmma_pending = pending;
  arrive_at_collective(launch, Op::WgmmaWait);
  while (me.wgmma_committed_groups.size() > static_cast<size_t>(pending)) retire_oldest_wgmma_group(launch, me);
}

uint32_t shared_address(const void* pointer) {
  Launch& launch = active("shared_address()");
  const auto base = reinterpret_cast<uintptr_t>(launch.shared);
  const auto at = reinterpret_cast<uintptr_t>(pointer);
  if (at < base || at - base > launch.shape.shared_bytes) {
    throw EmulationError(
        fmt::format("shared_address: {} (in {}) does not point into the {} bytes of dynamic shared memory",
                    fmt::ptr(pointer), where(launch, launch.current), launch.shape.shared_bytes));
  }
  return static_cast<uint32_t>(at - base);
}

void fence_proxy_async() { active("fence_proxy_async()"); }

uint32_t pack_bf16x2(float lo, float hi) {
  return static_cast<uint32_t>(float_to_bf16(lo)) | (static_cast<uint32_t>(float_to_bf16(hi)) << 16);
}

uint32_t pack_f16x2(float lo, float hi) {
  return static_cast<uint32_t>(float_to_f16(lo)) | (static_cast<uint32_t>(float_to_f16(hi)) << 16);
}

// ex2.approx.ftz.f32: maximum relative error 2^-22 (std::exp2 is well within it); .ftz flushes subnormal inputs
// (2^±tiny = 1 anyway) and results to zero.
float exp2(float x) {
  const float result = std::exp2(x);
  return std::fpclassify(result) == FP_SUBNORMAL ? 0.0f : result;
}

// rcp.approx.ftz.f32: within 1 ulp (the division is exact to half an ulp); subnormal results flush to zero.
float reciprocal(float x) {
  const float result = 1.0f / x;
  return std::fpclassify(result) == FP_SUBNORMAL ? 0.0f : result;
}

}  // namespace tessera_cuda::emulation
