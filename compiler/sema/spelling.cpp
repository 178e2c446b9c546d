#include "compiler/sema/spelling.h"

#include <fmt/format.h>

#include <algorithm>

namespace tessera::sema {

namespace {

// Optimal string alignment distance: Levenshtein plus swaps of neighbours ("casual" -> "causal" is 1).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& candidates) {
  // Names are short; a third of the length (at least one edit) separates typos from different words.
  size_t limit = std::max<size_t>(1, (name.size() + 1) / 3);
  std::optional<std::string> best;
  size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    if (c == name || c.size() > name.size() + limit + 1) continue;
    size_t distance = edit_distance(name, c);
    if (distance < best_distance) {
      best_distance = distance;
      best = c;
    }
  }
  return best;
}

std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates) {
  auto best = closest_name(name, candidates);
  return best ? fmt::format("; did you mean '{}'?", *best) : "";
}

}  // namespace tessera::sema
