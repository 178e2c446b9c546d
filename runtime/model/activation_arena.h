// Buffers for a forward pass's activations, reused across layers and across calls.
//
// A value lives from the node that computes it to its last reader; the runner releases it then, and the next
// node takes the smallest free buffer that fits. Buffers only ever grow, so once a pass of a given shape has run,
// the same pass of that shape or smaller allocates nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/tensor.h"

namespace tessera::runtime {

class ActivationArena {
 public:
  // A free buffer of at least `floats` elements (64-byte aligned); returns its slot.
  int acquire(int64_t floats);
  void release(int slot);
  float* data(int slot) { return slots_.at(static_cast<size_t>(slot)).storage.data<float>(); }

  size_t slot_count() const { return slots_.size(); }
  int64_t allocations() const { return allocations_; }  // buffer (re)allocations so far; tests watch it
  int64_t bytes() const;                                // total held

 private:
  struct Slot {
    Tensor storage;
    bool busy = false;
  };
  std::vector<Slot> slots_;
  int64_t allocations_ = 0;
};

}  // namespace tessera::runtime
