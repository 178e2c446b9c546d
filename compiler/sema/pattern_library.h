// The front end's entry point: spec files in, pattern IR out.
//
// A PatternLibrary holds pattern declarations (always the prelude first, then user spec files) and elaborates
// pattern expressions such as "causal & sliding_window(window=256)" into ir::Pattern.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"

namespace tessera::sema {

struct Parameter {
  std::string name;
  ir::Type type = ir::Type::Int;
  std::optional<ir::Value> default_value;
  std::string constraint;  // source form of the range constraint, e.g. ">= 1", or empty
  dsl::SourceRange where;
};

struct Declaration {
  std::string name;
  std::vector<Parameter> params;
  // The body with parameters left unbound (as ir::Symbol nodes named after them), simplified.
  ir::Pattern body;
  bool from_prelude = false;
  dsl::SourceRange where;
};

class PatternLibrary {
 public:
  // A library holding the standard prelude. An error in the prelude is an internal error (std::logic_error).
  PatternLibrary();
  ~PatternLibrary();
  PatternLibrary(PatternLibrary&&) noexcept;
  PatternLibrary& operator=(PatternLibrary&&) noexcept;

  // Parses and checks every declaration of a spec file, reporting all of its errors into `diags`.
  // Returns false if there were errors; the declarations that had none are still added.
  bool add_file(std::shared_ptr<const dsl::SourceFile> file, dsl::Diagnostics& diags);

  // Elaborates a pattern expression to IR (parameters bound, simplified). Returns nullopt after reporting
  // errors (unknown pattern, wrong arity or parameter name, type mismatch, out-of-range argument, division
  // by zero) into `diags`, located in `expression`.
  std::optional<ir::Pattern> instantiate(std::shared_ptr<const dsl::SourceFile> expression,
                                         dsl::Diagnostics& diags) const;
  // Same, for text given on the command line: the file is named "<pattern>".
  std::optional<ir::Pattern> instantiate(const std::string& expression, dsl::Diagnostics& diags) const;

  const std::vector<Declaration>& declarations() const;
  const Declaration* find(const std::string& name) const;

  // The AST of every file added (not the prelude), as printed by `--emit=ast`.
  std::string ast_dump() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::sema
