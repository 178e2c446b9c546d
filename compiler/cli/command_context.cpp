#include "compiler/cli/command_context.h"

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

namespace tessera::cli {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(fmt::format("cannot read '{}'", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

sema::PatternLibrary load_library(const std::vector<std::string>& spec_files) {
  sema::PatternLibrary library;
  dsl::Diagnostics diags;
  for (const auto& path : spec_files) {
    library.add_file(std::make_shared<dsl::SourceFile>(path, read_text_file(path)), diags);
  }
  diags.print(std::cerr);
  if (diags.has_errors()) throw CommandFailed{1};
  return library;
}

ir::Pattern instantiate_pattern(const sema::PatternLibrary& library, const std::string& expression) {
  dsl::Diagnostics diags;
  std::optional<ir::Pattern> pattern = library.instantiate(expression, diags);
  diags.print(std::cerr);
  if (!pattern || diags.has_errors()) throw CommandFailed{1};
  return *pattern;
}

}  // namespace tessera::cli
