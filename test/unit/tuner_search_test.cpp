// The tuner's search (compiler/tuner/search.h) on synthetic spaces and timings: which candidates it visits and in
// what order, that wrong or failing candidates are never chosen, that the winner is never slower than the
// default as measured, and how the budget, patience and deterministic mode stop it.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <stdexcept>

#include "compiler/tuner/search.h"

namespace tessera::tuner {
namespace {

// a in {1..4}, b in {1..3}, with a + b = 7 invalid (one point: a=4, b=3); default a=2, b=2.
ScheduleSpace small_space() {
  ScheduleSpace space;
  space.target = "test";
  space.parameters.push_back({"a", {1, 2, 3, 4}, 2, ""});
  space.parameters.push_back({"b", {1, 2, 3}, 2, ""});
  space.invalid = [](const Schedule& s) -> std::optional<std::string> {
    if (s.at("a") + s.at("b") == 7) return "a + b = 7";
    return std::nullopt;
  };
  return space;
}

// A cost model: distance from (3, 1).
double predicted(const Schedule& s) { return std::abs(s.at("a") - 3) + std::abs(s.at("b") - 1) + 0.1 * s.at("a"); }

TEST(TunerSpace, ValidPointsAreTheProductMinusTheInvalid) {
  int64_t pruned = -1;
  std::vector<Schedule> points = small_space().valid_points(&pruned);
  EXPECT_EQ(pruned, 1);
  ASSERT_EQ(points.size(), 11u);
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const Schedule& s : points) {
    EXPECT_NE(s.at("a") + s.at("b"), 7);
    seen.insert({s.at("a"), s.at("b")});
  }
  EXPECT_EQ(seen.size(), 11u);
  // The first parameter varies slowest.
  EXPECT_EQ(points[0], (Schedule{{"a", 1}, {"b", 1}}));
  EXPECT_EQ(points[1], (Schedule{{"a", 1}, {"b", 2}}));
  EXPECT_EQ(small_space().defaults(), (Schedule{{"a", 2}, {"b", 2}}));
  EXPECT_EQ(describe({{"b", 3}, {"a", 1}, {"z", 9}}, small_space()), "a=1,b=3,z=9");
}

TEST(TunerSearch, TheDefaultComesFirstThenTheBestRankedThenSamples) {
  SearchOptions options;
  options.max_candidates = 6;
  options.explore_fraction = 0.4;  // 5 others: 2 sampled, 3 from the top ranks
  options.seed = 11;
  int64_t points = 0;
  std::vector<Candidate> c = plan_candidates(small_space(), predicted, options, &points);
  EXPECT_EQ(points, 11);
  ASSERT_EQ(c.size(), 6u);
  EXPECT_TRUE(c[0].is_default);
  EXPECT_EQ(c[0].schedule, small_space().defaults());
  // The top ranks in the model's order (the default excluded): (3,1), (2,1)/(4,1)/(3,2) by cost then space order.
  EXPECT_EQ(c[1].schedule, (Schedule{{"a", 3}, {"b", 1}}));
  EXPECT_EQ(c[1].rank, 1);
  for (size_t i = 2; i < 4; ++i) EXPECT_LE(c[i - 1].predicted, c[i].predicted);
  // Sampled candidates come from below the top ranks and are all distinct.
  std::set<Schedule> distinct;
  for (const Candidate& candidate : c) distinct.insert(candidate.schedule);
  EXPECT_EQ(distinct.size(), c.size());
  for (size_t i = 4; i < 6; ++i) EXPECT_GT(c[i].rank, c[3].rank);
  // The same seed gives the same list; the list never depends on anything else.
  std::vector<Candidate> again = plan_candidates(small_space(), predicted, options);
  ASSERT_EQ(again.size(), c.size());
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(again[i].schedule, c[i].schedule);
}

// Points the backend knows to run the same kernels (here: b = 3 runs what b = 2 does) are measured once, the
// best-ranked of them, and never again beside the default.
TEST(TunerSearch, PointsThatRunTheSameKernelsAreMeasuredOnce) {
  ScheduleSpace space = small_space();
  space.kernel_identity = [](const Schedule& s) {
    return std::to_string(s.at("a")) + "," + std::to_string(std::min<int64_t>(s.at("b"), 2));
  };
  SearchOptions options;
  options.max_candidates = 20;
  options.seed = 3;
  std::vector<Candidate> c = plan_candidates(space, predicted, options);
  std::set<std::string> identities;
  for (const Candidate& candidate : c) {
    EXPECT_TRUE(identities.insert(space.kernel_identity(candidate.schedule)).second)
        << describe(candidate.schedule, space);
    EXPECT_FALSE(!candidate.is_default && candidate.schedule == Schedule({{"a", 2}, {"b", 3}}))
        << "(2, 3) runs what the default (2, 2) runs";
  }
  EXPECT_EQ(c.size(), 8u);  // 4 values of a by 2 distinct b, (4, 3) being invalid anyway
  EXPECT_EQ(plan_candidates(small_space(), predicted, options).size(), 11u) << "without identities, every point";
}

TEST(TunerSearch, MaxCandidatesBoundsTheListAndTheSpaceBoundsItToo) {
  SearchOptions options;
  options.seed = 1;
  options.max_candidates = 1;
  EXPECT_EQ(plan_candidates(small_space(), predicted, options).size(), 1u);
  options.max_candidates = 100;
  EXPECT_EQ(plan_candidates(small_space(), predicted, options).size(), 11u);
}

// Timings from a table; `wrong` and `throws` name schedules whose check fails or whose run throws.
struct FakeBackend {
  std::map<Schedule, double> ms;
  std::set<Schedule> wrong, throws;
  std::vector<Schedule> checked;
  int runs = 0;

