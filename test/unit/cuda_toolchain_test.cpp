// The CUDA toolchain without a GPU: NVRTC compiles real tensor-core code to PTX that ptxas accepts, errors show
// the generated source, the PTX cache is keyed, repaired and safe under concurrency, and the driver loader
// reports a missing driver as NoCudaDevice. On a machine with a GPU the same tests run small kernels instead.
#include <dlfcn.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "targets/cuda/cuda_driver.h"
#include "targets/cuda/nvrtc_compiler.h"
#include "test/unit/expect_error.h"
#include "test/unit/scoped_resources.h"

namespace tessera::cuda {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using test::ScopedEnv;
using test::TempDir;

constexpr std::string_view kMmaInstruction = "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";

// A header the mma kernel needs: packing two bf16 values into the .b32 register an mma operand takes, the lower
// element index in the lower half as the PTX ISA specifies.
const std::pair<std::string, std::string> kPackHeader = {"tessera_test/pack.cuh", R"(#pragma once
__device__ __forceinline__ unsigned pack_bf16x2(unsigned short low, unsigned short high) {
  return static_cast<unsigned>(low) | (static_cast<unsigned>(high) << 16);
}
)"};

// D[16x8] = A[16x16] * B[16x8] with one warp and one mma.sync: A, B and D row-major in global memory, loaded into
// the fragment layout of the PTX ISA (groupID = lane / 4, threadID_in_group = lane % 4).
constexpr const char* kMmaKernel = R"(#include "tessera_test/pack.cuh"

extern "C" __global__ void mma_bf16(const unsigned short* a, const unsigned short* b, float* d) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  const unsigned a0 = pack_bf16x2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
  const unsigned a1 = pack_bf16x2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
  const unsigned a2 = pack_bf16x2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
  const unsigned a3 = pack_bf16x2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
  const unsigned b0 = pack_bf16x2(b[(2 * t) * 8 + g], b[(2 * t + 1) * 8 + g]);
  const unsigned b1 = pack_bf16x2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
  float d0 = 0.0f, d1 = 0.0f, d2 = 0.0f, d3 = 0.0f;
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  d[g * 8 + 2 * t] = d0;
  d[g * 8 + 2 * t + 1] = d1;
  d[(g + 8) * 8 + 2 * t] = d2;
  d[(g + 8) * 8 + 2 * t + 1] = d3;
}
)";

NvrtcSource mma_source() { return NvrtcSource{"tessera_mma_test.cu", kMmaKernel, {kPackHeader}, {}}; }

// A small kernel whose PTX depends on a macro, for cache-key tests.
NvrtcSource scale_source(const std::vector<std::string>& options = {}) {
  return NvrtcSource{"tessera_scale_test.cu",
                     R"(#ifndef SCALE
#define SCALE 1
#endif
extern "C" __global__ void scale(float* x) { x[threadIdx.x] *= SCALE; }
)",
                     {},
                     options};
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<std::string> directory_listing(const fs::path& directory) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// --- architectures ----------------------------------------------------------------------------------------------

TEST(CudaArch, ParsesSupportedArchitectures) {
  EXPECT_EQ(parse_cuda_arch("sm_80"), (CudaArch{8, 0, false}));
  EXPECT_EQ(parse_cuda_arch("sm_86"), (CudaArch{8, 6, false}));
  EXPECT_EQ(parse_cuda_arch("sm_90"), (CudaArch{9, 0, false}));
  EXPECT_EQ(parse_cuda_arch("sm_90a"), (CudaArch{9, 0, true}));
  EXPECT_EQ(parse_cuda_arch("sm_120"), (CudaArch{12, 0, false}));
  for (const char* name : {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100a"}) {
    EXPECT_EQ(arch_name(parse_cuda_arch(name)), name);
  }
}

TEST(CudaArch, RejectsOthersNamingThem) {
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_70"); },
                                {"unsupported CUDA architecture 'sm_70'", "Tessera needs sm_80 or newer"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_75"); }, {"'sm_75'", "sm_80 or newer"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("gpu"); }, {"unsupported CUDA architecture 'gpu'"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_80a"); }, {"'sm_80a'"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_"); }, {"'sm_'"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_080"); }, {"'sm_080'"});
  expect_error<UnsupportedArch>([] { parse_cuda_arch("compute_80"); }, {"'compute_80'"});
  // Well-formed but unknown to NVRTC: the message lists what it does know.
  expect_error<UnsupportedArch>([] { parse_cuda_arch("sm_99"); }, {"'sm_99'", "sm_80"});
  // UnsupportedArch is a user error, which the CLI reports as such.
  EXPECT_TRUE((std::is_base_of_v<std::runtime_error, UnsupportedArch>));
}

