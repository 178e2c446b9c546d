// The `tessera` command-line driver: parses flags with CLI11 and dispatches to one subcommand.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <map>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/ir/evaluate.h"

int main(int argc, char** argv) {
  CLI::App app{
      "Tessera: a compiler for attention patterns.\n"
      "Patterns are written in a small DSL (see README.md); the standard library (full, causal, sliding_window,\n"
      "local, strided, fixed, dilated, local2d, prefix_lm, document, alibi, softcap, relative, local1d,\n"
      "relative_bidir, t5_bias, relative2d, hardmax, luong_local_p, dot, bilinear,\n"
      "additive, sample) is always loaded.",
      "tessera"};
  app.set_version_flag("--version", TESSERA_VERSION);
  app.require_subcommand(1);

  std::map<CLI::App*, tessera::cli::CommandRunner> runners;
  auto add = [&](tessera::cli::Command command) { runners[command.app] = std::move(command.run); };
  add(tessera::cli::add_check_command(app));
  add(tessera::cli::add_show_command(app));
  add(tessera::cli::add_plan_command(app));
  add(tessera::cli::add_eval_command(app));
  add(tessera::cli::add_inputs_command(app));
  add(tessera::cli::add_bench_command(app));
  add(tessera::cli::add_compile_command(app));
  add(tessera::cli::add_run_command(app));
  add(tessera::cli::add_embed_command(app));
  add(tessera::cli::add_generate_command(app));
  add(tessera::cli::add_init_weights_command(app));
  add(tessera::cli::add_tune_command(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    for (auto* sub : app.get_subcommands()) return runners.at(sub)();
  } catch (const tessera::cli::CommandFailed& failed) {
    return failed.exit_code;
  } catch (const std::logic_error& e) {
    // Internal errors are bugs in Tessera, reported as such rather than as the user's fault.
    std::cerr << fmt::format("tessera: internal error: {}\n", e.what());
    return 3;
  } catch (const std::exception& e) {
    std::cerr << fmt::format("tessera: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
