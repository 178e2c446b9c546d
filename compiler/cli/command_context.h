// What every `tessera` subcommand shares: loading spec files into a pattern library, turning a --pattern
// expression into IR, and reporting user errors (diagnostics to stderr, then a non-zero exit).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "compiler/ir/pattern.h"
#include "compiler/sema/pattern_library.h"

namespace tessera::cli {

// A user error already reported to stderr: the command exits with `exit_code`.
struct CommandFailed {
  int exit_code = 1;
};

// A user error not yet reported: main prints "tessera: error: <message>" and exits 1.
class UserError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Loads the prelude and each spec file; on errors prints every diagnostic and throws CommandFailed.
sema::PatternLibrary load_library(const std::vector<std::string>& spec_files);

// Elaborates `expression` (as given to --pattern) against `library`; on errors prints them and throws.
ir::Pattern instantiate_pattern(const sema::PatternLibrary& library, const std::string& expression);

// Reads a whole file; throws UserError naming it if it cannot be read.
std::string read_text_file(const std::string& path);

}  // namespace tessera::cli