// --- compiling --------------------------------------------------------------------------------------------------

TEST(Nvrtc, VersionIsMajorDotMinor) {
  const std::string version = nvrtc_version();
  const size_t dot = version.find('.');
  ASSERT_NE(dot, std::string::npos) << version;
  EXPECT_GE(std::stoi(version.substr(0, dot)), 11) << version;
  EXPECT_NO_THROW((void)std::stoi(version.substr(dot + 1))) << version;
}

TEST(Nvrtc, TensorCoreKernelCompilesAndAssemblesForSm80AndSm90a) {
  const std::string ptxas = find_cuda_tool("ptxas");
  for (const char* name : {"sm_80", "sm_90a"}) {
    SCOPED_TRACE(name);
    const CudaArch arch = parse_cuda_arch(name);
    const NvrtcResult result = compile_to_ptx(mma_source(), arch, "");
    EXPECT_FALSE(result.from_cache);
    EXPECT_NE(result.ptx.find(fmt::format(".target {}", name)), std::string::npos) << result.ptx.substr(0, 400);
    EXPECT_NE(result.ptx.find(kMmaInstruction), std::string::npos);
    EXPECT_NE(result.ptx.find(".entry mma_bf16"), std::string::npos);
    // -lineinfo: the PTX refers back to the generated source by name, so profilers can show it.
    EXPECT_NE(result.ptx.find("tessera_mma_test.cu"), std::string::npos);
    EXPECT_NE(result.ptx.find(".loc"), std::string::npos);
    if (ptxas.empty()) continue;
    const PtxasReport report = assemble_ptx(result.ptx, arch, ptxas);
    EXPECT_TRUE(report.ok) << report.log;
    EXPECT_NE(report.log.find("registers"), std::string::npos) << report.log;
    EXPECT_NE(report.log.find("mma_bf16"), std::string::npos) << report.log;
  }
  if (ptxas.empty()) GTEST_SKIP() << "ptxas not found: PTX checked, assembly not";
}

TEST(Nvrtc, PtxasRejectsBrokenPtx) {
  const std::string ptxas = find_cuda_tool("ptxas");
  if (ptxas.empty()) GTEST_SKIP() << "ptxas not found";
  std::string ptx = compile_to_ptx(mma_source(), CudaArch{8, 0, false}, "").ptx;
  const size_t at = ptx.find(kMmaInstruction);
  ASSERT_NE(at, std::string::npos);
  ptx.replace(at, kMmaInstruction.size(), "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f64");
  const PtxasReport report = assemble_ptx(ptx, CudaArch{8, 0, false}, ptxas);
  EXPECT_FALSE(report.ok);
  EXPECT_NE(report.log.find("error"), std::string::npos) << report.log;
}

TEST(Nvrtc, AssemblingWithAMissingPtxasThrows) {
  expect_error<std::runtime_error>([] { assemble_ptx(".version 8.0\n", CudaArch{}, "/nonexistent/ptxas"); },
                                   {"/nonexistent/ptxas"});
}

