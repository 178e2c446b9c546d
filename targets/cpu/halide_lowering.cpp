#include "targets/cpu/halide_lowering.h"

#include <fmt/format.h>

#include <limits>
#include <stdexcept>

#include "compiler/ir/hash_uniform.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;

// Halide's signed / and % are Euclidean, which equals floor division only for positive divisors.
bool positive_constant(const ir::Expr& e) { return e->kind == ir::Kind::IntImm && e->int_value > 0; }

Expr floor_div(const Expr& a, const Expr& b, bool b_positive) {
  if (b_positive) return a / b;
  // floor(a / b) for b < 0 is floor(-a / -b) with a positive divisor; Halide gives 0 for b == 0.
  return Halide::select(b < 0, (-a) / (-b), a / b);
}

Expr floor_mod(const Expr& a, const Expr& b, bool b_positive) {
  if (b_positive) return a % b;
  return Halide::select(b == 0, 0, a - b * floor_div(a, b, false));
}

class Lowering {
 public:
  explicit Lowering(const HalideScope& scope) : scope_(scope) {}

  Expr lower(const ir::Expr& e) {
    const ir::Node& n = *e;
    switch (n.kind) {
      case ir::Kind::IntImm:
        if (n.int_value < std::numeric_limits<int32_t>::min() || n.int_value > std::numeric_limits<int32_t>::max()) {
          throw std::invalid_argument(
              fmt::format("the CPU target computes integers in 32 bits; the constant {} does not fit", n.int_value));
        }
        return Expr(static_cast<int32_t>(n.int_value));
      case ir::Kind::FloatImm: return Expr(static_cast<float>(n.float_value));
      case ir::Kind::BoolImm: return Halide::cast<bool>(n.bool_value ? 1 : 0);
      case ir::Kind::Var: {
        auto it = scope_.vars.find(n.var);
        if (it == scope_.vars.end()) {
          throw std::logic_error(fmt::format("tessera internal error: '{}' is not bound here", ir::var_name(n.var)));
        }
        return it->second;
      }
      case ir::Kind::Symbol: {
        auto it = scope_.symbols.find(n.name);
        if (it == scope_.symbols.end()) {
          throw std::logic_error(fmt::format("tessera internal error: '{}' has no value", n.name));
        }
        return it->second;
      }
      case ir::Kind::Unary: {
        Expr a = lower(n.operands[0]);
        return n.unary_op == ir::UnaryOp::Not ? !a : -a;
      }
      case ir::Kind::Binary: return lower_binary(n);
      case ir::Kind::Call: return lower_call(n);
      case ir::Kind::Load: return scope_.load(n.name, lower_all(n.operands));
      case ir::Kind::DotQ: return scope_.dot_q(n.name, lower_all(n.operands));
    }
    throw std::logic_error("tessera internal error: unknown IR node");
  }

 private:
  std::vector<Expr> lower_all(const std::vector<ir::Expr>& es) {
    std::vector<Expr> out;
    out.reserve(es.size());
    for (const auto& e : es) out.push_back(lower(e));
    return out;
  }

  Expr lower_binary(const ir::Node& n) {
    Expr a = lower(n.operands[0]);
    Expr b = lower(n.operands[1]);
    bool is_int = n.operands[0]->type == ir::Type::Int;
    switch (n.binary_op) {
      case ir::BinaryOp::Add: return a + b;
      case ir::BinaryOp::Sub: return a - b;
      case ir::BinaryOp::Mul: return a * b;
      case ir::BinaryOp::Div: return is_int ? floor_div(a, b, positive_constant(n.operands[1])) : a / b;
      case ir::BinaryOp::Mod:
        if (is_int) return floor_mod(a, b, positive_constant(n.operands[1]));
        return Halide::select(b == 0.0f, 0.0f, a - b * Halide::floor(a / b));
      case ir::BinaryOp::Lt: return a < b;
      case ir::BinaryOp::Le: return a <= b;
      case ir::BinaryOp::Gt: return a > b;
      case ir::BinaryOp::Ge: return a >= b;
      case ir::BinaryOp::Eq: return a == b;
      case ir::BinaryOp::Ne: return a != b;
      case ir::BinaryOp::And: return a && b;
      case ir::BinaryOp::Or: return a || b;
    }
    throw std::logic_error("tessera internal error: unknown binary operator");
  }

