#include "targets/cpu/halves_as_reinterpret.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "targets/cpu/attention_pipeline.h"
#include "test/unit/scoped_resources.h"

namespace tessera {
namespace {

using Halide::Expr;
using namespace Halide::Internal;

// u16x(2n)(shift_right(shuffle(v, [0, 0, 1, 1, ...]), broadcast(shift pair, n))), as vectorising u16(v(i) >> 16 * x)
// over x then i writes it.
Expr halves_of(const Expr& v, int first_shift, int second_shift, bool doubled = true) {
  const int n = v.type().lanes();
  std::vector<int> indices;
  for (int i = 0; i < 2 * n; ++i) indices.push_back(doubled ? i / 2 : i % n);
  Expr pair = Cast::make(Halide::UInt(32, 2), Ramp::make(first_shift, second_shift - first_shift, 2));
  Expr shift = Call::make(Halide::UInt(32, 2 * n), Call::shift_right,
                          {Shuffle::make({v}, indices), Shuffle::make_broadcast(pair, n)}, Call::PureIntrinsic);
  return Cast::make(Halide::UInt(16, 2 * n), shift);
}

TEST(HalvesAsReinterpret, TheHalvesOfEachLaneInOrderAreTheLaneItself) {
  const Expr v = Variable::make(Halide::UInt(32, 16), "v");
  cpu::HalvesAsReinterpret pass;
  const Expr rewritten = pass.mutate(halves_of(v, 0, 16));
  const Call* call = rewritten.as<Call>();
  ASSERT_NE(call, nullptr) << rewritten;
  EXPECT_TRUE(call->is_intrinsic(Call::reinterpret));
  EXPECT_EQ(call->type, Halide::UInt(16, 32));
  EXPECT_TRUE(equal(call->args[0], v));
}

TEST(HalvesAsReinterpret, OtherShiftsAndShufflesAreLeftAlone) {
  const Expr v = Variable::make(Halide::UInt(32, 16), "v");
  cpu::HalvesAsReinterpret pass;
  for (const Expr& e : {halves_of(v, 16, 0), halves_of(v, 0, 8), halves_of(v, 0, 16, false)}) {
    EXPECT_TRUE(equal(pass.mutate(e), e)) << e;
  }
}

// Compiled and run: the same words come out with the pass as without it.
TEST(HalvesAsReinterpret, CompiledPipelineKeepsItsResults) {
  Halide::Var x{"x"}, i{"i"};
  Halide::Func words{"words"}, halves{"halves"};
  words(i) = Halide::cast<uint32_t>(i) * Expr(uint32_t{2654435761u}) + Expr(uint32_t{12345u});
  halves(x, i) = Halide::cast<uint16_t>(words(i) >> (16 * x));
  words.compute_root();
  halves.bound(x, 0, 2).reorder(x, i).vectorize(x).vectorize(i, 16);
  // Whether the lowered statement still shifts (the pass did not match Halide's own vectorised form).
  auto shifts = [&](bool with_pass) {
    Halide::Pipeline p(halves);
    if (with_pass) cpu::add_halves_as_reinterpret(p);
    const test::TempDir dir;
    const std::string path = (dir.path() / "halves.stmt").string();
    p.compile_to_lowered_stmt(path, {}, Halide::Text, cpu::cpu_target());
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {}).find("shift_right") != std::string::npos;
  };
  EXPECT_TRUE(shifts(false));
  EXPECT_FALSE(shifts(true));
  auto run = [&](bool with_pass) {
    Halide::Pipeline p(halves);
    if (with_pass) cpu::add_halves_as_reinterpret(p);
    // The project's CPU target: Halide's host target may hold instructions this CPU lacks (cpu_target()).
    Halide::Buffer<uint16_t> out = p.realize({2, 64}, cpu::cpu_target());
    std::vector<uint16_t> values;
    for (int e = 0; e < 64; ++e) {
      for (int h = 0; h < 2; ++h) values.push_back(out(h, e));
    }
    return values;
  };
  const std::vector<uint16_t> plain = run(false);
  EXPECT_EQ(run(true), plain);
  const uint32_t word = 5u * 2654435761u + 12345u;
  EXPECT_EQ(plain[10], static_cast<uint16_t>(word));
  EXPECT_EQ(plain[11], static_cast<uint16_t>(word >> 16));
}

}  // namespace
}  // namespace tessera
