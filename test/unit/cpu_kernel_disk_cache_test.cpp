// The on-disk cache of CPU kernels: an entry is built once and loaded afterwards, a damaged one is rebuilt, a cache
// that cannot be used falls back (to Halide's JIT) without compiling twice, and kernels loaded from the cache
// compute what the float64 reference does.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "compiler/ir/printer.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/kernel_disk_cache.h"
#include "targets/reference/reference_attention.h"
#include "test/unit/attention_test_inputs.h"
#include "test/unit/prelude_patterns.h"
#include "test/unit/scoped_resources.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using test::instantiate;

cpu::AttentionPipelineKey causal_key(const ir::Pattern& pattern, int64_t D) {
  cpu::AttentionPipelineKey key{ir::to_string(pattern), D, D};
  key.schedule = cpu::host_default_schedule();
  key.storage = cpu::StorageType::Float32;
  key.target = cpu::halide_target_string();
  return key;
}

// The pipeline of causal attention, counting how often the cache asks for it.
struct CountedBuild {
  ir::Pattern pattern = instantiate("causal");
  cpu::AttentionPipelineKey key = causal_key(pattern, 16);
  int builds = 0;
  std::shared_ptr<cpu::AttentionPipeline> operator()() {
    ++builds;
    return cpu::build_attention_pipeline(pattern, key);
  }
};

TEST(CpuKernelDiskCache, AnEntryIsBuiltOnceLoadedAfterwardsAndRebuiltWhenDamaged) {
  const test::TempDir dir;
  CountedBuild counted;
  const cpu::AttentionPipelineKey& key = counted.key;
  const int& builds = counted.builds;
  auto build = [&] { return counted(); };
  std::string why;
  ASSERT_NE(cpu::load_or_build_cached_kernel(key, build, dir.str(), why), nullptr) << why;
  EXPECT_EQ(builds, 1);
  const fs::path entry = dir.path() / cpu::cpu_kernel_cache_name(key);
  ASSERT_TRUE(fs::is_regular_file(entry));
  const auto size = fs::file_size(entry);

  const auto long_ago = fs::file_time_type::clock::now() - std::chrono::hours(24);
  fs::last_write_time(entry, long_ago);
  ASSERT_NE(cpu::load_or_build_cached_kernel(key, build, dir.str(), why), nullptr) << why;
  EXPECT_EQ(builds, 1) << "a valid entry is loaded, not rebuilt";
  EXPECT_GT(fs::last_write_time(entry), long_ago + std::chrono::hours(23)) << "loading marks the entry as used";

  {
    std::ofstream(entry, std::ios::app) << "x";  // appended garbage
  }
  ASSERT_NE(cpu::load_or_build_cached_kernel(key, build, dir.str(), why), nullptr) << why;
  EXPECT_EQ(builds, 2);
  EXPECT_EQ(fs::file_size(entry), size) << "the damaged entry is replaced";

  fs::resize_file(entry, size / 2);  // a torn write
  ASSERT_NE(cpu::load_or_build_cached_kernel(key, build, dir.str(), why), nullptr) << why;
  EXPECT_EQ(builds, 3);

  // Another key (here another schedule) is another entry.
  cpu::AttentionPipelineKey other = key;
  other.schedule.chunk_k = key.schedule.chunk_k / 2;
  EXPECT_NE(cpu::cpu_kernel_cache_name(other), cpu::cpu_kernel_cache_name(key));
  EXPECT_EQ(cpu::cpu_kernel_cache_name(causal_key(counted.pattern, 16)), cpu::cpu_kernel_cache_name(key));
}

