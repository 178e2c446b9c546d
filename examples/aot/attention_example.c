/* Embedding a kernel compiled ahead of time: plain C, linked against the static library that
 *   tessera compile --pattern 'causal & sliding_window(window=256)' --heads 4 --kv-heads 2 --seq 512 \
 *                   --head-dim 64 --lib-name example -o DIR
 * writes, with nothing of Tessera or Halide installed:
 *   cc -std=c11 -I DIR attention_example.c DIR/libtessera_example.a -lstdc++ -lpthread -ldl -lm
 *
 * It fills Q, K and V with reproducible values, runs attention for a batch of 2, and writes q.npy, k.npy, v.npy
 * and out.npy into the directory given as its argument, so that anyone (and the test that builds this program)
 * can check the output against `tessera eval --target reference`. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tessera_example.h"

enum {
  kBatch = 2,
  kH = TESSERA_EXAMPLE_HEADS,
  kHkv = TESSERA_EXAMPLE_KV_HEADS,
  kN = TESSERA_EXAMPLE_QUERIES,
  kM = TESSERA_EXAMPLE_KEYS,
  kD = TESSERA_EXAMPLE_HEAD_DIM,
  kDv = TESSERA_EXAMPLE_VALUE_DIM
};

/* A small linear congruential generator: the same values on every machine. */
static float next_value(uint64_t* state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((*state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static float* filled(size_t count, uint64_t seed) {
  float* data = malloc(count * sizeof(float));
  if (!data) return NULL;
  for (size_t n = 0; n < count; ++n) data[n] = next_value(&seed);
  return data;
}

/* A float32 .npy file (format version 1.0), C order. */
static int write_npy(const char* dir, const char* name, const float* data, const int64_t* shape, int rank) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE* f = fopen(path, "wb");
  if (!f) return 0;
  char dims[256] = "";
  size_t count = 1;
  for (int d = 0; d < rank; ++d) {
    char one[32];
    snprintf(one, sizeof one, "%lld, ", (long long)shape[d]);
    strcat(dims, one);
    count *= (size_t)shape[d];
  }
  char header[512];
  int len = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
  int total = 10 + len + 1;
  int padding = (64 - total % 64) % 64;
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  uint16_t header_len = (uint16_t)(len + padding + 1);
  fputc(header_len & 0xff, f);
  fputc(header_len >> 8, f);
  fwrite(header, 1, (size_t)len, f);
  for (int p = 0; p < padding; ++p) fputc(' ', f);
  fputc('\n', f);
  size_t written = fwrite(data, sizeof(float), count, f);
  return fclose(f) == 0 && written == count;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const size_t q_count = (size_t)kBatch * kH * kN * kD, k_count = (size_t)kBatch * kHkv * kM * kD;
  const size_t v_count = (size_t)kBatch * kHkv * kM * kDv, out_count = (size_t)kBatch * kH * kN * kDv;
  float* q = filled(q_count, 1);
  float* k = filled(k_count, 2);
  float* v = filled(v_count, 3);
  float* out = malloc(out_count * sizeof(float));
  if (!q || !k || !v || !out) return 1;

  /* Bad arguments come back as error codes, never as a crash. */
  int code = tessera_example(q, k, v, out, 0, 0.0f, 0);
  printf("batch 0: %s\n", tessera_example_error_string(code));
  if (code != TESSERA_ERROR_INVALID_ARGUMENT) return 1;

  code = tessera_example(q, k, v, out, kBatch, 0.0f, 0);
  if (code != TESSERA_OK) {
    fprintf(stderr, "tessera_example failed: %s\n", tessera_example_error_string(code));
    return 1;
  }
  double checksum = 0;
  for (size_t n = 0; n < out_count; ++n) checksum += out[n];
  printf("attention over batch %d: checksum %.6f\n", kBatch, checksum);

  const int64_t q_shape[] = {kBatch, kH, kN, kD}, k_shape[] = {kBatch, kHkv, kM, kD};
  const int64_t v_shape[] = {kBatch, kHkv, kM, kDv}, out_shape[] = {kBatch, kH, kN, kDv};
  int ok = write_npy(argv[1], "q.npy", q, q_shape, 4) && write_npy(argv[1], "k.npy", k, k_shape, 4) &&
           write_npy(argv[1], "v.npy", v, v_shape, 4) && write_npy(argv[1], "out.npy", out, out_shape, 4);
  free(q);
  free(k);
  free(v);
  free(out);
  return ok ? 0 : 1;
}
