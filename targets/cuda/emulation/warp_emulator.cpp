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
//   - "shfl.sync" (.bfly: source lane = laneid ^ b[4:0]; with c = 0x1f every lane is in range);
//   - "bar.sync" (barrier 0 with no thread count: every thread of the CTA);
//   - "ex2.approx.ftz.f32".
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

namespace tessera_cuda::emulation {
namespace {

static_assert(std::endian::native == std::endian::little,
              "shared memory is read as little-endian 16-bit elements, as on the GPU");

constexpr unsigned kWarpSize = 32;
constexpr unsigned kMaxThreads = 1024;  // per block, on every architecture since sm_20
constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kSharedAlignment = 128;
constexpr unsigned char kPoison = 0xFF;  // 0xFFFF is a NaN in f16 and bf16, 0xFFFFFFFF a NaN in f32

enum class Op { None, BlockSync, Shfl, Mma, Ldmatrix };

const char* op_name(Op op) {
  switch (op) {
    case Op::None: return "nothing";
    case Op::BlockSync: return "block_sync (bar.sync)";
    case Op::Shfl: return "shfl_xor (shfl.sync.bfly)";
    case Op::Mma: return "mma_m16n8k16 (mma.sync)";
    case Op::Ldmatrix: return "ldmatrix_x4 (ldmatrix.sync)";
  }
  return "?";
}

bool is_warp_op(Op op) { return op == Op::Shfl || op == Op::Mma || op == Op::Ldmatrix; }

enum class State { NotStarted, Runnable, Waiting, Finished };

struct PendingCopy {
  char* destination = nullptr;
  std::array<unsigned char, 16> bytes{};
};
using CopyGroup = std::vector<PendingCopy>;

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
};

struct Launch {
  Launch(const LaunchShape& s, const std::function<void()>& k) : shape(s), kernel(k) {}

  const LaunchShape& shape;
  const std::function<void()>& kernel;
  std::vector<std::unique_ptr<Fiber>> fibers;
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
  swapcontext(&fiber.context, &launch.scheduler);
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

void compute_shfl(Launch& launch, unsigned first);
void compute_mma(Launch& launch, unsigned first);
void compute_ldmatrix(Launch& launch, unsigned first);

// The calling lane has deposited its operands for `op`. Checks that no lane of its warp has exited or waits at a
// different warp collective; the last lane to arrive computes the result for all.
void arrive_at_warp_collective(Launch& launch, Op op) {
  Fiber& me = self(launch);
  check_not_cancelled(me);
  const unsigned first = launch.current / kWarpSize * kWarpSize;
  bool complete = true;
  for (unsigned t = first; t < first + kWarpSize; ++t) {
    if (t == launch.current) continue;
    const Fiber& other = *launch.fibers[t];
    if (other.state == State::Finished) {
      throw EmulationError(fmt::format("divergent warp: {} reached {} but lane {} of its warp has exited",
                                       where(launch, launch.current), op_name(op), t % kWarpSize));
    }
    if (other.state == State::Waiting && is_warp_op(other.op) && other.op != op) {
      throw EmulationError(fmt::format("divergent warp: {} reached {} while lane {} of its warp waits at {}",
                                       where(launch, launch.current), op_name(op), t % kWarpSize, op_name(other.op)));
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
    case Op::Shfl: compute_shfl(launch, first); break;
    case Op::Mma: compute_mma(launch, first); break;
    case Op::Ldmatrix: compute_ldmatrix(launch, first); break;
    default: break;
  }
  for (unsigned t = first; t < first + kWarpSize; ++t) {
    launch.fibers[t]->state = State::Runnable;
    launch.fibers[t]->op = Op::None;
  }
}

// shfl.sync.bfly.b32 with membermask 0xffffffff and c = 0x1f: lane l reads the value of lane l ^ b[4:0].
void compute_shfl(Launch& launch, unsigned first) {
  for (unsigned lane = 0; lane < kWarpSize; ++lane) {
    Fiber& fiber = *launch.fibers[first + lane];
    const unsigned source = lane ^ (static_cast<unsigned>(fiber.shfl_mask) & 0x1fu);
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
  if (fiber.cancel || launch.error) return;
  const unsigned first = launch.current / kWarpSize * kWarpSize;
  for (unsigned t = first; t < first + kWarpSize; ++t) {
    const Fiber& other = *launch.fibers[t];
    if (other.state == State::Waiting && is_warp_op(other.op)) {
      launch.error = std::make_exception_ptr(
          EmulationError(fmt::format("divergent warp: {} exited while lane {} of its warp waits at {}",
                                     where(launch, launch.current), t % kWarpSize, op_name(other.op))));
      return;
    }
  }
  release_barrier_if_complete(launch);
}

void fiber_entry() {
  Launch& launch = *t_launch;
  Fiber& fiber = self(launch);
  // No context switch may happen inside these handlers: the C++ runtime's record of caught exceptions is per OS
  // thread, shared by all fibers.
  try {
    launch.kernel();
  } catch (const FiberCancelled&) {
  } catch (...) {
    if (!launch.error) launch.error = std::current_exception();
  }
  finish_fiber(launch, fiber);
  // Returning resumes uc_link, the scheduler.
}

void switch_to(Launch& launch, unsigned thread) {
  Fiber& fiber = *launch.fibers[thread];
  if (fiber.state == State::NotStarted) fiber.state = State::Runnable;
  launch.current = thread;
  launch.in_fiber = true;
  swapcontext(&launch.scheduler, &fiber.context);
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

float shfl_xor(float value, int lane_mask) {
  Launch& launch = active("shfl_xor()");
  Fiber& me = self(launch);
  me.shfl_value = value;
  me.shfl_mask = lane_mask;
  arrive_at_warp_collective(launch, Op::Shfl);
  return me.shfl_result;
}

char* dynamic_shared_memory() { return active("dynamic_shared_memory()").shared; }

void mma_m16n8k16(Element element, float d[4], const uint32_t a[4], const uint32_t b[2]) {
  Launch& launch = active("mma_m16n8k16()");
  Fiber& me = self(launch);
  me.element = element;
  std::copy(d, d + 4, me.accumulators.begin());
  std::copy(a, a + 4, me.a.begin());
  std::copy(b, b + 2, me.b.begin());
  arrive_at_warp_collective(launch, Op::Mma);
  std::copy(me.accumulators.begin(), me.accumulators.end(), d);
}

void ldmatrix_x4(uint32_t r[4], const void* row, bool transpose) {
  Launch& launch = active("ldmatrix_x4()");
  Fiber& me = self(launch);
  me.row = row;
  me.transpose = transpose;
  arrive_at_warp_collective(launch, Op::Ldmatrix);
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

}  // namespace tessera_cuda::emulation