TEST(Nvrtc, HeadersAreFoundByInclude) {
  NvrtcSource source = mma_source();
  EXPECT_NO_THROW(compile_to_ptx(source, CudaArch{}, ""));
  source.headers.clear();
  expect_error<NvrtcError>([&] { compile_to_ptx(source, CudaArch{}, ""); },
                           {"tessera_mma_test.cu(1)", "tessera_test/pack.cuh"});
}

TEST(Nvrtc, ExtraOptionsReachTheCompiler) {
  const std::string plain = compile_to_ptx(scale_source(), CudaArch{}, "").ptx;
  const std::string scaled = compile_to_ptx(scale_source({"-DSCALE=3"}), CudaArch{}, "").ptx;
  EXPECT_NE(plain, scaled);
  EXPECT_NE(scaled.find("0f40400000"), std::string::npos) << scaled;  // 3.0f as PTX writes it
  expect_error<NvrtcError>([] { compile_to_ptx(scale_source({"--no-such-option"}), CudaArch{}, ""); },
                           {"tessera_scale_test.cu", "--no-such-option"});
}

TEST(Nvrtc, SyntaxErrorShowsLineNumberAndSourceLine) {
  const NvrtcSource source{"broken_kernel.cu",
                           "extern \"C\" __global__ void broken(float* x) {\n"
                           "  const int i = threadIdx.x;\n"
                           "  x[i] = undefined_name * 2.0f;\n"
                           "}\n",
                           {},
                           {}};
  expect_error<NvrtcError>(
      [&] { compile_to_ptx(source, CudaArch{}, ""); },
      {"broken_kernel.cu for sm_80", "broken_kernel.cu(3): error", "undefined_name", "x[i] = undefined_name * 2.0f;"});
}

TEST(Nvrtc, ErrorInAHeaderQuotesTheHeaderLine) {
  const NvrtcSource source{"uses_header.cu",
                           "#include \"bad.cuh\"\nextern \"C\" __global__ void k(float* x) { x[0] = helper(); }\n",
                           {{"bad.cuh", "__device__ float helper() {\n  return missing_value;\n}\n"}},
                           {}};
  expect_error<NvrtcError>([&] { compile_to_ptx(source, CudaArch{}, ""); },
                           {"bad.cuh(2): error", "return missing_value;"});
}

TEST(Nvrtc, QuoteErrorLinesAddsMissingQuotesOnly) {
  const NvrtcSource source{"a.cu", "line one\n  line two\nline three\n", {{"h.cuh", "header one\n"}}, {}};
  // As older NVRTC versions write it: no quoted lines.
  EXPECT_EQ(quote_error_lines("a.cu(2): error: bad\nh.cuh(1): catastrophic error: worse\n"
                              "a.cu(3): warning #1: meh\n2 errors detected\n",
                              source),
            "a.cu(2): error: bad\n    line two\nh.cuh(1): catastrophic error: worse\n  header one\n"
            "a.cu(3): warning #1: meh\n2 errors detected\n");
  // As NVRTC 13 writes it: already quoted (with a caret line), left alone.
  const std::string quoted = "a.cu(2): error: bad\n    line two\n    ^\n\n";
  EXPECT_EQ(quote_error_lines(quoted, source), quoted);
  // Lines out of range, unknown files, and text that merely looks like a location are left alone.
  const std::string other = "a.cu(9): error: x\nb.cu(1): error: y\nsee (1): error\nf(): error\n";
  EXPECT_EQ(quote_error_lines(other, source), other);
}

// --- the cache --------------------------------------------------------------------------------------------------

