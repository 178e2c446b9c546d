// The flags through which a command reads the tuning cache `tessera tune` writes: eval, bench, compile and the
// model commands run the cached schedule for each pattern and shape unless told not to.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "targets/common/attention_problem.h"
#include "targets/cpu/tuned_schedules.h"
#include "targets/cuda/kernel_source.h"
#include "targets/cuda/launch_plan.h"
#include "targets/cuda/nvrtc_compiler.h"

namespace tessera::cli {

struct TuneCacheFlags {
  std::string path;       // --tune-cache FILE (default: tuner::default_cache_path())
  bool disabled = false;  // --no-tune-cache
};

void add_tune_cache_flags(CLI::App* cmd, TuneCacheFlags& flags);

// The cache the flags name, read once; nullptr with --no-tune-cache.
std::shared_ptr<const cpu::TunedSchedules> load_tuned_schedules(const TuneCacheFlags& flags);

// The CUDA schedule the cache holds for `pattern` at the shape of `inputs` with `element` on GPU 0 (its exact
// bucket, else its nearest), and where it came from ("tuned" / "tuned for …"); the defaults and "default"
// otherwise or with --no-tune-cache. Throws NoCudaDevice without a GPU.
struct CudaScheduleChoice {
  cuda::CudaSchedule schedule;
  std::string source = "default";
};
CudaScheduleChoice tuned_cuda_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                       const targets::AttentionInputs& inputs, cuda::Element element);

// For a library compiled ahead of time for `arch` (no GPU needed): the schedule the cache holds for `pattern` at
// sizes `sz` with `element` on a GPU of that architecture, with the GPU it was tuned on in `source` ("tuned on
// sm_90a NVIDIA H100 80GB HBM3", or "tuned for <bucket> on …" for the nearest bucket). Where the cache holds
// entries from several such GPUs, the one present here is preferred, else the first in the file. The defaults
// and "default" otherwise or with --no-tune-cache.
CudaScheduleChoice tuned_cuda_library_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                               const ir::AttentionSizes& sz, cuda::Element element,
                                               const cuda::CudaArch& arch);

}  // namespace tessera::cli
