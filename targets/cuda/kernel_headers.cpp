#include "targets/cuda/kernel_headers.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace tessera::cuda {

void write_kernel_headers(const std::string& directory) {
  std::error_code error;
  std::filesystem::create_directories(directory, error);
  for (const KernelHeader& header : kernel_headers()) {
    const std::filesystem::path path = std::filesystem::path(directory) / header.name;
    std::ofstream file(path, std::ios::binary);
    file << header.text;
    if (!file) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
  }
}

}  // namespace tessera::cuda
