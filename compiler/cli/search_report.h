// How `tessera tune` runs a search and what it prints of it, for attention schedules and GEMM blockings alike: a
// progress bar while it runs, then the table of trials, a warning per discarded candidate, the confirmation round
// and the winner's line.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

#include "compiler/tuner/search.h"
#include "compiler/tuner/tune_cache.h"

namespace tessera::cli {

// tuner::search with a progress bar labelled `label` while it runs.
tuner::SearchResult search_with_progress(const tuner::ScheduleSpace& space, tuner::Evaluator evaluator,
                                         const tuner::SearchOptions& options, const std::string& label);

struct SearchReport {
  std::string point_heading;    // the table's column of points: "schedule", "blocking"
  size_t point_width = 0;       // that column's width
  std::string failure_subject;  // "candidate schedule of 'causal'": names what found no correct candidate
  double flops = 0;             // per run, for GFLOP/s
};

struct Winner {
  const tuner::Trial* trial = nullptr;
  double ms = 0;
  double speedup = 0;  // over the default; 0 when the default was not measured
};

// Prints the report to stdout (warnings to stderr); throws UserError when no candidate ran correctly.
Winner report_search(const tuner::SearchResult& result, const tuner::ScheduleSpace& space, const SearchReport& report);

// The fields of the JSON line every tuned problem ends with that describe its search: schedule, median_ms,
// default_ms, speedup, gflops, candidates, tuning_s, stopped.
void add_search_fields(nlohmann::json& line, const tuner::SearchResult& result, const tuner::ScheduleSpace& space,
                       const Winner& winner, double flops);

// A cache entry for the winner, timed now; the caller fills its key and description.
tuner::TuneEntry winner_entry(const tuner::SearchResult& result, const Winner& winner);

}  // namespace tessera::cli
