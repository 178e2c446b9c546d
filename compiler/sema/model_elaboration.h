// Elaboration of a `model` declaration into the graph IR (compiler/graph/graph.h): parameters bound, stacks
// unrolled, every value's kind and width inferred and checked, every weight named and sized, every attention
// pattern elaborated.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "compiler/graph/graph.h"
#include "compiler/sema/pattern_library.h"
#include "dsl/diagnostics.h"

namespace tessera::sema {

// Elaborates model `name` of `library`. `overrides` are parameter values as text from the command line
// ("layers" -> "2"); other parameters take their defaults. Returns nullopt after reporting every error found
// into `diags`, each located in the spec (or in "<--set>" for an override); an unknown model name's error lists
// the models the library holds.
std::optional<graph::Graph> elaborate_model(const PatternLibrary& library, const std::string& name,
                                            const std::map<std::string, std::string>& overrides,
                                            dsl::Diagnostics& diags);

}  // namespace tessera::sema
