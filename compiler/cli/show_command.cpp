// `tessera show`: what a pattern allows, as a picture (ASCII, or PNG for long sequences), with density and
// the tile classification a backend will see.
#include <fmt/format.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "compiler/analysis/pattern_stats.h"
#include "compiler/analysis/tile_classification.h"
#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/cli/mask_png.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/simplify.h"
#include "compiler/planner/allowed_pairs.h"

namespace tessera::cli {

namespace {

struct ShowOptions {
  std::string pattern;
  std::vector<std::string> specs;
  int64_t seq = 0;
  std::optional<int64_t> keys;
  int64_t heads = 1;
  int64_t head = 0;
  int64_t block_q = 64, block_k = 64;
  std::string png;
  int64_t png_size = 1024;
  std::string emit = "picture";
};

// The pattern as seen by one head of batch 0: b, h and H become constants, so a per-head pattern can be
// pictured and counted exactly.
ir::Pattern for_one_head(ir::Pattern pattern, const ShowOptions& o) {
  auto fix = [&](ir::Expr e) {
    e = ir::substitute(e, ir::Var::Batch, ir::int_imm(0));
    e = ir::substitute(e, ir::Var::Head, ir::int_imm(o.head));
    e = ir::substitute(e, ir::Var::Heads, ir::int_imm(o.heads));
    return ir::simplify(e);
  };
  pattern.mask = fix(pattern.mask);
  pattern.score = fix(pattern.score);
  return pattern;
}

// Downsamples the mask into at most size x size cells: 0 none allowed, 1 some, 2 all.
std::vector<uint8_t> png_cells(const ir::Pattern& pattern, int64_t N, int64_t M, int64_t rows, int64_t cols) {
  analysis::ClassifyOptions exact;
  exact.enumerate_limit = int64_t{1} << 40;  // exact per cell: the picture must not show a guess
  std::vector<uint8_t> cells(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      analysis::Tile tile{r * N / rows, (r + 1) * N / rows, c * M / cols, (c + 1) * M / cols};
      analysis::TileKind kind = analysis::classify_tile(pattern, N, M, tile, exact);
      cells[r * cols + c] = kind == analysis::TileKind::Empty ? 0 : kind == analysis::TileKind::Full ? 2 : 1;
    }
  }
  return cells;
}

int run_show(const ShowOptions& o) {
  if (o.head >= o.heads) throw UserError(fmt::format("--head {} must be less than --heads {}", o.head, o.heads));
  sema::PatternLibrary library = load_library(o.specs);
  ir::Pattern pattern = instantiate_pattern(library, o.pattern);
  if (o.emit == "ir") {
    std::cout << ir::to_string(pattern);
    return 0;
  }
  int64_t N = o.seq;
  int64_t M = o.keys.value_or(o.seq);
  ir::Pattern one_head = for_one_head(pattern, o);
  analysis::ClassifyOptions options;
  options.B = 1;
  options.H = o.heads;

  std::cout << fmt::format("pattern {}\n", pattern.name);
  std::cout << fmt::format("queries N={}, keys M={}{}\n", N, M,
                           o.heads > 1 ? fmt::format(", head {} of {}", o.head, o.heads) : "");
  bool needs_data = !one_head.inputs.empty() && ir::uses_tensors(one_head.mask);
  if (needs_data) {
    std::vector<std::string> names;
    for (const auto& t : one_head.inputs) names.push_back(t.name);
    std::cout << fmt::format(
        "the mask reads run-time tensors ({}): no picture; tiles are classified without "
        "their values\n",
        fmt::join(names, ", "));
  } else {
    std::cout << analysis::render_mask_ascii(one_head, N, M);
  }
  const analysis::PatternStats stats = analysis::pattern_stats(one_head, N, M, o.block_q, o.block_k, options, false);
  if (const std::optional<int64_t> allowed = planner::count_allowed_pairs(one_head, N, M, options)) {
    std::cout << fmt::format(
        "allowed pairs: {} of {} (density {:.4f}%)\n", *allowed, stats.total_pairs,
        100.0 * static_cast<double>(*allowed) / static_cast<double>(std::max<int64_t>(1, stats.total_pairs)));
  } else {
    std::cout << fmt::format("allowed pairs: unknown until run time, of {}\n", stats.total_pairs);
  }
  const analysis::TileMap& tiles = stats.tiles;
  std::cout << fmt::format("tiles {}x{}: {} = {} empty + {} full + {} partial\n", tiles.block_q, tiles.block_k,
                           tiles.rows * tiles.cols, tiles.empty, tiles.full, tiles.partial);

  if (!o.png.empty()) {
    if (needs_data) throw UserError("--png needs a mask that does not read run-time tensors");
    int64_t rows = std::min(N, o.png_size), cols = std::min(M, o.png_size);
    write_mask_png(o.png, rows, cols, png_cells(one_head, N, M, rows, cols));
    std::cout << fmt::format("wrote {} ({}x{} pixels; black = allowed, grey = partly allowed)\n", o.png, cols, rows);
  }
  return 0;
}

}  // namespace

Command add_show_command(CLI::App& app) {
  auto o = std::make_shared<ShowOptions>();
  CLI::App* cmd = app.add_subcommand("show", "Picture a pattern's mask with its density and tile counts");
  cmd->add_option("--pattern", o->pattern, "Pattern expression, e.g. 'strided(stride=128)'")->required();
  cmd->add_option("--spec", o->specs, "Spec file(s) whose patterns the expression may use");
  cmd->add_option("--seq", o->seq, "N, number of queries")->required()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", o->keys, "M, number of keys (default N)")->check(CLI::PositiveNumber);
  cmd->add_option("--heads", o->heads, "H, number of heads (for patterns that depend on h; default 1)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--head", o->head, "Which head to picture (default 0)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--tile-q", o->block_q, "Query tile size for the tile counts (default 64)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--tile-k", o->block_k, "Key tile size for the tile counts (default 64)")->check(CLI::PositiveNumber);
  cmd->add_option("--png", o->png, "Also write the mask as a PNG (downsampled to --png-size pixels a side)");
  cmd->add_option("--png-size", o->png_size, "Largest PNG side in pixels (default 1024)")->check(CLI::PositiveNumber);
  cmd->add_option("--emit", o->emit, "What to print: the picture and counts (default), or the pattern's IR")
      ->check(CLI::IsMember({"picture", "ir"}));
  return {cmd, [o] { return run_show(*o); }};
}

}  // namespace tessera::cli
