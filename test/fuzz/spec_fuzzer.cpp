// libFuzzer target for the front end: arbitrary text as a spec file must be reported as diagnostics, never crash,
// throw, or reach undefined behaviour. What it declares goes further: each pattern that elaborates with its
// defaults is evaluated at every point of a small matrix and its tiles classified, and a tile the interval analysis
// calls EMPTY or FULL must be so at every point (the analysis is sound); each model is elaborated into its graph.
// Text after a line "%%" is also instantiated as a pattern expression, as `--pattern` text is, except lines
// "@NAME=VALUE", which override model parameters as `--set NAME=VALUE` does.
//
// Build (clang only; the target compiles the front end, the IR, the analyses and the graph, nothing else):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DTESSERA_FUZZ=ON
//   cmake --build build-fuzz --target spec_fuzzer
// Run on a scratch copy of the seed corpus (the prelude, the examples and the lit tests' specs):
//   mkdir -p /tmp/spec_corpus && cp test/fuzz/corpus/spec/* /tmp/spec_corpus/
//   build-fuzz/test/spec_fuzzer -max_total_time=600 -timeout=10 -rss_limit_mb=4096 -dict=test/fuzz/spec.dict \
//     /tmp/spec_corpus
// A crash leaves crash-<sha1> in the working directory; rerun it with `build-fuzz/test/spec_fuzzer crash-<sha1>`,
// and pin what it showed in a lit diagnostics test or a unit test.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "compiler/analysis/tile_classification.h"
#include "compiler/ir/evaluate.h"
#include "compiler/sema/model_elaboration.h"
#include "compiler/sema/pattern_library.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"

namespace {

using namespace tessera;

// An invariant the front end promises; a violation stops the fuzzer with this input as the crash.
void require(bool condition) {
  if (!condition) __builtin_trap();
}

// Every point of a small cross-attention matrix (queries at the end of the keys), both heads, and the tile kinds
// the analysis gives, checked against the points.
void exercise(const ir::Pattern& pattern) {
  const ir::AttentionSizes sizes{.B = 1, .H = 2, .Hkv = 2, .N = 12, .M = 16, .D = 8, .Dv = 8};
  std::unique_ptr<ir::PatternEvaluator> evaluator;
  try {
    evaluator = std::make_unique<ir::PatternEvaluator>(pattern, sizes, std::map<std::string, ir::TensorView>{}, 0.35);
  } catch (const ir::EvalError&) {
    return;  // it reads run-time tensors, which are not given here
  }
  const float q_vec[8] = {0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.25f, 3.0f, -2.0f};
  std::vector<uint8_t> allowed(static_cast<size_t>(sizes.H * sizes.N * sizes.M));
  for (int64_t h = 0; h < sizes.H; ++h) {
    for (int64_t i = 0; i < sizes.N; ++i) {
      for (int64_t j = 0; j < sizes.M; ++j) {
        const bool a = evaluator->allowed(0, h, i, j);
        allowed[static_cast<size_t>((h * sizes.N + i) * sizes.M + j)] = a;
        if (a) {
          (void)evaluator->score(0, h, i, j, 0.7, q_vec);
          (void)evaluator->weight(0, h, i, j);
        }
      }
    }
  }
  analysis::ClassifyOptions options;
  options.B = sizes.B;
  options.H = sizes.H;
  options.D = sizes.D;
  const analysis::TileMap map = analysis::classify_tiles(pattern, sizes.N, sizes.M, 4, 5, options);
  for (int64_t r = 0; r < map.rows; ++r) {
    for (int64_t c = 0; c < map.cols; ++c) {
      const analysis::TileKind kind = map.at(r, c);
      if (kind == analysis::TileKind::Partial) continue;
      const analysis::Tile t = map.tile(r, c);
      for (int64_t h = 0; h < sizes.H; ++h) {
        for (int64_t i = t.i0; i < t.i1; ++i) {
          for (int64_t j = t.j0; j < t.j1; ++j) {
            require(allowed[static_cast<size_t>((h * sizes.N + i) * sizes.M + j)] ==
                    (kind == analysis::TileKind::Full));
          }
        }
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  // After "%%": lines "@NAME=VALUE" are `--set` overrides for every model; the other lines, a pattern expression.
  std::string expression;
  std::map<std::string, std::string> overrides;
  if (const size_t split = text.find("\n%%\n"); split != std::string::npos) {
    size_t line_start = split + 4;
    while (line_start <= text.size()) {
      size_t line_end = text.find('\n', line_start);
      if (line_end == std::string::npos) line_end = text.size();
      const std::string line = text.substr(line_start, line_end - line_start);
      const size_t equals = line.find('=');
      if (line.size() > 1 && line[0] == '@' && equals != std::string::npos) {
        overrides[line.substr(1, equals - 1)] = line.substr(equals + 1);
      } else {
        expression += line + "\n";
      }
      line_start = line_end + 1;
    }
    text.resize(split);
  }
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  library.add_file(std::make_shared<dsl::SourceFile>("fuzz.attn", text), diags);
  for (const sema::Declaration& d : library.declarations()) {
    if (d.from_prelude) continue;
    dsl::Diagnostics instance_diags;
    if (std::optional<ir::Pattern> pattern = library.instantiate(d.name, instance_diags)) exercise(*pattern);
  }
  if (expression.find_first_not_of(" \t\n") != std::string::npos) {
    dsl::Diagnostics instance_diags;
    if (std::optional<ir::Pattern> pattern = library.instantiate(expression, instance_diags)) exercise(*pattern);
  }
  for (const std::string& name : library.model_names()) {
    dsl::Diagnostics model_diags;
    (void)sema::elaborate_model(library, name, overrides, model_diags);
  }
  return 0;
}
