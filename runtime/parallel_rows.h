// Splits the rows of a row-wise step (the GEMMs of runtime::linear, LayerNorm, GELU, residual adds, head
// transposes) across the cores. Run on one core, the elementwise steps left the other idle and took a third of a
// MiniLM forward pass.
//
// The threads are those kept for every parallel CPU step (targets/cpu/kept_threads.h), the attention kernels'
// included: starting a thread per call cost tens of microseconds (GPT-2 decoding: a third of each token's time in
// the head transposes alone).
#pragma once

#include <cstdint>
#include <functional>

namespace tessera::runtime {

// Calls body(begin, end) on disjoint ranges covering [0, rows), on up to `threads` threads (0: every core), the
// calling thread included. Work below `min_rows_per_thread` rows per thread stays on fewer threads. Exceptions
// from any range are rethrown after all have finished. Safe to call from several threads at once (a call that
// finds the kept threads busy starts its own), from inside a body (which runs its ranges inline) and in a child of
// fork() (which starts its own threads: the kept ones stayed in the parent).
void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& body, int64_t threads = 0,
                   int64_t min_rows_per_thread = 64);

}  // namespace tessera::runtime