TEST(Sha256, MatchesFips180Vectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(KernelCache, KeyDependsOnEverythingThePtxDependsOn) {
  const NvrtcSource base = mma_source();
  const std::string key = kernel_cache_key(base, CudaArch{});
  EXPECT_EQ(key.size(), 64 + 4) << key;
  EXPECT_TRUE(key.ends_with(".ptx"));
  EXPECT_EQ(kernel_cache_key(mma_source(), CudaArch{}), key);  // stable

  std::vector<NvrtcSource> variants(6, base);
  variants[0].text += "\n";
  variants[1].headers[0].second += "\n";
  variants[2].headers[0].first = "tessera_test/pack2.cuh";
  variants[3].options = {"-DX=1"};
  variants[4].name = "other.cu";
  variants[5].headers.push_back({"extra.cuh", ""});
  for (const NvrtcSource& variant : variants) EXPECT_NE(kernel_cache_key(variant, CudaArch{}), key);
  EXPECT_NE(kernel_cache_key(base, CudaArch{9, 0, true}), key);
  EXPECT_NE(kernel_cache_key(base, CudaArch{9, 0, true}), kernel_cache_key(base, CudaArch{9, 0, false}));
  // Moving text from one option to the next is a different compilation and must be a different key.
  NvrtcSource split = base, joined = base;
  split.options = {"-DA", "-DB"};
  joined.options = {"-DA-DB"};
  EXPECT_NE(kernel_cache_key(split, CudaArch{}), kernel_cache_key(joined, CudaArch{}));
}

TEST(KernelCache, SecondCompileComesFromTheCache) {
  const TempDir cache;
  const NvrtcResult first = compile_to_ptx(mma_source(), CudaArch{}, cache.str());
  EXPECT_FALSE(first.from_cache);
  EXPECT_EQ(directory_listing(cache.path()), std::vector<std::string>{kernel_cache_key(mma_source(), CudaArch{})});
  const NvrtcResult second = compile_to_ptx(mma_source(), CudaArch{}, cache.str());
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(second.ptx, first.ptx);
  // And the cached PTX is what an uncached compile produces.
  EXPECT_EQ(second.ptx, compile_to_ptx(mma_source(), CudaArch{}, "").ptx);
}

TEST(KernelCache, ChangedOptionOrArchMisses) {
  const TempDir cache;
  EXPECT_FALSE(compile_to_ptx(scale_source(), CudaArch{}, cache.str()).from_cache);
  const NvrtcResult option = compile_to_ptx(scale_source({"-DSCALE=5"}), CudaArch{}, cache.str());
  EXPECT_FALSE(option.from_cache);
  EXPECT_NE(option.ptx.find("0f40A00000"), std::string::npos);  // 5.0f: compiled with the option
  const NvrtcResult arch = compile_to_ptx(scale_source(), CudaArch{9, 0, true}, cache.str());
  EXPECT_FALSE(arch.from_cache);
  EXPECT_NE(arch.ptx.find(".target sm_90a"), std::string::npos);
  EXPECT_EQ(directory_listing(cache.path()).size(), 3u);
  EXPECT_TRUE(compile_to_ptx(scale_source({"-DSCALE=5"}), CudaArch{}, cache.str()).from_cache);
  EXPECT_TRUE(compile_to_ptx(scale_source(), CudaArch{9, 0, true}, cache.str()).from_cache);
}

TEST(KernelCache, CorruptEntriesAreRecompiledAndRewritten) {
  const TempDir cache;
  const std::string ptx = compile_to_ptx(scale_source(), CudaArch{}, cache.str()).ptx;
  const fs::path entry = cache.path() / kernel_cache_key(scale_source(), CudaArch{});
  const std::string good = read_file(entry);
  ASSERT_FALSE(good.empty());
  const std::vector<std::string> corruptions = {
      "",                                // empty (a crash before the data reached the disk)
      good.substr(0, good.size() / 2),   // truncated
      good.substr(0, good.size() - 1),   // missing the last newline
      good + "garbage\n",                // appended to
      "junk" + good.substr(4),           // PTX changed, trailer intact
      std::string(good.size(), '\xff'),  // binary garbage
  };
  for (size_t i = 0; i < corruptions.size(); ++i) {
    SCOPED_TRACE(i);
    write_file(entry, corruptions[i]);
    const NvrtcResult result = compile_to_ptx(scale_source(), CudaArch{}, cache.str());
    EXPECT_FALSE(result.from_cache);
    EXPECT_EQ(result.ptx, ptx);
    EXPECT_EQ(read_file(entry), good);  // rewritten
    EXPECT_TRUE(compile_to_ptx(scale_source(), CudaArch{}, cache.str()).from_cache);
  }
  // An entry written for another key (a file copied under the wrong name) is not trusted either.
  write_file(entry, read_file(cache.path() / kernel_cache_key(scale_source(), CudaArch{})));
  const NvrtcSource other = scale_source({"-DSCALE=5"});
  compile_to_ptx(other, CudaArch{}, cache.str());
  fs::copy_file(cache.path() / kernel_cache_key(other, CudaArch{}), entry, fs::copy_options::overwrite_existing);
  const NvrtcResult result = compile_to_ptx(scale_source(), CudaArch{}, cache.str());
  EXPECT_FALSE(result.from_cache);
  EXPECT_EQ(result.ptx, ptx);
}

TEST(KernelCache, UnreadableEntryIsRecompiledNotAnError) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files regardless of permissions";
  const TempDir cache;
  const std::string ptx = compile_to_ptx(scale_source(), CudaArch{}, cache.str()).ptx;
  const fs::path entry = cache.path() / kernel_cache_key(scale_source(), CudaArch{});
  fs::permissions(entry, fs::perms::none);
  const NvrtcResult result = compile_to_ptx(scale_source(), CudaArch{}, cache.str());
  EXPECT_FALSE(result.from_cache);
  EXPECT_EQ(result.ptx, ptx);
  // The rename replaced the unreadable file with a readable one.
  EXPECT_TRUE(compile_to_ptx(scale_source(), CudaArch{}, cache.str()).from_cache);
}

