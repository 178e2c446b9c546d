// libFuzzer target for the .safetensors reader (runtime/safetensors.h): arbitrary bytes as a weight file must give
// a TensorError, or a file whose every tensor can be read within the mapping and agrees with its header. A crash,
// a sanitizer report, another exception type or a broken invariant (a trap) is a bug.
//
// Build (clang only; the target compiles this file, runtime/safetensors.cpp and runtime/tensor.cpp, nothing else):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DTESSERA_FUZZ=ON
//   cmake --build build-fuzz --target safetensors_fuzzer
// Run (the seed corpus has valid, truncated and lying files; test/fuzz/make_safetensors_corpus.py writes them;
// new inputs go to the first directory, so copy the seeds to a scratch one):
//   mkdir -p /tmp/st_corpus && cp test/fuzz/corpus/safetensors/* /tmp/st_corpus/
//   build-fuzz/test/safetensors_fuzzer -max_total_time=600 -jobs=1 /tmp/st_corpus
// Longer inputs reach deeper headers: add -max_len=65536. A crash leaves crash-<sha1> in the working directory;
// rerun it with `build-fuzz/test/safetensors_fuzzer crash-<sha1>` and add it to test/unit/safetensors_test.cpp.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "runtime/safetensors.h"

namespace {

using tessera::runtime::SafetensorsDType;
using tessera::runtime::SafetensorsFile;
using tessera::runtime::TensorError;

// An invariant the reader promises; a violation stops the fuzzer with this input as the crash.
void require(bool condition) {
  if (!condition) __builtin_trap();
}

bool converts_to_float32(SafetensorsDType dtype) {
  return dtype == SafetensorsDType::F32 || dtype == SafetensorsDType::F16 || dtype == SafetensorsDType::BF16;
}

void touch_every_tensor(const SafetensorsFile& file) {
  for (const std::string& name : file.names()) {
    require(file.contains(name));
    const auto& info = file.info(name);
    uint64_t elements = 1;
    for (int64_t extent : info.shape) {
      require(extent >= 0);
      elements *= static_cast<uint64_t>(extent);  // cannot wrap: open() checked the byte count
    }
    require(info.byte_size == elements * tessera::runtime::safetensors_dtype_size(info.dtype));
    require(&file.require(name, info.shape) == &info);

    const auto bytes = file.bytes(name);
    require(bytes.size() == info.byte_size);
    volatile std::byte sink{};
    for (std::byte b : bytes) sink = b;  // ASan reports a byte outside the mapping
    (void)sink;

    if (converts_to_float32(info.dtype)) {
      const tessera::runtime::Tensor values = file.to_float32(name);
      require(values.shape() == info.shape);
      require(static_cast<uint64_t>(values.numel()) == elements);
    } else {
      bool refused = false;
      try {
        (void)file.to_float32(name);
      } catch (const TensorError&) {
        refused = true;
      }
      require(refused);
    }
  }
  // An unknown name is a TensorError (every real name is non-empty, so "" is never one).
  bool refused = false;
  try {
    (void)file.info("");
  } catch (const TensorError&) {
    refused = true;
  }
  require(refused);
  volatile size_t metadata_bytes = 0;
  for (const auto& [key, value] : file.metadata()) metadata_bytes = metadata_bytes + key.size() + value.size();
  (void)metadata_bytes;
}

// The reader maps files (it has no in-memory entry point), so each input goes through one scratch file per process,
// removed when the process exits normally (a crashing input is kept by libFuzzer anyway).
struct ScratchFile {
  std::string path = "/tmp/tessera_fuzz_" + std::to_string(getpid()) + ".safetensors";
  ~ScratchFile() { std::remove(path.c_str()); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const ScratchFile scratch;
  const std::string& path = scratch.path;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  if (size > 0) std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    const SafetensorsFile file = SafetensorsFile::open(path);
    touch_every_tensor(file);
  } catch (const TensorError&) {
    // Rejected with a message: what bad input should get.
  }
  return 0;
}
