#include "runtime/blas_kernels.h"

#include <array>
#include <cstdlib>
#include <mutex>
#include <string_view>

// OpenBLAS's own entry points for its run-time kernel choice (driver/others/dynamic.c). They are declared weak so
// that the runtime links against a BLAS without them, where select_blas_kernels() does nothing.
extern "C" {
char* openblas_get_corename(void) __attribute__((weak));
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));
int openblas_get_num_threads(void) __attribute__((weak));
void openblas_set_num_threads(int) __attribute__((weak));
}

namespace tessera::runtime {

int blas_kernel_level(const std::string& core) {
  // OpenBLAS's core names for its x86-64 kernel sets that use AVX-512 or AVX2 (its "Zen" and "Excavator" sets are
  // AVX2 too); every other set is older.
  constexpr std::array<std::string_view, 3> avx512 = {"skylakex", "cooperlake", "sapphirerapids"};
  constexpr std::array<std::string_view, 3> avx2 = {"haswell", "zen", "excavator"};
  std::string lower;
  for (char c : core) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (std::string_view name : avx512) {
    if (lower == name) return 2;
  }
  for (std::string_view name : avx2) {
    if (lower == name) return 1;
  }
  return 0;
}

int cpu_vector_level() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return 2;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 0;
}

std::string blas_kernels() {
  if (openblas_get_corename == nullptr) return "unknown";
  const char* name = openblas_get_corename();
  return name ? name : "unknown";
}

void select_blas_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (openblas_get_corename == nullptr || gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) {
      return;
    }
    if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user chose
    const int cpu = cpu_vector_level();
    // Only OpenBLAS's fallback for a CPU it does not know is corrected: a choice of AVX2 kernels on an AVX-512
    // CPU (Zen 4 reads as "Zen" in some versions) is OpenBLAS's judgement, and it was not measured here.
    if (cpu == 0 || blas_kernel_level(blas_kernels()) > 0) return;
    // dynamic.c reads OPENBLAS_CORETYPE when it chooses, and chooses again after a quit; the variable is set only
    // for that call, so that child processes see the environment the user gave.
    ::setenv("OPENBLAS_CORETYPE", cpu == 2 ? "SkylakeX" : "Haswell", 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
    ::unsetenv("OPENBLAS_CORETYPE");
  });
}

int gemm_threads() {
  static const int threads = [] {
    if (openblas_get_num_threads == nullptr || openblas_set_num_threads == nullptr) return 1;
    const int count = openblas_get_num_threads();
    openblas_set_num_threads(1);
    return count < 1 ? 1 : count;
  }();
  return threads;
}

}  // namespace tessera::runtime
