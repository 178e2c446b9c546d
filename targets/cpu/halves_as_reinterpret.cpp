#include "targets/cpu/halves_as_reinterpret.h"

namespace tessera::cpu {

namespace {

using Halide::Expr;
using namespace Halide::Internal;

// Whether `e` is the constant vector [0, 16, 0, 16, ...] of `lanes` lanes: [0, 16] (a ramp, possibly cast)
// repeated, as vectorisation writes it (a broadcast node, or a shuffle that broadcasts).
bool is_alternating_halves_shift(const Expr& e, int lanes) {
  if (e.type().lanes() != lanes) return false;
  Expr pair;
  if (const Broadcast* b = e.as<Broadcast>()) {
    pair = b->value;
  } else if (const Shuffle* s = e.as<Shuffle>(); s != nullptr && s->vectors.size() == 1 && s->is_broadcast()) {
    pair = s->vectors[0];
  } else {
    return false;
  }
  if (const Cast* c = pair.as<Cast>()) pair = c->value;
  const Ramp* r = pair.as<Ramp>();
  if (r == nullptr || r->lanes != 2) return false;
  auto equals = [](const Expr& x, uint64_t value) {
    if (const auto i = as_const_int(x)) return *i >= 0 && static_cast<uint64_t>(*i) == value;
    if (const auto u = as_const_uint(x)) return *u == value;
    return false;
  };
  return equals(r->base, 0) && equals(r->stride, 16);
}

// Whether `s` repeats each lane of one vector twice in order: [0, 0, 1, 1, ...].
bool is_lane_doubling(const Shuffle* s) {
  if (s->vectors.size() != 1) return false;
  const int n = s->vectors[0].type().lanes();
  if (static_cast<int>(s->indices.size()) != 2 * n) return false;
  for (int i = 0; i < 2 * n; ++i) {
    if (s->indices[i] != i / 2) return false;
  }
  return true;
}

}  // namespace

Expr HalvesAsReinterpret::visit(const Cast* op) {
  const Halide::Type t = op->type;
  if (t.is_uint() && t.bits() == 16 && t.lanes() > 1 && t.lanes() % 2 == 0) {
    const Call* shift = op->value.as<Call>();
    if (shift != nullptr && shift->is_intrinsic(Call::shift_right) && shift->type.is_uint() &&
        shift->type.bits() == 32 && shift->type.lanes() == t.lanes()) {
      const Shuffle* doubled = shift->args[0].as<Shuffle>();
      if (doubled != nullptr && is_lane_doubling(doubled) && is_alternating_halves_shift(shift->args[1], t.lanes())) {
        return Halide::reinterpret(t, mutate(doubled->vectors[0]));
      }
    }
  }
  return IRMutator::visit(op);
}

void add_halves_as_reinterpret(Halide::Pipeline& pipeline) {
  static HalvesAsReinterpret pass;
  pipeline.add_custom_lowering_pass(&pass, [] {});
}

}  // namespace tessera::cpu
