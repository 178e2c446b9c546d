// The CUDA schedule space as the backend declares it to the tuner: which parameters exist for which problems,
// the device's constraints pruning points, and the cost model ranking what it can tell apart.
#include "targets/cuda/cuda_schedule_space.h"

#include <gtest/gtest.h>

#include "test/unit/prelude_patterns.h"

namespace tessera {
namespace {

ir::AttentionSizes sizes(int64_t B, int64_t H, int64_t N, int64_t M, int64_t D) {
  ir::AttentionSizes sz;
  sz.B = B;
  sz.H = H;
  sz.Hkv = H;
  sz.N = N;
  sz.M = M;
  sz.D = D;
  sz.Dv = D;
  return sz;
}

bool has(const tuner::ScheduleSpace& space, const std::string& name) {
  for (const tuner::Parameter& p : space.parameters)
    if (p.name == name) return true;
  return false;
}

TEST(CudaScheduleSpace, DefaultsAreTheKernelsDefaults) {
  const ir::AttentionSizes sz = sizes(4, 16, 8192, 8192, 128);
  const tuner::ScheduleSpace space = cuda::cuda_schedule_space(test::instantiate("causal"), sz, {});
  tuner::Schedule defaults;
  for (const tuner::Parameter& p : space.parameters) defaults[p.name] = p.default_value;
  const cuda::CudaSchedule resolved = cuda::resolve_schedule(cuda::to_cuda_schedule(defaults), sz.D, sz.Dv);
  const cuda::CudaSchedule expected = cuda::resolve_schedule({}, sz.D, sz.Dv);
  EXPECT_EQ(cuda::describe(resolved), cuda::describe(expected));
  EXPECT_FALSE(space.invalid(defaults).has_value());
}

TEST(CudaScheduleSpace, PlannerAndDecodingChoicesOnlyWhereTheyExist) {
  const cuda::CudaDeviceLimits limits;
  // strided(128) at N = 8192 is re-indexed by the planner: whether to is a choice; causal has none.
  EXPECT_TRUE(
      has(cuda::cuda_schedule_space(test::instantiate("strided(stride=128)"), sizes(4, 16, 8192, 8192, 128), limits),
          "reindex"));
  EXPECT_FALSE(
      has(cuda::cuda_schedule_space(test::instantiate("causal"), sizes(4, 16, 8192, 8192, 128), limits), "reindex"));
  // Decoding (one query tile for 8 heads) leaves multiprocessors idle: key splits are a choice; a long prefill not.
  EXPECT_TRUE(
      has(cuda::cuda_schedule_space(test::instantiate("causal"), sizes(1, 8, 1, 8192, 128), limits), "kv_splits"));
  EXPECT_FALSE(
      has(cuda::cuda_schedule_space(test::instantiate("causal"), sizes(4, 16, 8192, 8192, 128), limits), "kv_splits"));
}

TEST(CudaScheduleSpace, DeviceConstraintsPrunePoints) {
  cuda::CudaDeviceLimits limits;
  limits.wgmma = true;
  limits.shared_bytes = 100 * 1024;  // an sm_86-sized budget
  const ir::AttentionSizes sz = sizes(1, 8, 4096, 4096, 128);
  const tuner::ScheduleSpace space = cuda::cuda_schedule_space(test::instantiate("causal"), sz, limits);
  int64_t pruned = 0;
  const std::vector<tuner::Schedule> points = space.valid_points(&pruned);
  EXPECT_GT(pruned, 0);
  ASSERT_FALSE(points.empty());
  for (const tuner::Schedule& point : points) {
    const cuda::CudaSchedule s = cuda::to_cuda_schedule(point);
    EXPECT_LE(cuda::kernel_shared_bytes(cuda::kernel_config(sz, s)), limits.shared_bytes) << cuda::describe(s);
    EXPECT_EQ(s.block_m % 64, 0) << cuda::describe(s);
  }
  EXPECT_THROW(cuda::to_cuda_schedule({{"chunk_k", 64}}), std::invalid_argument);
}

TEST(CudaScheduleSpace, CostModelRanksWhatItModels) {
  const cuda::CudaDeviceLimits limits;
  const ir::AttentionSizes sz = sizes(4, 16, 8192, 8192, 128);
  // Re-indexing strided(128) computes ~1/64 of the causal tiles: the model must prefer it.
  const cuda::CudaCostModel strided(test::instantiate("strided(stride=128)"), sz, limits);
  const tuner::Schedule reindexed = {{"block_m", 128}, {"block_n", 64}, {"stages", 2}, {"reindex", 1}};
  tuner::Schedule tile_sparse = reindexed;
  tile_sparse["reindex"] = 0;
  EXPECT_LT(strided(reindexed), strided(tile_sparse));
  // More stages hide more of each tile's latency.
  const cuda::CudaCostModel causal(test::instantiate("causal"), sz, limits);
  EXPECT_LT(causal({{"block_m", 128}, {"block_n", 64}, {"stages", 3}}),
            causal({{"block_m", 128}, {"block_n", 64}, {"stages", 2}}));
}

}  // namespace
}  // namespace tessera
