// Runs a library written by `tessera compile --lib-name under_test` on raw little-endian inputs, for
// test/unit/aot_library_test.cpp: `aot_harness DIR BATCH` reads DIR/q.bin, k.bin, v.bin (float32, or bf16 bits for a
// bf16 library) and tensor<i>.bin (the run-time tensors in the header's order) and writes DIR/out.bin. Only the
// library's C API is used.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tessera_under_test.h"

namespace {

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Q, K and V in the element type the library takes (float, or uint16_t bf16 bits).
#if TESSERA_UNDER_TEST_BF16
using Element = uint16_t;
#else
using Element = float;
#endif

template <typename T>
std::vector<T> read_array(const std::string& path, size_t count) {
  std::vector<char> bytes = read_bytes(path);
  if (bytes.size() != count * sizeof(T)) {
    std::fprintf(stderr, "%s: expected %zu elements, found %zu bytes\n", path.c_str(), count, bytes.size());
    std::exit(2);
  }
  std::vector<T> out(count);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(out.data()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string dir = argv[1];
  const int64_t batch = std::atoll(argv[2]);
  const size_t B = static_cast<size_t>(batch);
  std::vector<Element> q = read_array<Element>(
      dir + "/q.bin", B * TESSERA_UNDER_TEST_HEADS * TESSERA_UNDER_TEST_QUERIES * TESSERA_UNDER_TEST_HEAD_DIM);
  std::vector<Element> k = read_array<Element>(
      dir + "/k.bin", B * TESSERA_UNDER_TEST_KV_HEADS * TESSERA_UNDER_TEST_KEYS * TESSERA_UNDER_TEST_HEAD_DIM);
  std::vector<Element> v = read_array<Element>(
      dir + "/v.bin", B * TESSERA_UNDER_TEST_KV_HEADS * TESSERA_UNDER_TEST_KEYS * TESSERA_UNDER_TEST_VALUE_DIM);
  std::vector<std::vector<char>> tensors;
  std::vector<const void*> tensor_pointers;
  for (int t = 0; t < TESSERA_UNDER_TEST_TENSOR_COUNT; ++t) {
    tensors.push_back(read_bytes(dir + "/tensor" + std::to_string(t) + ".bin"));
  }
  for (const auto& t : tensors) tensor_pointers.push_back(t.data());
  std::vector<float> out(B * TESSERA_UNDER_TEST_HEADS * TESSERA_UNDER_TEST_QUERIES * TESSERA_UNDER_TEST_VALUE_DIM);
  int code = tessera_under_test_v(q.data(), k.data(), v.data(), tensor_pointers.data(), out.data(), batch, 0.0f, 0);
  if (code != TESSERA_OK) {
    std::fprintf(stderr, "tessera_under_test_v: %s\n", tessera_under_test_error_string(code));
    return 1;
  }
  std::ofstream(dir + "/out.bin", std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
  return 0;
}
