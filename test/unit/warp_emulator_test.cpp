// The warp emulator against the PTX ISA, independently of any attention kernel: the mma.m16n8k16 and ldmatrix
// fragment tables are written out again here from the ISA's text ("Matrix Fragments for mma.m16n8k16 with
// floating point type", "Warp-level matrix load instruction: ldmatrix") and the products are checked against plain
// loops; cp.async, bar.sync, shfl.sync and cvt are checked against their definitions; errors must be reported.
#include "targets/cuda/emulation/warp_emulator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "targets/cuda/kernel/primitives.cuh"
#include "test/unit/expect_error.h"

namespace {

namespace em = tessera_cuda::emulation;
using tessera::test::expect_error;

// ---- The PTX fragment tables, written independently of the emulator. ----

struct Coord {
  int row;
  int col;
};

// mma.m16n8k16 .f16/.bf16 A (a0..a7; register i / 2, half i % 2): groupID = lane >> 2, threadID_in_group = lane % 4.
Coord a_element(int lane, int i) {
  const int group = lane >> 2, in_group = lane % 4;
  const bool upper_rows = !(i < 2 || (i >= 4 && i < 6));
  return {group + (upper_rows ? 8 : 0), in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0)};
}
// B (b0..b3): row (k) = threadID_in_group * 2 + (i & 1) (+ 8 for i >= 2), col (n) = groupID.
Coord b_element(int lane, int i) { return {(lane % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0), lane >> 2}; }
// C/D (c0..c3): row = groupID (+ 8 for i >= 2), col = threadID_in_group * 2 + (i & 1).
Coord c_element(int lane, int i) { return {(lane >> 2) + (i >= 2 ? 8 : 0), (lane % 4) * 2 + (i & 1)}; }

// ---- 16-bit formats: exact encodings of exactly representable values, and decoding. ----

uint16_t bf16_exact(double value) {
  const auto f = static_cast<float>(value);
  EXPECT_EQ(static_cast<double>(f), value);
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  EXPECT_EQ(bits & 0xffffu, 0u) << value << " is not a bf16 value";
  return static_cast<uint16_t>(bits >> 16);
}

uint16_t f16_exact(double value) {
  if (value == 0) return std::signbit(value) ? 0x8000 : 0;
  const uint16_t sign = value < 0 ? 0x8000 : 0;
  int e;
  const double m = std::frexp(std::fabs(value), &e);  // |value| = m * 2^e, m in [0.5, 1)
  const int exponent = e - 1;
  EXPECT_GE(exponent, -14);
  EXPECT_LE(exponent, 15);
  const double fraction = (2 * m - 1) * 1024;
  EXPECT_EQ(fraction, std::floor(fraction)) << value << " is not an f16 value";
  return static_cast<uint16_t>(sign | ((exponent + 15) << 10) | static_cast<int>(fraction));
}

