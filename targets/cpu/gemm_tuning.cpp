#include "targets/cpu/gemm_tuning.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "targets/cpu/cpu_attention.h"

namespace tessera::cpu {

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
    if (runtime::resolve_blocks(to_gemm_blocking(s), shape.rows, shape.out, threads).count() <
        std::min<int64_t>(threads, shape.rows))
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
  const runtime::GemmBlocks blocks =
      runtime::resolve_blocks(to_gemm_blocking(schedule), shape_.rows, shape_.out, threads_);
  const auto per_thread = static_cast<double>((blocks.count() + threads_ - 1) / threads_);
  const double flops = 2.0 * static_cast<double>(blocks.rows * blocks.features * shape_.in);
  const double packed = 4.0 * static_cast<double>((blocks.rows + blocks.features) * shape_.in);
  return per_thread * (flops / kFlopsPerMs + packed / kBytesPerMs);
}

}  // namespace tessera::cpu
