// Each subcommand registers its flags on the CLI11 app and returns the function that runs it once parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace tessera::cli {

using CommandRunner = std::function<int()>;

struct Command {
  CLI::App* app;      // the subcommand, to know which one was parsed
  CommandRunner run;  // runs it; returns the exit code
};

Command add_check_command(CLI::App& app);
Command add_show_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_inputs_command(CLI::App& app);
Command add_plan_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_compile_command(CLI::App& app);
Command add_run_command(CLI::App& app);
Command add_embed_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_init_weights_command(CLI::App& app);
Command add_tune_command(CLI::App& app);

}  // namespace tessera::cli
