// A model that cannot run as asked: a missing input, a graph that cannot be decoded incrementally, generation on
// a model without logits. The user's error (a std::runtime_error), never an internal one; the message names the
// model, the node or the input at fault. Tensor shape and value problems are runtime::TensorError.
#pragma once

#include <stdexcept>

namespace tessera::runtime {

class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tessera::runtime
