#include "compiler/cli/tune_cache_flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <vector>

#include "targets/cuda/cuda_driver.h"
#include "targets/cuda/cuda_schedule_space.h"

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

CudaScheduleChoice tuned_cuda_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                       const targets::AttentionInputs& inputs, cuda::Element element) {
  CudaScheduleChoice choice;
  const std::shared_ptr<const cpu::TunedSchedules> tuned = load_tuned_schedules(flags);
  if (!tuned) return choice;
  cuda::CudaContext& context = cuda::CudaContext::get();
  const std::string device = cuda::arch_name(context.arch()) + " " + context.device_name();
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs);
  if (auto found = tuned->cache().lookup(cuda::cuda_tune_key(pattern, sz, element, device))) {
    choice.schedule = cuda::to_cuda_schedule(found->entry.schedule);
    choice.source = found->match == tuner::Match::Exact
                        ? "tuned"
                        : fmt::format("tuned for {}", tuner::describe(found->entry.key.bucket));
  }
  return choice;
}

CudaScheduleChoice tuned_cuda_library_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                               const ir::AttentionSizes& sz, cuda::Element element,
                                               const cuda::CudaArch& arch) {
  CudaScheduleChoice choice;
  const std::shared_ptr<const cpu::TunedSchedules> tuned = load_tuned_schedules(flags);
  if (!tuned) return choice;
  // Tuning keys name the device as "cuda:<arch> <device name>" (cuda_tune_key): the GPUs of this architecture
  // the cache has entries from for this pattern and element type, in file order.
  const tuner::TuneKey probe = cuda::cuda_tune_key(pattern, sz, element, "");
  const std::string prefix = fmt::format("cuda:{} ", cuda::arch_name(arch));
  std::vector<std::string> devices;
  for (const tuner::TuneEntry& entry : tuned->cache().entries()) {
    const tuner::TuneKey& key = entry.key;
    if (key.kernel != probe.kernel || key.problem != probe.problem || key.dtype != probe.dtype) continue;
    if (!key.target.starts_with(prefix)) continue;
    const std::string device = key.target.substr(5);  // "<arch> <device name>"
    if (std::find(devices.begin(), devices.end(), device) == devices.end()) devices.push_back(device);
  }
  if (devices.empty()) return choice;
  std::string device = devices.front();
  if (devices.size() > 1 && cuda::cuda_device_available()) {
    cuda::CudaContext& context = cuda::CudaContext::get();
    const std::string here = cuda::arch_name(context.arch()) + " " + context.device_name();
    if (std::find(devices.begin(), devices.end(), here) != devices.end()) device = here;
  }
  if (auto found = tuned->cache().lookup(cuda::cuda_tune_key(pattern, sz, element, device))) {
    choice.schedule = cuda::to_cuda_schedule(found->entry.schedule);
    choice.source = found->match == tuner::Match::Exact
                        ? fmt::format("tuned on {}", device)
                        : fmt::format("tuned for {} on {}", tuner::describe(found->entry.key.bucket), device);
  }
  return choice;
}

}  // namespace tessera::cli
