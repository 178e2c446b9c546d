// The masks of the standard patterns (dsl/prelude.attn), built by hand in expression IR, for tests that must not
// depend on the DSL front end.
#pragma once

#include "compiler/ir/expr.h"
#include "compiler/ir/pattern.h"

namespace tessera::testing {

namespace mask_ir {

inline ir::Expr q() { return ir::var(ir::Var::Q); }
inline ir::Expr k() { return ir::var(ir::Var::K); }
inline ir::Expr c(int64_t v) { return ir::int_imm(v); }
inline ir::Expr op(ir::BinaryOp o, ir::Expr a, ir::Expr b) { return ir::binary(o, std::move(a), std::move(b)); }
inline ir::Expr d() { return op(ir::BinaryOp::Sub, q(), k()); }
inline ir::Expr all(ir::Expr a, ir::Expr b) { return op(ir::BinaryOp::And, std::move(a), std::move(b)); }
inline ir::Expr any(ir::Expr a, ir::Expr b) { return op(ir::BinaryOp::Or, std::move(a), std::move(b)); }

inline ir::Expr causal() { return op(ir::BinaryOp::Le, k(), q()); }

inline ir::Expr sliding_window(int64_t window) {
  return all(op(ir::BinaryOp::Ge, d(), c(0)), op(ir::BinaryOp::Lt, d(), c(window)));
}

inline ir::Expr local(int64_t window) { return op(ir::BinaryOp::Lt, ir::call(ir::Fn::Abs, {d()}), c(window)); }

inline ir::Expr strided(int64_t stride) {
  return all(causal(), any(op(ir::BinaryOp::Lt, d(), c(stride)),
                           op(ir::BinaryOp::Eq, op(ir::BinaryOp::Mod, d(), c(stride)), c(0))));
}

inline ir::Expr fixed(int64_t block, int64_t summary) {
  using ir::BinaryOp;
  return all(causal(),
             any(op(BinaryOp::Eq, op(BinaryOp::Div, k(), c(block)), op(BinaryOp::Div, q(), c(block))),
                 op(BinaryOp::Ge, op(BinaryOp::Mod, k(), c(block)), op(BinaryOp::Sub, c(block), c(summary)))));
}

inline ir::Expr dilated(int64_t window, int64_t dilation) {
  using ir::BinaryOp;
  return all(all(op(BinaryOp::Ge, d(), c(0)), op(BinaryOp::Lt, d(), op(BinaryOp::Mul, c(window), c(dilation)))),
             op(BinaryOp::Eq, op(BinaryOp::Mod, d(), c(dilation)), c(0)));
}

inline ir::Expr local2d(int64_t width, int64_t block_h, int64_t block_w, int64_t halo_h, int64_t halo_w) {
  using ir::BinaryOp;
  ir::Expr row_q = op(BinaryOp::Div, q(), c(width));
  ir::Expr col_q = op(BinaryOp::Mod, q(), c(width));
  ir::Expr row_k = op(BinaryOp::Div, k(), c(width));
  ir::Expr col_k = op(BinaryOp::Mod, k(), c(width));
  ir::Expr r0 = op(BinaryOp::Mul, op(BinaryOp::Div, row_q, c(block_h)), c(block_h));
  ir::Expr c0 = op(BinaryOp::Mul, op(BinaryOp::Div, col_q, c(block_w)), c(block_w));
  ir::Expr m = causal();
  m = all(m, op(BinaryOp::Ge, row_k, op(BinaryOp::Sub, r0, c(halo_h))));
  m = all(m, op(BinaryOp::Le, row_k, op(BinaryOp::Sub, op(BinaryOp::Add, r0, c(block_h)), c(1))));
  m = all(m, op(BinaryOp::Ge, col_k, op(BinaryOp::Sub, c0, c(halo_w))));
  m = all(m, op(BinaryOp::Le, col_k,
                op(BinaryOp::Add, op(BinaryOp::Sub, op(BinaryOp::Add, c0, c(block_w)), c(1)), c(halo_w))));
  return m;
}

inline ir::Expr prefix_lm(int64_t prefix) { return any(causal(), op(ir::BinaryOp::Lt, k(), c(prefix))); }

}  // namespace mask_ir

inline ir::Pattern mask_pattern(std::string name, ir::Expr mask) {
  ir::Pattern p;
  p.name = std::move(name);
  p.mask = std::move(mask);
  p.score = ir::var(ir::Var::Score);
  return p;
}

}  // namespace tessera::testing
