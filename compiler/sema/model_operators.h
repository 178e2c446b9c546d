// The operators a `model` can call (`embedding`, `linear`, `attention`, ...): their graph op, how many values
// they take and which named arguments, for elaboration and its messages.
#pragma once

#include <string>
#include <vector>

#include "compiler/graph/graph.h"

namespace tessera::sema {

enum class OperatorArgType : uint8_t { Int, Float, Bool, Pattern };

struct OperatorArg {
  const char* name;
  OperatorArgType type;
  bool required;
};

struct OperatorSignature {
  const char* name;  // the DSL spelling
  graph::OpKind op;
  size_t min_values;  // positional values
  size_t max_values;
  std::vector<OperatorArg> args;  // named arguments
  bool has_weights;               // must then be bound to a name, which prefixes its weights
  const char* form;               // for messages: "linear(x, out=INT, bias=BOOL)"
};

// The operator called `name`, or null.
const OperatorSignature* find_operator(const std::string& name);
// Every operator's name, for spelling suggestions.
std::vector<std::string> operator_names();
const char* arg_type_name(OperatorArgType type);  // "int", "float", "bool", "a pattern"

}  // namespace tessera::sema
