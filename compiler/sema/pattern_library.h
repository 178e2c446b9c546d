// The front end's entry point: spec files in, pattern IR out.
//
// A PatternLibrary holds pattern declarations (always the prelude first, then user spec files) and elaborates
// pattern expressions such as "causal & sliding_window(window=256)" into ir::Pattern.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "compiler/ir/evaluate.h"
#include "compiler/ir/pattern.h"
#include "dsl/diagnostics.h"
#include "dsl/source.h"

namespace tessera::dsl::ast {
struct ModelDecl;
struct PatternExpr;
}  // namespace tessera::dsl::ast

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

  // ---- Models (layer graphs; compiler/sema/model_elaboration.h elaborates them) ----
  // Models share one namespace with patterns. A model whose parameter list has errors is left out.

  // The models of the files added, in declaration order.
  std::vector<std::string> model_names() const;
  // The syntax tree of model `name`, or null.
  const dsl::ast::ModelDecl* find_model(const std::string& name) const;
  // The values of model `name`'s parameters: each one's `overrides` entry if any (text from the command line,
  // "layers" -> "2"), else its default, checked against its type and constraints. Returns nullopt after
  // reporting errors (unknown model or parameter, a value of the wrong type or out of range, no value at all);
  // an override's errors point into "<--set>:NAME=VALUE".
  std::optional<std::map<std::string, ir::Value>> model_arguments(const std::string& name,
                                                                  const std::map<std::string, std::string>& overrides,
                                                                  dsl::Diagnostics& diags) const;
  // Elaborates a pattern expression written inside a model (`causal & sliding_window(window = w)`): its
  // arguments are constant expressions that may use the model's parameters, bound to `params`. Errors are
  // reported at the expression's own source ranges.
  std::optional<ir::Pattern> instantiate(const dsl::ast::PatternExpr& expression,
                                         const std::map<std::string, ir::Value>& params, dsl::Diagnostics& diags) const;

  // The AST of every file added (not the prelude), as printed by `--emit=ast`.
  std::string ast_dump() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::sema
