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

namespace {

// GPU 0 as tuning keys name it (cuda_tune_key): "<arch> <device name>".
std::string present_device() {
  cuda::CudaContext& context = cuda::CudaContext::get();
  return cuda::arch_name(context.arch()) + " " + context.device_name();
}

// The cache's schedule for `key`, if any: "tuned" or "tuned for <bucket>", followed by `where`.
CudaScheduleChoice cached_cuda_schedule(const cpu::TunedSchedules& tuned, const tuner::TuneKey& key,
                                        const std::string& where = "") {
  CudaScheduleChoice choice;
  if (auto found = tuned.cache().lookup(key)) {
    choice.schedule = cuda::to_cuda_schedule(found->entry.schedule);
    choice.source =
        (found->match == tuner::Match::Exact ? std::string("tuned")
                                             : fmt::format("tuned for {}", tuner::describe(found->entry.key.bucket))) +
        where;
  }
  return choice;
}

}  // namespace

CudaScheduleChoice tuned_cuda_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                       const targets::AttentionInputs& inputs, cuda::Element element) {
  const std::shared_ptr<const cpu::TunedSchedules> tuned = load_tuned_schedules(flags);
  if (!tuned) return {};
  const ir::AttentionSizes sz = targets::validate_attention_inputs(inputs);
  return cached_cuda_schedule(*tuned, cuda::cuda_tune_key(pattern, sz, element, present_device()));
}

CudaScheduleChoice tuned_cuda_library_schedule(const TuneCacheFlags& flags, const ir::Pattern& pattern,
                                               const ir::AttentionSizes& sz, cuda::Element element,
                                               const cuda::CudaArch& arch) {
  const std::shared_ptr<const cpu::TunedSchedules> tuned = load_tuned_schedules(flags);
  if (!tuned) return {};
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
  if (devices.empty()) return {};
  std::string device = devices.front();
  if (devices.size() > 1 && cuda::cuda_device_available()) {
    const std::string here = present_device();
    if (std::find(devices.begin(), devices.end(), here) != devices.end()) device = here;
  }
  return cached_cuda_schedule(*tuned, cuda::cuda_tune_key(pattern, sz, element, device), " on " + device);
}

}  // namespace tessera::cli