// A kernel of the cache carries Halide's runtime, whose default error handler prints and aborts the process: a
// failing call must instead throw with Halide's message (here: Q rows of 8 features for a kernel of 16).
TEST(CpuKernelDiskCache, AFailingKernelThrowsHalidesMessageInsteadOfAborting) {
  const test::TempDir dir;
  CountedBuild counted;
  std::string why;
  const auto kernel = cpu::load_or_build_cached_kernel(
      counted.key, [&] { return counted(); }, dir.str(), why);
  ASSERT_NE(kernel, nullptr) << why;
  using tessera_cpu_driver::Buffer;
  const halide_type_t f32(halide_type_float, 32), i32(halide_type_int, 32);
  std::vector<float> floats(1024, 0.0f);
  std::vector<int32_t> ints(64, 0);
  // Inputs q, k, v, acc_in, max_in, sum_in, the chunk tables and counts; then the outputs: 4 rows, 16 keys.
  std::vector<Buffer> buffers = {Buffer::dense(floats.data(), f32, {8, 4, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {16, 16, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {16, 16, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {16, 4, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {4, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {4, 1, 1}),
                                 Buffer::dense(ints.data(), i32, {2, 1, 1}),
                                 Buffer::dense(ints.data(), i32, {2, 1, 1}),
                                 Buffer::dense(ints.data(), i32, {1}),
                                 Buffer::dense(ints.data(), i32, {1}),
                                 Buffer::dense(floats.data(), f32, {16, 4, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {4, 1, 1}),
                                 Buffer::dense(floats.data(), f32, {4, 1, 1})};
  // max_full, max_partial, heads, group, n_queries, m_keys, key_origin, keys_begin, keys_end
  std::array<int32_t, 9> scalars{1, 1, 1, 1, 4, 16, 0, 0, 16};
  float scale = 0.25f;
  std::vector<void*> args;
  for (size_t b = 0; b < 10; ++b) args.push_back(&buffers[b].buf);
  for (int32_t& value : scalars) args.push_back(&value);
  args.push_back(&scale);  // causal reads no run-time tensor or symbol
  for (size_t b = 10; b < 13; ++b) args.push_back(&buffers[b].buf);
  try {
    (*kernel)(args.data());
    ADD_FAILURE() << "the call succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Input buffer q"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Halide error"), std::string::npos) << e.what();
  }
}

TEST(CpuKernelDiskCache, AnUnusableCacheFallsBackWithoutCompiling) {
  const test::TempDir dir;
  CountedBuild counted;
  const cpu::AttentionPipelineKey& key = counted.key;
  auto build = [&] { return counted(); };
  std::string why;
  EXPECT_EQ(cpu::load_or_build_cached_kernel(key, build, "", why), nullptr);
  EXPECT_FALSE(why.empty());

  // A directory that cannot be created: below a regular file.
  std::ofstream(dir.path() / "file") << "not a directory";
  why.clear();
  EXPECT_EQ(cpu::load_or_build_cached_kernel(key, build, (dir.path() / "file" / "cache").string(), why), nullptr);
  EXPECT_FALSE(why.empty());

  // No C compiler to link with.
  {
    const test::ScopedEnv cc("CC", "/nonexistent/cc");
    why.clear();
    EXPECT_EQ(cpu::load_or_build_cached_kernel(key, build, dir.str(), why), nullptr);
    EXPECT_NE(why.find("/nonexistent/cc"), std::string::npos) << why;
  }
  EXPECT_EQ(counted.builds, 0) << "nothing is compiled for a cache that cannot take it";
}

TEST(CpuKernelDiskCache, TrimmingRemovesTheLeastRecentlyUsedKernelsOnly) {
  const test::TempDir dir;
  const auto now = fs::file_time_type::clock::now();
  for (int n = 0; n < 8; ++n) {  // k0.so oldest ... k7.so newest, 1000 bytes each
    const fs::path path = dir.path() / ("k" + std::to_string(n) + ".so");
    std::ofstream(path) << std::string(1000, 'x');
    fs::last_write_time(path, now - std::chrono::hours(8 - n));
  }
  std::ofstream(dir.path() / "runtime-0123.o") << std::string(5000, 'r');
  cpu::trim_cpu_kernel_cache(dir.str(), 8000);  // within the bound: nothing goes
  EXPECT_TRUE(fs::exists(dir.path() / "k0.so"));
  cpu::trim_cpu_kernel_cache(dir.str(), 6000);  // down to 4500 bytes: the four oldest go
  for (int n = 0; n < 8; ++n) {
    EXPECT_EQ(fs::exists(dir.path() / ("k" + std::to_string(n) + ".so")), n >= 4) << n;
  }
  EXPECT_TRUE(fs::exists(dir.path() / "runtime-0123.o")) << "only kernel entries are trimmed";
}

// Through cpu::attention, with shapes no other test uses (the process keeps the kernels it compiled): the kernels
// come from the directory given by TESSERA_CPU_KERNEL_CACHE, or from the JIT when it is empty.
TEST(CpuKernelDiskCache, KernelsFromTheCacheAndFromTheJitMatchTheReference) {
  const test::TempDir dir;
  // Long enough to be re-indexed (as in CpuAttentionReindexed): two plan components, two kernels.
  const std::string expression = "strided(stride=16) & alibi";
  const ir::Pattern pattern = instantiate(expression);
  {
    const test::ScopedEnv cache("TESSERA_CPU_KERNEL_CACHE", dir.str().c_str());
    const test::Shape s{1, 2, 1, 600, 600, 24, 40};
    test::RandomProblem problem(pattern, s, 11);
    const runtime::Tensor got = cpu::attention(pattern, problem.inputs);
    EXPECT_LE(test::max_abs_difference(got, reference::attention_f64(pattern, problem.inputs)), 2e-4);
    int entries = 0;
    for (const auto& file : fs::directory_iterator(dir.path())) entries += file.path().extension() == ".so";
    EXPECT_EQ(entries, 2);
  }
  {
    const test::ScopedEnv cache("TESSERA_CPU_KERNEL_CACHE", "");
    const test::Shape s{1, 2, 1, 600, 600, 24, 24};
    test::RandomProblem problem(pattern, s, 12);
    const runtime::Tensor got = cpu::attention(pattern, problem.inputs);
    EXPECT_LE(test::max_abs_difference(got, reference::attention_f64(pattern, problem.inputs)), 2e-4);
  }
}

}  // namespace
}  // namespace tessera
