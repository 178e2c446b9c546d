// `tessera compile --target cuda:sm_80|sm_90a`: a pattern compiled ahead of time for one shape (the batch is
// chosen per call) into a static library whose host launcher takes device pointers and a cudaStream_t (C ABI),
// built by nvcc. Beside it: the generated .cu, the kernel headers it includes, the .ptx (for anyone to read) and
// ptxas's register and spill report.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "targets/cuda/kernel_source.h"
#include "targets/cuda/launch_plan.h"
#include "targets/cuda/nvrtc_compiler.h"

namespace tessera::cuda {

struct CudaAotRequest {
  ir::Pattern pattern;
  std::string name;                             // a C identifier: the library exports tessera_<name>
  ir::AttentionSizes sizes;                     // everything but B, which each call chooses
  std::map<std::string, int64_t> tensor_sizes;  // run-time tensor dimensions that are not attention sizes (R)
  CudaSchedule schedule;                        // block_m / block_n 0: the defaults for the head dimension
  std::string schedule_source = "default";      // where the schedule came from, for the header ("tuned on …")
  Element element = Element::BFloat16;
  CudaArch arch;
  std::string output_dir;
  std::string nvcc;  // path of nvcc
};

struct CudaAotResult {
  std::string library, header, source, ptx, ptxas_log;  // paths
  std::string ptxas_report;                             // the log's text
  CudaSchedule schedule;                                // as compiled
};

// Throws std::invalid_argument for a request that cannot be compiled (bad name, unsupported head dimension, a
// missing tensor size, a tensor index not provably in bounds) and std::runtime_error when nvcc or ar fails.
CudaAotResult write_cuda_aot_library(const CudaAotRequest& request);

}  // namespace tessera::cuda
