// Tests name patterns the way users do: an expression over the standard library, elaborated to IR.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "compiler/ir/pattern.h"
#include "compiler/sema/pattern_library.h"

namespace tessera::test {

// The pattern of `expression` (e.g. "causal & alibi"); a diagnostic fails the calling test.
inline ir::Pattern instantiate(const std::string& expression) {
  static const sema::PatternLibrary library;
  dsl::Diagnostics diags;
  std::optional<ir::Pattern> p = library.instantiate(expression, diags);
  EXPECT_TRUE(p.has_value()) << diags.str();
  return p ? *p : ir::Pattern{};
}

}  // namespace tessera::test
