// The CPU backend's side of tuning: the schedule space it declares (targets/cpu/cpu_schedule_space.h), that
// every candidate the tuner may select computes the same attention as an independent float64 implementation,
// the cost model's view of re-indexing, and how the tuning cache's entries reach a call
// (targets/cpu/tuned_schedules.h).
#include <gtest/gtest.h>

#include <random>

#include "compiler/tuner/search.h"
#include "targets/cpu/cpu_attention.h"
#include "targets/cpu/cpu_schedule_space.h"
#include "targets/cpu/gemm_tuning.h"
#include "targets/cpu/tuned_schedules.h"
#include "test/unit/independent_attention.h"
#include "test/unit/prelude_patterns.h"

namespace tessera {
namespace {

using test::instantiate;

ir::AttentionSizes sizes(int64_t B, int64_t H, int64_t Hkv, int64_t N, int64_t M, int64_t D) {
  ir::AttentionSizes sz;
  sz.B = B;
  sz.H = H;
  sz.Hkv = Hkv;
  sz.N = N;
  sz.M = M;
  sz.D = D;
  sz.Dv = D;
  return sz;
}

const tuner::Parameter* parameter(const tuner::ScheduleSpace& space, const std::string& name) {
  for (const tuner::Parameter& p : space.parameters) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

TEST(CpuTuning, TheSpaceHoldsTheDefaultsAndPrunesWhatTheKernelsCannotRun) {
  const ir::AttentionSizes sz = sizes(1, 2, 2, 512, 512, 64);
  const std::string target = cpu::halide_target_string();
  const tuner::ScheduleSpace space = cpu::cpu_schedule_space(instantiate("causal"), sz, target);
  // The space's defaults are the target's: AVX-512 keeps CpuSchedule's member defaults; AVX2 has 8-lane vectors and
  // register tiles for 16 registers.
  EXPECT_EQ(space.defaults(), cpu::to_tuner_schedule(cpu::default_schedule(target)));
  EXPECT_EQ(cpu::describe(cpu::default_schedule("x86-64-linux-avx512_skylake")), cpu::describe(cpu::CpuSchedule{}));
  const cpu::CpuSchedule avx2 = cpu::default_schedule("x86-64-linux-avx-avx2-f16c-fma-sse41");
  EXPECT_EQ(avx2.vector_width, 8);
  EXPECT_LE(avx2.qk_tile, 12);  // Q.K accumulators within 16 registers, with room for operands
  EXPECT_NO_THROW(cpu::validate_schedule(avx2));
  const tuner::ScheduleSpace avx2_space = cpu::cpu_schedule_space(instantiate("causal"), sz, "x86-64-linux-avx2-fma");
  EXPECT_EQ(avx2_space.defaults(), cpu::to_tuner_schedule(avx2));
  int64_t pruned = 0;
  const std::vector<tuner::Schedule> points = space.valid_points(&pruned);
  EXPECT_GT(pruned, 0);
  for (const tuner::Schedule& p : points) {
    const cpu::CpuSchedule s = cpu::to_cpu_schedule(p);
    EXPECT_NO_THROW(cpu::validate_schedule(s));
    EXPECT_EQ(s.block_q % s.vector_width, 0);
  }
  // chunk_k = 64 with block_k = 128 is not a run of whole tiles.
  EXPECT_TRUE(
      space.invalid({{"block_q", 64}, {"block_k", 128}, {"chunk_k", 64}, {"vector_width", 16}, {"reindex", 1}}));
}

TEST(CpuTuning, ReindexingIsAChoiceOnlyWhereThePlannerReindexes) {
  const ir::AttentionSizes sz = sizes(1, 1, 1, 1024, 1024, 32);
  const std::string target = cpu::halide_target_string();
  EXPECT_EQ(parameter(cpu::cpu_schedule_space(instantiate("causal"), sz, target), "reindex")->values,
            std::vector<int64_t>{1});
  EXPECT_EQ(parameter(cpu::cpu_schedule_space(instantiate("strided(stride=32)"), sz, target), "reindex")->values,
            (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(
      parameter(cpu::cpu_schedule_space(instantiate("fixed(block=64, summary=4)"), sz, target), "reindex")->values,
      (std::vector<int64_t>{1, 0}));
}

TEST(CpuTuning, TheCostModelSeesWhatReindexingSaves) {
  // strided(64) at N = 4096 keeps ~3% of causal's pairs: tile-sparse, nearly every tile holds one.
  const ir::AttentionSizes sz = sizes(1, 4, 4, 4096, 4096, 64);
  const cpu::CpuCostModel model(instantiate("strided(stride=64)"), sz, 2);
  tuner::Schedule s = cpu::to_tuner_schedule(cpu::CpuSchedule{});
  const double reindexed = model(s);
  s["reindex"] = 0;
  EXPECT_LT(3 * reindexed, model(s));
  // Causal: twice the keys cost about twice as much.
  const cpu::CpuCostModel causal(instantiate("causal"), sz, 2);
  const cpu::CpuCostModel causal_longer(instantiate("causal"), sizes(1, 4, 4, 4096, 8192, 64), 2);
  const tuner::Schedule d = cpu::to_tuner_schedule(cpu::CpuSchedule{});
  EXPECT_GT(causal_longer(d), 1.5 * causal(d));
}

TEST(CpuTuning, SchedulesConvertBothWaysAndUnknownNamesAreRefused) {
  cpu::CpuSchedule s;
  s.block_q = 32;
  s.block_k = 16;
  s.chunk_k = 256;
  s.vector_width = 8;
  s.reindex = 0;
  s.threads = 3;
  const cpu::CpuSchedule back = cpu::to_cpu_schedule(cpu::to_tuner_schedule(s), cpu::CpuSchedule{.threads = 3});
  EXPECT_EQ(back.block_q, 32);
  EXPECT_EQ(back.block_k, 16);
  EXPECT_EQ(back.chunk_k, 256);
  EXPECT_EQ(back.vector_width, 8);
  EXPECT_EQ(back.reindex, 0);
  EXPECT_EQ(back.threads, 3);
  EXPECT_THROW(cpu::to_cpu_schedule({{"unroll", 2}}), std::invalid_argument);
  EXPECT_EQ(cpu::parse_schedule("reindex=0").reindex, 0);
  EXPECT_THROW(cpu::parse_schedule("reindex=2"), std::invalid_argument);
}

runtime::Tensor random_tensor(std::vector<int64_t> shape, std::mt19937_64& rng) {
  runtime::Tensor t(runtime::DType::Float32, std::move(shape));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t e = 0; e < t.numel(); ++e) t.data<float>()[e] = normal(rng);
  return t;
}

struct TunedCase {
  std::string expression;
  oracle::Rule rule;
};

// Every candidate the search would visit (the default, the cost model's best, a seeded sample) computes
// attention within 2e-4 of an independent float64 implementation: whichever wins, the tuned result is right.
TEST(CpuTuning, EveryCandidateTheTunerMayChooseMatchesTheIndependentReference) {
  const int64_t B = 1, H = 2, Hkv = 1, N = 200, M = 200, D = 32;
  std::mt19937_64 rng(17);
  runtime::Tensor q = random_tensor({B, H, N, D}, rng), k = random_tensor({B, Hkv, M, D}, rng),
                  v = random_tensor({B, Hkv, M, D}, rng);
  oracle::Problem problem{B,
                          H,
                          Hkv,
                          N,
                          M,
                          D,
                          D,
                          q.data<float>(),
                          k.data<float>(),
                          v.data<float>(),
                          1.0 / std::sqrt(static_cast<double>(D))};
  const std::vector<TunedCase> cases = {{"causal", oracle::causal()},
                                        {"strided(stride=16)", oracle::strided(16)},
                                        {"fixed(block=32, summary=4)", oracle::fixed(32, 4)}};
  for (const TunedCase& c : cases) {
    const ir::Pattern pattern = instantiate(c.expression);
    const std::vector<double> expected = oracle::attention(problem, c.rule);
    const ir::AttentionSizes sz = sizes(B, H, Hkv, N, M, D);
    const tuner::ScheduleSpace space = cpu::cpu_schedule_space(pattern, sz, cpu::halide_target_string());
    const cpu::CpuCostModel model(pattern, sz, 0);
    tuner::SearchOptions options;
    options.max_candidates = 5;
    options.seed = 9;
    for (const tuner::Candidate& candidate : tuner::plan_candidates(
             space, [&](const tuner::Schedule& s) { return model(s); }, options)) {
      cpu::CpuOptions cpu_options;
      cpu_options.schedule = cpu::to_cpu_schedule(candidate.schedule);
      targets::AttentionInputs inputs;
      inputs.q = &q;
      inputs.k = &k;
      inputs.v = &v;
      const runtime::Tensor out = cpu::attention(pattern, inputs, cpu_options);
      double worst = 0;
      for (int64_t i = 0; i < out.numel(); ++i) {
        worst = std::max(worst, std::abs(out.data<float>()[i] - expected[static_cast<size_t>(i)]));
      }
      EXPECT_LE(worst, 2e-4) << c.expression << " with " << tuner::describe(candidate.schedule, space);
    }
  }
}

tuner::TuneEntry entry_for(const ir::Pattern& pattern, const ir::AttentionSizes& sz, const tuner::Schedule& schedule) {
  tuner::TuneEntry e;
  e.key = cpu::cpu_tune_key(pattern, sz, cpu::StorageType::Float32);
  e.schedule = schedule;
  e.description = pattern.name;
  e.median_ms = 1;
  e.default_ms = 2;
  return e;
}

TEST(CpuTuning, CallsRunTheExactBucketThenTheNearestThenTheDefaults) {
  const ir::Pattern causal = instantiate("causal");
  tuner::TuneCache cache;
  cache.put(entry_for(causal, sizes(1, 8, 8, 4096, 4096, 64),
                      {{"block_q", 64}, {"block_k", 16}, {"chunk_k", 128}, {"vector_width", 16}, {"reindex", 1}}));
  const cpu::TunedSchedules tuned(cache);
  cpu::CpuSchedule base;
  base.threads = 2;

  // 3000 rounds up to the 4096 bucket: an exact match.
  cpu::TunedSchedules::Choice c = tuned.choose(causal, sizes(1, 8, 8, 3000, 3000, 64), cpu::StorageType::Float32, base);
  EXPECT_EQ(c.source, "tuned");
  EXPECT_EQ(c.schedule.block_q, 64);
  EXPECT_EQ(c.schedule.block_k, 16);
  EXPECT_EQ(c.schedule.threads, 2);  // threads are the caller's

  // Another length: the nearest bucket, with query tiles no larger than the queries there are
  // (cpu::few_query_schedule: one query runs in a one-row tile without vectors).
  c = tuned.choose(causal, sizes(1, 8, 8, 1, 4096, 64), cpu::StorageType::Float32, base);
  EXPECT_EQ(c.source, "tuned for BH=8,D=64,Dv=64,G=1,M=4096,N=4096");
  EXPECT_EQ(c.schedule.block_q, 1);
  EXPECT_EQ(c.schedule.vector_width, 1);
  EXPECT_EQ(c.schedule.block_k, 16);
  c = tuned.choose(causal, sizes(1, 8, 8, 12, 4096, 64), cpu::StorageType::Float32, base);
  EXPECT_EQ(c.schedule.block_q, 16);
  EXPECT_EQ(c.schedule.vector_width, 16);

  // Another pattern or dtype: the defaults.
  c = tuned.choose(instantiate("sliding_window(window=64)"), sizes(1, 8, 8, 4096, 4096, 64), cpu::StorageType::Float32,
                   base);
  EXPECT_EQ(c.source, "default");
  EXPECT_EQ(c.schedule.block_q, base.block_q);
  c = tuned.choose(causal, sizes(1, 8, 8, 4096, 4096, 64), cpu::StorageType::BFloat16, base);
  EXPECT_EQ(c.source, "default");
}

// A decoding step's tuned schedule (a one-row tile without vectors across rows, its keys split in parts) does not
// carry over to a longer call, which takes the caller's tile and no splits; another decoding step keeps both.
TEST(CpuTuning, ADecodingStepsScheduleDoesNotCarryOverToPrefill) {
  const ir::Pattern causal = instantiate("causal");
  tuner::TuneCache cache;
  cache.put(entry_for(causal, sizes(1, 1, 1, 1, 8192, 64),
                      {{"block_q", 1}, {"vector_width", 1}, {"chunk_k", 128}, {"kv_splits", 2}}));
  const cpu::TunedSchedules tuned(cache);
  const cpu::CpuSchedule base;
  cpu::TunedSchedules::Choice c = tuned.choose(causal, sizes(1, 1, 1, 1, 8192, 64), cpu::StorageType::Float32, base);
  EXPECT_EQ(c.source, "tuned");
  EXPECT_EQ(c.schedule.kv_splits, 2);
  c = tuned.choose(causal, sizes(1, 1, 1, 3, 4096, 64), cpu::StorageType::Float32, base);
  EXPECT_NE(c.source, "default");
  EXPECT_EQ(c.schedule.kv_splits, 2);
  EXPECT_EQ(c.schedule.block_q, 4) << "the tile of the queries there are";
  c = tuned.choose(causal, sizes(1, 1, 1, 4096, 4096, 64), cpu::StorageType::Float32, base);
  EXPECT_NE(c.source, "default");
  EXPECT_EQ(c.schedule.chunk_k, 128) << "what does carry over";
  EXPECT_EQ(c.schedule.block_q, base.block_q);
  EXPECT_EQ(c.schedule.vector_width, base.vector_width);
  EXPECT_EQ(c.schedule.kv_splits, 1);
}

TEST(CpuTuning, AnEntryTheKernelsCannotRunFallsBackToTheDefaults) {
  const ir::Pattern causal = instantiate("causal");
  const ir::AttentionSizes sz = sizes(1, 2, 2, 256, 256, 32);
  tuner::TuneCache cache;
  cache.put(entry_for(causal, sz, {{"block_q", 64}, {"block_k", 48}, {"chunk_k", 64}}));  // 64 % 48 != 0
  const cpu::TunedSchedules tuned(cache);
  const cpu::TunedSchedules::Choice c = tuned.choose(causal, sz, cpu::StorageType::Float32, {});
  EXPECT_EQ(c.source, "default");
  EXPECT_EQ(c.schedule.block_k, cpu::CpuSchedule{}.block_k);
}

TEST(CpuTuning, AttentionWithTunedSchedulesMatchesTheReference) {
  const ir::Pattern pattern = instantiate("causal");
  const int64_t B = 2, H = 2, N = 100, D = 16;
  std::mt19937_64 rng(3);
  runtime::Tensor q = random_tensor({B, H, N, D}, rng), k = random_tensor({B, H, N, D}, rng),
                  v = random_tensor({B, H, N, D}, rng);
  tuner::TuneCache cache;
  cache.put(entry_for(pattern, sizes(B, H, H, N, N, D),
                      {{"block_q", 32}, {"block_k", 16}, {"chunk_k", 64}, {"vector_width", 8}, {"reindex", 1}}));
  cpu::CpuOptions options;
  options.tuned = std::make_shared<const cpu::TunedSchedules>(cache);
  targets::AttentionInputs inputs;
  inputs.q = &q;
  inputs.k = &k;
  inputs.v = &v;
  const runtime::Tensor out = cpu::attention(pattern, inputs, options);
  oracle::Problem problem{B, H, H, N, N, D, D, q.data<float>(), k.data<float>(), v.data<float>(), 0.25};
  const std::vector<double> expected = oracle::attention(problem, oracle::causal());
  for (int64_t i = 0; i < out.numel(); ++i) ASSERT_NEAR(out.data<float>()[i], expected[static_cast<size_t>(i)], 2e-4);
}

// The runtime's GEMMs: the space of blockings at a shape (the default first, blocks no larger than the product,
// every thread with a block), and their lookup by the model runtime: exact bucket, else nearest, else the default.
TEST(CpuTuning, GemmBlockingsAreAShapesSpaceAndLookedUpByShape) {
  const cpu::GemmShape shape{384, 384, 1536};
  const tuner::ScheduleSpace space = cpu::gemm_schedule_space(shape, 2);
  EXPECT_EQ(cpu::to_gemm_blocking(space.defaults()), runtime::GemmBlocking{});
  const std::vector<tuner::Schedule> points = space.valid_points();
  ASSERT_GT(points.size(), 10u);
  for (const tuner::Schedule& p : points) {
    const runtime::GemmBlocking b = cpu::to_gemm_blocking(p);
    EXPECT_LT(b.row_block, shape.rows);
    EXPECT_LT(b.feature_block, shape.out);
  }
  // 8 rows: a row block of 8 or more is the default's, and 4 rows by every feature leave no block for a third
  // thread.
  EXPECT_TRUE(cpu::gemm_schedule_space({8, 64, 64}, 2).invalid({{"row_block", 32}, {"feature_block", 0}}));
  EXPECT_TRUE(cpu::gemm_schedule_space({8, 64, 64}, 3).invalid({{"row_block", 0}, {"feature_block", 32}}) ==
              std::nullopt);
  EXPECT_TRUE(cpu::gemm_schedule_space({64, 64, 64}, 4).invalid({{"row_block", 32}, {"feature_block", 0}}));

  tuner::TuneCache cache;
  tuner::TuneEntry entry;
  entry.key = cpu::gemm_tune_key(shape);
  entry.schedule = {{"row_block", 64}, {"feature_block", 512}};
  cache.put(entry);
  entry.key = cpu::gemm_tune_key({384, 384, 384});
  entry.schedule = {{"row_block", -5}, {"feature_block", 0}};  // hand-edited: cannot run
  cache.put(entry);
  const cpu::TunedSchedules tuned(cache);
  EXPECT_EQ(tuned.gemm_blocking(shape), (runtime::GemmBlocking{64, 512}));
  EXPECT_EQ(tuned.gemm_blocking({2048, 384, 1536}), (runtime::GemmBlocking{64, 512})) << "nearest bucket";
  EXPECT_EQ(tuned.gemm_blocking({384, 384, 384}), runtime::GemmBlocking{}) << "an entry that cannot run";
  EXPECT_EQ(cpu::TunedSchedules(tuner::TuneCache{}).gemm_blocking(shape), runtime::GemmBlocking{});
}

}  // namespace
}  // namespace tessera
