// Attention kernels compiled once per machine instead of once per process. Compiling one kernel (Halide's
// lowering, then LLVM) takes 0.3–2.5 s, and a process that runs a model or a test compiles several: a
// persistent cache makes every later process start at full speed, as torch.compile's and Triton's caches do.
//
// A kernel is compiled ahead of time with its Halide runtime into a shared object (`cc -shared`), stored as a
// checked cache entry (targets/common/cache_entry.h) named by the SHA-256 of its pipeline key and of the
// sources that generate kernels, and loaded with dlopen. Where that cannot be done (no C compiler, a cache
// directory that cannot be written), the caller compiles the kernel in memory with Halide's JIT as before: the
// cache never makes a call fail.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "targets/cpu/attention_pipeline.h"

namespace tessera::cpu {

// A kernel loaded from a shared object of the cache; unloaded when the last copy is released.
class SharedObjectKernel {
 public:
  using Entry = int (*)(void**);
  SharedObjectKernel(std::shared_ptr<void> library, Entry entry) : library_(std::move(library)), entry_(entry) {}

  // Halide's argv convention, in kernel_arguments() order with the outputs last: a buffer's halide_buffer_t*,
  // or a pointer to a scalar. Returns 0; a kernel that fails throws std::runtime_error with Halide's message
  // (the library's own runtime would otherwise print it and abort the process).
  int operator()(void** arguments) const;

 private:
  std::shared_ptr<void> library_;
  Entry entry_ = nullptr;
};

// $TESSERA_CPU_KERNEL_CACHE when set (empty: no disk cache), else $XDG_CACHE_HOME/tessera/cpu, else
// $HOME/.cache/tessera/cpu, else "" (no disk cache).
std::string default_cpu_kernel_cache_dir();

// The file name of `key`'s entry: the SHA-256 of the key, the kernel sources' fingerprint and the cache format.
std::string cpu_kernel_cache_name(const AttentionPipelineKey& key);

// Entries of a cache directory beyond this many bytes are removed, least recently used first, after each build.
inline constexpr uintmax_t kCpuKernelCacheBytes = uintmax_t{1} << 30;

// Removes the least recently used kernel entries of `dir` (by modification time, which loading refreshes) until
// they take at most 3/4 of `max_bytes`, when they take more than `max_bytes`. Other files are left alone.
void trim_cpu_kernel_cache(const std::string& dir, uintmax_t max_bytes);

// The kernel of `key` loaded from `dir`, built there first (with `build`) when missing or damaged. nullptr
// when it cannot be built or loaded; `why` then says why (for a note, never an error).
std::shared_ptr<const SharedObjectKernel> load_or_build_cached_kernel(
    const AttentionPipelineKey& key, const std::function<std::shared_ptr<AttentionPipeline>()>& build,
    const std::string& dir, std::string& why);

}  // namespace tessera::cpu