  Evaluator evaluator() {
    Evaluator e;
    e.predict = predicted;
    e.check = [this](const Schedule& s) -> std::optional<std::string> {
      checked.push_back(s);
      if (wrong.count(s)) return std::string("differs");
      return std::nullopt;
    };
    e.run = [this](const Schedule& s) {
      ++runs;
      if (throws.count(s)) throw std::runtime_error("kernel failed");
      return ms.count(s) ? ms.at(s) : 10.0;
    };
    return e;
  }
};

TEST(TunerSearch, WrongAndFailingCandidatesAreReportedAndNeverChosen) {
  FakeBackend backend;
  const Schedule fastest{{"a", 3}, {"b", 1}}, second{{"a", 2}, {"b", 1}}, third{{"a", 4}, {"b", 1}};
  backend.ms = {{fastest, 1.0}, {second, 2.0}, {third, 3.0}, {small_space().defaults(), 5.0}};
  backend.wrong = {fastest};
  backend.throws = {second};
  SearchOptions options;
  options.seed = 2;
  options.max_candidates = 100;
  SearchResult r = search(small_space(), backend.evaluator(), options);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.trials[*r.best].schedule, third);
  EXPECT_EQ(r.best_ms(), 3.0);
  EXPECT_EQ(r.default_ms(), 5.0);
  int wrong = 0, failed = 0;
  for (const Trial& t : r.trials) {
    if (t.schedule == fastest) {
      EXPECT_EQ(t.status, TrialStatus::Wrong);
      EXPECT_EQ(t.message, "differs");
      ++wrong;
    }
    if (t.schedule == second) {
      EXPECT_EQ(t.status, TrialStatus::Failed);
      EXPECT_EQ(t.message, "kernel failed");
      ++failed;
    }
  }
  EXPECT_EQ(wrong, 1);
  EXPECT_EQ(failed, 1);
  // Every candidate visited was checked before it was timed.
  EXPECT_EQ(backend.checked.size(), r.trials.size());
}

