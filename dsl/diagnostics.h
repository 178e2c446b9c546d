// User-facing diagnostics in the LLVM style:
//
//   spec.attn:3:22: error: unknown name 'qq'
//     mask: k <= qq
//                ^~
//
// Errors are collected (a file reports all its errors, not just the first) and printed in order.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "dsl/source.h"

namespace tessera::dsl {

enum class Severity { Error, Warning, Note };

struct Diagnostic {
  Severity severity;
  SourceRange where;
  std::string message;
};

class Diagnostics {
 public:
  void error(const SourceRange& where, std::string message);
  void warning(const SourceRange& where, std::string message);
  // A note attaches to the previous error or warning (e.g. "parameter declared here").
  void note(const SourceRange& where, std::string message);

  bool has_errors() const { return error_count_ > 0; }
  int error_count() const { return error_count_; }
  const std::vector<Diagnostic>& all() const { return diagnostics_; }

  // Prints every diagnostic: "file:line:col: error: msg", the source line, and a caret line ("^~~~").
  void print(std::ostream& out) const;
  std::string str() const;

 private:
  std::vector<Diagnostic> diagnostics_;
  int error_count_ = 0;
};

// Formats one diagnostic exactly as Diagnostics::print does.
std::string format_diagnostic(const Diagnostic& diagnostic);

}  // namespace tessera::dsl
