// The kernels every generated module carries besides its attention kernels: filling a buffer (the slots'
// log-sum-exp start at -inf) and merging output slots by log-sum-exp.
#pragma once

#include "flash_attention.cuh"

// One block per output row, kMergeThreads threads over its columns.
TESSERA_GLOBAL void TESSERA_LAUNCH_BOUNDS(128) tessera_merge_slots(const tessera_cuda::MergeParams p) {
  tessera_cuda::merge_slots_row(p, tessera_cuda::block_index_x(), static_cast<int>(tessera_cuda::thread_index()),
                                tessera_cuda::kMergeThreads);
}

TESSERA_GLOBAL void TESSERA_LAUNCH_BOUNDS(256) tessera_fill(float* data, long long count, float value) {
  const long long n =
      static_cast<long long>(tessera_cuda::block_index_x()) * tessera_cuda::kFillThreads + tessera_cuda::thread_index();
  if (n < count) data[n] = value;
}
