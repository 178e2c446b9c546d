// `tessera check FILE...`: parses and type-checks spec files, reporting every error of every file.
#include <fmt/format.h>

#include <iostream>

#include "compiler/cli/command_context.h"
#include "compiler/cli/commands.h"
#include "compiler/ir/printer.h"

namespace tessera::cli {

namespace {

struct CheckOptions {
  std::vector<std::string> files;
  std::string emit = "none";
  bool include_prelude = false;
};

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
  if (options.emit == "ast") {
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
    std::cout << fmt::format("ok: {} pattern{} in {} file{}\n", count, count == 1 ? "" : "s", options.files.size(),
                             options.files.size() == 1 ? "" : "s");
  }
  return 0;
}

}  // namespace

Command add_check_command(CLI::App& app) {
  auto options = std::make_shared<CheckOptions>();
  CLI::App* cmd = app.add_subcommand("check", "Parse and type-check spec files, reporting every error");
  cmd->add_option("files", options->files, "Spec files (.attn)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--emit", options->emit, "Print the files' AST or the IR of each declared pattern")
      ->check(CLI::IsMember({"none", "ast", "ir"}));
  cmd->add_flag("--include-prelude", options->include_prelude, "With --emit=ir, print the standard library too");
  return {cmd, [options] { return run_check(*options); }};
}

}  // namespace tessera::cli
