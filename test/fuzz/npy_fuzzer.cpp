// libFuzzer target for the .npy decoder (runtime/npy.h), which reads every run-time input the CLI takes: arbitrary
// bytes must give a TensorError, or a tensor whose elements all came from the file and which encodes back to bytes
// that decode to the same tensor. A crash, a sanitizer report, another exception type or a broken invariant (a
// trap) is a bug.
//
// Build (clang only; the target compiles this file, runtime/npy.cpp and runtime/tensor.cpp, nothing else):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DTESSERA_FUZZ=ON
//   cmake --build build-fuzz --target npy_fuzzer
// Run on a scratch copy of the seeds (files `tessera inputs` wrote, in each supported type and version):
//   mkdir -p /tmp/npy_corpus && cp test/fuzz/corpus/npy/* /tmp/npy_corpus/
//   build-fuzz/test/npy_fuzzer -max_total_time=600 /tmp/npy_corpus
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "runtime/npy.h"

namespace {

using tessera::runtime::Tensor;
using tessera::runtime::TensorError;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Tensor tensor;
  try {
    tensor = tessera::runtime::decode_npy(bytes, "fuzz.npy");
  } catch (const TensorError&) {
    return 0;
  }
  // The elements lie within the input: a tensor is never larger than the bytes it came from.
  require(tensor.size_bytes() <= size);
  const std::string again = tessera::runtime::encode_npy(tensor);
  const Tensor round_trip = tessera::runtime::decode_npy(again, "again.npy");
  require(round_trip.dtype() == tensor.dtype() && round_trip.shape() == tensor.shape());
  require(std::memcmp(round_trip.raw_data(), tensor.raw_data(), tensor.size_bytes()) == 0);
  return 0;
}
