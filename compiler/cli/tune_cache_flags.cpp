#include "compiler/cli/tune_cache_flags.h"

#include <fmt/format.h>

#include <iostream>

namespace tessera::cli {

void add_tune_cache_flags(CLI::App* cmd, TuneCacheFlags& flags) {
  cmd->add_option("--tune-cache", flags.path,
                  "Tuning cache to read schedules from (default $XDG_CACHE_HOME/tessera/tune_cache.json)");
  cmd->add_flag("--no-tune-cache", flags.disabled, "Run the default schedules, ignoring the tuning cache");
}

std::shared_ptr<const cpu::TunedSchedules> load_tuned_schedules(const TuneCacheFlags& flags) {
  if (flags.disabled) return nullptr;
  return cpu::TunedSchedules::load(
      flags.path.empty() ? tuner::default_cache_path() : std::filesystem::path(flags.path),
      [](const std::string& message) { std::cerr << fmt::format("tessera: warning: {}\n", message); });
}

}  // namespace tessera::cli
