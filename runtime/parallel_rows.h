// Splits the rows of an elementwise or row-wise step (LayerNorm, GELU, residual adds, head transposes) across the
// cores. OpenBLAS parallelises the GEMMs between these steps; run on one core, the steps left the other idle and
// took a third of a MiniLM forward pass.
#pragma once

#include <cstdint>
#include <functional>

namespace tessera::runtime {

// Calls body(begin, end) on disjoint ranges covering [0, rows), on up to `threads` threads (0: every core), the
// calling thread included. Work below `min_rows_per_thread` rows per thread stays on fewer threads. Exceptions
// from any range are rethrown after all have finished.
void parallel_rows(int64_t rows, const std::function<void(int64_t, int64_t)>& body, int64_t threads = 0,
                   int64_t min_rows_per_thread = 64);

}  // namespace tessera::runtime
