#include "compiler/ir/evaluate.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "compiler/ir/hash_uniform.h"
#include "compiler/ir/log_bucket.h"

namespace tessera::ir {

namespace {

Value int_value(int64_t v) { return {Type::Int, v, 0, false}; }
Value float_value(double v) { return {Type::Float, 0, v, false}; }
Value bool_value(bool v) { return {Type::Bool, 0, 0, v}; }

const TensorView& find_tensor(const Node& n, const EvalEnv& env) {
  if (env.tensors) {
    auto it = env.tensors->find(n.name);
    if (it != env.tensors->end()) return it->second;
  }
  throw EvalError(fmt::format("run-time tensor '{}' was not given", n.name));
}

// Flat offset of the element at `index` (a prefix of the dimensions), bounds-checked.
int64_t offset_of(const Node& n, const TensorView& t, const std::vector<int64_t>& index) {
  int64_t offset = 0;
  for (size_t d = 0; d < index.size(); ++d) {
    if (index[d] < 0 || index[d] >= t.shape[d]) {
      std::string where;
      for (size_t e = 0; e < index.size(); ++e) where += (e ? ", " : "") + std::to_string(index[e]);
      throw EvalError(fmt::format("index [{}] is out of bounds for run-time tensor '{}' of shape [{}] (dimension {})",
                                  where, n.name, fmt::join(t.shape, ", "), d));
    }
    offset = offset * t.shape[d] + index[d];
  }
  return offset;
}

}  // namespace

int64_t AttentionSizes::size(const std::string& d) const {
  if (d == "B") return B;
  if (d == "H") return H;
  if (d == "Hkv") return Hkv;
  if (d == "N") return N;
  if (d == "M") return M;
  if (d == "D") return D;
  if (d == "Dv") return Dv;
  throw std::logic_error("tessera internal error: not an attention size: " + d);
}

Value evaluate(const Expr& e, const EvalEnv& env) {
  const Node& n = *e;
  switch (n.kind) {
    case Kind::IntImm: return int_value(n.int_value);
    case Kind::FloatImm: return float_value(n.float_value);
    case Kind::BoolImm: return bool_value(n.bool_value);
    case Kind::Var:
      if (n.var == Var::Score) return float_value(env.s);
      if (n.var == Var::Scale) return float_value(env.scale);
      return int_value(env.ints[static_cast<size_t>(n.var)]);
    case Kind::Symbol: {
      if (env.symbols) {
        auto it = env.symbols->find(n.name);
        if (it != env.symbols->end()) return it->second;
      }
      throw EvalError(fmt::format("'{}' has no value", n.name));
    }
    case Kind::Unary: {
      Value a = evaluate(n.operands[0], env);
      if (n.unary_op == UnaryOp::Not) return bool_value(!a.b);
      return a.type == Type::Int ? int_value(wrapping_sub(0, a.i)) : float_value(-a.f);
    }
    case Kind::Binary: {
      // && and || short-circuit, so a guard like `k < M && t[k] > 0` protects the load.
      if (n.binary_op == BinaryOp::And) {
        return bool_value(evaluate(n.operands[0], env).b && evaluate(n.operands[1], env).b);
      }
      if (n.binary_op == BinaryOp::Or) {
        return bool_value(evaluate(n.operands[0], env).b || evaluate(n.operands[1], env).b);
      }
      Value a = evaluate(n.operands[0], env);
      Value b = evaluate(n.operands[1], env);
      if (a.type == Type::Int) {
        switch (n.binary_op) {
          case BinaryOp::Add: return int_value(wrapping_add(a.i, b.i));
          case BinaryOp::Sub: return int_value(wrapping_sub(a.i, b.i));
          case BinaryOp::Mul: return int_value(wrapping_mul(a.i, b.i));
          case BinaryOp::Div: return int_value(floor_div(a.i, b.i));
          case BinaryOp::Mod: return int_value(floor_mod(a.i, b.i));
          case BinaryOp::Lt: return bool_value(a.i < b.i);
          case BinaryOp::Le: return bool_value(a.i <= b.i);
          case BinaryOp::Gt: return bool_value(a.i > b.i);
          case BinaryOp::Ge: return bool_value(a.i >= b.i);
          case BinaryOp::Eq: return bool_value(a.i == b.i);
          case BinaryOp::Ne: return bool_value(a.i != b.i);
          default: break;
        }
      } else if (a.type == Type::Float) {
        switch (n.binary_op) {
          case BinaryOp::Add: return float_value(a.f + b.f);
          case BinaryOp::Sub: return float_value(a.f - b.f);
          case BinaryOp::Mul: return float_value(a.f * b.f);
          case BinaryOp::Div: return float_value(a.f / b.f);
          case BinaryOp::Mod: return float_value(b.f == 0 ? 0.0 : a.f - b.f * std::floor(a.f / b.f));
          case BinaryOp::Lt: return bool_value(a.f < b.f);
          case BinaryOp::Le: return bool_value(a.f <= b.f);
          case BinaryOp::Gt: return bool_value(a.f > b.f);
          case BinaryOp::Ge: return bool_value(a.f >= b.f);
          case BinaryOp::Eq: return bool_value(a.f == b.f);
          case BinaryOp::Ne: return bool_value(a.f != b.f);
          default: break;
        }
      } else {
        if (n.binary_op == BinaryOp::Eq) return bool_value(a.b == b.b);
        if (n.binary_op == BinaryOp::Ne) return bool_value(a.b != b.b);
      }
      throw std::logic_error("tessera internal error: ill-typed binary node");
    }
    case Kind::Call: {
      if (n.fn == Fn::Select) {
        return evaluate(n.operands[0], env).b ? evaluate(n.operands[1], env) : evaluate(n.operands[2], env);
      }
      std::vector<Value> a;
      a.reserve(n.operands.size());
      for (const auto& o : n.operands) a.push_back(evaluate(o, env));
      bool is_int = !a.empty() && a[0].type == Type::Int;
      switch (n.fn) {
        case Fn::Min: return is_int ? int_value(std::min(a[0].i, a[1].i)) : float_value(std::fmin(a[0].f, a[1].f));
        case Fn::Max: return is_int ? int_value(std::max(a[0].i, a[1].i)) : float_value(std::fmax(a[0].f, a[1].f));
        case Fn::Abs:
          return is_int ? int_value(a[0].i < 0 ? wrapping_sub(0, a[0].i) : a[0].i) : float_value(std::fabs(a[0].f));
        case Fn::Clamp:
          // clamp(x, lo, hi) == min(max(x, lo), hi), so lo > hi yields hi on every target.
          return is_int ? int_value(std::min(std::max(a[0].i, a[1].i), a[2].i))
                        : float_value(std::fmin(std::fmax(a[0].f, a[1].f), a[2].f));
        case Fn::Tanh: return float_value(std::tanh(a[0].f));
        case Fn::Exp: return float_value(std::exp(a[0].f));
        case Fn::Log: return float_value(std::log(a[0].f));
        case Fn::Exp2: return float_value(std::exp2(a[0].f));
        case Fn::Sqrt: return float_value(std::sqrt(a[0].f));
        case Fn::Pow: return float_value(std::pow(a[0].f, a[1].f));
        case Fn::Floor: return float_value(std::floor(a[0].f));
        case Fn::Ceil: return float_value(std::ceil(a[0].f));
        case Fn::ToFloat: return float_value(static_cast<double>(a[0].i));
        case Fn::ToInt: {
          double t = std::trunc(a[0].f);
          if (!(t >= -9.2e18 && t <= 9.2e18)) return int_value(0);  // NaN or out of range: defined, not UB
          return int_value(static_cast<int64_t>(t));
        }
        case Fn::BitAnd: return int_value(a[0].i & a[1].i);
        case Fn::BitOr: return int_value(a[0].i | a[1].i);
        case Fn::BitXor: return int_value(a[0].i ^ a[1].i);
        case Fn::BitNot: return int_value(~a[0].i);
        case Fn::Shl:
          return int_value(a[1].i < 0 || a[1].i > 63 ? 0
                                                     : static_cast<int64_t>(static_cast<uint64_t>(a[0].i) << a[1].i));
        case Fn::Shr: return int_value(a[0].i >> std::clamp<int64_t>(a[1].i, 0, 63));
        case Fn::LogBucket: return int_value(log_bucket(a[0].i, a[1].i, a[2].i, a[3].i));
        case Fn::HashUniform: return float_value(hash_uniform(a[0].i, a[1].i, a[2].i, a[3].i, a[4].i));
        case Fn::Select: break;
      }
      throw std::logic_error("tessera internal error: unknown function");
    }
    case Kind::Load: {
      const TensorView& t = find_tensor(n, env);
      std::vector<int64_t> index;
      index.reserve(n.operands.size());
      for (const auto& o : n.operands) index.push_back(evaluate(o, env).i);
      int64_t offset = offset_of(n, t, index);
      if (t.elem_type == ElemType::Int32) return int_value(static_cast<const int32_t*>(t.data)[offset]);
      return float_value(static_cast<const float*>(t.data)[offset]);
    }
    case Kind::DotQ: {
      const TensorView& t = find_tensor(n, env);
      std::vector<int64_t> index;
      index.reserve(n.operands.size());
      for (const auto& o : n.operands) index.push_back(evaluate(o, env).i);
      int64_t row = offset_of(n, t, index) * t.shape.back();
      const float* data = static_cast<const float*>(t.data) + row;
      double sum = 0;
      for (int64_t d = 0; d < env.D; ++d) sum += static_cast<double>(env.q_vec[d]) * static_cast<double>(data[d]);
      return float_value(sum);
    }
  }
  throw std::logic_error("tessera internal error: unknown node kind");
}

PatternEvaluator::PatternEvaluator(const Pattern& pattern, const AttentionSizes& sizes,
                                   std::map<std::string, TensorView> tensors, double scale)
    : pattern_(pattern), sizes_(sizes), tensors_(std::move(tensors)), scale_(scale) {
  for (const TensorDecl& decl : pattern.inputs) {
    auto it = tensors_.find(decl.name);
    if (it == tensors_.end()) {
      throw EvalError(fmt::format("pattern '{}' needs the run-time tensor '{}' ({}[{}]), which was not given",
                                  pattern.name, decl.name, elem_type_name(decl.elem_type), fmt::join(decl.dims, ", ")));
    }
    const TensorView& t = it->second;
    if (t.elem_type != decl.elem_type) {
      throw EvalError(fmt::format("run-time tensor '{}' must be {}, got {}", decl.name, elem_type_name(decl.elem_type),
                                  elem_type_name(t.elem_type)));
    }
    if (t.shape.size() != decl.dims.size()) {
      throw EvalError(fmt::format("run-time tensor '{}' must have shape [{}], got rank {} shape [{}]", decl.name,
                                  fmt::join(decl.dims, ", "), t.shape.size(), fmt::join(t.shape, ", ")));
    }
    for (size_t d = 0; d < decl.dims.size(); ++d) {
      const std::string& dim = decl.dims[d];
      int64_t expected = -1;
      if (is_attention_size(dim)) {
        expected = sizes.size(dim);
      } else if (auto s = symbols_.find(dim); s != symbols_.end()) {
        expected = s->second.i;
      } else {
        if (t.shape[d] < 1) {
          throw EvalError(fmt::format("run-time tensor '{}' has an empty dimension {} ({})", decl.name, d, dim));
        }
        symbols_[dim] = Value{Type::Int, t.shape[d], 0, false};
        continue;
      }
      if (t.shape[d] != expected) {
        throw EvalError(fmt::format("run-time tensor '{}' must have shape [{}], got [{}]: dimension {} ({}) must be {}",
                                    decl.name, fmt::join(decl.dims, ", "), fmt::join(t.shape, ", "), d, dim, expected));
      }
    }
    if (t.data == nullptr) throw EvalError(fmt::format("run-time tensor '{}' has no data", decl.name));
  }
  mask_is_true_ = !pattern.has_mask();
  score_is_identity_ = !pattern.has_score();
}

EvalEnv PatternEvaluator::env_at(int64_t b, int64_t h, int64_t i, int64_t j) const {
  EvalEnv env;
  env.set(Var::Q, i + sizes_.M - sizes_.N);
  env.set(Var::K, j);
  env.set(Var::I, i);
  env.set(Var::J, j);
  env.set(Var::Batch, b);
  env.set(Var::Head, h);
  env.set(Var::Heads, sizes_.H);
  env.set(Var::N, sizes_.N);
  env.set(Var::M, sizes_.M);
  env.set(Var::D, sizes_.D);
  env.scale = scale_;
  env.D = sizes_.D;
  env.symbols = &symbols_;
  env.tensors = &tensors_;
  return env;
}

bool PatternEvaluator::allowed(int64_t b, int64_t h, int64_t i, int64_t j) const {
  if (mask_is_true_) return true;
  return evaluate(pattern_.mask, env_at(b, h, i, j)).b;
}

double PatternEvaluator::score(int64_t b, int64_t h, int64_t i, int64_t j, double s, const float* q_vec) const {
  if (score_is_identity_) return s;
  EvalEnv env = env_at(b, h, i, j);
  env.s = s;
  env.q_vec = q_vec;
  return evaluate(pattern_.score, env).f;
}

double PatternEvaluator::weight(int64_t b, int64_t h, int64_t i, int64_t j) const {
  if (!pattern_.has_weight()) return 1.0;
  return evaluate(pattern_.weight, env_at(b, h, i, j)).f;
}

}  // namespace tessera::ir