TEST(KernelCache, EntryThatIsADirectoryIsNotAnError) {
  const TempDir cache;
  fs::create_directories(cache.path() / kernel_cache_key(scale_source(), CudaArch{}) / "inside");
  const NvrtcResult result = compile_to_ptx(scale_source(), CudaArch{}, cache.str());
  EXPECT_FALSE(result.from_cache);
  EXPECT_EQ(result.ptx, compile_to_ptx(scale_source(), CudaArch{}, "").ptx);
  EXPECT_NE(result.log.find("not cached"), std::string::npos) << result.log;
  EXPECT_EQ(directory_listing(cache.path()).size(), 1u);  // the temporary file was removed
}

TEST(KernelCache, UnwritableCacheOnlyAddsANote) {
  const TempDir temp;
  write_file(temp.path() / "file", "not a directory");
  const std::string cache = (temp.path() / "file" / "cache").string();
  const NvrtcResult result = compile_to_ptx(scale_source(), CudaArch{}, cache);
  EXPECT_FALSE(result.from_cache);
  EXPECT_EQ(result.ptx, compile_to_ptx(scale_source(), CudaArch{}, "").ptx);
  EXPECT_NE(result.log.find("not cached"), std::string::npos) << result.log;
}

TEST(KernelCache, ConcurrentCompilesOfTheSameSourceBothSucceed) {
  const TempDir cache;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    const NvrtcSource source = scale_source({fmt::format("-DSCALE={}", round + 10)});
    std::vector<std::string> ptx(2);
    std::vector<std::string> errors(2);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        try {
          ptx[t] = compile_to_ptx(source, CudaArch{}, cache.str()).ptx;
        } catch (const std::exception& e) {
          errors[t] = e.what();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(errors, std::vector<std::string>(2));
    EXPECT_FALSE(ptx[0].empty());
    EXPECT_EQ(ptx[0], ptx[1]);
    EXPECT_TRUE(compile_to_ptx(source, CudaArch{}, cache.str()).from_cache);
  }
  // No temporary files left behind: only the three entries.
  EXPECT_EQ(directory_listing(cache.path()).size(), 3u);
}

