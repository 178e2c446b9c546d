// End to end through the `tessera` binary, as scripts outside the repo call it: `tessera inputs` writes random
// .npy tensors, `tessera eval --target reference` computes attention from the DSL, and the result must match
// the independent float64 implementation of each standard-library row and of compositions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <ostream>
#include <string>

#include "runtime/npy.h"
#include "test/unit/independent_attention.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;

struct Shape {
  int64_t B, H, Hkv, N, M, D, Dv;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << "B=" << s.B << " H=" << s.H << " Hkv=" << s.Hkv << " N=" << s.N << " M=" << s.M << " D=" << s.D
      << " Dv=" << s.Dv;
}

// The run-time tensors `tessera inputs` wrote for a pattern, by name.
using RunTimeTensors = std::map<std::string, runtime::Tensor>;

struct Case {
  std::string pattern;
  std::function<oracle::Rule(const oracle::Problem&, const RunTimeTensors&)> rule;
};

int run(const std::string& command) { return std::system((command + " > /dev/null").c_str()); }

class CliEvalTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tessera_cli_eval_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void check(const Case& c, uint64_t seed) {
    const Shape s = GetParam();
    SCOPED_TRACE(c.pattern);
    std::string dir = (dir_ / std::to_string(seed)).string();
    std::string inputs = inputs_command(s, seed, c.pattern, dir);
    ASSERT_EQ(run(inputs), 0) << inputs;
    std::string eval = std::string(TESSERA_BINARY) + " eval --pattern '" + c.pattern + "' --q " + dir + "/q.npy --k " +
                       dir + "/k.npy --v " + dir + "/v.npy --target reference --out " + dir + "/out.npy";
    // The two inputs with flags of their own through them, as the contract names them; the rest by --input.
    RunTimeTensors extra;
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().stem().string();
      if (name == "q" || name == "k" || name == "v") continue;
      const std::string path = entry.path().string();
      eval += name == "segments" || name == "rel" ? " --" + name + " " + path : " --input " + name + "=" + path;
      extra.emplace(name, runtime::read_npy(path));
    }
    ASSERT_EQ(run(eval), 0) << eval;

    runtime::Tensor q = runtime::read_npy(dir + "/q.npy");
    runtime::Tensor k = runtime::read_npy(dir + "/k.npy");
    runtime::Tensor v = runtime::read_npy(dir + "/v.npy");
    runtime::Tensor out = runtime::read_npy(dir + "/out.npy");
    ASSERT_EQ(out.shape(), (std::vector<int64_t>{s.B, s.H, s.N, s.Dv}));

    oracle::Problem p{s.B,
                      s.H,
                      s.Hkv,
                      s.N,
                      s.M,
                      s.D,
                      s.Dv,
                      q.data<float>(),
                      k.data<float>(),
                      v.data<float>(),
                      1.0 / std::sqrt(static_cast<double>(s.D))};
    std::vector<double> expected = oracle::attention(p, c.rule(p, extra));
    const float* got = out.data<float>();
    ASSERT_EQ(static_cast<size_t>(out.numel()), expected.size());
    double worst = 0;
    for (size_t e = 0; e < expected.size(); ++e) {
      ASSERT_FALSE(std::isnan(got[e])) << "NaN at " << e;
      worst = std::max(worst, std::abs(static_cast<double>(got[e]) - expected[e]));
    }
    // The CLI writes float32: the only difference allowed is the final rounding of O(1) values.
    EXPECT_LE(worst, 1e-6);
  }

  static std::string inputs_command(const Shape& s, uint64_t seed, const std::string& pattern, const std::string& dir) {
    return std::string(TESSERA_BINARY) + " inputs --batch " + std::to_string(s.B) + " --heads " + std::to_string(s.H) +
           " --kv-heads " + std::to_string(s.Hkv) + " --seq " + std::to_string(s.N) + " --keys " + std::to_string(s.M) +
           " --head-dim " + std::to_string(s.D) + " --value-dim " + std::to_string(s.Dv) + " --seed " +
           std::to_string(seed) + " --rel-distances 7 --documents 3" + " --pattern '" + pattern + "' --dir " + dir;
  }

  fs::path dir_;
};

