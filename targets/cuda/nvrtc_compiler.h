// Compiling generated CUDA C++ to PTX with NVRTC, at run time and without a GPU, with an on-disk cache so that a
// kernel is compiled once per (source, options, architecture, NVRTC version) rather than once per process. Also
// the CUDA tools the tests and the CLI use to check that PTX assembles (ptxas), found the way nvcc users expect.
// Nothing here needs the CUDA driver: it all works on a build machine with the toolkit and no GPU.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "targets/common/sha256.h"

namespace tessera::cuda {

// A GPU architecture Tessera generates code for: sm_<major><minor>, with `accelerated` for the "a" variants
// (sm_90a) whose architecture-specific instructions (wgmma, setmaxnreg) do not run on later generations.
struct CudaArch {
  int major = 8, minor = 0;
  bool accelerated = false;
  bool operator==(const CudaArch&) const = default;
};

class UnsupportedArch : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "sm_80", "sm_86", "sm_90", "sm_90a", "sm_100", ... -> CudaArch. Throws UnsupportedArch naming `text` for
// anything else: malformed, below sm_80 ("unsupported CUDA architecture 'sm_70': Tessera needs sm_80 or newer"),
// an "a" variant before sm_90, or an architecture this NVRTC does not know.
CudaArch parse_cuda_arch(const std::string& text);
std::string arch_name(const CudaArch& arch);  // "sm_90a"

struct NvrtcSource {
  std::string name;  // e.g. "tessera_attention.cu"; NVRTC's messages and the PTX line info refer to it
  std::string text;
  std::vector<std::pair<std::string, std::string>> headers;  // include name -> text: `#include "name"` finds it
  std::vector<std::string> options;                          // extra NVRTC options, e.g. "-DFOO=1"
};

struct NvrtcResult {
  std::string ptx;
  std::string log;  // NVRTC's warnings; empty when from_cache (they were shown when the entry was made)
  bool from_cache = false;
};

class NvrtcError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string nvrtc_version();  // "13.0"

// Compiles `source` to PTX for `arch` with -std=c++17 --gpu-architecture=compute_XX[a] -lineinfo and then
// source.options (no --use_fast_math: the kernels choose their approximations themselves).
// A compilation error throws NvrtcError: "NVRTC failed to compile <name> for <arch>:" and then NVRTC's log, in
// which every "<file>(<line>): error" is followed by that line of the source or header, so that the user sees
// the generated code.
// With a non-empty `cache_dir` the PTX is looked up there first and stored there after compiling, in a file
// named by kernel_cache_key(). Writes are atomic (a temporary file renamed into place), so concurrent compilers
// never see a torn entry; an entry that is corrupt or unreadable is recompiled and rewritten, and a cache that
// cannot be written only adds a note to the log: the cache never makes a compilation fail.
NvrtcResult compile_to_ptx(const NvrtcSource& source, const CudaArch& arch, const std::string& cache_dir);

// The name (without directory) of the cache file for `source` compiled for `arch` by this NVRTC: the SHA-256
// of everything the PTX depends on (source name and text, header names and texts, all options, architecture,
// NVRTC version), as hex, plus ".ptx". The file is plain PTX followed by a comment line that checks it.
std::string kernel_cache_key(const NvrtcSource& source, const CudaArch& arch);

// $XDG_CACHE_HOME/tessera/cuda, else $HOME/.cache/tessera/cuda, else "" (no cache).
std::string default_kernel_cache_dir();

// NVRTC's log with each "<file>(<line>): error" line that NVRTC did not already follow with the offending line
// followed by it (indented by two spaces), taken from source.text or the header of that name. Exposed for tests:
// NVRTC 13 quotes lines itself, older versions do not.
std::string quote_error_lines(const std::string& log, const NvrtcSource& source);

using targets::sha256_hex;  // the cache keys' hash (targets/common/sha256.h)

struct PtxasReport {
  bool ok = false;
  std::string log;  // ptxas's output: with -v, registers, spills and shared memory per kernel, and any errors
};

// Assembles `ptx` with `ptxas -arch=sm_XX[a] -v` (the output is discarded): whether PTX that NVRTC produced is
// also accepted by the assembler for that architecture, and at what register cost. Throws std::runtime_error
// if `ptxas_path` cannot be run.
PtxasReport assemble_ptx(const std::string& ptx, const CudaArch& arch, const std::string& ptxas_path);

// The path of a CUDA tool ("nvcc", "ptxas"): $CUDA_HOME/bin, $CUDA_PATH/bin, /usr/local/cuda/bin, then $PATH.
// "" when none is found.
std::string find_cuda_tool(const std::string& name);

}  // namespace tessera::cuda
