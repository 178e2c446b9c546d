// The flags through which a command reads the tuning cache `tessera tune` writes: eval, bench, compile and the
// model commands run the cached schedule for each pattern and shape unless told not to.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "targets/cpu/tuned_schedules.h"

namespace tessera::cli {

struct TuneCacheFlags {
  std::string path;       // --tune-cache FILE (default: tuner::default_cache_path())
  bool disabled = false;  // --no-tune-cache
};

void add_tune_cache_flags(CLI::App* cmd, TuneCacheFlags& flags);

// The cache the flags name, read once; nullptr with --no-tune-cache.
std::shared_ptr<const cpu::TunedSchedules> load_tuned_schedules(const TuneCacheFlags& flags);

}  // namespace tessera::cli
