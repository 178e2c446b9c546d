// Emits a pattern's mask and score as C++ source: one struct implementing the functor contract of
// targets/cuda/kernel/pattern_args.cuh, compiled into the CUDA kernel by NVRTC or nvcc (and by the host
// compiler in tests).
//
// The emitted code computes integers in 32 bits and floats in float32 with the helpers of
// targets/cuda/kernel/expression_support.cuh (whose header comment states where that differs from the 64-bit
// reference), names PatternArgs, i32 and those helpers unqualified, and so belongs inside namespace
// tessera_cuda (or a namespace nested in it), after expression_support.cuh is included.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"

namespace tessera::cuda {

// The pattern cannot be emitted for the given spec; the message names what.
class UnsupportedExpression : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct FunctorSpec {
  std::string name;                  // C++ struct name, e.g. "Pattern_c0"
  std::vector<std::string> symbols;  // symbol names in PatternArgs::symbols order (Symbol nodes read these)
  std::vector<std::string> tensors;  // the pattern's run-time tensor names in PatternArgs::tensors order
};

// C++ source of one struct named spec.name implementing the functor contract for `pattern`:
//   - variables: i j b h are the functor's arguments (k == j, q == i + a.M - a.N), H N M D scale come from the
//     PatternArgs `a`, s is score()'s argument;
//   - a Symbol reads a.symbols[index in spec.symbols] (Int symbols only);
//   - a Load or DotQ reads a.tensors[index in spec.tensors] with each index clamped into the tensor's shape;
//   - every distinct subexpression is computed once, into a named constant; && || and select compute both
//     sides (nothing an expression does can fail or have effects, so this gives the IR's result).
// Throws UnsupportedExpression for a symbol or tensor the spec does not list, more symbols or tensors than
// PatternArgs holds, a tensor rank above kMaxTensorRank, an integer constant outside 32 bits, a Float or Bool
// symbol, `s` in a mask, or a name that is not a C++ identifier.
std::string emit_pattern_functor(const ir::Pattern& pattern, const FunctorSpec& spec);

}  // namespace tessera::cuda