double bf16_value(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

double f16_value(uint16_t bits) {
  const double sign = (bits & 0x8000) ? -1 : 1;
  const int exponent = (bits >> 10) & 0x1f, fraction = bits & 0x3ff;
  if (exponent == 31) return fraction ? std::numeric_limits<double>::quiet_NaN() : sign * HUGE_VAL;
  if (exponent == 0) return sign * std::ldexp(fraction, -24);
  return sign * std::ldexp(1024 + fraction, exponent - 25);
}

// The value of the nearest number with `fraction_bits` fraction bits and exponents >= min_exponent (subnormals
// below), ties to even (nearbyint in the default rounding mode), overflowing to infinity beyond max_finite.
double round_to_format(double x, int fraction_bits, int min_exponent, double max_finite) {
  if (x == 0) return x;
  int e;
  std::frexp(x, &e);
  const double ulp = std::ldexp(1.0, std::max(e - 1, min_exponent) - fraction_bits);
  const double rounded = std::nearbyint(x / ulp) * ulp;
  return std::fabs(rounded) > max_finite ? std::copysign(HUGE_VAL, x) : rounded;
}
double nearest_f16(double x) { return round_to_format(x, 10, -14, 65504.0); }
double nearest_bf16(double x) { return round_to_format(x, 7, -126, std::ldexp(255.0, 120)); }

uint16_t low(uint32_t packed) { return static_cast<uint16_t>(packed & 0xffffu); }
uint16_t high(uint32_t packed) { return static_cast<uint16_t>(packed >> 16); }

em::LaunchShape block_of(unsigned threads, size_t shared_bytes = 0) {
  em::LaunchShape shape;
  shape.threads = threads;
  shape.shared_bytes = shared_bytes;
  return shape;
}

// ---- mma and ldmatrix ----

// Random multiples of 1/4 in [-2, 2]: exact in bf16 and f16, and every sum below exact in f32.
std::vector<double> small_values(std::mt19937& rng, size_t count) {
  std::uniform_int_distribution<int> quarter(-8, 8);
  std::vector<double> values(count);
  for (auto& v : values) v = quarter(rng) / 4.0;
  return values;
}

class MmaTest : public ::testing::TestWithParam<em::Element> {};

// mma alone: fragments built from the A / B / C tables, D read through the C table, against a plain loop.
TEST_P(MmaTest, MatchesPlainProductThroughTheFragmentTables) {
  const em::Element element = GetParam();
  const auto encode = [element](double v) { return element == em::Element::BFloat16 ? bf16_exact(v) : f16_exact(v); };
  std::mt19937 rng(11);
  const std::vector<double> a = small_values(rng, 16 * 16), b = small_values(rng, 16 * 8),
                            c = small_values(rng, 16 * 8);
  std::vector<float> d(16 * 8, std::nanf(""));
  em::launch(block_of(32), [&] {
    const int lane = static_cast<int>(em::thread_index());
    uint32_t a_regs[4] = {}, b_regs[2] = {};
    float acc[4];
    for (int i = 0; i < 8; ++i) {
      const Coord at = a_element(lane, i);
      a_regs[i / 2] |= static_cast<uint32_t>(encode(a[at.row * 16 + at.col])) << (16 * (i % 2));
    }
    for (int i = 0; i < 4; ++i) {
      const Coord at = b_element(lane, i);
      b_regs[i / 2] |= static_cast<uint32_t>(encode(b[at.row * 8 + at.col])) << (16 * (i % 2));
    }
    for (int i = 0; i < 4; ++i) acc[i] = static_cast<float>(c[c_element(lane, i).row * 8 + c_element(lane, i).col]);
    em::mma_m16n8k16(element, acc, a_regs, b_regs);
    for (int i = 0; i < 4; ++i) d[c_element(lane, i).row * 8 + c_element(lane, i).col] = acc[i];
  });
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      double expected = c[m * 8 + n];
      for (int k = 0; k < 16; ++k) expected += a[m * 16 + k] * b[k * 8 + n];
      EXPECT_EQ(d[m * 8 + n], expected) << "D[" << m << "][" << n << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BothTypes, MmaTest, ::testing::Values(em::Element::BFloat16, em::Element::Float16));

// ldmatrix alone: the rows of each 8x8 matrix are scattered (permuted rows, different column blocks); every lane's
// registers are checked against the ldmatrix fragment layout (row l / 4, columns 2 (l % 4), +1), and its transpose.
TEST(WarpEmulator, LdmatrixDeliversTheFragmentLayout) {
  constexpr int kStride = 32;  // 16-bit elements per shared-memory row (64 bytes)
  constexpr int kRows = 32;
  const std::array<int, 4> base_row = {5, 0, 17, 9}, base_col = {0, 8, 16, 8};
  const auto smem_row = [&](int m, int r) { return base_row[m] + (r * 3) % 8; };
  const auto value = [](int row, int col) { return static_cast<uint16_t>(row * kStride + col + 1); };
  const auto element = [&](int m, int r, int c) { return value(smem_row(m, r), base_col[m] + c); };
  for (const bool transpose : {false, true}) {
    std::vector<uint32_t> regs(32 * 4);
    em::launch(block_of(32, kRows * kStride * 2), [&] {
      auto* smem = reinterpret_cast<uint16_t*>(em::dynamic_shared_memory());
      const int lane = static_cast<int>(em::thread_index());
      for (int col = 0; col < kStride; ++col) smem[lane * kStride + col] = value(lane, col);
      em::block_sync();
      const int m = lane / 8, r = lane % 8;  // lane supplies row r of matrix m
      uint32_t out[4];
      em::ldmatrix_x4(out, smem + smem_row(m, r) * kStride + base_col[m], transpose);
      std::copy(out, out + 4, regs.begin() + lane * 4);
    });
    for (int lane = 0; lane < 32; ++lane) {
      const int row = lane / 4, col = 2 * (lane % 4);
      for (int m = 0; m < 4; ++m) {
        const uint32_t got = regs[lane * 4 + m];
        if (transpose) {
          EXPECT_EQ(low(got), element(m, col, row)) << "lane " << lane << " matrix " << m;
          EXPECT_EQ(high(got), element(m, col + 1, row)) << "lane " << lane << " matrix " << m;
        } else {
          EXPECT_EQ(low(got), element(m, row, col)) << "lane " << lane << " matrix " << m;
          EXPECT_EQ(high(got), element(m, row, col + 1)) << "lane " << lane << " matrix " << m;
        }
      }
    }
  }
}

// A 16x16 by 16x16 ([k][n], two n8 tiles) GEMM written the way a kernel is, through the primitives in
// targets/cuda/kernel/primitives.cuh: cp.async into padded shared tiles, ldmatrix_x4 for A, ldmatrix_x4_trans for
// B, two mma.m16n8k16, D scattered through the C table.
void run_primitives_gemm(bool bf16) {
  namespace tc = tessera_cuda;
  constexpr int kStride = 24;  // padded shared rows: 48 bytes, still 16-byte aligned
  std::mt19937 rng(bf16 ? 5 : 6);
  const std::vector<double> a = small_values(rng, 16 * 16), b = small_values(rng, 16 * 16);
  const auto encode = [bf16](double v) { return bf16 ? bf16_exact(v) : f16_exact(v); };
  alignas(16) std::array<uint16_t, 16 * 16> a_global{}, b_global{};
  for (int i = 0; i < 256; ++i) {
    a_global[i] = encode(a[i]);
    b_global[i] = encode(b[i]);
  }
  std::vector<float> d(16 * 16, std::nanf(""));
  em::launch(block_of(32, 2 * 16 * kStride * 2), [&] {
    auto* a_tile = reinterpret_cast<uint16_t*>(tc::dynamic_shared_memory());
    uint16_t* b_tile = a_tile + 16 * kStride;
    const int lane = static_cast<int>(tc::thread_index());
    // 16 rows x 2 chunks of 16 bytes per matrix: lane copies chunk lane % 2 of row lane / 2 of A and of B.
    const int row = lane / 2, chunk = lane % 2;
    tc::cp_async_16(a_tile + row * kStride + chunk * 8, a_global.data() + row * 16 + chunk * 8, true);
    tc::cp_async_16(b_tile + row * kStride + chunk * 8, b_global.data() + row * 16 + chunk * 8, true);
    tc::cp_async_commit();
    tc::cp_async_wait<0>();
    tc::block_sync();
    // A: matrices (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0a1, a2a3,
    // a4a5, a6a7 by the A table. Lane l gives row l % 8 of matrix l / 8.
    const int m = lane / 8, r = lane % 8;
    tc::u32 a_regs[4];
    tc::ldmatrix_x4(a_regs, a_tile + (r + 8 * (m % 2)) * kStride + 8 * (m / 2));
    // B ([k][n] row major): matrices (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15); .trans
    // hands lane l the elements (k = 2 (l % 4) + j, n = l / 4), which is b0 b1 / b2 b3 of the B table.
    tc::u32 b_regs[4];
    tc::ldmatrix_x4_trans(b_regs, b_tile + (r + 8 * (m % 2)) * kStride + 8 * (m / 2));
    for (int tile = 0; tile < 2; ++tile) {
      float acc[4] = {0, 0, 0, 0};
      const tc::u32 b_fragment[2] = {b_regs[2 * tile], b_regs[2 * tile + 1]};
      if (bf16) {
        tc::mma_m16n8k16_bf16(acc, a_regs, b_fragment);
      } else {
        tc::mma_m16n8k16_f16(acc, a_regs, b_fragment);
      }
      for (int i = 0; i < 4; ++i) {
        const Coord at = c_element(lane, i);
        d[at.row * 16 + 8 * tile + at.col] = acc[i];
      }
    }
  });
  for (int i = 0; i < 16; ++i) {
    for (int j = 0; j < 16; ++j) {
      double expected = 0;
      for (int k = 0; k < 16; ++k) expected += a[i * 16 + k] * b[k * 16 + j];
      EXPECT_EQ(d[i * 16 + j], expected) << (bf16 ? "bf16" : "f16") << " D[" << i << "][" << j << "]";
    }
  }
}

TEST(WarpEmulator, GemmThroughPrimitivesBf16) { run_primitives_gemm(true); }
TEST(WarpEmulator, GemmThroughPrimitivesF16) { run_primitives_gemm(false); }

TEST(WarpEmulator, PrimitivesForwardTheRest) {
  namespace tc = tessera_cuda;
  std::vector<float> sums(64), powers(64);
  std::vector<tc::u32> bf16_pairs(64), f16_pairs(64);
  em::LaunchShape shape = block_of(64);
  shape.grid_y = 2;
  em::launch(shape, [&] {
    const tc::u32 t = tc::thread_index();
    float v = static_cast<float>(t) + static_cast<float>(tc::block_index_y());
    for (int mask = 16; mask >= 1; mask /= 2) v += tc::shfl_xor(v, mask);
    if (tc::block_index_y() == 1 && tc::block_index_x() == 0 && tc::block_index_z() == 0) {
      sums[t] = v;
      bf16_pairs[t] = tc::pack_bf16x2(1.0f, -2.0f);
      f16_pairs[t] = tc::pack_f16x2(1.0f, -2.0f);
      powers[t] = tc::fast_exp2(static_cast<float>(t % 8));
    }
  });
  for (unsigned t = 0; t < 64; ++t) {
    const unsigned warp = t / 32;
    float expected = 0;
    for (unsigned l = 0; l < 32; ++l) expected += static_cast<float>(warp * 32 + l) + 1.0f;
    EXPECT_EQ(sums[t], expected) << t;
    EXPECT_EQ(bf16_pairs[t], 0xc0003f80u);
    EXPECT_EQ(f16_pairs[t], 0xc0003c00u);
    EXPECT_EQ(powers[t], static_cast<float>(1 << (t % 8)));
  }
}

// ---- shfl.sync.bfly and .idx ----

TEST(WarpEmulator, ShflXorReadsLaneXorMaskWithinTheWarp) {
  std::vector<float> single(64), masked(64), sums(64);
  em::launch(block_of(64), [&] {
    const unsigned t = em::thread_index();
    const float mine = static_cast<float>(t) * 3.0f + 0.5f;
    single[t] = em::shfl_xor(mine, 5);
    masked[t] = em::shfl_xor(mine, 32 + 6);  // shfl.sync uses b[4:0]
    float v = mine;
    for (int mask = 16; mask >= 1; mask /= 2) v += em::shfl_xor(v, mask);
    sums[t] = v;
  });
  for (unsigned t = 0; t < 64; ++t) {
    const unsigned warp = t / 32 * 32, lane = t % 32;
    EXPECT_EQ(single[t], static_cast<float>(warp + (lane ^ 5)) * 3.0f + 0.5f) << t;
    EXPECT_EQ(masked[t], static_cast<float>(warp + (lane ^ 6)) * 3.0f + 0.5f) << t;
    float expected = 0;
    for (unsigned l = 0; l < 32; ++l) expected += static_cast<float>(warp + l) * 3.0f + 0.5f;
    EXPECT_EQ(sums[t], expected) << t;
  }
}

// shfl.sync.idx: lane l reads the value of lane b[4:0] of its own warp.
TEST(WarpEmulator, ShflIndexReadsTheGivenLaneOfItsWarp) {
  std::vector<float> quad(64), masked(64);
  em::launch(block_of(64), [&] {
    const unsigned t = em::thread_index();
    const float mine = static_cast<float>(t) * 3.0f + 0.5f;
    quad[t] = em::shfl_index(mine, static_cast<int>((t % 32 & ~3u) | 2u));  // lane 2 of the quad
    masked[t] = em::shfl_index(mine, 32 + 7);
  });
  for (unsigned t = 0; t < 64; ++t) {
    const unsigned warp = t / 32 * 32, lane = t % 32;
    EXPECT_EQ(quad[t], static_cast<float>(warp + ((lane & ~3u) | 2u)) * 3.0f + 0.5f) << t;
    EXPECT_EQ(masked[t], static_cast<float>(warp + 7) * 3.0f + 0.5f) << t;
  }
}

// ---- bar.sync ----

TEST(WarpEmulator, BlockSyncOrdersSharedMemoryAcrossFourWarps) {
  constexpr unsigned kThreads = 128;
  std::vector<int> wrong(kThreads, 0);
  em::launch(block_of(kThreads, kThreads * sizeof(int)), [&] {
    auto* smem = reinterpret_cast<int*>(em::dynamic_shared_memory());
    const unsigned t = em::thread_index();
    for (int round = 0; round < 3; ++round) {
      smem[t] = round * 1000 + static_cast<int>(t);
      em::block_sync();
      // Thread t reads what another warp's thread wrote this round (threads run in order, so without the
      // barrier thread 0 would read before thread 37 wrote).
      const unsigned other = (t * 7 + 37) % kThreads;
      if (smem[other] != round * 1000 + static_cast<int>(other)) ++wrong[t];
      em::block_sync();  // nobody overwrites before everyone has read
    }
  });
  for (unsigned t = 0; t < kThreads; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
}

TEST(WarpEmulator, BlockSyncDoesNotWaitForExitedThreads) {
  std::atomic<int> passed{0};
  em::launch(block_of(128), [&] {
    if (em::thread_index() >= 32) return;
    em::block_sync();
    em::block_sync();
    ++passed;
  });
  EXPECT_EQ(passed.load(), 32);
}

// ---- cp.async ----

bool all_bytes(const char* p, unsigned char value, size_t n = 16) {
  for (size_t i = 0; i < n; ++i) {
    if (static_cast<unsigned char>(p[i]) != value) return false;
  }
  return true;
}

TEST(WarpEmulator, CpAsyncLandsOnlyAtWait) {
  alignas(16) std::array<unsigned char, 32> source{};
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<unsigned char>(i + 1);
  std::vector<std::string> failures;
  const auto check = [&](bool ok, const char* what) {
    if (!ok) failures.emplace_back(what);
  };
  em::launch(block_of(32, 128), [&] {
    if (em::thread_index() != 0) return;
    char* smem = em::dynamic_shared_memory();
    std::memset(smem, 0, 64);
    em::cp_async_16(smem, source.data(), true);
    check(all_bytes(smem, 0xFF), "destination poisoned at issue");
    em::cp_async_wait(0);
    check(all_bytes(smem, 0xFF), "an uncommitted copy is not waited for");
    em::cp_async_commit();
    check(all_bytes(smem, 0xFF), "commit does not complete the copy");
    em::cp_async_wait(0);
    check(std::memcmp(smem, source.data(), 16) == 0, "data after wait_group 0");

    // Zero fill: src-size 0 reads nothing (the source may be anything).
    em::cp_async_16(smem + 16, nullptr, false);
    em::cp_async_commit();
    check(all_bytes(smem + 16, 0xFF), "zero-filled destination poisoned until wait");
    em::cp_async_wait(0);
    check(all_bytes(smem + 16, 0x00), "zero fill after wait");

    // wait_group 1 retires all but the newest group.
    em::cp_async_16(smem + 32, source.data(), true);
    em::cp_async_commit();
    em::cp_async_16(smem + 48, source.data() + 16, true);
    em::cp_async_commit();
    em::cp_async_wait(1);
    check(std::memcmp(smem + 32, source.data(), 16) == 0, "older group retired by wait_group 1");
    check(all_bytes(smem + 48, 0xFF), "newest group still pending after wait_group 1");
    em::cp_async_wait(0);
    check(std::memcmp(smem + 48, source.data() + 16, 16) == 0, "newest group retired by wait_group 0");
  });
  EXPECT_TRUE(failures.empty()) << ::testing::PrintToString(failures);
}

TEST(WarpEmulator, CpAsyncGroupsArePerThread) {
  alignas(16) std::array<unsigned char, 16> source{};
  source.fill(7);
  bool other_thread_saw_poison = false, own_copy_landed = false;
  em::launch(block_of(32, 64), [&] {
    char* smem = em::dynamic_shared_memory();
    if (em::thread_index() == 0) {
      em::cp_async_16(smem, source.data(), true);
      em::cp_async_commit();
    }
    em::block_sync();
    if (em::thread_index() == 1) {
      em::cp_async_wait(0);  // thread 1 has no groups: nothing of thread 0's lands
      other_thread_saw_poison = all_bytes(smem, 0xFF);
    }
    em::block_sync();
    if (em::thread_index() == 0) {
      em::cp_async_wait(0);
      own_copy_landed = all_bytes(smem, 7);
    }
  });
  EXPECT_TRUE(other_thread_saw_poison);
  EXPECT_TRUE(own_copy_landed);
}

TEST(WarpEmulator, CpAsyncChecksAddresses) {
  alignas(16) std::array<unsigned char, 32> source{};
  const auto run = [&](int case_index) {
    em::launch(block_of(32, 64), [&] {
      if (em::thread_index() != 3) return;
      char* smem = em::dynamic_shared_memory();
      if (case_index == 0) em::cp_async_16(smem + 8, source.data(), true);
      if (case_index == 1) em::cp_async_16(smem + 64, source.data(), true);
      if (case_index == 2) {
        em::cp_async_16(reinterpret_cast<char*>(reinterpret_cast<uintptr_t>(smem) - 16), source.data(), true);
      }
      if (case_index == 3) em::cp_async_16(smem, source.data() + 4, true);
      if (case_index == 4) em::cp_async_wait(-1);
    });
  };
  expect_error<em::EmulationError>([&] { run(0); }, {"cp.async destination", "thread 3", "not 16-byte aligned"});
  expect_error<em::EmulationError>([&] { run(1); }, {"cp.async destination", "not inside the 64 bytes"});
  expect_error<em::EmulationError>([&] { run(2); }, {"cp.async destination", "not inside"});
  expect_error<em::EmulationError>([&] { run(3); }, {"cp.async source", "not 16-byte aligned"});
  expect_error<em::EmulationError>([&] { run(4); }, {"wait_group -1"});
}

TEST(WarpEmulator, LdmatrixChecksAddresses) {
  const auto run = [&](int bad_offset) {
    em::launch(block_of(32, 512), [&] {
      char* smem = em::dynamic_shared_memory();
      const unsigned lane = em::thread_index();
      uint32_t r[4];
      em::ldmatrix_x4(r, smem + (lane == 7 ? bad_offset : 16 * static_cast<int>(lane)), false);
    });
  };
  expect_error<em::EmulationError>([&] { run(8); }, {"ldmatrix row address", "lane 7", "not 16-byte aligned"});
  expect_error<em::EmulationError>([&] { run(512); }, {"ldmatrix row address", "lane 7", "not inside"});
}

// ---- The launch itself ----

TEST(WarpEmulator, RunsEveryThreadOfEveryBlockXFastest) {
  em::LaunchShape shape = block_of(64, 256);
  shape.grid_x = 3;
  shape.grid_y = 2;
  shape.grid_z = 2;
  std::vector<std::array<unsigned, 3>> block_order;
  std::vector<int> visits(3 * 2 * 2 * 64, 0);
  bool aligned = true, poisoned = true;
  em::launch(shape, [&] {
    const unsigned x = em::block_index(0), y = em::block_index(1), z = em::block_index(2), t = em::thread_index();
    ++visits[((z * 2 + y) * 3 + x) * 64 + t];
    char* smem = em::dynamic_shared_memory();
    aligned = aligned && reinterpret_cast<uintptr_t>(smem) % 128 == 0;
    if (t == 0) {
      block_order.push_back({x, y, z});
      poisoned = poisoned && all_bytes(smem, 0xFF, 256);  // each block starts from the poison pattern
      std::memset(smem, 0, 256);
    }
  });
  for (size_t i = 0; i < visits.size(); ++i) EXPECT_EQ(visits[i], 1) << i;
  ASSERT_EQ(block_order.size(), 12u);
  for (unsigned i = 0; i < 12; ++i) {
    EXPECT_EQ(block_order[i][0], i % 3);
    EXPECT_EQ(block_order[i][1], i / 3 % 2);
    EXPECT_EQ(block_order[i][2], i / 6);
  }
  EXPECT_TRUE(aligned);
  EXPECT_TRUE(poisoned);
}

TEST(WarpEmulator, DivergentWarpsAreErrors) {
  expect_error<em::EmulationError>(
      [] {
        em::launch(block_of(64, 1024), [] {
          const unsigned t = em::thread_index();
          if (t < 32 + 16) {
            em::shfl_xor(1.0f, 1);
          } else {
            uint32_t r[4];
            em::ldmatrix_x4(r, em::dynamic_shared_memory() + 16 * (t % 32), false);
          }
        });
      },
      {"divergent warp", "warp 1", "ldmatrix", "shfl_xor"});
  expect_error<em::EmulationError>(
      [] {
        em::launch(block_of(32), [] {
          if (em::thread_index() >= 16) return;
          em::shfl_xor(1.0f, 1);
        });
      },
      {"divergent warp", "exited"});
  expect_error<em::EmulationError>(
      [] {
        em::launch(block_of(32), [] {
          float d[4] = {};
          const uint32_t a[4] = {}, b[2] = {};
          em::mma_m16n8k16(em::thread_index() % 2 ? em::Element::Float16 : em::Element::BFloat16, d, a, b);
        });
      },
      {"divergent warp", "different input types"});
}

TEST(WarpEmulator, DeadlockIsAnError) {
  // Half a warp waits at the barrier, the other half at a shuffle that needs the first half.
  expect_error<em::EmulationError>(
      [] {
        em::launch(block_of(64), [] {
          if (em::thread_index() < 16) {
            em::block_sync();
          } else {
            em::shfl_xor(1.0f, 1);
          }
        });
      },
      {"deadlock", "block (0, 0, 0)", "warp 0: lanes 0-15 at block_sync", "lanes 16-31 at shfl_xor"});
}

TEST(WarpEmulator, KernelExceptionsPropagateAfterUnwindingEveryThread) {
  int alive = 0, constructed = 0;
  struct Tracker {
    int& alive;
    Tracker(int& a, int& c) : alive(a) {
      ++alive;
      ++c;
    }
    ~Tracker() { --alive; }
    Tracker(const Tracker&) = delete;
    Tracker& operator=(const Tracker&) = delete;
  };
  try {
    em::launch(block_of(64), [&] {
      Tracker tracker(alive, constructed);
      if (em::thread_index() == 40) throw std::runtime_error("boom in thread 40");
      em::block_sync();
    });
    ADD_FAILURE() << "did not throw";
  } catch (const em::EmulationError& e) {
    ADD_FAILURE() << "the kernel's own exception should propagate, got " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "boom in thread 40");
  }
  EXPECT_EQ(constructed, 41);  // threads 0-40 ran; 41-63 never started
  EXPECT_EQ(alive, 0);         // threads 0-39, suspended at the barrier, were unwound

  // The emulator is usable again afterwards.
  std::atomic<int> ran{0};
  em::launch(block_of(32), [&] {
    em::block_sync();
    ++ran;
  });
  EXPECT_EQ(ran.load(), 32);
}

TEST(WarpEmulator, MisuseIsReported) {
  expect_error<em::EmulationError>([] { em::thread_index(); }, {"thread_index()", "outside"});
  expect_error<em::EmulationError>([] { em::launch(block_of(48), [] {}); }, {"48 threads"});
  em::LaunchShape empty = block_of(32);
  empty.grid_y = 0;
  expect_error<em::EmulationError>([&] { em::launch(empty, [] {}); }, {"empty grid"});
  expect_error<em::EmulationError>([] { em::launch(block_of(32), [] { em::block_index(3); }); }, {"axis 3"});
}

TEST(WarpEmulator, LaunchesOnSeveralOsThreadsAreIndependent) {
  std::array<std::vector<float>, 2> sums;
  std::array<std::thread, 2> threads;
  for (int i = 0; i < 2; ++i) {
    threads[i] = std::thread([&sums, i] {
      sums[i].assign(64, 0.0f);
      for (int repeat = 0; repeat < 20; ++repeat) {
        em::launch(block_of(64), [&] {
          float v = static_cast<float>(i + 1);
          for (int mask = 16; mask >= 1; mask /= 2) v += em::shfl_xor(v, mask);
          sums[i][em::thread_index()] = v;
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 2; ++i) {
    for (float s : sums[i]) EXPECT_EQ(s, 32.0f * static_cast<float>(i + 1));
  }
}

// ---- cvt.rn.{bf16x2,f16x2}.f32 and ex2 ----

std::vector<float> conversion_inputs(std::mt19937& rng, int min_exponent, int max_exponent) {
  std::vector<float> values;
  std::uniform_int_distribution<uint32_t> mantissa(0, 0x7fffff);
  std::uniform_int_distribution<int> exponent(min_exponent, max_exponent);
  for (int i = 0; i < 20000; ++i) {
    const uint32_t sign = (i % 2) ? 0x80000000u : 0u;
    const auto biased = static_cast<uint32_t>(exponent(rng) + 127);
    values.push_back(std::bit_cast<float>(sign | (biased << 23) | mantissa(rng)));
  }
  return values;
}

TEST(WarpEmulator, PackF16RoundsToNearestEven) {
  std::mt19937 rng(21);
  std::vector<float> inputs = conversion_inputs(rng, -27, 16);
  // Ties between f16 neighbours (even below, odd below), the overflow threshold, subnormal ties.
  for (float v : {1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f, 65504.0f, 65519.0f, 65520.0f, 1e6f, 0x1p-24f, 0x1p-25f,
                  1.5f * 0x1p-25f, 3 * 0x1p-25f, 0x1p-14f - 0x1p-25f, 0x1p-26f, 0.0f, -0.0f, 0x1p-130f})
    inputs.insert(inputs.end(), {v, -v});
  for (float x : inputs) {
    const uint32_t packed = em::pack_f16x2(x, -x);
    const double expected = nearest_f16(x);
    EXPECT_EQ(f16_value(low(packed)), expected) << std::hexfloat << x;
    EXPECT_EQ(f16_value(high(packed)), -expected) << std::hexfloat << x;
    EXPECT_EQ(std::signbit(f16_value(low(packed))), std::signbit(x)) << std::hexfloat << x;
  }
  EXPECT_EQ(em::pack_f16x2(1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f), 0x3c023c00u);  // ties to even
  EXPECT_EQ(low(em::pack_f16x2(65519.0f, 0)), 0x7bff);
  EXPECT_EQ(low(em::pack_f16x2(65520.0f, 0)), 0x7c00);  // overflow to infinity (no .satfinite)
  EXPECT_EQ(low(em::pack_f16x2(-1e30f, 0)), 0xfc00);
  EXPECT_EQ(low(em::pack_f16x2(std::numeric_limits<float>::infinity(), 0)), 0x7c00);
  EXPECT_EQ(low(em::pack_f16x2(0x1p-24f, 0)), 0x0001);             // smallest subnormal
  EXPECT_EQ(low(em::pack_f16x2(0x1p-25f, 0)), 0x0000);             // tie with zero: even
  EXPECT_EQ(low(em::pack_f16x2(3 * 0x1p-25f, 0)), 0x0002);         // 1.5 units: even
  EXPECT_EQ(low(em::pack_f16x2(0x1p-14f - 0x1p-25f, 0)), 0x0400);  // rounds up to the smallest normal
  EXPECT_EQ(em::pack_f16x2(1.0f, 2.0f), 0x40003c00u);              // lo in bits 0-15
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xffffffffu, 0x7f802000u}) {
    const uint16_t h = low(em::pack_f16x2(std::bit_cast<float>(nan), 0));
    EXPECT_TRUE(std::isnan(f16_value(h))) << std::hex << nan << " -> " << h;
  }
}

TEST(WarpEmulator, PackBf16RoundsToNearestEven) {
  std::mt19937 rng(22);
  std::vector<float> inputs = conversion_inputs(rng, -127, 127);
  for (float v : {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, std::numeric_limits<float>::max(), 0x1p-130f,
                  std::numeric_limits<float>::denorm_min(), 0.0f})
    inputs.insert(inputs.end(), {v, -v});
  for (float x : inputs) {
    const uint32_t packed = em::pack_bf16x2(-x, x);
    const double expected = nearest_bf16(x);
    EXPECT_EQ(bf16_value(high(packed)), expected) << std::hexfloat << x;
    EXPECT_EQ(bf16_value(low(packed)), -expected) << std::hexfloat << x;
  }
  EXPECT_EQ(em::pack_bf16x2(std::bit_cast<float>(0x3f808000u), std::bit_cast<float>(0x3f818000u)), 0x3f823f80u);
  EXPECT_EQ(high(em::pack_bf16x2(0, std::numeric_limits<float>::max())), 0x7f80);  // overflow to infinity
  for (uint32_t nan : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t h = low(em::pack_bf16x2(std::bit_cast<float>(nan), 0));
    EXPECT_TRUE(std::isnan(bf16_value(h))) << std::hex << nan << " -> " << h;  // not rounded into infinity
  }
}

TEST(WarpEmulator, Exp2) {
  EXPECT_EQ(em::exp2(3.0f), 8.0f);
  EXPECT_EQ(em::exp2(-std::numeric_limits<float>::infinity()), 0.0f);
  EXPECT_EQ(em::exp2(-130.0f), 0.0f);  // .ftz: a subnormal result is flushed
  EXPECT_NEAR(em::exp2(0.5f), std::sqrt(2.0f), std::sqrt(2.0f) * 0x1p-22f);
  EXPECT_TRUE(std::isnan(em::exp2(std::nanf(""))));
}

// ---- wgmma.mma_async (PTX ISA 9.7.15), with every layout written out again here. ----

// The register fragments of wgmma.mma_async.m64nNk16 (ISA 9.7.15.5.1.1.1, Figures "WGMMA .m64nNk16 register
// fragment layout for matrix A" and "... for accumulator matrix D"), written as the CuTe thread-value layouts
// NVIDIA publishes for those figures in CUTLASS (cute/atom/mma_traits_sm90_gmma.hpp: ALayout_64x16 and
// CLayout_64xN, both ((4,8,4),(2,2,N/8)):((128,1,16),(64,8,512))), which map (thread, value) to the column-major
// index row + 64 * col. For A the values are a0..a7 (register v / 2, half v % 2), for D d0..d(N/2-1).
Coord wgmma_fragment(int thread, int value) {
  const int index = (thread % 4) * 128 + (thread / 4 % 8) * 1 + (thread / 32) * 16 + (value % 2) * 64 +
                    (value / 2 % 2) * 8 + (value / 4) * 512;
  return {index % 64, index / 64};
}

// A CuTe layout mode: (shape, stride) sub-modes, the first varying fastest; the last absorbs the rest.
int cute_mode(int coord, std::initializer_list<std::pair<int, int>> modes) {
  int offset = 0;
  for (const auto& [shape, stride] : modes) {
    offset += (coord % shape) * stride;
    coord /= shape;
  }
  return offset;
}

// The ISA's canonical no-swizzle layouts (9.7.15.5.1.2.1.3 "Canonical Layouts"), in elements over (MN, K), with
// T = 128 / 16 = 8 for 16-bit elements and LBO / SBO given in bytes:
//   K-major:               ((8,m),(T,2k)):((1T,SBO),(1,LBO))
//   MN-major, interleaved: ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
int canonical_b_element(bool mn_major, int k, int n, int lbo_bytes, int sbo_bytes) {
  constexpr int T = 8, kRest = 1 << 20;
  const int lbo = lbo_bytes / 2, sbo = sbo_bytes / 2;
  if (!mn_major) return cute_mode(n, {{8, T}, {kRest, sbo}}) + cute_mode(k, {{T, 1}, {kRest, lbo}});
  return cute_mode(n, {{T, 1}, {1, T}, {kRest, sbo}}) + cute_mode(k, {{8, T}, {kRest, lbo}});
}

// ISA 9.7.15.5.1.2.2 "Matrix Descriptor Format": matrix-descriptor-encode(x) = (x & 0x3FFFF) >> 4 of the start
// address in bits 0-13, the leading dimension byte offset in 16-29, the stride dimension byte offset in 32-45;
// base offset and swizzle mode (bits 49-51, 62-63) 0.
uint64_t wgmma_descriptor(uint32_t start, uint32_t lbo, uint32_t sbo) {
  const auto encode = [](uint64_t x) { return (x & 0x3FFFF) >> 4; };
  return encode(start) | (encode(lbo) << 16) | (encode(sbo) << 32);
}

// Where B (16 x n) lies in shared memory: start offset, LBO and SBO in bytes.
struct BPlacement {
  int start;
  int lbo;
  int sbo;
  int bytes;  // shared memory needed
};

// Two arrangements with padding between core matrices (so a swapped or ignored stride reads poison):
// K-adjacent core matrices close together (LBO < SBO), or N-adjacent ones close together (SBO < LBO).
BPlacement place_b(int n, bool k_inner) {
  const int groups_n = n / 8;  // core matrices along N; along K there are 2 (k16)
  BPlacement p{};
  p.start = 256;
  if (k_inner) {
    p.lbo = 128 + 16;
    p.sbo = 2 * p.lbo + 32;
  } else {
    p.sbo = 128 + 32;
    p.lbo = groups_n * p.sbo + 48;
  }
  p.bytes = p.start + groups_n * p.sbo + 2 * p.lbo + 256;
  return p;
}

uint16_t encode_as(em::Element element, double v) {
  return element == em::Element::BFloat16 ? bf16_exact(v) : f16_exact(v);
}

// Writes B ([k][n], 16 rows) into shared memory per the canonical layout.
void store_b(char* smem, em::Element element, bool mn_major, const BPlacement& p, const std::vector<double>& b, int n) {
  for (int k = 0; k < 16; ++k) {
    for (int col = 0; col < n; ++col) {
      const uint16_t bits = encode_as(element, b[k * n + col]);
      std::memcpy(smem + p.start + 2 * canonical_b_element(mn_major, k, col, p.lbo, p.sbo), &bits, 2);
    }
  }
}

// The A fragment of this thread for columns k0 .. k0+15 of a (64 x a_cols, row-major).
std::array<uint32_t, 4> a_fragment(em::Element element, int thread, const std::vector<double>& a, int a_cols, int k0) {
  std::array<uint32_t, 4> regs{};
  for (int v = 0; v < 8; ++v) {
    const Coord at = wgmma_fragment(thread, v);
    regs[v / 2] |= static_cast<uint32_t>(encode_as(element, a[at.row * a_cols + k0 + at.col])) << (16 * (v % 2));
  }
  return regs;
}

// Compares d (64 x n) with c + a * b (c may be empty), reporting the first few mismatches.
void expect_product(const std::vector<float>& d, const std::vector<double>& a, const std::vector<double>& b,
                    const std::vector<double>& c, int n, int k_total, const std::string& what) {
  int wrong = 0;
  for (int m = 0; m < 64; ++m) {
    for (int col = 0; col < n; ++col) {
      double expected = c.empty() ? 0.0 : c[m * n + col];
      for (int k = 0; k < k_total; ++k) expected += a[m * k_total + k] * b[k * n + col];
      if (d[m * n + col] != expected && ++wrong <= 5) {
        ADD_FAILURE() << what << ": D[" << m << "][" << col << "] = " << d[m * n + col] << ", expected " << expected;
      }
    }
  }
  EXPECT_EQ(wrong, 0) << what;
}

struct WgmmaCase {
  em::Element element;
  bool mn_major;
  int n;
  bool k_inner;
};

std::string case_name(const WgmmaCase& c) {
  return std::string(c.element == em::Element::BFloat16 ? "Bf16" : "F16") + (c.mn_major ? "MnMajor" : "KMajor") + "N" +
         std::to_string(c.n) + (c.k_inner ? "KInner" : "NInner");
}
void PrintTo(const WgmmaCase& c, std::ostream* os) { *os << case_name(c); }

class WgmmaTest : public ::testing::TestWithParam<WgmmaCase> {};

// One m64nNk16 product: B placed by the canonical layout, A and D through the fragment layouts, D = A * B
// (scale-d false: the NaNs in d beforehand must not matter), against a plain loop.
TEST_P(WgmmaTest, MatchesPlainProductThroughTheIsaLayouts) {
  const WgmmaCase param = GetParam();
  const em::Element element = param.element;
  const bool mn_major = param.mn_major;
  const int n = param.n;
  const bool k_inner = param.k_inner;
  const BPlacement p = place_b(n, k_inner);
  std::mt19937 rng(static_cast<unsigned>(n * 4 + mn_major * 2 + k_inner));
  const std::vector<double> a = small_values(rng, 64 * 16), b = small_values(rng, 16 * n);
  std::vector<float> d(64 * n, std::nanf(""));
  std::vector<int> hits(64 * n, 0);
  em::launch(block_of(128, p.bytes), [&] {
    char* smem = em::dynamic_shared_memory();
    const int t = static_cast<int>(em::thread_index());
    if (t == 0) store_b(smem, element, mn_major, p, b, n);
    em::block_sync();
    em::fence_proxy_async();
    const std::array<uint32_t, 4> regs = a_fragment(element, t, a, 16, 0);
    std::array<float, 128> acc;
    acc.fill(std::nanf(""));
    const uint64_t desc = wgmma_descriptor(em::shared_address(smem + p.start), p.lbo, p.sbo);
    em::wgmma_fence();
    em::wgmma_m64k16(element, n, acc.data(), regs.data(), desc, mn_major, false);
    em::wgmma_commit_group();
    em::wgmma_wait_group(0);
    for (int v = 0; v < n / 2; ++v) {
      const Coord at = wgmma_fragment(t, v);
      d[at.row * n + at.col] = acc[v];
      ++hits[at.row * n + at.col];
    }
  });
  EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 64 * n) << "the D fragments cover 64 x n once";
  expect_product(d, a, b, {}, n, 16, "D");
}

std::vector<WgmmaCase> wgmma_cases() {
  std::vector<WgmmaCase> cases;
  for (const em::Element element : {em::Element::BFloat16, em::Element::Float16}) {
    for (const bool mn_major : {false, true}) {
      for (const int n : {8, 64, 128, 256}) {
        for (const bool k_inner : {true, false}) cases.push_back({element, mn_major, n, k_inner});
      }
    }
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Layouts, WgmmaTest, ::testing::ValuesIn(wgmma_cases()),
                         [](const ::testing::TestParamInfo<WgmmaCase>& info) { return case_name(info.param); });

// The ISA's own example (9.7.15.5.1.2.1.3) "MN-Major, no-swizzling and bf16 type": exact layout
// ((8,1,2),(8,2)):((1,8,64),(8,128)) in elements over (N, K) for a 16 x 16 matrix, LBO = 128 * sizeof(bf16) (encoded
// 16), SBO = 64 * sizeof(bf16) (encoded 8).
TEST(WgmmaIsaExample, MnMajorNoSwizzleBf16) {
  constexpr int n = 16;
  std::mt19937 rng(77);
  const std::vector<double> a = small_values(rng, 64 * 16), b = small_values(rng, 16 * n);
  std::vector<float> d(64 * n, std::nanf(""));
  em::launch(block_of(128, 1024), [&] {
    auto* smem = reinterpret_cast<uint16_t*>(em::dynamic_shared_memory());
    const int t = static_cast<int>(em::thread_index());
    if (t == 0) {
      for (int k = 0; k < 16; ++k) {
        for (int col = 0; col < n; ++col)
          smem[(col % 8) * 1 + (col / 8) * 64 + (k % 8) * 8 + (k / 8) * 128] = bf16_exact(b[k * n + col]);
      }
    }
    em::block_sync();
    const std::array<uint32_t, 4> regs = a_fragment(em::Element::BFloat16, t, a, 16, 0);
    std::array<float, 8> acc{};
    const uint64_t desc = (uint64_t{em::shared_address(smem)} >> 4) | (uint64_t{16} << 16) | (uint64_t{8} << 32);
    em::wgmma_fence();
    em::wgmma_m64k16(em::Element::BFloat16, n, acc.data(), regs.data(), desc, true, false);
    em::wgmma_commit_group();
    em::wgmma_wait_group(0);
    for (int v = 0; v < n / 2; ++v) d[wgmma_fragment(t, v).row * n + wgmma_fragment(t, v).col] = acc[v];
  });
  expect_product(d, a, b, {}, n, 16, "ISA example");
}

// D = C + A (64 x 32) * B (32 x n) as two k16 steps with scale-d: either chained without a wait (PTX orders
// accumulator accesses between wgmma of the same shape) from scale-d false, or waited in between from C.
void run_two_k_steps(bool chained, em::Element element, bool mn_major) {
  constexpr int n = 64;
  const BPlacement p = place_b(n, true);
  const int tile_bytes = p.bytes;
  std::mt19937 rng(chained ? 31 : 32);
  const std::vector<double> a = small_values(rng, 64 * 32), b = small_values(rng, 32 * n),
                            c = chained ? std::vector<double>{} : small_values(rng, 64 * n);
  std::vector<float> d(64 * n, std::nanf(""));
  em::launch(block_of(128, 2 * tile_bytes), [&] {
    char* smem = em::dynamic_shared_memory();
    const int t = static_cast<int>(em::thread_index());
    if (t == 0) {
      for (int step = 0; step < 2; ++step) {
        const std::vector<double> rows(b.begin() + step * 16 * n, b.begin() + (step + 1) * 16 * n);
        store_b(smem + step * tile_bytes, element, mn_major, p, rows, n);
      }
    }
    em::block_sync();
    std::array<float, n / 2> acc;
    for (int v = 0; v < n / 2; ++v) {
      const Coord at = wgmma_fragment(t, v);
      acc[v] = chained ? std::nanf("") : static_cast<float>(c[at.row * n + at.col]);
    }
    for (int step = 0; step < 2; ++step) {
      const std::array<uint32_t, 4> regs = a_fragment(element, t, a, 32, 16 * step);
      const uint64_t desc = wgmma_descriptor(em::shared_address(smem + step * tile_bytes + p.start), p.lbo, p.sbo);
      if (step == 0 || !chained) em::wgmma_fence();
      em::wgmma_m64k16(element, n, acc.data(), regs.data(), desc, mn_major, !chained || step == 1);
      if (!chained) {
        em::wgmma_commit_group();
        em::wgmma_wait_group(0);
      }
    }
    if (chained) {
      em::wgmma_commit_group();
      em::wgmma_wait_group(0);
    }
    for (int v = 0; v < n / 2; ++v) d[wgmma_fragment(t, v).row * n + wgmma_fragment(t, v).col] = acc[v];
  });
  expect_product(d, a, b, c, n, 32, chained ? "chained k-steps" : "k-steps with a wait between");
}

TEST(Wgmma, ScaleDAccumulatesChainedKSteps) {
  run_two_k_steps(true, em::Element::BFloat16, false);
  run_two_k_steps(true, em::Element::Float16, true);
}

TEST(Wgmma, ScaleDAccumulatesOntoRegisters) {
  run_two_k_steps(false, em::Element::Float16, false);
  run_two_k_steps(false, em::Element::BFloat16, true);
}

// The accumulators change only when wait_group retires the group: not at issue, not at commit; wait_group 1
// retires all but the newest group; an uncommitted wgmma is in no group and is not waited for.
TEST(Wgmma, AccumulatorsChangeOnlyWhenWaitGroupRetires) {
  constexpr int n = 8;
  const BPlacement p = place_b(n, true);
  std::mt19937 rng(41);
  const std::vector<double> a = small_values(rng, 64 * 16), b = small_values(rng, 16 * n);
  std::vector<std::string> failures;
  const auto check = [&](bool ok, const char* what) {
    if (!ok && std::find(failures.begin(), failures.end(), what) == failures.end()) failures.emplace_back(what);
  };
  em::launch(block_of(128, p.bytes), [&] {
    char* smem = em::dynamic_shared_memory();
    const int t = static_cast<int>(em::thread_index());
    if (t == 0) store_b(smem, em::Element::BFloat16, false, p, b, n);
    em::block_sync();
    const std::array<uint32_t, 4> regs = a_fragment(em::Element::BFloat16, t, a, 16, 0);
    const uint64_t desc = wgmma_descriptor(em::shared_address(smem + p.start), p.lbo, p.sbo);
    // The product this thread should hold, and recognisable old values for three accumulator sets.
    std::array<float, 4> product{};
    for (int v = 0; v < 4; ++v) {
      const Coord at = wgmma_fragment(t, v);
      double sum = 0;
      for (int k = 0; k < 16; ++k) sum += a[at.row * 16 + k] * b[k * n + at.col];
      product[v] = static_cast<float>(sum);
    }
    std::array<float, 4> d1, d2, d3;
    for (int v = 0; v < 4; ++v) {
      d1[v] = 1000.0f + static_cast<float>(v);
      d2[v] = 2000.0f + static_cast<float>(v);
      d3[v] = 3000.0f + static_cast<float>(v);
    }
    const std::array<float, 4> old1 = d1, old2 = d2, old3 = d3;
    std::array<float, 4> sum2;
    for (int v = 0; v < 4; ++v) sum2[v] = old2[v] + product[v];

    em::wgmma_fence();
    em::wgmma_m64k16(em::Element::BFloat16, n, d1.data(), regs.data(), desc, false, false);
    check(d1 == old1, "d unchanged after issue");
    em::wgmma_commit_group();
    check(d1 == old1, "d unchanged after commit");
    em::wgmma_m64k16(em::Element::BFloat16, n, d2.data(), regs.data(), desc, false, true);
    em::wgmma_commit_group();
    em::wgmma_wait_group(1);
    check(d1 == product, "older group retired by wait_group 1");
    check(d2 == old2, "newest group still pending after wait_group 1");
    em::wgmma_wait_group(0);
    check(d2 == sum2, "newest group retired by wait_group 0 (scale-d: old + product)");

    em::wgmma_fence();
    em::wgmma_m64k16(em::Element::BFloat16, n, d3.data(), regs.data(), desc, false, false);
    em::wgmma_wait_group(0);
    check(d3 == old3, "an uncommitted wgmma is not waited for");
    em::wgmma_commit_group();
    em::wgmma_wait_group(0);
    check(d3 == product, "retired once committed and waited for");
  });
  EXPECT_TRUE(failures.empty()) << ::testing::PrintToString(failures);
}

// Two warpgroups of one block are independent collectives, each with its own A, B and descriptor.
TEST(Wgmma, WarpgroupsOfOneBlockAreIndependent) {
  constexpr int n = 16;
  const BPlacement p = place_b(n, true);
  std::mt19937 rng(51);
  const std::array<std::vector<double>, 2> a = {small_values(rng, 64 * 16), small_values(rng, 64 * 16)};
  const std::array<std::vector<double>, 2> b = {small_values(rng, 16 * n), small_values(rng, 16 * n)};
  std::array<std::vector<float>, 2> d = {std::vector<float>(64 * n, std::nanf("")),
                                         std::vector<float>(64 * n, std::nanf(""))};
  em::launch(block_of(256, 2 * p.bytes), [&] {
    char* smem = em::dynamic_shared_memory();
    const int t = static_cast<int>(em::thread_index()), g = t / 128, r = t % 128;
    if (r == 0) store_b(smem + g * p.bytes, em::Element::Float16, true, p, b[g], n);
    em::block_sync();
    const std::array<uint32_t, 4> regs = a_fragment(em::Element::Float16, r, a[g], 16, 0);
    std::array<float, n / 2> acc{};
    em::wgmma_fence();
    em::wgmma_m64k16(em::Element::Float16, n, acc.data(), regs.data(),
                     wgmma_descriptor(em::shared_address(smem + g * p.bytes + p.start), p.lbo, p.sbo), true, false);
    em::wgmma_commit_group();
    em::wgmma_wait_group(0);
    for (int v = 0; v < n / 2; ++v) d[g][wgmma_fragment(r, v).row * n + wgmma_fragment(r, v).col] = acc[v];
  });
  expect_product(d[0], a[0], b[0], {}, n, 16, "warpgroup 0");
  expect_product(d[1], a[1], b[1], {}, n, 16, "warpgroup 1");
}

// A kernel for the error tests: 128 threads (or `threads`), a 64-column K-major B at offset 0 (LBO 128, SBO 256,
// 2048 bytes), `body` given the thread, a zero A fragment and accumulators.
void run_wgmma_kernel(const std::function<void(int, char*, const uint32_t*, float*)>& body, unsigned threads = 128,
                      size_t shared_bytes = 4096) {
  em::launch(block_of(threads, shared_bytes), [&] {
    const std::array<uint32_t, 4> regs{};
    std::array<float, 128> acc{};
    body(static_cast<int>(em::thread_index()), em::dynamic_shared_memory(), regs.data(), acc.data());
  });
}

constexpr uint64_t kErrorTestDesc = (uint64_t{128 >> 4} << 16) | (uint64_t{256 >> 4} << 32);

TEST(Wgmma, AWarpgroupMissingAWarpIsAnError) {
  // Warp 3 exits while the other three wait at the fence.
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t*, float*) {
          if (t >= 96) return;
          em::wgmma_fence();
        });
      },
      {"divergent warpgroup", "exited", "of its warpgroup", "wgmma_fence"});
  // Warp 3 waits at bar.sync while the other three wait at the wgmma: nobody can proceed.
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t* a, float* d) {
          if (t >= 96) {
            em::block_sync();
          } else {
            em::wgmma_m64k16(em::Element::BFloat16, 64, d, a, kErrorTestDesc, false, false);
          }
        });
      },
      {"deadlock", "warp 0: lanes 0-31 at wgmma_m64k16", "warp 3: lanes 0-31 at block_sync"});
  // A block of 96 threads has no complete warpgroup.
  expect_error<em::EmulationError>(
      [] { run_wgmma_kernel([](int, char*, const uint32_t*, float*) { em::wgmma_fence(); }, 96); },
      {"warpgroup 0 (threads 0-127) is incomplete", "96 threads"});
  // Warp 2 commits while the others wait: .aligned is broken.
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t*, float*) {
          if (t / 32 == 2) {
            em::wgmma_commit_group();
          } else {
            em::wgmma_wait_group(0);
          }
        });
      },
      {"divergent warpgroup", "wgmma_commit_group", "wgmma_wait_group"});
  // Half a warp at the fence, the other half at a shuffle.
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t*, float*) {
          if (t % 32 < 16) {
            em::wgmma_fence();
          } else {
            em::shfl_xor(1.0f, 1);
          }
        });
      },
      {"divergent warp", "wgmma_fence", "shfl_xor"});
}

