// Whether an attention mask never lets a query see a later key: k <= q for every allowed pair. When it holds,
// a decoder may run incrementally with a KV cache (later keys can never matter to an earlier query).
#pragma once

#include "compiler/ir/expr.h"

namespace tessera::analysis {

// True only with a proof from the (simplified) mask's structure; false when unproven (false negatives are
// fine, false positives are not). Proven: a conjunction with one conjunct that implies k <= q, a disjunction
// whose every side does, or the constant false. A conjunct implies it when it compares expressions that are
// affine in the distance d = q - k (`k <= q`, `q - k >= 0`, `2 * (q - k) + 1 > 0`, `q - k == 3`, ...) and no
// integer d <= -1 satisfies it.
bool proves_causal_in_time(const ir::Expr& mask);

}  // namespace tessera::analysis
