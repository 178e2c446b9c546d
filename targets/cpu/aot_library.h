// Ahead-of-time compilation for the CPU: a static library with a C ABI that an application links without
// Tessera or Halide installed.
//
// The library holds, for one pattern and one problem shape (heads, sequence lengths, head dims; the batch is
// chosen per call), the plan's Halide kernels compiled to objects, Halide's runtime, the plan itself as constant
// tables, and the same host driver the JIT path runs (attention_driver.h, compiled from source into the library).
// Shapes are fixed because the plan is: which tiles are EMPTY, FULL or PARTIAL and which views the planner
// re-indexes depend on N and M, and baking them in is what lets the library skip work with no compiler at hand.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

struct AotRequest {
  ir::Pattern pattern;
  std::string name;                             // a C identifier: the library exports tessera_<name>
  ir::AttentionSizes sizes;                     // everything but B, which each call chooses
  std::map<std::string, int64_t> tensor_sizes;  // values of run-time tensor dimensions that are not attention
                                                // sizes (e.g. relative's R)
  CpuSchedule schedule;
  std::string schedule_source = "default";     // named in the header: "default", "tuned (...)", "--schedule"
  StorageType storage = StorageType::Float32;  // BFloat16: q, k, v passed as bf16 bits (uint16_t)
  std::string target;  // "cpu" (this machine's features) or "cpu-FEATURE-FEATURE..." (Halide features)
  std::string output_dir;
  std::string cxx = "c++";  // compiles the driver into the library
};

struct AotResult {
  std::string library, header;     // paths
  std::string halide_target;       // the Halide target the kernels were compiled for
  std::vector<std::string> files;  // everything written
};

// Writes lib<prefix>.a, <prefix>.h (prefix tessera_<name>) and the sources of the driver under output_dir.
// Throws std::invalid_argument for a request that cannot be compiled (bad name or target, missing tensor size,
// a tensor index not provably in bounds) and std::runtime_error when an external step (compiler, ar) fails.
AotResult write_aot_library(const AotRequest& request);

// The Halide target of "cpu" / "cpu-FEATURES" (throws std::invalid_argument naming a bad feature).
std::string aot_halide_target(const std::string& target);

}  // namespace tessera::cpu