TEST(Wgmma, OperandsMustAgreeAcrossTheWarpgroup) {
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t* a, float* d) {
          const uint64_t desc = t / 32 == 1 ? kErrorTestDesc + 1 : kErrorTestDesc;
          em::wgmma_m64k16(em::Element::BFloat16, 64, d, a, desc, false, false);
        });
      },
      {"divergent warpgroup", "different B descriptors"});
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char*, const uint32_t* a, float* d) {
          em::wgmma_m64k16(em::Element::BFloat16, t == 127 ? 32 : 64, d, a, kErrorTestDesc, false, false);
        });
      },
      {"divergent warpgroup", "different n"});
  expect_error<em::EmulationError>(
      [] { run_wgmma_kernel([](int t, char*, const uint32_t*, float*) { em::wgmma_wait_group(t == 5 ? 1 : 0); }); },
      {"divergent warpgroup", "wgmma.wait_group 0", "wgmma.wait_group 1"});
}

TEST(Wgmma, BadDescriptorsAndArgumentsAreErrors) {
  const auto issue = [](uint64_t desc, int n = 64) {
    run_wgmma_kernel([desc, n](int, char*, const uint32_t* a, float* d) {
      em::wgmma_m64k16(em::Element::Float16, n, d, a, desc, false, false);
    });
  };
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc | (uint64_t{1} << 62)); },
                                   {"swizzle mode 1", "128-byte", "not supported"});
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc | (uint64_t{3} << 62)); }, {"swizzle mode 3"});
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc | (uint64_t{3} << 49)); }, {"base offset 3"});
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc | (uint64_t{1} << 46)); }, {"outside every field"});
  // Start 512, SBO 512: B[15][63] lies at 512 + 7 * 512 + 128 + 7 * 16 + 7 * 2 = 4350, past the 4096 bytes.
  expect_error<em::EmulationError>(
      [&] { issue((uint64_t{512 >> 4}) | (uint64_t{128 >> 4} << 16) | (uint64_t{512 >> 4} << 32)); },
      {"wgmma B operand", "is not inside the 4096 bytes"});
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc, 12); }, {"n = 12"});
  expect_error<em::EmulationError>([&] { issue(kErrorTestDesc, 264); }, {"n = 264"});
  expect_error<em::EmulationError>(
      [] { run_wgmma_kernel([](int, char*, const uint32_t*, float*) { em::wgmma_wait_group(-1); }); },
      {"wait_group -1"});
  expect_error<em::EmulationError>(
      [] { run_wgmma_kernel([](int, char* smem, const uint32_t*, float*) { em::shared_address(smem + 4097); }); },
      {"shared_address", "does not point into the 4096 bytes"});
  expect_error<em::EmulationError>([] { em::wgmma_fence(); }, {"wgmma_fence()", "outside"});
}

