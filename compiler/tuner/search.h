// The tuner's search over a schedule space: measure, don't model blindly. A cheap analytic cost model (from the
// backend) ranks every valid point; the default and the best-ranked candidates, plus a few sampled from the rest
// (the model is rough), are each checked for correctness on a small shape and then timed on the real one
// (warm-up, repeated runs, median), within a time budget and with early stopping. The winner is the fastest
// correct candidate, so it is never slower than the default as measured.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compiler/tuner/schedule_space.h"

namespace tessera::tuner {

struct SearchOptions {
  double budget_seconds = 120;     // wall time for checking and timing; the default is always measured
  int64_t max_candidates = 12;     // candidates measured, the default included
  double explore_fraction = 0.25;  // share of them sampled at random outside the cost model's top ranks
  int64_t patience = 5;            // stop after this many timed candidates in a row that do not beat the best by 1%
  int64_t warmup = 1, runs = 5;
  double slow_factor = 2.0;  // a candidate whose first timed run is this much slower than the best stops there
  // After the search, the winner and the default are timed again alternately (`runs` each) and the winner is kept
  // only if its median is below the default's: on a noisy machine a candidate timed minutes after the default
  // may just have been lucky.
  bool confirm = true;
  bool refine = true;  // refine the parameters the model cannot rank, after the ranked candidates
  // Deterministic mode: the candidate list depends only on the space, the cost model and the seed, and every
  // candidate on it is visited (no early stopping on timings; the budget still applies).
  std::optional<uint64_t> seed;
};

enum class TrialStatus {
  Timed,  // checked correct and timed
  Slow,   // checked correct; timing stopped after one run that was far slower than the best
  Wrong,  // disagreed with the reference on the check shape: discarded, never cached
  Failed  // the backend threw (compile or run): discarded
};
const char* to_string(TrialStatus status);

struct Trial {
  Schedule schedule;
  bool is_default = false;
  double predicted = 0;  // the cost model's estimate (its units; only the ranking matters)
  int64_t rank = 0;      // position in the cost model's ranking of the valid points, 1-based; 0: a refinement
  TrialStatus status = TrialStatus::Failed;
  double median_ms = 0, min_ms = 0;
  std::string message;  // why Wrong or Failed
};

// What the search asks of the backend. Each function may throw; a throw makes the trial Failed.
struct Evaluator {
  std::function<double(const Schedule&)> predict;
  // Runs the candidate on a small shape against the float64 reference: nullopt when it agrees, else what differs.
  std::function<std::optional<std::string>(const Schedule&)> check;
  // One run on the tuned shape; returns its time in milliseconds (the first run of a schedule includes compiling).
  std::function<double(const Schedule&)> run;
  // Called after each trial (progress bars, logs): trials done so far and the number planned.
  std::function<void(const Trial&, size_t done, size_t planned)> on_trial;
};

struct Candidate {
  Schedule schedule;
  bool is_default = false;
  double predicted = 0;
  int64_t rank = 0;
};

// The ranked candidates the search visits, in order: the default first, then the best-ranked points, then the
// sampled ones (parameters refined by measurement at their defaults). `space_points` and `pruned` receive the
// count of points ranked and the count the constraints removed. After them the search refines: each parameter
// refined by measurement takes each of its other values in turn around the winner so far (around the default in
// deterministic mode), keeping a value that is faster.
std::vector<Candidate> plan_candidates(const ScheduleSpace& space,
                                       const std::function<double(const Schedule&)>& predict,
                                       const SearchOptions& options, int64_t* space_points = nullptr,
                                       int64_t* pruned = nullptr);

struct SearchResult {
  std::vector<Trial> trials;   // in the order visited
  std::optional<size_t> best;  // index into trials of the winner (nullopt: nothing passed)
  std::optional<size_t> default_trial;
  int64_t space_points = 0, pruned = 0;
  double seconds = 0;
  std::string stop_reason;  // "all candidates", "budget", "patience"
  // The confirmation round's medians (default, winner), when it ran.
  std::optional<std::pair<double, double>> confirmed;

  // The winner's and the default's medians: from the confirmation round when it ran, else from their trials.
  double best_ms() const {
    if (confirmed) return best == default_trial ? confirmed->first : confirmed->second;
    return best ? trials[*best].median_ms : 0;
  }
  double default_ms() const {
    if (confirmed) return confirmed->first;
    return default_trial ? trials[*default_trial].median_ms : 0;
  }
};

SearchResult search(const ScheduleSpace& space, const Evaluator& evaluator, const SearchOptions& options);

}  // namespace tessera::tuner
