#include "compiler/tuner/search.h"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>
#include <set>

namespace tessera::tuner {

const char* to_string(TrialStatus status) {
  switch (status) {
    case TrialStatus::Timed: return "timed";
    case TrialStatus::Slow: return "slow";
    case TrialStatus::Wrong: return "WRONG";
    case TrialStatus::Failed: return "failed";
  }
  return "?";
}

std::vector<Candidate> plan_candidates(const ScheduleSpace& space,
                                       const std::function<double(const Schedule&)>& predict,
                                       const SearchOptions& options, int64_t* space_points, int64_t* pruned) {
  std::vector<Schedule> points = space.valid_points(pruned, /*modelled_only=*/true);
  if (space_points) *space_points = static_cast<int64_t>(points.size());
  std::vector<double> cost(points.size());
  for (size_t i = 0; i < points.size(); ++i) cost[i] = predict(points[i]);
  std::vector<size_t> order(points.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Ties keep the space's order, so the ranking is a function of the space and the model alone.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] < cost[b]; });

  const Schedule defaults = space.defaults();
  std::vector<Candidate> ranked;
  for (size_t r = 0; r < order.size(); ++r) {
    ranked.push_back({points[order[r]], points[order[r]] == defaults, cost[order[r]], static_cast<int64_t>(r + 1)});
  }
  std::vector<Candidate> chosen;
  auto default_it = std::find_if(ranked.begin(), ranked.end(), [](const Candidate& c) { return c.is_default; });
  if (default_it != ranked.end()) {
    chosen.push_back(*default_it);
    ranked.erase(default_it);
  } else {
    // The default violates the space's constraints for this problem (it should not): measure it anyway, it is
    // what every entry point runs without a tuned schedule.
    chosen.push_back({defaults, true, predict(defaults), 0});
  }
  if (space.kernel_identity) {
    // Points that run what the default or a better-ranked point runs would only measure it again.
    std::set<std::string> seen{space.kernel_identity(chosen.front().schedule)};
    std::erase_if(ranked, [&](const Candidate& c) { return !seen.insert(space.kernel_identity(c.schedule)).second; });
  }
  const size_t others = static_cast<size_t>(std::max<int64_t>(0, options.max_candidates - 1));
  const size_t explored =
      std::min(ranked.size(), static_cast<size_t>(static_cast<double>(others) * options.explore_fraction));
  const size_t top = std::min(ranked.size(), others - std::min(others, explored));
  for (size_t r = 0; r < top; ++r) chosen.push_back(ranked[r]);
  // The rest are sampled from below the top ranks: the model decides the order, not the whole search.
  std::vector<Candidate> rest(ranked.begin() + static_cast<std::ptrdiff_t>(top), ranked.end());
  std::mt19937_64 rng(options.seed ? *options.seed : std::random_device{}());
  for (size_t e = 0; e < explored && !rest.empty(); ++e) {
    std::uniform_int_distribution<size_t> pick(0, rest.size() - 1);
    size_t i = pick(rng);
    chosen.push_back(rest[i]);
    rest.erase(rest.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return chosen;
}

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

SearchResult search(const ScheduleSpace& space, const Evaluator& evaluator, const SearchOptions& options) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  SearchResult result;
  const std::vector<Candidate> candidates =
      plan_candidates(space, evaluator.predict, options, &result.space_points, &result.pruned);
  result.stop_reason = "all candidates";
  int64_t without_gain = 0;
  std::set<Schedule> visited;
  std::set<std::string> visited_kernels;
  // Checks and times one candidate; returns whether it became the best.
  auto visit = [&](const Candidate& candidate, size_t planned) {
    visited.insert(candidate.schedule);
    if (space.kernel_identity) visited_kernels.insert(space.kernel_identity(candidate.schedule));
    Trial trial;
    trial.schedule = candidate.schedule;
    trial.is_default = candidate.is_default;
    trial.predicted = candidate.predicted;
    trial.rank = candidate.rank;
    try {
      if (std::optional<std::string> wrong = evaluator.check(candidate.schedule)) {
        trial.status = TrialStatus::Wrong;
        trial.message = *wrong;
      } else {
        for (int64_t w = 0; w < options.warmup; ++w) evaluator.run(candidate.schedule);
        std::vector<double> ms;
        const double best_so_far = result.best ? result.trials[*result.best].median_ms : 0;
        trial.status = TrialStatus::Timed;
        for (int64_t r = 0; r < std::max<int64_t>(1, options.runs); ++r) {
          ms.push_back(evaluator.run(candidate.schedule));
          // Far slower than the best after one run: more runs would not change the outcome, only the time spent.
          if (r == 0 && !options.seed && best_so_far > 0 && ms[0] > options.slow_factor * best_so_far) {
            trial.status = TrialStatus::Slow;
            break;
          }
        }
        trial.median_ms = median(ms);
        trial.min_ms = *std::min_element(ms.begin(), ms.end());
      }
    } catch (const std::exception& e) {
      trial.status = TrialStatus::Failed;
      trial.message = e.what();
    }
    result.trials.push_back(trial);
    const size_t index = result.trials.size() - 1;
    if (trial.is_default) result.default_trial = index;
    bool became_best = false;
    if (trial.status == TrialStatus::Timed) {
      const bool gain = !result.best || trial.median_ms < 0.99 * result.trials[*result.best].median_ms;
      if (!result.best || trial.median_ms < result.trials[*result.best].median_ms) {
        result.best = index;
        became_best = true;
      }
      without_gain = gain ? 0 : without_gain + 1;
    } else if (!trial.is_default) {
      ++without_gain;
    }
    if (evaluator.on_trial) evaluator.on_trial(trial, result.trials.size(), planned);
    return became_best;
  };

  // The refinements: one per other value of each parameter the model cannot rank.
  size_t refinements = 0;
  for (const Parameter& p : space.parameters) {
    if (options.refine && p.refined_by_measurement) refinements += p.values.size() - 1;
  }
  const size_t planned = candidates.size() + refinements;
  for (const Candidate& candidate : candidates) {
    if (!candidate.is_default && elapsed() > options.budget_seconds) {
      result.stop_reason = "budget";
      break;
    }
    if (!options.seed && !candidate.is_default && without_gain >= options.patience) {
      result.stop_reason = "patience";
      break;
    }
    visit(candidate, planned);
  }
  if (options.refine && result.best && result.stop_reason != "budget") {
    Schedule center = options.seed && result.default_trial ? result.trials[*result.default_trial].schedule
                                                           : result.trials[*result.best].schedule;
    for (const Parameter& p : space.parameters) {
      if (!p.refined_by_measurement) continue;
      for (int64_t value : p.values) {
        if (elapsed() > options.budget_seconds) break;
        Schedule s = center;
        s[p.name] = value;
        if (visited.count(s) || (space.invalid && space.invalid(s))) continue;
        // A value that changes nothing the kernels run (a min_block_q no component reaches) is not measured again.
        if (space.kernel_identity && visited_kernels.count(space.kernel_identity(s))) continue;
        if (visit({s, false, evaluator.predict(s), 0}, planned) && !options.seed) center = s;
      }
    }
    if (elapsed() > options.budget_seconds) result.stop_reason += "; budget during refinement";
  }
  if (options.confirm && result.best && result.default_trial && *result.best != *result.default_trial) {
    const Schedule& winner = result.trials[*result.best].schedule;
    const Schedule& defaults = result.trials[*result.default_trial].schedule;
    std::vector<double> d, w;
    try {
      for (int64_t r = 0; r < std::max<int64_t>(1, options.runs); ++r) {
        d.push_back(evaluator.run(defaults));
        w.push_back(evaluator.run(winner));
      }
      result.confirmed = std::make_pair(median(d), median(w));
      if (result.confirmed->second >= result.confirmed->first) {
        result.best = result.default_trial;
        result.stop_reason += "; the default won the confirmation";
      }
    } catch (const std::exception&) {
      // Both ran during the search; a failure now leaves the search's own measurements in place.
      result.confirmed.reset();
    }
  }
  result.seconds = elapsed();
  return result;
}

}  // namespace tessera::tuner
