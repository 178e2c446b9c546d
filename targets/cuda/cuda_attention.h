// The CUDA target: attention on an NVIDIA GPU (sm_80 or newer) through the kernels of kernel/flash_attention.cuh,
// generated per pattern, compiled by NVRTC (cached on disk) and launched through the CUDA driver.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "runtime/tensor.h"
#include "targets/common/attention_problem.h"
#include "targets/cuda/attention_runner.h"

namespace tessera::cuda {

struct CudaOptions {
  CudaAttentionOptions attention;
  // Where NVRTC's PTX is cached; empty: default_kernel_cache_dir(). "none": no cache.
  std::string kernel_cache_dir;
};

// Computes attention with `pattern` on GPU 0. Same contract and errors as reference::attention; throws
// NoCudaDevice ("no CUDA device: …") without a driver or GPU, UnsupportedProblem for a head dimension the
// kernels lack, NvrtcError with the generated source's line if compilation fails.
runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                          const CudaOptions& options = {});

// One call made ready on GPU 0 (planned, compiled, inputs uploaded) whose kernels can be run and timed again and
// again: what bench and the tuner time. Same errors as attention().
class PreparedCudaCall {
 public:
  PreparedCudaCall(const ir::Pattern& pattern, const targets::AttentionInputs& inputs, const CudaOptions& options);
  ~PreparedCudaCall();
  PreparedCudaCall(const PreparedCudaCall&) = delete;
  PreparedCudaCall& operator=(const PreparedCudaCall&) = delete;

  void enqueue();            // launches the kernels, asynchronously
  double time_ms();          // one enqueue, timed with CUDA events
  runtime::Tensor result();  // waits; the last run's output
  const KernelConfig& config() const;
  std::string device_name() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Times one call on GPU 0 with CUDA events: planned, compiled and uploaded once, then `warmup` untimed and `runs`
// timed launches of its kernels. Same errors as attention().
struct TimedAttention {
  std::vector<double> ms;  // one per timed run
  runtime::Tensor out;     // the last run's output
  CudaSchedule schedule;   // as run
  std::string device;      // the GPU's name
};
TimedAttention time_attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                              const CudaOptions& options, int64_t warmup, int64_t runs);

}  // namespace tessera::cuda
