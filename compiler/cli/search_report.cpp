#include "compiler/cli/search_report.h"

#include <fmt/format.h>

#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/progress_bar.h"

namespace tessera::cli {

tuner::SearchResult search_with_progress(const tuner::ScheduleSpace& space, tuner::Evaluator evaluator,
                                         const tuner::SearchOptions& options, const std::string& label) {
  ProgressBar bar(label, options.max_candidates);  // its line is finished before the caller prints
  evaluator.on_trial = [&bar](const tuner::Trial&, size_t done, size_t) { bar.update(static_cast<int64_t>(done)); };
  return tuner::search(space, evaluator, options);
}

Winner report_search(const tuner::SearchResult& result, const tuner::ScheduleSpace& space, const SearchReport& report) {
  auto gflops = [&](double ms) { return report.flops / (ms * 1e-3) / 1e9; };
  std::cout << fmt::format("  {:>3} {:>5}  {:<{}} {:<7} {:>10} {:>9}\n", "#", "rank", report.point_heading,
                           report.point_width, "status", "median ms", "GFLOP/s");
  for (size_t t = 0; t < result.trials.size(); ++t) {
    const tuner::Trial& trial = result.trials[t];
    const bool measured = trial.status == tuner::TrialStatus::Timed || trial.status == tuner::TrialStatus::Slow;
    std::cout << fmt::format("  {:>3} {:>5}  {:<{}} {:<7} {:>10} {:>9}{}\n", t + 1,
                             trial.rank > 0 ? std::to_string(trial.rank) : std::string("-"),
                             tuner::describe(trial.schedule, space) + (trial.is_default ? " (default)" : ""),
                             report.point_width, tuner::to_string(trial.status),
                             measured ? fmt::format("{:.3f}", trial.median_ms) : "-",
                             measured && trial.median_ms > 0 ? fmt::format("{:.1f}", gflops(trial.median_ms)) : "-",
                             trial.message.empty() ? "" : "  " + trial.message);
  }
  for (const tuner::Trial& trial : result.trials) {
    if (trial.status == tuner::TrialStatus::Wrong) {
      std::cerr << fmt::format("tessera: warning: {} {} disagrees with the reference and was discarded: {}\n",
                               report.point_heading, tuner::describe(trial.schedule, space), trial.message);
    }
  }
  if (!result.best) throw UserError(fmt::format("no {} ran correctly; nothing was cached", report.failure_subject));
  Winner winner;
  winner.trial = &result.trials[*result.best];
  winner.ms = result.best_ms();
  if (result.confirmed) {
    std::cout << fmt::format("confirmation, alternating runs: default {:.3f} ms, best candidate {:.3f} ms\n",
                             result.confirmed->first, result.confirmed->second);
  }
  winner.speedup = result.default_trial && result.default_ms() > 0 ? result.default_ms() / winner.ms : 0;
  std::cout << fmt::format(
      "winner: {}: {:.3f} ms, {:.1f} GFLOP/s, {} ({} candidates in {:.1f} s; stopped: {})\n",
      tuner::describe(winner.trial->schedule, space), winner.ms, gflops(winner.ms),
      winner.speedup > 0 ? fmt::format("{:.2f}x the default", winner.speedup) : "default not measured",
      result.trials.size(), result.seconds, result.stop_reason);
  return winner;
}

void add_search_fields(nlohmann::json& line, const tuner::SearchResult& result, const tuner::ScheduleSpace& space,
                       const Winner& winner, double flops) {
  line["schedule"] = tuner::describe(winner.trial->schedule, space);
  line["median_ms"] = winner.ms;
  line["default_ms"] = result.default_ms();
  line["speedup"] = winner.speedup;
  line["gflops"] = flops / (winner.ms * 1e-3) / 1e9;
  line["candidates"] = result.trials.size();
  line["tuning_s"] = result.seconds;
  line["stopped"] = result.stop_reason;
}

tuner::TuneEntry winner_entry(const tuner::SearchResult& result, const Winner& winner) {
  tuner::TuneEntry entry;
  entry.schedule = winner.trial->schedule;
  entry.median_ms = winner.ms;
  entry.default_ms = result.default_ms();
  entry.candidates = static_cast<int64_t>(result.trials.size());
  entry.tuning_seconds = result.seconds;
  entry.tuned_at = tuner::utc_timestamp();
  return entry;
}

}  // namespace tessera::cli
