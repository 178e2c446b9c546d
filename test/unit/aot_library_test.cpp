// Ahead-of-time libraries, as an application uses them: `tessera compile` writes the library and header, a
// separate program built with the system compiler links only them, and its output must match the float64
// reference. Covers the example program in examples/aot/ (C), and through a generic harness plans with several
// components (residue classes, column sets, column blocks), run-time tensors, GQA, N != M and batch chosen per call.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>

#include "compiler/sema/pattern_library.h"
#include "runtime/npy.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/prelude_patterns.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

int run(const std::string& command) { return std::system((command + " > /dev/null").c_str()); }

class AotLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tessera_aot_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

using test::instantiate;

double max_abs_difference(const runtime::Tensor& a, const runtime::Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double worst = 0;
  for (int64_t e = 0; e < a.numel(); ++e) {
    const double x = a.data<float>()[e], y = b.data<float>()[e];
    if (std::isnan(x) || std::isnan(y)) {
      if (std::isnan(x) != std::isnan(y)) return std::numeric_limits<double>::infinity();
      continue;
    }
    worst = std::max(worst, std::abs(x - y));
  }
  return worst;
}

TEST_F(AotLibraryTest, ExampleProgramLinksTheLibraryAndMatchesTheReference) {
  const std::string pattern = "causal & sliding_window(window=256)";
  const fs::path lib = dir_ / "lib";
  const std::string compile =
      fmt::format("{} compile --pattern '{}' --heads 4 --kv-heads 2 --seq 512 --head-dim 64 --lib-name example -o {}",
                  TESSERA_BINARY, pattern, lib.string());
  ASSERT_EQ(run(compile), 0) << compile;
  const std::string build = fmt::format(
      "{} -std=c11 -Wall -Wextra -Werror -I {} {}/examples/aot/attention_example.c {}/libtessera_example.a "
      "-lstdc++ -lpthread -ldl -lm -o {}/app",
      TESSERA_C_COMPILER, lib.string(), TESSERA_SOURCE_DIR, lib.string(), dir_.string());
  ASSERT_EQ(run(build), 0) << build;
  ASSERT_EQ(run((dir_ / "app").string() + " " + dir_.string()), 0);

  runtime::Tensor q = runtime::read_npy((dir_ / "q.npy").string());
  runtime::Tensor k = runtime::read_npy((dir_ / "k.npy").string());
  runtime::Tensor v = runtime::read_npy((dir_ / "v.npy").string());
  runtime::Tensor out = runtime::read_npy((dir_ / "out.npy").string());
  reference::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  EXPECT_LE(max_abs_difference(out, reference::attention(instantiate(pattern), inputs)), 2e-4);
}

struct Case {
  std::string pattern;
  int64_t batch, H, Hkv, N, M, D, Dv;
  std::string extra_flags;  // e.g. --size R=9
  bool nan_in_v = false;    // a NaN in the last key's value row: only rows allowed to see it turn NaN
  bool bf16 = false;        // --dtype bf16: the library takes bf16 bits; the reference sees the rounded values
};

// bf16 bits of a float32 (round to nearest even; finite inputs only here) and the float32 they stand for.
uint16_t bf16_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

float bf16_value(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}

// Writes t as bf16 bits and replaces its values with the rounded ones.
void write_bf16(const fs::path& path, runtime::Tensor& t) {
  std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
  for (size_t e = 0; e < bits.size(); ++e) {
    bits[e] = bf16_bits(t.data<float>()[e]);
    t.data<float>()[e] = bf16_value(bits[e]);
  }
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bits.data()), static_cast<std::streamsize>(bits.size() * 2));
}

class AotLibraryCases : public AotLibraryTest, public ::testing::WithParamInterface<Case> {};

void write_raw(const fs::path& path, const runtime::Tensor& t) {
  std::ofstream(path, std::ios::binary)
      .write(static_cast<const char*>(t.raw_data()), static_cast<std::streamsize>(t.numel() * 4));
}

