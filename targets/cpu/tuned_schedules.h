// The tuning cache as the CPU target reads it: `tessera tune` stores the fastest schedule per (pattern, shape
// bucket, dtype, target, version); every entry point that runs CPU attention (eval, bench, compile, the model
// runtime) asks this class which schedule to run. The file is read once; choices are memoised per call shape,
// since the model runtime asks at every layer of every step.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "compiler/tuner/tune_cache.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/gemm_tuning.h"

namespace tessera::cpu {

// The Tessera version the cache is written and read with (a file from another version is ignored).
std::string tessera_version();

class TunedSchedules {
 public:
  explicit TunedSchedules(tuner::TuneCache cache);
  // Reads the cache at `path` (missing: empty; corrupt or foreign: a warning, then empty).
  static std::shared_ptr<const TunedSchedules> load(const std::filesystem::path& path,
                                                    const tuner::Warn& warn = tuner::warn_to_stderr);

  struct Choice {
    CpuSchedule schedule;
    std::string source;  // "default", "tuned", or "tuned for N=1024,..." (the nearest bucket)
  };
  // The schedule for a call: the cache's exact bucket, else its nearest, else `base`. Threads come from `base`.
  Choice choose(const ir::Pattern& pattern, const ir::AttentionSizes& sz, StorageType storage,
                const CpuSchedule& base) const;

  // The blocking for one of the runtime's GEMMs: the cache's exact bucket, else its nearest, else the default
  // (an entry this build cannot run, such as a negative size, is ignored as absent).
  runtime::GemmBlocking gemm_blocking(const GemmShape& shape) const;

  const tuner::TuneCache& cache() const { return cache_; }

 private:
  tuner::TuneCache cache_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Choice> memo_;
  mutable std::map<std::tuple<int64_t, int64_t, int64_t>, runtime::GemmBlocking> gemm_memo_;
};

}  // namespace tessera::cpu