TEST(TunerSearch, TheWinnerIsNeverSlowerThanTheDefaultAsMeasured) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> time(0.5, 20.0);
  for (int round = 0; round < 50; ++round) {
    FakeBackend backend;
    for (const Schedule& s : small_space().valid_points()) backend.ms[s] = time(rng);
    SearchOptions options;
    options.max_candidates = 1 + round % 8;
    options.seed = static_cast<uint64_t>(round);
    SearchResult r = search(small_space(), backend.evaluator(), options);
    ASSERT_TRUE(r.best && r.default_trial);
    EXPECT_LE(r.best_ms(), r.default_ms());
    for (const Trial& t : r.trials) {
      if (t.status == TrialStatus::Timed) {
        EXPECT_LE(r.best_ms(), t.median_ms);
      }
    }
  }
}

TEST(TunerSearch, ALuckyWinnerLosesTheConfirmationToTheDefault) {
  FakeBackend backend;
  const Schedule lucky{{"a", 3}, {"b", 1}};
  backend.ms[small_space().defaults()] = 5.0;
  Evaluator e = backend.evaluator();
  bool searching = true;
  e.run = [&](const Schedule& s) { return s == lucky ? (searching ? 1.0 : 9.0) : 5.0; };
  e.on_trial = [&](const Trial&, size_t done, size_t planned) { searching = done < planned; };
  SearchOptions options;
  options.seed = 1;
  options.max_candidates = 3;
  SearchResult r = search(small_space(), e, options);
  ASSERT_TRUE(r.confirmed.has_value());
  EXPECT_EQ(r.confirmed->first, 5.0);
  EXPECT_EQ(r.confirmed->second, 9.0);
  EXPECT_EQ(r.best, r.default_trial);
  EXPECT_EQ(r.best_ms(), 5.0);
  EXPECT_NE(r.stop_reason.find("the default won the confirmation"), std::string::npos);

  // A real winner keeps winning: it stays, with the confirmation's medians reported.
  searching = true;
  e.run = [&](const Schedule& s) { return s == lucky ? 2.0 : 5.0; };
  r = search(small_space(), e, options);
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.trials[*r.best].schedule, lucky);
  EXPECT_EQ(r.best_ms(), 2.0);
  EXPECT_EQ(r.default_ms(), 5.0);
}

// `c` is refined by measurement: ranking holds it at its default 0, then each other value is tried around the
// winner, and a faster one is kept.
ScheduleSpace space_with_refinement() {
  ScheduleSpace space = small_space();
  space.parameters.push_back({"c", {0, 1, 2}, 0, "", true});
  return space;
}

TEST(TunerSearch, RefinementTriesEachUnrankedValueAroundTheWinner) {
  const ScheduleSpace space = space_with_refinement();
  SearchOptions options;
  options.max_candidates = 3;
  options.explore_fraction = 0;
  int64_t points = 0;
  for (const Candidate& c : plan_candidates(space, predicted, options, &points)) EXPECT_EQ(c.schedule.at("c"), 0);
  EXPECT_EQ(points, 11);  // c held at its default while ranking

  // Ranked: the default (2,2), then (3,1) and (2,1) by the model. (3,1) is fastest; c = 2 makes it faster still.
  FakeBackend backend;
  Evaluator e = backend.evaluator();
  e.run = [](const Schedule& s) {
    double ms = s.at("a") == 3 && s.at("b") == 1 ? 2.0 : 5.0;
    return s.at("c") == 2 ? ms / 2 : ms;
  };
  SearchResult r = search(space, e, options);
  ASSERT_EQ(r.trials.size(), 5u);  // 3 ranked + c = 1 and c = 2 around (3,1)
  EXPECT_EQ(r.trials[3].schedule, (Schedule{{"a", 3}, {"b", 1}, {"c", 1}}));
  EXPECT_EQ(r.trials[3].rank, 0);
  EXPECT_EQ(r.trials[4].schedule, (Schedule{{"a", 3}, {"b", 1}, {"c", 2}}));
  ASSERT_TRUE(r.best.has_value());
  EXPECT_EQ(r.trials[*r.best].schedule, (Schedule{{"a", 3}, {"b", 1}, {"c", 2}}));

  // Deterministic mode refines around the default, whatever the timings; refine = false skips it.
  options.seed = 3;
  r = search(space, e, options);
  ASSERT_EQ(r.trials.size(), 5u);
  EXPECT_EQ(r.trials[3].schedule, (Schedule{{"a", 2}, {"b", 2}, {"c", 1}}));
  EXPECT_EQ(r.trials[4].schedule, (Schedule{{"a", 2}, {"b", 2}, {"c", 2}}));
  options.refine = false;
  EXPECT_EQ(search(space, e, options).trials.size(), 3u);
}

