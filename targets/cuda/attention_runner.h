// One attention call on a CUDA device, independent of what the device is: the GPU (cuda_attention.h: the CUDA
// driver and NVRTC) or the warp emulator (targets/cuda/emulation/: the same generated source compiled for the
// host, so tests run the whole path — planning, tables, generated code, launches, merge — without a GPU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"
#include "targets/cuda/kernel/attention_params.cuh"
#include "targets/cuda/kernel/numerics.cuh"
#include "targets/cuda/kernel_source.h"
#include "targets/cuda/launch_plan.h"

namespace tessera::cuda {

// A head dimension, dtype or size the CUDA target does not handle; the message names it.
class UnsupportedProblem : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual void* address() const = 0;  // a device address, only dereferenced by kernels
  virtual void upload(const void* host, size_t bytes) = 0;
  virtual void download(void* host, size_t bytes) const = 0;
};

class AttentionDevice {
 public:
  virtual ~AttentionDevice() = default;
  virtual std::unique_ptr<DeviceMemory> allocate(size_t bytes) = 0;
  // Compiles (or finds already compiled) and loads `source`; its kernels are then launched by name.
  virtual void load(const KernelSource& source) = 0;
  virtual void launch_attention(const std::string& kernel, unsigned grid_x, unsigned grid_y, unsigned threads,
                                size_t shared_bytes, const tessera_cuda::KernelParams& params) = 0;
  virtual void launch_merge(unsigned grid_x, const tessera_cuda::MergeParams& params) = 0;
  virtual void launch_fill(unsigned grid_x, float* data, long long count, float value) = 0;
  virtual void synchronize() = 0;
  virtual int64_t multiprocessors() const = 0;
  // Whether kernels for this device use the sm_90a warpgroup MMA (kernel/flash_attention_sm90.cuh).
  virtual bool wgmma() const = 0;
};

struct CudaAttentionOptions {
  CudaSchedule schedule;
  Element element = Element::BFloat16;  // Q, K, V are rounded to this type on the way to the device
};

// One call made ready on a device: planned, compiled, loaded, inputs uploaded. enqueue() launches its kernels
// (again and again, for timing); result() waits and downloads the output.
class PreparedAttention {
 public:
  PreparedAttention(AttentionDevice& device, const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                    const CudaAttentionOptions& options);
  PreparedAttention(const PreparedAttention&) = delete;
  PreparedAttention& operator=(const PreparedAttention&) = delete;

  void enqueue();
  runtime::Tensor result();
  const LaunchPlan& plan() const { return plan_; }
  const KernelConfig& config() const { return config_; }

 private:
  struct Launch {
    std::string kernel;
    unsigned blocks;
    tessera_cuda::KernelParams params;
  };

  AttentionDevice& device_;
  ir::AttentionSizes sz_;
  LaunchPlan plan_;
  KernelConfig config_;
  KernelSource source_;
  std::vector<std::unique_ptr<DeviceMemory>> memory_;  // inputs, tensors, slots, tables
  std::unique_ptr<DeviceMemory> result_;               // null for an empty problem
  int64_t rows_ = 0, out_elements_ = 0;
  float* fill_target_ = nullptr;
  int64_t fill_count_ = 0;
  float fill_value_ = 0;
  std::vector<Launch> launches_;
  std::optional<tessera_cuda::MergeParams> merge_;
};

// Computes attention with `pattern` on `device`. Same contract and errors as reference::attention; head
// dimensions the kernel template lacks raise UnsupportedProblem naming them.
runtime::Tensor run_attention(AttentionDevice& device, const ir::Pattern& pattern,
                              const targets::AttentionInputs& inputs, const CudaAttentionOptions& options);

// IEEE binary16 bits of `value`, rounded to nearest even (overflow to infinity, NaN kept).
uint16_t float_to_f16_bits(float value);

// The values a float32 tensor keeps once rounded to `element` (what the kernels see), as float32: the inputs a
// reference must be given to be compared with the CUDA target.
runtime::Tensor element_values(const runtime::Tensor& t, Element element);

}  // namespace tessera::cuda
