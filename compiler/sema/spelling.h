// "Did you mean ...?" suggestions for misspelt names.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tessera::sema {

// The candidate closest to `name` by edit distance (insertions, deletions, substitutions and transpositions of
// adjacent characters), if it is close enough to be a plausible typo.
std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& candidates);

// "; did you mean 'x'?" or "" when nothing is close.
std::string did_you_mean(const std::string& name, const std::vector<std::string>& candidates);

}  // namespace tessera::sema