  Expr lower_call(const ir::Node& n) {
    std::vector<Expr> a = lower_all(n.operands);
    switch (n.fn) {
      case ir::Fn::Min: return Halide::min(a[0], a[1]);
      case ir::Fn::Max: return Halide::max(a[0], a[1]);
      case ir::Fn::Abs: return n.type == ir::Type::Int ? Halide::cast<int32_t>(Halide::abs(a[0])) : Halide::abs(a[0]);
      case ir::Fn::Clamp: return Halide::min(Halide::max(a[0], a[1]), a[2]);  // lo > hi gives hi, as in the IR
      case ir::Fn::Select: return Halide::select(a[0], a[1], a[2]);
      case ir::Fn::Tanh: return vector_tanh(a[0]);
      case ir::Fn::Exp: return exp_passing_nan(a[0]);
      case ir::Fn::Log: return log_passing_nan(a[0]);
      case ir::Fn::Exp2: return exp_passing_nan(a[0] * 0.693147180559945309f);
      case ir::Fn::Sqrt: return Halide::sqrt(a[0]);
      case ir::Fn::Pow: return Halide::pow(a[0], a[1]);
      case ir::Fn::Floor: return Halide::floor(a[0]);
      case ir::Fn::Ceil: return Halide::ceil(a[0]);
      case ir::Fn::ToFloat: return Halide::cast<float>(a[0]);
      case ir::Fn::ToInt: {
        // NaN or out of range gives 0, as in the IR's semantics; otherwise truncation towards zero.
        Expr t = Halide::trunc(a[0]);
        return Halide::select(is_nan_bits(t) || t < -2147483648.0f || t >= 2147483648.0f, 0, Halide::cast<int32_t>(t));
      }
      case ir::Fn::BitAnd: return a[0] & a[1];
      case ir::Fn::BitOr: return a[0] | a[1];
      case ir::Fn::BitXor: return a[0] ^ a[1];
      case ir::Fn::BitNot: return ~a[0];
      case ir::Fn::Shl: return Halide::select(a[1] < 0 || a[1] > 31, 0, a[0] << Halide::clamp(a[1], 0, 31));
      case ir::Fn::Shr: return a[0] >> Halide::clamp(a[1], 0, 31);
      case ir::Fn::LogBucket: break;  // ir::simplify rewrote every one into comparisons
      case ir::Fn::HashUniform: {
        // ir/hash_uniform.h in uint32 arithmetic (wrapping multiplication, logical shifts).
        auto mix = [](Expr x) {
          x = x ^ (x >> 16);
          x = x * Expr(uint32_t{0x7feb352du});
          x = x ^ (x >> 15);
          x = x * Expr(uint32_t{0x846ca68bu});
          return x ^ (x >> 16);
        };
        Expr x = mix(Halide::cast<uint32_t>(a[0]) ^ Expr(ir::kHashUniformStart));
        for (size_t i = 1; i < 5; ++i) x = mix(x ^ Halide::cast<uint32_t>(a[i]));
        return (Halide::cast<float>(x >> 9) + 0.5f) * (1.0f / 8388608.0f);
      }
    }
    throw std::logic_error("tessera internal error: unknown function");
  }

  const HalideScope& scope_;
};

}  // namespace

Expr lower_to_halide(const ir::Expr& e, const HalideScope& scope) { return Lowering(scope).lower(e); }

Expr is_nan_bits(Expr x) {
  return (Halide::reinterpret(Halide::UInt(32), x) & Expr(uint32_t{0x7fffffff})) > Expr(uint32_t{0x7f800000});
}

Expr exp_passing_nan(Expr x) { return Halide::select(is_nan_bits(x), x, Halide::exp(x)); }

Expr log_passing_nan(Expr x) { return Halide::select(is_nan_bits(x), x, Halide::log(x)); }

Expr tanh_of_exponential(Expr exp_2x) { return 1.0f - 2.0f / (exp_2x + 1.0f); }