oracle::Rule doc(const oracle::Problem& p, const RunTimeTensors& t) {
  return oracle::document(t.at("segments").data<int32_t>(), p.M);
}
oracle::Rule rel(const oracle::Problem& p, const RunTimeTensors& t) {
  return oracle::relative(p, t.at("rel").data<float>(), t.at("rel").dim(1));
}
oracle::Rule rel_bidir(const oracle::Problem& p, const RunTimeTensors& t, int64_t max_distance) {
  return oracle::relative_bidir(p, t.at("rel_bidir").data<float>(), t.at("rel_bidir").dim(1), max_distance);
}
oracle::Rule t5(const RunTimeTensors& t, int64_t buckets, int64_t max_distance, bool bidirectional) {
  return oracle::t5_bias(t.at("t5").data<float>(), t.at("t5").dim(1), buckets, max_distance, bidirectional);
}

template <typename F>
std::function<oracle::Rule(const oracle::Problem&, const RunTimeTensors&)> plain(F f) {
  return [f](const oracle::Problem&, const RunTimeTensors&) { return f(); };
}

std::vector<Case> cases() {
  using namespace oracle;
  return {
      {"full", plain([] { return full(); })},
      {"causal", plain([] { return causal(); })},
      {"sliding_window(window=5)", plain([] { return sliding_window(5); })},
      {"local(window=3)", plain([] { return local(3); })},
      {"strided(stride=4)", plain([] { return strided(4); })},
      {"fixed(block=8, summary=2)", plain([] { return fixed(8, 2); })},
      {"dilated(window=4, dilation=3)", plain([] { return dilated(4, 3); })},
      {"local2d(width=6, block_h=2, block_w=3, halo_h=1, halo_w=1)", plain([] { return local2d(6, 2, 3, 1, 1); })},
      {"local1d(query_block=4, memory=3)", plain([] { return local1d(4, 3); })},
      {"prefix_lm(prefix=7)", plain([] { return prefix_lm(7); })},
      {"document", doc},
      {"alibi", [](const Problem& p, const RunTimeTensors&) { return alibi(p.H); }},
      {"softcap(cap=2.5)", plain([] { return softcap(2.5); })},
      {"relative", rel},
      // --rel-distances 7: a table of 2 * 3 + 1 rows.
      {"relative_bidir(max_distance=3)", [](const Problem& p, const RunTimeTensors& t) { return rel_bidir(p, t, 3); }},
      {"causal & relative_bidir(max_distance=3)",
       [](const Problem& p, const RunTimeTensors& t) { return both(causal(), rel_bidir(p, t, 3)); }},
      // Tables of 7 rows: buckets 0 .. 5 and 0 .. 6. The second has thresholds 5, 6 (an exact power) and 9.
      {"t5_bias(buckets=6, max_distance=8)", [](const Problem&, const RunTimeTensors& t) { return t5(t, 6, 8, true); }},
      {"causal & t5_bias(buckets=7, max_distance=12, bidirectional=false)",
       [](const Problem&, const RunTimeTensors& t) { return both(causal(), t5(t, 7, 12, false)); }},
      {"relative2d(width=5, max_rows=3, max_cols=2)",
       [](const Problem& p, const RunTimeTensors& t) {
         const runtime::Tensor &rows = t.at("rel_rows"), &cols = t.at("rel_cols");
         return relative2d(p, 5, rows.data<float>(), rows.dim(1), 3, cols.data<float>(), cols.dim(1), 2);
       }},
      {"causal & alibi", [](const Problem& p, const RunTimeTensors&) { return both(causal(), alibi(p.H)); }},
      {"hardmax", plain([] { return hardmax(); })},
      {"causal & dot", plain([] { return both(causal(), dot_scoring()); })},
      {"causal & alibi & sample(seed=11)",
       [](const Problem& p, const RunTimeTensors&) { return both(both(causal(), alibi(p.H)), sample(11)); }},
      {"bilinear & softcap(cap=3)",
       [](const Problem&, const RunTimeTensors& t) {
         return both(bilinear(t.at("bilinear_w").data<float>()), softcap(3));
       }},
      {"local(window=4) & bilinear & hardmax",
       [](const Problem&, const RunTimeTensors& t) {
         return both(both(local(4), bilinear(t.at("bilinear_w").data<float>())), hardmax());
       }},
      {"causal & additive",
       [](const Problem&, const RunTimeTensors& t) {
         const runtime::Tensor& v = t.at("additive_v");
         return both(causal(), additive(t.at("additive_wq").data<float>(), t.at("additive_wk").data<float>(),
                                        v.data<float>(), v.dim(1)));
       }},
      {"local(window=3) & additive & softcap(cap=2)",
       [](const Problem&, const RunTimeTensors& t) {
         const runtime::Tensor& v = t.at("additive_v");
         return both(both(local(3), additive(t.at("additive_wq").data<float>(), t.at("additive_wk").data<float>(),
                                             v.data<float>(), v.dim(1))),
                     softcap(2));
       }},
      {"local(window=3) & alibi & hardmax",
       [](const Problem& p, const RunTimeTensors&) { return both(both(local(3), alibi(p.H)), hardmax()); }},
      {"luong_local_p(half_width=3)",
       [](const Problem& p, const RunTimeTensors& t) { return luong_local_p(t.at("centers").data<float>(), p.N, 3); }},
      {"causal & luong_local_p(half_width=4)",
       [](const Problem& p, const RunTimeTensors& t) {
         return both(causal(), luong_local_p(t.at("centers").data<float>(), p.N, 4));
       }},
      {"causal & document", [](const Problem& p, const RunTimeTensors& t) { return both(causal(), doc(p, t)); }},
      {"causal & softcap(cap=20)", plain([] { return both(causal(), softcap(20)); })},
      {"causal & relative", [](const Problem& p, const RunTimeTensors& t) { return both(causal(), rel(p, t)); }},
      {"sliding_window(window=3) | strided(stride=5)", plain([] { return either(sliding_window(3), strided(5)); })},
      // Leaves the first rows with no allowed key: they must come out as zeros.
      {"causal - prefix_lm(prefix=6)", plain([] { return minus(causal(), prefix_lm(6)); })},
      {"(causal | local(window=2)) & softcap(cap=4.0) & alibi",
       [](const Problem& p, const RunTimeTensors&) {
         return both(both(either(causal(), local(2)), softcap(4.0)), alibi(p.H));
       }},
  };
}

TEST_P(CliEvalTest, MatchesIndependentFloat64Attention) {
  uint64_t seed = 1;
  for (const Case& c : cases()) check(c, seed++);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CliEvalTest,
                         ::testing::Values(Shape{1, 2, 2, 24, 24, 16, 16},    // N = M
                                           Shape{2, 4, 2, 13, 29, 32, 24},    // N < M, GQA, Dv != D
                                           Shape{1, 4, 1, 20, 11, 64, 64},    // N > M, multi-query
                                           Shape{1, 2, 2, 9, 17, 128, 128}),  // D = 128
                         [](const auto& info) {
                           const Shape& s = info.param;
                           return "B" + std::to_string(s.B) + "_H" + std::to_string(s.H) + "_Hkv" +
                                  std::to_string(s.Hkv) + "_N" + std::to_string(s.N) + "_M" + std::to_string(s.M) +
                                  "_D" + std::to_string(s.D);
                         });

}  // namespace
}  // namespace tessera
