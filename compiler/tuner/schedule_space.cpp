#include "compiler/tuner/schedule_space.h"

#include <fmt/format.h>

#include <set>

namespace tessera::tuner {

Schedule ScheduleSpace::defaults() const {
  Schedule s;
  for (const Parameter& p : parameters) s[p.name] = p.default_value;
  return s;
}

std::vector<Schedule> ScheduleSpace::valid_points(int64_t* pruned, bool modelled_only) const {
  std::vector<Schedule> points;
  int64_t removed = 0;
  if (parameters.empty()) {
    points.push_back({});
  } else {
    // An odometer over the candidate lists, last parameter fastest.
    // Parameters held at their default contribute one value.
    std::vector<std::vector<int64_t>> values;
    for (const Parameter& p : parameters) {
      values.push_back(modelled_only && p.refined_by_measurement ? std::vector<int64_t>{p.default_value} : p.values);
    }
    std::vector<size_t> index(parameters.size(), 0);
    for (bool done = false; !done;) {
      Schedule s;
      for (size_t p = 0; p < parameters.size(); ++p) s[parameters[p].name] = values[p].at(index[p]);
      if (invalid && invalid(s)) {
        ++removed;
      } else {
        points.push_back(std::move(s));
      }
      size_t p = parameters.size();
      while (p-- > 0) {
        if (++index[p] < values[p].size()) break;
        index[p] = 0;
        if (p == 0) done = true;
      }
    }
  }
  if (pruned) *pruned = removed;
  return points;
}

std::string describe(const Schedule& schedule, const ScheduleSpace& space) {
  std::string text;
  std::set<std::string> named;
  auto add = [&](const std::string& name, int64_t value) {
    text += fmt::format("{}{}={}", text.empty() ? "" : ",", name, value);
  };
  for (const Parameter& p : space.parameters) {
    named.insert(p.name);
    if (auto it = schedule.find(p.name); it != schedule.end()) add(p.name, it->second);
  }
  for (const auto& [name, value] : schedule) {
    if (!named.count(name)) add(name, value);
  }
  return text;
}

std::string describe(const Schedule& schedule) { return describe(schedule, ScheduleSpace{}); }

}  // namespace tessera::tuner
