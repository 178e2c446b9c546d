#include "targets/cpu/gemm_tuning.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <utility>

#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The block sizes a blocking resolves to (runtime::linear's blocked_gemm): 0 is the rows split evenly across the
// threads, or every feature.
std::pair<int64_t, int64_t> resolved_blocks(const GemmShape& s, const runtime::GemmBlocking& b, int64_t threads) {
  const int64_t rows =
      b.row_block > 0 ? std::min(s.rows, b.row_block) : ceil_div(s.rows, std::max<int64_t>(1, threads));
  const int64_t features = b.feature_block > 0 ? std::min(s.out, b.feature_block) : s.out;
  return {rows, features};
}

}  // namespace

std::string describe(const GemmShape& shape) {
  return fmt::format("{} rows x {} -> {}", shape.rows, shape.in, shape.out);
}

tuner::ScheduleSpace gemm_schedule_space(const GemmShape& shape, int64_t threads) {
  tuner::ScheduleSpace space;
  space.target = "cpu";
  space.parameters.push_back(
      {"row_block", {0, 32, 64, 128, 256, 512, 1024}, 0, "rows per OpenBLAS call (0: the rows split across threads)"});
  space.parameters.push_back(
      {"feature_block", {0, 64, 128, 256, 512, 1024, 2048}, 0, "output features per OpenBLAS call (0: all of them)"});
  space.invalid = [shape, threads](const tuner::Schedule& s) -> std::optional<std::string> {
    const int64_t rb = s.at("row_block"), fb = s.at("feature_block");
    if (rb > 0 && rb >= shape.rows) return "row_block not below the rows (the default covers that)";
    if (fb > 0 && fb >= shape.out) return "feature_block not below the features (the default covers that)";
    const auto [rows, features] = resolved_blocks(shape, to_gemm_blocking(s), threads);
    if (ceil_div(shape.rows, rows) * ceil_div(shape.out, features) < std::min<int64_t>(threads, shape.rows))
      return "fewer blocks than threads";
    return std::nullopt;
  };
  return space;
}

tuner::TuneKey gemm_tune_key(const GemmShape& shape) {
  tuner::TuneKey key;
  key.kernel = "gemm";
  key.bucket = tuner::bucket_shape({{"rows", shape.rows}, {"in", shape.in}, {"out", shape.out}});
  key.dtype = "f32";
  key.target = "cpu:" + halide_target_string();
  return key;
}

runtime::GemmBlocking to_gemm_blocking(const tuner::Schedule& schedule) {
  runtime::GemmBlocking b;
  if (auto it = schedule.find("row_block"); it != schedule.end()) b.row_block = it->second;
  if (auto it = schedule.find("feature_block"); it != schedule.end()) b.feature_block = it->second;
  return b;
}

GemmCostModel::GemmCostModel(GemmShape shape, int64_t threads)
    : shape_(shape), threads_(std::max<int64_t>(1, threads)) {}

double GemmCostModel::operator()(const tuner::Schedule& schedule) const {
  // Per thread: 100 GFLOP/s (below the FMA peak, as OpenBLAS's sgemm runs here) and 10 GB/s for the packing.
  constexpr double kFlopsPerMs = 100e6, kBytesPerMs = 10e6;
  const auto [rows, features] = resolved_blocks(shape_, to_gemm_blocking(schedule), threads_);
  const int64_t blocks = ceil_div(shape_.rows, rows) * ceil_div(shape_.out, features);
  const auto per_thread = static_cast<double>(ceil_div(blocks, threads_));
  const double flops = 2.0 * static_cast<double>(rows * features * shape_.in);
  const double packed = 4.0 * static_cast<double>((rows + features) * shape_.in);
  return per_thread * (flops / kFlopsPerMs + packed / kBytesPerMs);
}

}  // namespace tessera::cpu