// A refinement that runs the kernels of a point already measured (here c = 1 changes nothing the backend runs,
// like a min_block_q no plan component reaches) is skipped; c = 2 is still tried.
TEST(TunerSearch, RefinementSkipsValuesThatRunTheSameKernels) {
  ScheduleSpace space = space_with_refinement();
  space.kernel_identity = [](const Schedule& s) {
    return std::to_string(s.at("a")) + "," + std::to_string(s.at("b")) + (s.at("c") == 2 ? ",2" : ",0");
  };
  SearchOptions options;
  options.max_candidates = 3;
  options.explore_fraction = 0;
  options.seed = 3;
  FakeBackend backend;
  SearchResult r = search(space, backend.evaluator(), options);
  ASSERT_EQ(r.trials.size(), 4u);  // 3 ranked + c = 2 around the default
  EXPECT_EQ(r.trials[3].schedule, (Schedule{{"a", 2}, {"b", 2}, {"c", 2}}));
}

TEST(TunerSearch, TheMedianOfTheRunsIsReported) {
  FakeBackend backend;
  int call = 0;
  Evaluator e = backend.evaluator();
  const std::vector<double> times = {100.0 /* warm-up */, 5.0, 1.0, 3.0};
  e.run = [&](const Schedule&) { return times[static_cast<size_t>(call++ % 4)]; };
  SearchOptions options;
  options.seed = 1;
  options.max_candidates = 1;
  options.warmup = 1;
  options.runs = 3;
  SearchResult r = search(small_space(), e, options);
  ASSERT_EQ(r.trials.size(), 1u);
  EXPECT_EQ(r.trials[0].median_ms, 3.0);
  EXPECT_EQ(r.trials[0].min_ms, 1.0);
}

TEST(TunerSearch, PatienceStopsASearchThatFindsNothingBetter) {
  FakeBackend backend;
  backend.ms[small_space().defaults()] = 1.0;  // the default is best; everything else takes 10 ms
  SearchOptions options;
  options.max_candidates = 100;
  options.patience = 3;
  options.explore_fraction = 0;
  SearchResult r = search(small_space(), backend.evaluator(), options);
  EXPECT_EQ(r.stop_reason, "patience");
  EXPECT_EQ(r.trials.size(), 4u);  // the default, then three without gain
  // Slower than 2x the best after one run: timing stops there.
  for (const Trial& t : r.trials) {
    if (!t.is_default) {
      EXPECT_EQ(t.status, TrialStatus::Slow);
    }
  }
  // Deterministic mode visits every planned candidate whatever the timings.
  options.seed = 4;
  r = search(small_space(), backend.evaluator(), options);
  EXPECT_EQ(r.stop_reason, "all candidates");
  EXPECT_EQ(r.trials.size(), 11u);
}

TEST(TunerSearch, TheBudgetStopsTheSearchButTheDefaultIsAlwaysMeasured) {
  FakeBackend backend;
  SearchOptions options;
  options.seed = 1;
  options.max_candidates = 100;
  options.budget_seconds = 0;
  SearchResult r = search(small_space(), backend.evaluator(), options);
  EXPECT_EQ(r.stop_reason, "budget");
  ASSERT_EQ(r.trials.size(), 1u);
  EXPECT_TRUE(r.trials[0].is_default);
  EXPECT_TRUE(r.best.has_value());
}

}  // namespace
}  // namespace tessera::tuner
