// Lowers Tessera's expression IR to Halide expressions: the pattern says *what*; this file only translates,
// and the schedules in chunk_pipeline.cpp say *how*.
#pragma once

#include <Halide.h>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/expr.h"

namespace tessera::cpu {

// The Halide values of everything an expression can name, at the point being computed.
struct HalideScope {
  std::map<ir::Var, Halide::Expr> vars;         // q k i j b h H N M D (Int(32)), s and scale (Float(32))
  std::map<std::string, Halide::Expr> symbols;  // run-time sizes such as R
  // A scalar element of a run-time tensor; indices are already Int(32).
  std::function<Halide::Expr(const std::string& tensor, const std::vector<Halide::Expr>& indices)> load;
  // dot(q_vec, tensor[indices...]) over the last dimension.
  std::function<Halide::Expr(const std::string& tensor, const std::vector<Halide::Expr>& indices)> dot_q;
};

// The point (i, j) a kernel scores and the sizes around it, as Halide values: what kernel_scope binds.
struct KernelPoint {
  Halide::Expr i, j;           // query row and key column (q = i + M - N, k = j)
  Halide::Expr batch, head;    // b, h
  Halide::Expr heads;          // H
  Halide::Expr queries, keys;  // N, M
  int head_dim;                // D
  Halide::Expr scale, score;   // the logit scale and the scaled logit s
};

// The scope every attention kernel lowers its pattern in: `point`'s variables, the symbols' parameters, clamped
// loads of the run-time tensors, and dot(q_vec, T[...]) as a per-pair sum over `query_feature(d)`, d in [0, D)
// (a kernel may replace dot_q with something faster). The scope refers to `symbols` and `tensors`: they must
// outlive it.
HalideScope kernel_scope(const KernelPoint& point,
                         const std::vector<std::pair<std::string, Halide::Param<int32_t>>>& symbols,
                         const std::map<std::string, Halide::ImageParam>& tensors,
                         std::function<Halide::Expr(Halide::Expr)> query_feature);

// Binds each run-time tensor's image to its view, which must be there (C order [d0, ..., dn] is Halide's
// (dn, ..., d0)). The views' data must outlive the realization.
void bind_tensor_views(Halide::ParamMap& params, const std::map<std::string, Halide::ImageParam>& images,
                       const std::map<std::string, ir::TensorView>& views);

// Run-time tensor reads for HalideScope::load and dot_q. Indices (outermost first, as in the IR) are clamped
// into the image so that Halide's bounds inference sees a finite region: the caller has proved or checked
// (targets::check_tensor_indices) that no index the pattern evaluates is out of bounds, so the clamp only
// touches lanes that are discarded. A load gives Int(32) or Float(32); the dot product sums
// query_feature(r) * img(r, indices...) over r in [0, D).
Halide::Expr clamped_tensor_load(const Halide::ImageParam& img, const std::vector<Halide::Expr>& indices);
Halide::Expr clamped_tensor_dot(const Halide::ImageParam& img, const std::vector<Halide::Expr>& indices, int D,
                                const std::function<Halide::Expr(Halide::Expr)>& query_feature);

// tanh of a Float(32), vectorised (Halide 14's own tanh is a scalar libm call per lane).
Halide::Expr vector_tanh(Halide::Expr x);

// exp and log that pass NaN on. Halide 14's own give exp(NaN) = 0 and log(NaN) = 89.1 (measured), which turned
// NaN logits into numbers (softcap's tanh, additive scoring, patterns' exp and log), where the reference's rows
// are NaN.
Halide::Expr exp_passing_nan(Halide::Expr x);
Halide::Expr log_passing_nan(Halide::Expr x);

// Whether float32 x is NaN, by its bits. Halide's is_nan is documented as undefined without strict_float, and the
// kernels are compiled without it (fast math): it let NaN keys through decoding's single-row kernels and hardmax.
Halide::Expr is_nan_bits(Halide::Expr x);
// tanh(x) given e^(2x), as 1 - 2 / (e^(2x) + 1): within a float ulp of 1 in absolute terms, 1 for e^(2x) = inf
// and -1 for 0. Additive scoring computes e^(2x) per pair, or as a product of per-row exponentials.
Halide::Expr tanh_of_exponential(Halide::Expr exp_2x);

// Integers become Int(32) (sizes and positions are below 2^31 on this target), floats Float(32), bools UInt(1).
// Integer / and % keep Tessera's floor semantics (division by zero gives 0) for any divisor.
Halide::Expr lower_to_halide(const ir::Expr& e, const HalideScope& scope);

}  // namespace tessera::cpu
