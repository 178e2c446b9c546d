// A kernel's schedule space as its backend declares it: named integer parameters with candidate values and a
// default, plus the backend's own validity constraints. The tuner searches any such space without knowing what
// the parameters mean, so a backend adds a parameter (or a whole target adds its space) without touching it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "compiler/tuner/tune_cache.h"

namespace tessera::tuner {

struct Parameter {
  std::string name;
  std::vector<int64_t> values;  // candidates, in the backend's order
  int64_t default_value = 0;
  std::string help;
  // The cost model cannot tell this parameter's values apart (code generation details such as register tiles):
  // the search keeps it at its default while ranking and refines it by measurement around the winner.
  bool refined_by_measurement = false;
};

struct ScheduleSpace {
  std::string target;  // e.g. "cpu"
  std::vector<Parameter> parameters;
  // Why the backend cannot run `schedule` (its constraints), or nullopt when it can. Checked before anything is
  // compiled.
  std::function<std::optional<std::string>(const Schedule&)> invalid;
  // What a point runs (its kernels and plan) as a key, where the backend knows that different points can run the
  // same: the search measures only the best-ranked point of each key. Unset: every point is distinct.
  std::function<std::string(const Schedule&)> kernel_identity;

  Schedule defaults() const;
  // Every valid point, in the order of the parameters' candidate lists (the first parameter varies slowest).
  // `pruned`, if given, receives the number of points the constraints removed. With `modelled_only`, parameters
  // refined by measurement stay at their defaults.
  std::vector<Schedule> valid_points(int64_t* pruned = nullptr, bool modelled_only = false) const;
};

// "block_q=128,block_k=64" in the space's parameter order (names not in the space follow, sorted).
std::string describe(const Schedule& schedule, const ScheduleSpace& space);
// The same with every name sorted: schedules read back from the cache, and shape buckets (the same map type).
std::string describe(const Schedule& schedule);

}  // namespace tessera::tuner
