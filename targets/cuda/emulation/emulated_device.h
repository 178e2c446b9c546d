// An AttentionDevice whose kernels run under the warp emulator: the generated CUDA source is compiled by the
// host C++ compiler with -DTESSERA_CUDA_EMULATION into a shared library, loaded with dlopen, and each launch runs
// through emulation::launch on host memory. Tests use it to run the CUDA target end to end without a GPU. The
// program that uses it must export the emulator's symbols (CMake ENABLE_EXPORTS), which the library resolves.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "targets/cuda/attention_runner.h"

namespace tessera::cuda::emulation {

class EmulatedDevice : public AttentionDevice {
 public:
  // `compiler`: the host C++ compiler; `source_root`: the repository root (the emulator's header);
  // `work_dir`: where sources and libraries are written (compiled libraries are reused by source hash).
  // `wgmma`: emulate an sm_90a device, whose kernels use warpgroup MMA.
  EmulatedDevice(std::string compiler, std::string source_root, std::string work_dir, bool wgmma = false);
  ~EmulatedDevice() override;
  EmulatedDevice(const EmulatedDevice&) = delete;
  EmulatedDevice& operator=(const EmulatedDevice&) = delete;

  std::unique_ptr<DeviceMemory> allocate(size_t bytes) override;
  void load(const KernelSource& source) override;
  void launch_attention(const std::string& kernel, unsigned grid_x, unsigned grid_y, unsigned threads,
                        size_t shared_bytes, const tessera_cuda::KernelParams& params) override;
  void launch_merge(unsigned grid_x, const tessera_cuda::MergeParams& params) override;
  void launch_fill(unsigned grid_x, float* data, long long count, float value) override;
  void synchronize() override {}
  int64_t multiprocessors() const override { return multiprocessors_; }
  void set_multiprocessors(int64_t n) { multiprocessors_ = n; }
  bool wgmma() const override { return wgmma_; }

 private:
  void* symbol(const std::string& name) const;

  std::string compiler_, source_root_, work_dir_;
  void* library_ = nullptr;
  std::map<std::string, void*> libraries_;  // by source hash; kept open for the device's lifetime
  int64_t multiprocessors_ = 4;
  bool wgmma_ = false;
};

}  // namespace tessera::cuda::emulation
