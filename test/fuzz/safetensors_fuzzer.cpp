// libFuzzer target for the .safetensors reader: arbitrary bytes as a weight file must give a TensorError or a
// valid file whose every tensor can be read, never a crash or an out-of-bounds read.
//
// Build (clang only; -DTESSERA_FUZZ=ON adds the target to a build configured with clang):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DTESSERA_FUZZ=ON && cmake --build build-fuzz --target
//   safetensors_fuzzer
// Run (the seed corpus has valid, truncated and lying files):
//   build-fuzz/test/safetensors_fuzzer -max_total_time=600 test/fuzz/corpus/safetensors
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The reader maps files, so each input goes through one (per process) scratch file.
  static const std::string path = "/tmp/tessera_fuzz_" + std::to_string(getpid()) + ".safetensors";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const tessera::runtime::SafetensorsFile file = tessera::runtime::SafetensorsFile::open(path);
    for (const std::string& name : file.names()) {
      const auto& info = file.info(name);
      const auto bytes = file.bytes(name);
      volatile std::byte sink{};
      for (std::byte b : bytes) sink = b;  // touch every byte the reader hands out
      (void)sink;
      using D = tessera::runtime::SafetensorsDType;
      if (info.dtype == D::F32 || info.dtype == D::F16 || info.dtype == D::BF16) (void)file.to_float32(name);
    }
    (void)file.metadata();
  } catch (const tessera::runtime::TensorError&) {
    // Rejected with a message: what bad input should get.
  }
  return 0;
}