TEST(Wgmma, SharedAddressIsTheOffsetInDynamicSharedMemory) {
  std::vector<uint32_t> got(128);
  run_wgmma_kernel([&](int t, char* smem, const uint32_t*, float*) {
    got[t] = em::shared_address(smem + 16 * t);
    em::fence_proxy_async();
  });
  for (uint32_t t = 0; t < 128; ++t) EXPECT_EQ(got[t], 16 * t);
}

// Writing B while the wgmma reading it may still run is a race; it is caught at the first wait_group.
TEST(Wgmma, OverwritingBBeforeTheWaitIsAnError) {
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int t, char* smem, const uint32_t* a, float* d) {
          em::wgmma_m64k16(em::Element::BFloat16, 64, d, a, kErrorTestDesc, false, false);
          em::wgmma_commit_group();
          if (t == 70) std::memset(smem + 256 * 3 + 128 + 16 * 2, 0, 2);  // B[8][26] (K-major)
          em::wgmma_wait_group(0);
        });
      },
      {"B[8][26]", "overwritten before a wgmma.wait_group retired"});
}

// Chaining is defined for the same shape only; other overlaps with an operation in flight need a wait first.
TEST(Wgmma, OverlappingAccumulatorsOfAnotherShapeAreAnError) {
  expect_error<em::EmulationError>(
      [] {
        run_wgmma_kernel([](int, char*, const uint32_t* a, float* d) {
          em::wgmma_m64k16(em::Element::BFloat16, 64, d, a, kErrorTestDesc, false, false);
          em::wgmma_m64k16(em::Element::BFloat16, 32, d + 8, a, kErrorTestDesc, false, true);
        });
      },
      {"another shape", "n = 64, here 32"});
}

}  // namespace
