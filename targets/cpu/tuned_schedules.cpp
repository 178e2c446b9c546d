#include "targets/cpu/tuned_schedules.h"

#include <fmt/format.h>

#include <algorithm>

#include "compiler/ir/printer.h"
#include "compiler/tuner/schedule_space.h"
#include "targets/cpu/cpu_schedule_space.h"

#ifndef TESSERA_VERSION
#error "TESSERA_VERSION must be defined by the build"
#endif

namespace tessera::cpu {

std::string tessera_version() { return TESSERA_VERSION; }

TunedSchedules::TunedSchedules(tuner::TuneCache cache) : cache_(std::move(cache)) {}

std::shared_ptr<const TunedSchedules> TunedSchedules::load(const std::filesystem::path& path, const tuner::Warn& warn) {
  return std::make_shared<const TunedSchedules>(tuner::TuneCache::load(path, tessera_version(), warn));
}

namespace {

// A schedule tuned at another shape, for a call with `queries` queries. Query tiles shrink to the queries there
// are; a decoding step's tile (a few rows without vectors across them) and its key splits do not carry over to a
// longer call, which takes `base`'s.
CpuSchedule fit_to_queries(CpuSchedule tuned, const CpuSchedule& base, int64_t queries) {
  if (tuned.vector_width < 8 && tuned.block_q < queries) {
    tuned.block_q = base.block_q;
    tuned.vector_width = base.vector_width;
  }
  if (queries > kMaxSplitKvQueries) tuned.kv_splits = base.kv_splits;
  return few_query_schedule(tuned, queries);
}

}  // namespace

TunedSchedules::Choice TunedSchedules::choose(const ir::Pattern& pattern, const ir::AttentionSizes& sz,
                                              StorageType storage, const CpuSchedule& base) const {
  const tuner::TuneKey key = cpu_tune_key(pattern, sz, storage);
  std::string memo_key = fmt::format("{}|{}|{}|{}", key.problem, key.dtype, sz.B * sz.H, sz.N);
  memo_key += fmt::format("|{}|{}|{}", tuner::describe(key.bucket), describe(base), base.threads);
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = memo_.find(memo_key); it != memo_.end()) return it->second;
  Choice choice{base, "default"};
  if (std::optional<tuner::Lookup> found = cache_.lookup(key)) {
    try {
      CpuSchedule tuned = to_cpu_schedule(found->entry.schedule, base);
      // A schedule tuned for more queries than this call has (a prefill's, used for a decoding step) would compute
      // mostly padding in its query tiles: they shrink to the queries there are, a vector at least.
      if (found->match == tuner::Match::Nearest) tuned = fit_to_queries(tuned, base, sz.N);
      validate_schedule(tuned);
      choice.schedule = tuned;
      if (found->match == tuner::Match::Exact) {
        choice.source = "tuned";
      } else {
        choice.source = "tuned for " + tuner::describe(found->entry.key.bucket);
      }
    } catch (const std::invalid_argument&) {
      // An entry this build cannot run (hand-edited file): the defaults, as if it were absent.
    }
  }
  return memo_.emplace(memo_key, choice).first->second;
}

runtime::GemmBlocking TunedSchedules::gemm_blocking(const GemmShape& shape) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto memo_key = std::make_tuple(shape.rows, shape.in, shape.out);
  if (auto it = gemm_memo_.find(memo_key); it != gemm_memo_.end()) return it->second;
  runtime::GemmBlocking blocking;
  if (std::optional<tuner::Lookup> found = cache_.lookup(gemm_tune_key(shape))) {
    const runtime::GemmBlocking tuned = to_gemm_blocking(found->entry.schedule);
    if (tuned.row_block >= 0 && tuned.feature_block >= 0) blocking = tuned;
  }
  return gemm_memo_.emplace(memo_key, blocking).first->second;
}

}  // namespace tessera::cpu
