// The header-only kernel library (targets/cuda/kernel/*.cuh), compiled into the binary as text: NVRTC receives
// it as in-memory headers, and `tessera compile --target cuda:…` writes it beside the generated source for nvcc.
#pragma once

#include <span>
#include <string>

namespace tessera::cuda {

struct KernelHeader {
  const char* name;  // as generated sources include it, e.g. "flash_attention.cuh"
  const char* text;
};

std::span<const KernelHeader> kernel_headers();

// Writes every kernel header into `directory` (created if needed). Throws std::runtime_error naming the file.
void write_kernel_headers(const std::string& directory);

}  // namespace tessera::cuda
