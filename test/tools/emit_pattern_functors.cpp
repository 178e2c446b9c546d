// Build-time generator for test/unit/cuda_device_expression_test.cpp: `emit_pattern_functors OUT.h` writes a
// header holding the CUDA functor (targets/cuda/device_expression.h) of every planner component of a fixed
// list of patterns, and of a fixed list of random masks, with a table the test walks to compare each functor,
// compiled by the host compiler, against the IR's reference semantics (compiler/ir/evaluate.h).
//
// The test rebuilds every pattern and random expression itself; the table records the IR text each functor
// was emitted from, so that a generator and test that disagree on the inputs fail instead of comparing
// unrelated things.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/printer.h"
#include "compiler/planner/sparsity_plan.h"
#include "compiler/sema/pattern_library.h"
#include "dsl/diagnostics.h"
#include "targets/cuda/device_expression.h"
#include "test/unit/random_expressions.h"
#include "test/unit/standard_pattern_cases.h"

namespace {

using namespace tessera;

// Patterns beyond the prelude that exercise every operation and function the emitter has, on values where
// float32 stays within a few ulps of the reference's float64 (the test's s values are multiples of 1/64, so
// floor, ceil, % and int() see exact inputs).
constexpr const char* kExtraPatternSource = R"attn(
pattern float_functions(c: float > 0.0) {
  let x = s / 4.0;
  score: tanh(x) + exp(x) - log(abs(s) + 1.0) + exp2(-x) * sqrt(abs(s) + c) + pow(abs(x) + 1.0, c)
       + floor(s * 3.0) - ceil(s / 2.0) + min(s, scale) * max(x, -1.0) + clamp(s, -2.0, 3.0) + s % 1.5
       + (-s) % -2.5 + float(int(s * 2.0)) * float(h - H) / float(D) + select(s > c, 1.0, -0.5) - abs(-x)
       + max(s, -1e39) - min(s, 1e39);
}

pattern float_mask {
  mask: float(q - k) * 0.5 >= -0.25 * float(h + 1) && float(k) / 3.0 < float(q) + 1.0;
}

pattern integer_functions(c: int >= 1) {
  let d = q - k;
  mask: (bitand(d, 3) != 1 || bitor(k, c) % 3 == 0) && shl(k, 2) - shr(q, 1) > -c * 40
     && bitxor(q, k) % 5 != bitnot(h) + 4 && d / (0 - c) <= min(q, k) - max(q - 200, k / 2)
     && abs(d - 30) >= clamp(d, 0 - c, c) && select(d % (h - 2) == 0, d >= 0, d > -c)
     && shr(-q, 3) < shl(1, k % 31) + -(d * 3) && (k - 2 * q) % 7 != 3;
}
)attn";

// The patterns of the table, as users write them: every target's standard cases, and the test patterns above that
// between them use every operator and function.
std::vector<std::string> expressions() {
  std::vector<std::string> all = test::standard_pattern_cases();
  all.insert(all.end(), {
                            "float_functions(c=0.5)",
                            "causal & float_mask",
                            "integer_functions(c=7)",
                            "strided(stride=8) & integer_functions(c=3) & softcap(cap=3.0)",
                            "causal & luong_local_p(half_width=3)",  // a weight
                            "luong_local_p(half_width=5) - local(window=2)",
                        });
  return all;
}

constexpr int64_t kPlanN = 77, kPlanM = 150;
constexpr int kRandomMasks = 48;
constexpr int kRandomDepth = 5;
constexpr uint64_t kRandomSeedBase = 0x7e55e7a;

// A C++ string literal holding `text`.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string quoted_list(const std::vector<std::string>& names) {
  std::vector<std::string> q;
  for (const auto& n : names) q.push_back(quoted(n));
  return fmt::format("{{{}}}", fmt::join(q, ", "));
}

std::vector<std::string> sorted_symbols(const ir::Pattern& p) {
  std::set<std::string> names;
  ir::collect_symbols(p.mask, &names);
  ir::collect_symbols(p.score, &names);
  return {names.begin(), names.end()};
}

std::vector<std::string> sorted_tensors(const ir::Pattern& p) {
  std::set<std::string> names;
  for (const ir::TensorDecl& t : p.inputs) names.insert(t.name);
  return {names.begin(), names.end()};
}

