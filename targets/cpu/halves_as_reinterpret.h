#pragma once

#include <Halide.h>

namespace tessera::cpu {

// A lowering pass: u16x2n(shift_right(interleave(v, v), [0, 16, 0, 16, ...])) for v of type u32xn, the halves of
// each 32-bit lane in order, is v's own bits, and becomes reinterpret<u16x2n>(v) (x86 is little-endian).
//
// Why: bf16 P.V as vdpbf16ps takes each row's probabilities for two keys as one 32-bit lane of bf16 halves. Those
// lanes are built in 32-bit arithmetic (two keys' rounded probabilities combined lane by lane: two adds and one
// vpermt2w per 32 probabilities), but a Halide Func cannot be read as a vector of another element type, and the
// halves written as `u16(bits >> 16 * half)` vectorise into exactly this expression, which LLVM 14 compiles as
// written: vpermd, vpsrlvd and vpmovdw, 7 instructions per vector where a load does.
class HalvesAsReinterpret : public Halide::Internal::IRMutator {
 public:
  using IRMutator::visit;
  Halide::Expr visit(const Halide::Internal::Cast* op) override;
};

// Adds the pass to `pipeline`; it holds no state, so one instance serves every pipeline.
void add_halves_as_reinterpret(Halide::Pipeline& pipeline);

}  // namespace tessera::cpu