TEST(KernelCache, DefaultDirectoryHonoursXdgThenHome) {
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", "/xdg/cache");
    const ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_kernel_cache_dir(), "/xdg/cache/tessera/cuda");
  }
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", "");
    const ScopedEnv home("HOME", "/home/someone");
    EXPECT_EQ(default_kernel_cache_dir(), "/home/someone/.cache/tessera/cuda");
  }
  {
    const ScopedEnv xdg("XDG_CACHE_HOME", nullptr);
    const ScopedEnv home("HOME", nullptr);
    EXPECT_EQ(default_kernel_cache_dir(), "");
  }
}

// --- tools ------------------------------------------------------------------------------------------------------

TEST(CudaTools, FoundInCudaHomeThenPath) {
  const TempDir root;
  fs::create_directories(root.path() / "bin");
  fs::create_directories(root.path() / "elsewhere");
  for (const fs::path& tool : {root.path() / "bin" / "tessera-fake-tool", root.path() / "elsewhere" / "only-on-path",
                               root.path() / "elsewhere" / "not-executable"}) {
    write_file(tool, "#!/bin/sh\n");
    fs::permissions(tool, tool.filename() == "not-executable" ? fs::perms::owner_read : fs::perms::owner_all);
  }
  const ScopedEnv cuda_home("CUDA_HOME", root.str().c_str());
  const std::string path = fmt::format("/nonexistent::{}", (root.path() / "elsewhere").string());
  const ScopedEnv path_env("PATH", path.c_str());
  EXPECT_EQ(find_cuda_tool("tessera-fake-tool"), (root.path() / "bin" / "tessera-fake-tool").string());
  EXPECT_EQ(find_cuda_tool("only-on-path"), (root.path() / "elsewhere" / "only-on-path").string());
  EXPECT_EQ(find_cuda_tool("not-executable"), "");
  EXPECT_EQ(find_cuda_tool("tessera-no-such-tool"), "");
}

// --- the driver -------------------------------------------------------------------------------------------------

// Independently of cuda_driver.cpp: is there a driver library at all?
bool driver_library_present() {
  void* library = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) return false;
  ::dlclose(library);
  return true;
}

TEST(CudaDriver, WithoutADriverThereIsNoDevice) {
  if (driver_library_present()) GTEST_SKIP() << "libcuda.so.1 is present; CudaDriver.RunsKernels covers this machine";
  EXPECT_FALSE(cuda_device_available());
  expect_error<NoCudaDevice>([] { CudaContext::get(); }, {"libcuda.so.1"});
  try {
    CudaContext::get();
  } catch (const NoCudaDevice& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("no CUDA device: ")) << e.what();
  }
  // Everything else needs the context and reports the same.
  expect_error<NoCudaDevice>([] { DeviceBuffer buffer(16); }, {"no CUDA device"});
  expect_error<NoCudaDevice>([] { CudaModule::load(".version 8.0\n"); }, {"no CUDA device"});
  expect_error<NoCudaDevice>([] { synchronize(); }, {"no CUDA device"});
  expect_error<NoCudaDevice>([] { CudaTimer timer; }, {"no CUDA device"});
  // A zero-byte buffer needs no device.
  EXPECT_EQ(DeviceBuffer(0).ptr(), 0u);
}

