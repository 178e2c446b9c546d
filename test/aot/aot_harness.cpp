// Runs a library written by `tessera compile --lib-name under_test` on raw little-endian inputs, for
// test/unit/aot_library_test.cpp: `aot_harness DIR BATCH` reads DIR/q.bin, k.bin, v.bin and tensor<i>.bin (the
// run-time tensors in the header's order) and writes DIR/out.bin. Only the library's C API is used.
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

std::vector<float> read_floats(const std::string& path, size_t count) {
  std::vector<char> bytes = read_bytes(path);
  if (bytes.size() != count * sizeof(float)) {
    std::fprintf(stderr, "%s: expected %zu floats, found %zu bytes\n", path.c_str(), count, bytes.size());
    std::exit(2);
  }
  std::vector<float> out(count);
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(out.data()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const std::string dir = argv[1];
  const int64_t batch = std::atoll(argv[2]);
  const size_t B = static_cast<size_t>(batch);
  std::vector<float> q = read_floats(
      dir + "/q.bin", B * TESSERA_UNDER_TEST_HEADS * TESSERA_UNDER_TEST_QUERIES * TESSERA_UNDER_TEST_HEAD_DIM);
  std::vector<float> k = read_floats(
      dir + "/k.bin", B * TESSERA_UNDER_TEST_KV_HEADS * TESSERA_UNDER_TEST_KEYS * TESSERA_UNDER_TEST_HEAD_DIM);
  std::vector<float> v = read_floats(
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