TEST_P(AotLibraryCases, MatchesReference) {
  const Case& c = GetParam();
  SCOPED_TRACE(c.pattern);
  const fs::path lib = dir_ / "lib";
  const std::string compile = fmt::format(
      "{} compile --pattern '{}' --heads {} --kv-heads {} --seq {} --keys {} --head-dim {} --value-dim {} "
      "{} --dtype {} --lib-name under_test -o {}",
      TESSERA_BINARY, c.pattern, c.H, c.Hkv, c.N, c.M, c.D, c.Dv, c.extra_flags, c.bf16 ? "bf16" : "f32", lib.string());
  ASSERT_EQ(run(compile), 0) << compile;
  const std::string build =
      fmt::format("{} -std=c++17 -I {} {}/test/aot/aot_harness.cpp {}/libtessera_under_test.a -lpthread -ldl -o {}/app",
                  TESSERA_CXX_COMPILER, lib.string(), TESSERA_SOURCE_DIR, lib.string(), dir_.string());
  ASSERT_EQ(run(build), 0) << build;

  ir::Pattern pattern = instantiate(c.pattern);
  std::mt19937_64 rng(11);
  auto random = [&](std::vector<int64_t> shape, float stddev) {
    runtime::Tensor t(runtime::DType::Float32, std::move(shape));
    std::normal_distribution<float> normal(0.0f, stddev);
    for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = normal(rng);
    return t;
  };
  runtime::Tensor q = random({c.batch, c.H, c.N, c.D}, 1.0f);
  runtime::Tensor k = random({c.batch, c.Hkv, c.M, c.D}, 1.0f);
  runtime::Tensor v = random({c.batch, c.Hkv, c.M, c.Dv}, 1.0f);
  runtime::Tensor rel = random({c.H, 9, c.D}, 0.5f);
  runtime::Tensor segments(runtime::DType::Int32, {c.batch, c.M});
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t m = 0; m < c.M; ++m) segments.data<int32_t>()[b * c.M + m] = static_cast<int32_t>((m * 5) / c.M + b);
  }
  if (c.nan_in_v) v.data<float>()[v.numel() - 1] = std::numeric_limits<float>::quiet_NaN();
  if (c.bf16) {
    write_bf16(dir_ / "q.bin", q);
    write_bf16(dir_ / "k.bin", k);
    write_bf16(dir_ / "v.bin", v);
  } else {
    write_raw(dir_ / "q.bin", q);
    write_raw(dir_ / "k.bin", k);
    write_raw(dir_ / "v.bin", v);
  }
  reference::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  int tensor = 0;  // the library takes its run-time tensors ordered by name
  for (const auto& [name, t] : std::map<std::string, runtime::Tensor*>{{"rel", &rel}, {"segments", &segments}}) {
    if (!pattern.input(name)) continue;
    inputs.tensors[name] = t;
    write_raw(dir_ / ("tensor" + std::to_string(tensor++) + ".bin"), *t);
  }
  ASSERT_EQ(run(fmt::format("{}/app {} {}", dir_.string(), dir_.string(), c.batch)), 0);

  runtime::Tensor out(runtime::DType::Float32, {c.batch, c.H, c.N, c.Dv});
  std::ifstream(dir_ / "out.bin", std::ios::binary)
      .read(static_cast<char*>(out.raw_data()), static_cast<std::streamsize>(out.numel() * 4));
  EXPECT_LE(max_abs_difference(out, reference::attention(pattern, inputs)), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(
    Patterns, AotLibraryCases,
    ::testing::Values(Case{"strided(stride=16)", 2, 2, 1, 600, 600, 32, 32, ""},
                      Case{"fixed(block=32, summary=4) & alibi", 1, 4, 2, 333, 640, 16, 24, ""},
                      Case{"causal & document", 3, 2, 2, 200, 300, 32, 16, "", true},
                      Case{"causal & relative", 2, 2, 1, 150, 150, 16, 16, "--size R=9"},
                      Case{"strided(stride=16) & alibi", 2, 4, 2, 500, 520, 32, 32, "", false, true},
                      // A decoding step: one query, the one-row tile schedule
                      Case{"causal & alibi", 2, 4, 2, 1, 300, 32, 40, ""},
                      // Two queries in one-row tiles, their keys split in three parts merged by the library's driver
                      Case{"sliding_window(window=200) & alibi", 1, 3, 1, 2, 500, 32, 32,
                           "--schedule block_q=1,vector_width=1,kv_splits=3"},
                      // Column blocks: views of runs of query columns, packed by the driver
                      Case{"local2d(width=64, block_h=8, block_w=8, halo_h=8, halo_w=8)", 2, 2, 1, 1024, 1024, 32, 32,
                           "--schedule block_q=64,block_k=64"}),
    [](const auto& info) { return "case" + std::to_string(info.index); });

}  // namespace
}  // namespace tessera
