// The attention kernels of this process: each compiled once per pipeline key, loaded from the disk cache
// (kernel_disk_cache.h) or, where that cannot be, compiled in memory by Halide's JIT; and the callables through
// which the driver (attention_driver.h) calls either kind.
#pragma once

#include <memory>

#include "compiler/ir/pattern.h"
#include "targets/cpu/attention_driver.h"
#include "targets/cpu/attention_pipeline.h"
#include "targets/cpu/kernel_disk_cache.h"

namespace tessera::cpu {

struct CompiledKernel {
  std::shared_ptr<const SharedObjectKernel> loaded;  // from the disk cache
  std::shared_ptr<const AttentionPipeline> jit;      // else compiled in memory
  Halide::Target target;                             // what `jit` was compiled for (the key's target)
  size_t tensors = 0, symbols = 0;                   // the run-time tensors and symbols the kernel takes
};

// The kernel of `pattern` for `key`, compiled on the first request of the process.
std::shared_ptr<const CompiledKernel> compiled_kernel(const ir::Pattern& pattern, const AttentionPipelineKey& key);

// The driver's calls of one attention() call, made to `kernel`.
tessera_cpu_driver::Kernel driver_kernel(std::shared_ptr<const CompiledKernel> kernel);

}  // namespace tessera::cpu
