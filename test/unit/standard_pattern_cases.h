// The standard-library patterns and compositions every target is checked on (each target's test, the CUDA
// functor generator): one list, so that a pattern added to the prelude is added here once.
#pragma once

#include <string>
#include <vector>

namespace tessera::test {

inline const std::vector<std::string>& standard_pattern_cases() {
  static const std::vector<std::string> cases = {
      "full",
      "causal",
      "sliding_window(window=19)",
      "local(window=7)",
      "strided(stride=8)",
      "fixed(block=16, summary=3)",
      "dilated(window=6, dilation=3)",
      "local2d(width=12, block_h=3, block_w=4, halo_h=2, halo_w=1)",
      "local1d(query_block=8, memory=5)",
      "prefix_lm(prefix=21)",
      "document",
      "alibi",
      "softcap(cap=2.5)",
      "relative",
      "relative_bidir(max_distance=4)",
      "t5_bias(buckets=8, max_distance=20)",
      "causal & t5_bias(buckets=9, max_distance=30, bidirectional=false)",  // thresholds 6, 9, 14, 20
      "relative2d(width=6, max_rows=3, max_cols=4)",
      "causal & dot",                         // unscaled logits
      "sliding_window(window=9) & bilinear",  // queries projected by bilinear_w[h] first
      "causal & alibi",
      "causal & document",
      "causal & softcap(cap=20)",
      "softcap(cap=0.05)",  // saturated: tanh of large arguments
      "causal & relative",
      "sliding_window(window=5) | strided(stride=16)",
      "causal - prefix_lm(prefix=40)",  // rows before 40 have no key: zeros
  };
  return cases;
}

// Patterns with another normaliser, a weight or additive scoring, which the CPU and the reference run (the CUDA
// kernels refuse them by name for now).
inline const std::vector<std::string>& variant_pattern_cases() {
  static const std::vector<std::string> cases = {
      "hardmax",
      "local(window=8) & hardmax",
      "causal & alibi & hardmax",
      "(strided(stride=8) | document) & hardmax",
      "causal & relative & hardmax",
      "luong_local_p(half_width=4)",
      "causal & luong_local_p(half_width=3)",
      "luong_local_p(half_width=6) & softcap(cap=3)",
      "luong_local_p(half_width=5) - local(window=2)",
      "causal & sample(seed=5)",
      "local(window=6) & alibi & sample(seed=2)",
      "causal & additive",
      "strided(stride=8) & additive & softcap(cap=4)",
      "local(window=8) & additive & hardmax",
      "additive & luong_local_p(half_width=5)",
  };
  return cases;
}

// A gtest parameter name for a pattern expression.
inline std::string case_name(const std::string& expression) {
  std::string name;
  for (char c : expression) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

}  // namespace tessera::test
