// What an emitted pattern functor reads at run time besides the point (b, h, i, j): the sizes of the view it
// runs over, the logit scale, the pattern's run-time tensors and the values of its symbols. Plain data, passed
// to the kernel by value.
//
// The functor contract (targets/cuda/device_expression.h emits one struct per pattern component):
//
//   struct Name {
//     static constexpr bool kHasMask;     // false: every pair is allowed (mask() returns true)
//     static constexpr bool kHasScore;    // false: score() returns s
//     static constexpr bool kHasWeight;   // false: weight() returns 1
//     static constexpr bool kReadsQuery;  // the expressions contain dot(q_vec, T[...])
//     static constexpr bool kHardmax;     // the normaliser is hardmax (one-hot P), not softmax
//     static constexpr bool kAdditive;    // additive scoring: Q and K hold the projections, S = v . tanh(q + k)
//     TESSERA_HD static const float* additive_vector(const PatternArgs& a, i32 h);  // v[h, :] (additive only)
//     TESSERA_HD static i32 additive_size(const PatternArgs& a);                     // its length A
//     template <class QueryRow>           // q(d) is element d (0 <= d < D) of query row i, as a float
//     TESSERA_HD static bool mask(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const QueryRow& q);
//     template <class QueryRow>
//     TESSERA_HD static float score(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, float s, const QueryRow& q);
//     template <class QueryRow>           // multiplies the pair's probability in P V (not in the row sum)
//     TESSERA_HD static float weight(const PatternArgs& a, i32 b, i32 h, i32 i, i32 j, const QueryRow& q);
//   };
//
// i and j are the view's local indices (the planner's localized pattern maps them to positions through the
// symbols view_query_origin, view_key_origin, original_N and original_M).
#pragma once

#include "platform.cuh"

namespace tessera_cuda {

inline constexpr int kMaxPatternTensors = 8;
inline constexpr int kMaxTensorRank = 4;
inline constexpr int kMaxPatternSymbols = 16;

struct PatternArgs {
  i32 H = 1;  // query heads (the IR's H)
  i32 N = 0;  // the view's query rows (the IR's N in a localized pattern)
  i32 M = 0;  // the view's key columns
  i32 D = 0;  // head dimension of Q and K
  float scale = 1.0f;
  // The pattern's run-time tensors ordered by name: int32 or float32, C order, with their shapes.
  const void* tensors[kMaxPatternTensors] = {};
  i32 shapes[kMaxPatternTensors][kMaxTensorRank] = {};
  // The values of the symbols the functor reads, in the order the emitter was given them.
  i32 symbols[kMaxPatternSymbols] = {};
};

}  // namespace tessera_cuda
