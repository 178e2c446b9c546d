// `tessera check FILE...`: parses and type-checks spec files, reporting every error of every file; models are
// elaborated into their layer graphs (with --emit=graph, printed).
#include <fmt/format.h>

#include <iostream>
#include <map>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/graph/graph.h"
#include "compiler/ir/printer.h"
#include "compiler/sema/model_elaboration.h"

namespace tessera::cli {

namespace {

struct CheckOptions {
  std::vector<std::string> files;
  std::string emit = "none";
  bool include_prelude = false;
  std::string model;              // --model NAME: only this model (default: every model of the files)
  std::vector<std::string> sets;  // --set NAME=VALUE, parameters of that model
};

std::string plural(size_t n, const char* noun) { return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s"); }

// "--set NAME=VALUE" flags as a map; a malformed or repeated one is a UserError naming it.
std::map<std::string, std::string> parse_sets(const std::vector<std::string>& sets) {
  std::map<std::string, std::string> overrides;
  for (const auto& set : sets) {
    size_t eq = set.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UserError(fmt::format("--set expects NAME=VALUE, got '{}'", set));
    }
    if (!overrides.emplace(set.substr(0, eq), set.substr(eq + 1)).second) {
      throw UserError(fmt::format("--set {} is given more than once", set.substr(0, eq)));
    }
  }
  return overrides;
}

// Elaborates the models the options select; prints every error and throws CommandFailed if there is one.
std::vector<graph::Graph> elaborate_models(const sema::PatternLibrary& library, const CheckOptions& options) {
  std::map<std::string, std::string> overrides = parse_sets(options.sets);
  std::vector<std::string> names = library.model_names();
  std::string target = options.model;
  if (target.empty() && !overrides.empty()) {
    if (names.size() != 1) {
      throw UserError(fmt::format("--set applies to the model named by --model NAME; the files declare {}{}",
                                  plural(names.size(), "model"),
                                  names.empty() ? "" : fmt::format(" ({})", fmt::join(names, ", "))));
    }
    target = names[0];
  }
  if (!target.empty()) names = {target};
  dsl::Diagnostics diags;
  std::vector<graph::Graph> graphs;
  for (const auto& name : names) {
    auto graph =
        sema::elaborate_model(library, name, name == target ? overrides : std::map<std::string, std::string>{}, diags);
    if (graph) graphs.push_back(std::move(*graph));
  }
  diags.print(std::cerr);
  if (diags.has_errors()) throw CommandFailed{1};
  return graphs;
}

std::string parameter_list(const sema::Declaration& decl) {
  if (decl.params.empty()) return "";
  std::vector<std::string> params;
  for (const auto& p : decl.params) {
    std::string text = fmt::format("{}: {}", p.name, ir::type_name(p.type));
    if (!p.constraint.empty()) text += " " + p.constraint;
    params.push_back(text);
  }
  return fmt::format("({})", fmt::join(params, ", "));
}

int run_check(const CheckOptions& options) {
  sema::PatternLibrary library = load_library(options.files);
  std::vector<graph::Graph> graphs = elaborate_models(library, options);
  if (options.emit == "graph") {
    for (size_t i = 0; i < graphs.size(); ++i) std::cout << (i ? "\n" : "") << graph::to_string(graphs[i]);
  } else if (options.emit == "ast") {
    std::cout << library.ast_dump();
  } else if (options.emit == "ir") {
    for (const auto& decl : library.declarations()) {
      if (decl.from_prelude && !options.include_prelude) continue;
      // Parameters stay symbolic here: this is the IR every instantiation starts from.
      std::cout << fmt::format("// declaration {}{}\n", decl.name, parameter_list(decl));
      std::cout << ir::to_string(decl.body) << "\n";
    }
  } else {
    size_t count = 0;
    for (const auto& decl : library.declarations()) count += decl.from_prelude ? 0 : 1;
    size_t models = library.model_names().size();
    std::cout << fmt::format("ok: {}{} in {}\n", plural(count, "pattern"),
                             models ? " and " + plural(models, "model") : std::string(),
                             plural(options.files.size(), "file"));
  }
  return 0;
}

}  // namespace

Command add_check_command(CLI::App& app) {
  auto options = std::make_shared<CheckOptions>();
  CLI::App* cmd =
      app.add_subcommand("check", "Parse and type-check spec files (patterns and models), reporting every error");
  cmd->add_option("files", options->files, "Spec files (.attn)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--emit", options->emit,
                  "Print the files' AST, the IR of each declared pattern, or the layer graph of each model "
                  "(graph: one node per line with its shape and weights)")
      ->check(CLI::IsMember({"none", "ast", "ir", "graph"}));
  cmd->add_flag("--include-prelude", options->include_prelude, "With --emit=ir, print the standard library too");
  cmd->add_option("--model", options->model,
                  "Elaborate (and with --emit=graph, print) only this model; by default every model of the files");
  cmd->add_option("--set", options->sets,
                  "NAME=VALUE: a parameter of the --model (or of the files' only model), e.g. --set layers=2; "
                  "repeatable")
      ->type_name("NAME=VALUE")
      ->allow_extra_args(false);
  return {cmd, [options] { return run_check(*options); }};
}

}  // namespace tessera::cli