Expr vector_tanh(Expr x) {
  // Halide 14 lowers tanh to a scalar libm call per lane (measured: softcap ran at 1/5 of causal's speed);
  // through its vectorised exp instead: tanh|x| = (1 - e^-2|x|) / (1 + e^-2|x|), exact at the ends (|x| large
  // gives 1) and within a few float ulps of the result elsewhere. NaN stays NaN (exp_passing_nan): softcap must
  // not turn a NaN logit into a number.
  Expr t = exp_passing_nan(-2.0f * Halide::abs(x));
  Expr magnitude = (1.0f - t) / (1.0f + t);
  return Halide::select(x < 0.0f, -magnitude, magnitude);
}

HalideScope kernel_scope(const KernelPoint& point,
                         const std::vector<std::pair<std::string, Halide::Param<int32_t>>>& symbols,
                         const std::map<std::string, Halide::ImageParam>& tensors,
                         std::function<Halide::Expr(Halide::Expr)> query_feature) {
  HalideScope scope;
  scope.vars[ir::Var::I] = point.i;
  scope.vars[ir::Var::J] = point.j;
  scope.vars[ir::Var::Q] = point.i + (point.keys - point.queries);
  scope.vars[ir::Var::K] = point.j;
  scope.vars[ir::Var::Batch] = point.batch;
  scope.vars[ir::Var::Head] = point.head;
  scope.vars[ir::Var::Heads] = point.heads;
  scope.vars[ir::Var::N] = point.queries;
  scope.vars[ir::Var::M] = point.keys;
  scope.vars[ir::Var::D] = Expr(point.head_dim);
  scope.vars[ir::Var::Scale] = point.scale;
  scope.vars[ir::Var::Score] = point.score;
  for (const auto& [name, param] : symbols) scope.symbols[name] = param;
  scope.load = [&tensors](const std::string& tensor, const std::vector<Expr>& indices) {
    return clamped_tensor_load(tensors.at(tensor), indices);
  };
  scope.dot_q = [&tensors, query_feature, D = point.head_dim](const std::string& tensor,
                                                              const std::vector<Expr>& indices) {
    return clamped_tensor_dot(tensors.at(tensor), indices, D, query_feature);
  };
  return scope;
}

void bind_tensor_views(Halide::ParamMap& params, const std::map<std::string, Halide::ImageParam>& images,
                       const std::map<std::string, ir::TensorView>& views) {
  for (const auto& [name, img] : images) {
    const ir::TensorView& view = views.at(name);
    std::vector<int> sizes(view.shape.rbegin(), view.shape.rend());
    if (view.elem_type == ir::ElemType::Int32) {
      params.set(img, Halide::Buffer<int32_t>(static_cast<int32_t*>(const_cast<void*>(view.data)), sizes));
    } else {
      params.set(img, Halide::Buffer<float>(static_cast<float*>(const_cast<void*>(view.data)), sizes));
    }
  }
}

Halide::Expr clamped_tensor_load(const Halide::ImageParam& img, const std::vector<Halide::Expr>& indices) {
  std::vector<Halide::Expr> args;
  for (size_t d = indices.size(); d-- > 0;) {
    const int dim = static_cast<int>(indices.size() - 1 - d);
    args.push_back(Halide::clamp(indices[d], 0, img.dim(dim).extent() - 1));
  }
  Halide::Expr value = img(args);
  return img.type() == Halide::Int(32) ? value : Halide::cast<float>(value);
}

Halide::Expr clamped_tensor_dot(const Halide::ImageParam& img, const std::vector<Halide::Expr>& indices, int D,
                                const std::function<Halide::Expr(Halide::Expr)>& query_feature) {
  Halide::RDom r(0, D, "rdot");
  std::vector<Halide::Expr> args{r};
  for (size_t d = indices.size(); d-- > 0;) {
    const int dim = static_cast<int>(indices.size() - d);
    args.push_back(Halide::clamp(indices[d], 0, img.dim(dim).extent() - 1));
  }
  return Halide::sum(query_feature(r) * img(args));
}

}  // namespace tessera::cpu