std::string generate() {
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  if (!library.add_file(std::make_shared<const dsl::SourceFile>("functor_test_patterns.attn", kExtraPatternSource),
                        diags)) {
    throw std::runtime_error("the generator's own patterns do not compile:\n" + diags.str());
  }

  std::string structs, cases, names;
  const std::vector<std::string> kExpressions = expressions();
  for (size_t e = 0; e < kExpressions.size(); ++e) {
    std::optional<ir::Pattern> pattern = library.instantiate(kExpressions[e], diags);
    if (!pattern) throw std::runtime_error(fmt::format("'{}' does not instantiate:\n{}", kExpressions[e], diags.str()));
    planner::Plan plan = planner::plan_pattern(*pattern, kPlanN, kPlanM);
    for (size_t c = 0; c < plan.components.size(); ++c) {
      const ir::Pattern& local = plan.components[c].local;
      cuda::FunctorSpec spec{fmt::format("Case{}_c{}", e, c), sorted_symbols(local), sorted_tensors(local)};
      structs += fmt::format("// Component {} of the plan: {}.\n", c, plan.components[c].description);
      structs += cuda::emit_pattern_functor(local, spec) + "\n";
      names += fmt::format(" X({})", spec.name);
      cases += fmt::format(
          "    {{{}, {}, {},\n     {}, {}, {}, {}, {n}::kHasMask, {n}::kHasScore, {n}::kHasWeight, {n}::kReadsQuery,\n"
          "     &mask_of<{n}>, &score_of<{n}>, &weight_of<{n}>}},\n",
          quoted(kExpressions[e]), c,
          quoted(ir::to_string(local.mask) + " ; " + ir::to_string(local.score) + " ; " + ir::to_string(local.weight)),
          spec.symbols.size(), quoted_list(spec.symbols), spec.tensors.size(), quoted_list(spec.tensors),
          fmt::arg("n", spec.name));
    }
  }

  std::string random_cases;
  for (int r = 0; r < kRandomMasks; ++r) {
    testing::ExprGenerator gen(kRandomSeedBase + static_cast<uint64_t>(r), testing::functor_mask_config());
    ir::Pattern p{fmt::format("random mask {}", r),
                  gen.make(ir::Type::Bool, kRandomDepth),
                  ir::var(ir::Var::Score),
                  {ir::TensorDecl{"t", ir::ElemType::Int32, {"T"}, {}}}};
    cuda::FunctorSpec spec{fmt::format("RandomMask{}", r), {}, {"t"}};
    structs += cuda::emit_pattern_functor(p, spec) + "\n";
    names += fmt::format(" X({})", spec.name);
    random_cases += fmt::format("    {{{}ull, {}, &mask_of<{}>}},\n", kRandomSeedBase + static_cast<uint64_t>(r),
                                quoted(ir::to_string(p.mask)), spec.name);
  }

  return fmt::format(R"(// Generated by emit_pattern_functors (test/tools/emit_pattern_functors.cpp) for
// test/unit/cuda_device_expression_test.cpp: do not edit.
#pragma once

#include "targets/cuda/kernel/expression_support.cuh"

namespace tessera_cuda::test_functors {{

{}
// Every functor above, for code that instantiates each one: TESSERA_TEST_FUNCTORS(X) expands X(Name) for each.
#define TESSERA_TEST_FUNCTORS(X){}

// A query row held as D consecutive floats.
struct ArrayQueryRow {{
  const float* q;
  TESSERA_HD float operator()(i32 d) const {{ return q[d]; }}
}};

// The rest is for the host test (NVRTC, which compiles the functors above as device code, has no host code).
#if !defined(__CUDACC_RTC__)

// The patterns the test's library adds to the prelude.
inline constexpr const char* kExtraPatternSource = R"attn({})attn";

inline constexpr long long kPlanN = {}, kPlanM = {};
inline constexpr int kRandomDepth = {};

using MaskFn = bool (*)(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const float* q);
using ScoreFn = float (*)(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, float s, const float* q);
using WeightFn = float (*)(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const float* q);

template <class F>
bool mask_of(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const float* q) {{
  return F::mask(a, b, h, i, j, ArrayQueryRow{{q}});
}}
template <class F>
float score_of(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, float s, const float* q) {{
  return F::score(a, b, h, i, j, s, ArrayQueryRow{{q}});
}}
template <class F>
float weight_of(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const float* q) {{
  return F::weight(a, b, h, i, j, ArrayQueryRow{{q}});
}}

// One functor per component of planner::plan_pattern(pattern, kPlanN, kPlanM).
struct FunctorCase {{
  const char* expression;
  int component;
  const char* local;  // the component's local mask, score and weight (ir::to_string), " ; "-separated
  int symbol_count;
  const char* symbols[kMaxPatternSymbols];  // PatternArgs::symbols order: sorted by name
  int tensor_count;
  const char* tensors[kMaxPatternTensors];  // PatternArgs::tensors order: sorted by name
  bool has_mask, has_score, has_weight, reads_query;  // the functor's kHasMask, kHasScore, kHasWeight, kReadsQuery
  MaskFn mask;
  ScoreFn score;
  WeightFn weight;
}};

inline const FunctorCase kFunctorCases[] = {{
{}}};

// Random masks of testing::ExprGenerator(seed, ...).make(Bool, kRandomDepth); tensor 0 is "t".
struct RandomMaskCase {{
  unsigned long long seed;
  const char* mask;  // ir::to_string of the expression
  MaskFn fn;
}};

inline const RandomMaskCase kRandomMaskCases[] = {{
{}}};

#endif  // !defined(__CUDACC_RTC__)

}}  // namespace tessera_cuda::test_functors
)",
                     structs, names, kExtraPatternSource, kPlanN, kPlanM, kRandomDepth, cases, random_cases);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: emit_pattern_functors OUT.h\n";
    return 2;
  }
  try {
    std::string text = generate();
    // Written whole to a temporary first, so an interrupted build never leaves a truncated header behind.
    std::string temporary = std::string(argv[1]) + ".tmp";
    {
      std::ofstream out(temporary, std::ios::binary);
      out << text;
      if (!out.flush()) throw std::runtime_error("cannot write " + temporary);
    }
    if (std::rename(temporary.c_str(), argv[1]) != 0) throw std::runtime_error(std::string("cannot write ") + argv[1]);
  } catch (const std::exception& e) {
    std::cerr << "emit_pattern_functors: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