TEST(CudaDriver, RunsKernels) {
  if (!driver_library_present())
    GTEST_SKIP() << "no libcuda.so.1; CudaDriver.WithoutADriverThereIsNoDevice covers this";
  if (!cuda_device_available()) {
    // A driver without a usable device (none, or older than sm_80): still reported as NoCudaDevice.
    expect_error<NoCudaDevice>([] { CudaContext::get(); }, {"no CUDA device: "});
    GTEST_SKIP() << "driver present but no usable device";
  }
  CudaContext& context = CudaContext::get();
  EXPECT_GE(context.arch().major, 8);
  EXPECT_EQ(context.arch().accelerated, context.arch().major == 9);
  EXPECT_FALSE(context.device_name().empty());
  EXPECT_GT(context.multiprocessor_count(), 0);

  // The tensor-core kernel against a float reference. Small integers are exact in bf16 and their sums in f32.
  const auto bf16 = [](float value) {
    uint32_t bits = 0;
    std::memcpy(&bits, &value, 4);
    return static_cast<uint16_t>(bits >> 16);
  };
  std::vector<float> a(16 * 16), b(16 * 8), expected(16 * 8, 0.0f);
  std::vector<uint16_t> a16, b16;
  for (int i = 0; i < 16 * 16; ++i) a[i] = static_cast<float>((i * 7) % 9 - 4);
  for (int i = 0; i < 16 * 8; ++i) b[i] = static_cast<float>((i * 5) % 11 - 5);
  for (float x : a) a16.push_back(bf16(x));
  for (float x : b) b16.push_back(bf16(x));
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      for (int k = 0; k < 16; ++k) expected[m * 8 + n] += a[m * 16 + k] * b[k * 8 + n];
    }
  }
  const CudaModule mma = CudaModule::load(compile_to_ptx(mma_source(), context.arch(), "").ptx);
  DeviceBuffer da(a16.size() * 2), db(b16.size() * 2), dd(expected.size() * 4);
  da.upload(a16.data(), da.size());
  db.upload(b16.data(), db.size());
  dd.zero();
  uint64_t pa = da.ptr(), pb = db.ptr(), pd = dd.ptr();
  std::array<void*, 3> mma_args = {&pa, &pb, &pd};
  launch_kernel(mma.function("mma_bf16"), {1, 1, 1}, {32, 1, 1}, 0, mma_args.data());
  synchronize();
  std::vector<float> d(expected.size(), -1.0f);
  dd.download(d.data(), dd.size());
  EXPECT_EQ(d, expected);

  // Dynamic shared memory above 48 KiB, which needs the opt-in launch_kernel does.
  constexpr int kCount = 16384;  // 64 KiB of floats
  const NvrtcSource reverse{"tessera_reverse_test.cu",
                            R"(
extern "C" __global__ void reverse_through_shared(const float* in, float* out, int n) {
  extern __shared__ float tile[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = in[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = tile[n - 1 - i];
}
)",
                            {},
                            {}};
  const CudaModule module = CudaModule::load(compile_to_ptx(reverse, context.arch(), "").ptx);
  std::vector<float> input(kCount);
  for (int i = 0; i < kCount; ++i) input[i] = static_cast<float>(i) * 0.5f;
  DeviceBuffer in(kCount * 4), out(kCount * 4);
  in.upload(input.data(), in.size());
  uint64_t pin = in.ptr(), pout = out.ptr();
  int count = kCount;
  std::array<void*, 3> args = {&pin, &pout, &count};
  CudaTimer timer;
  timer.start();
  launch_kernel(module.function("reverse_through_shared"), {1, 1, 1}, {256, 1, 1}, kCount * 4, args.data());
  EXPECT_GE(timer.stop(), 0.0);
  std::vector<float> output(kCount);
  out.download(output.data(), out.size());
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(output[i], input[kCount - 1 - i]) << i;

  expect_error<CudaError>([&] { module.function("no_such_kernel"); },
                          {"CUDA error in cuModuleGetFunction", "no_such_kernel"});
  expect_error<CudaError>(
      [&] {
        launch_kernel(module.function("reverse_through_shared"), {1, 1, 1}, {256, 1, 1},
                      context.max_shared_bytes_per_block() + 1, args.data());
      },
      {"shared memory", context.device_name()});
  EXPECT_THROW(in.upload(input.data(), in.size() + 1), std::out_of_range);
}

}  // namespace
}  // namespace tessera::cuda
