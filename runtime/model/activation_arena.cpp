#include "runtime/model/activation_arena.h"

#include <stdexcept>

namespace tessera::runtime {

int ActivationArena::acquire(int64_t floats) {
  int best = -1;     // the smallest free slot that fits
  int largest = -1;  // else the largest free slot, grown
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.busy) continue;
    const int64_t capacity = s.storage.numel();
    if (capacity >= floats && (best < 0 || capacity < slots_[static_cast<size_t>(best)].storage.numel())) {
      best = static_cast<int>(i);
    }
    if (largest < 0 || capacity > slots_[static_cast<size_t>(largest)].storage.numel()) largest = static_cast<int>(i);
  }
  int slot = best;
  if (slot < 0) {
    if (largest >= 0) {
      slot = largest;
    } else {
      slots_.push_back({});
      slot = static_cast<int>(slots_.size() - 1);
    }
    slots_[static_cast<size_t>(slot)].storage = Tensor(DType::Float32, {floats});
    ++allocations_;
  }
  slots_[static_cast<size_t>(slot)].busy = true;
  return slot;
}

void ActivationArena::release(int slot) {
  Slot& s = slots_.at(static_cast<size_t>(slot));
  if (!s.busy) throw std::logic_error("activation buffer released twice");
  s.busy = false;
}

int64_t ActivationArena::bytes() const {
  int64_t total = 0;
  for (const Slot& s : slots_) total += static_cast<int64_t>(s.storage.size_bytes());
  return total;
}

}  // namespace tessera::runtime
