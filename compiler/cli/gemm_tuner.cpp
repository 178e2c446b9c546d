#include "compiler/cli/gemm_tuner.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "compiler/cli/command_context.h"
#include "compiler/cli/search_report.h"
#include "compiler/tuner/search.h"
#include "runtime/blas_kernels.h"
#include "runtime/linear.h"
#include "targets/cpu/tuned_schedules.h"

namespace tessera::cli {

namespace {

// Rows of the check: enough for several row blocks of the smallest size, few enough that the float64 product
// stays cheap at a vocabulary-sized output.
constexpr int64_t kCheckRows = 96;

std::vector<float> random_values(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = uniform(rng);
  return v;
}

class GemmTuner {
 public:
  GemmTuner(const cpu::GemmShape& shape, const GemmTuneSettings& settings)
      : shape_(shape),
        settings_(settings),
        x_(random_values(shape.rows * shape.in, 1)),
        weight_(random_values(shape.out * shape.in, 2)),
        bias_(random_values(shape.out, 3)),
        y_(static_cast<size_t>(shape.rows * shape.out)) {
    // The float64 product the check compares with, on the first rows of x.
    const int64_t rows = std::min(shape.rows, kCheckRows);
    expected_.resize(static_cast<size_t>(rows * shape.out));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < shape.out; ++c) {
        double sum = bias_[static_cast<size_t>(c)];
        for (int64_t i = 0; i < shape.in; ++i)
          sum += double{x_[static_cast<size_t>(r * shape.in + i)]} * weight_[static_cast<size_t>(c * shape.in + i)];
        expected_[static_cast<size_t>(r * shape.out + c)] = sum;
      }
    }
  }

  void run() {
    const int64_t threads = runtime::gemm_threads();
    const tuner::ScheduleSpace space = cpu::gemm_schedule_space(shape_, threads);
    const double flops = 2.0 * static_cast<double>(shape_.rows * shape_.in * shape_.out);
    std::cout << fmt::format("tune gemm {}: cpu f32, {} threads\n", cpu::describe(shape_), threads);

    tuner::Evaluator evaluator;
    evaluator.predict = [model = cpu::GemmCostModel(shape_, threads)](const tuner::Schedule& s) { return model(s); };
    evaluator.check = [this](const tuner::Schedule& s) { return check(s); };
    evaluator.run = [this](const tuner::Schedule& s) { return time_once(s); };
    const tuner::SearchResult result =
        search_with_progress(space, evaluator, settings_.search, "tune gemm " + cpu::describe(shape_));

    std::cout << fmt::format("space: {} valid points ({} pruned by the constraints), {} measured\n",
                             result.space_points, result.pruned, result.trials.size());
    SearchReport report;
    report.point_heading = "blocking";
    report.point_width = 40;
    report.failure_subject = "blocking of gemm " + cpu::describe(shape_);
    report.flops = flops;
    const Winner winner = report_search(result, space, report);
    tuner::TuneEntry entry = winner_entry(result, winner);
    entry.key = cpu::gemm_tune_key(shape_);
    entry.description = cpu::describe(shape_);
    if (settings_.store_in) {
      tuner::TuneCache::store(*settings_.store_in, cpu::tessera_version(), entry);
      std::cout << fmt::format("cache: stored in {}\n", settings_.store_in->string());
    }
    // One JSON line per problem, last, as the attention problems print theirs.
    nlohmann::json line;
    line["problem"] = entry.description;
    line["kernel"] = "gemm";
    line["rows"] = shape_.rows;
    line["in"] = shape_.in;
    line["out"] = shape_.out;
    add_search_fields(line, result, space, winner, flops);
    std::cout << line.dump() << "\n";
  }

 private:
  std::optional<std::string> check(const tuner::Schedule& s) {
    const int64_t rows = std::min(shape_.rows, kCheckRows);
    std::vector<float> got(static_cast<size_t>(rows * shape_.out));
    runtime::linear(x_.data(), rows, shape_.in, weight_.data(), bias_.data(), shape_.out, got.data(), {},
                    cpu::to_gemm_blocking(s));
    // float32 accumulation over `in` products of values in [-1, 1]: a few ulps of the sum's magnitude per term.
    const double tolerance = 1e-5 * static_cast<double>(shape_.in);
    for (size_t e = 0; e < got.size(); ++e) {
      const double error = std::abs(double{got[e]} - expected_[e]);
      if (!(error <= tolerance)) {
        return fmt::format("element ({}, {}) is {} where the float64 product is {}",
                           e / static_cast<size_t>(shape_.out), e % static_cast<size_t>(shape_.out), got[e],
                           expected_[e]);
      }
    }
    return std::nullopt;
  }

  double time_once(const tuner::Schedule& s) {
    const runtime::GemmBlocking blocking = cpu::to_gemm_blocking(s);
    const auto start = std::chrono::steady_clock::now();
    runtime::linear(x_.data(), shape_.rows, shape_.in, weight_.data(), bias_.data(), shape_.out, y_.data(), {},
                    blocking);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }

  cpu::GemmShape shape_;
  const GemmTuneSettings& settings_;
  std::vector<float> x_, weight_, bias_, y_;
  std::vector<double> expected_;
};

}  // namespace

void tune_gemm(const cpu::GemmShape& shape, const GemmTuneSettings& settings) { GemmTuner(shape, settings).run(); }

}  // namespace tessera::cli
