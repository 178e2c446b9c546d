#include "dsl/diagnostics.h"

#include <fmt/format.h>

#include <algorithm>
#include <ostream>
#include <sstream>

namespace tessera::dsl {

void Diagnostics::error(const SourceRange& where, std::string message) {
  diagnostics_.push_back({Severity::Error, where, std::move(message)});
  ++error_count_;
}

void Diagnostics::warning(const SourceRange& where, std::string message) {
  diagnostics_.push_back({Severity::Warning, where, std::move(message)});
}

void Diagnostics::note(const SourceRange& where, std::string message) {
  diagnostics_.push_back({Severity::Note, where, std::move(message)});
}

std::string format_diagnostic(const Diagnostic& d) {
  const char* label = d.severity == Severity::Error ? "error" : d.severity == Severity::Warning ? "warning" : "note";
  if (!d.where.valid()) return fmt::format("tessera: {}: {}\n", label, d.message);
  const SourceFile& file = *d.where.file;
  auto [line, col] = file.line_col(d.where.begin);
  std::string out = fmt::format("{}:{}:{}: {}: {}\n", file.name(), line, col, label, d.message);
  std::string_view text = file.line_text(line);
  out += fmt::format("{}\n", text);
  // Caret under the first character, tildes under the rest of the range (clipped to this line).
  std::string marker(static_cast<size_t>(col - 1), ' ');
  for (size_t c = 0; c < marker.size() && c < text.size(); ++c) {
    if (text[c] == '\t') marker[c] = '\t';
  }
  marker += '^';
  int end_col = file.line_col(std::max(d.where.end, d.where.begin + 1) - 1).first == line
                    ? file.line_col(std::max(d.where.end, d.where.begin + 1) - 1).second
                    : static_cast<int>(text.size());
  for (int c = col + 1; c <= end_col; ++c) marker += '~';
  out += marker + "\n";
  return out;
}

void Diagnostics::print(std::ostream& out) const {
  // Reported in source order within each file (files in the order they first appear), whatever order the
  // phases found them in; a note stays with the error or warning it explains.
  struct Group {
    size_t file_rank;
    uint32_t offset;
    size_t first, last;  // [first, last) in diagnostics_
  };
  std::vector<const SourceFile*> files;
  std::vector<Group> groups;
  for (size_t i = 0; i < diagnostics_.size(); ++i) {
    const Diagnostic& d = diagnostics_[i];
    if (d.severity == Severity::Note && !groups.empty()) {
      groups.back().last = i + 1;
      continue;
    }
    const SourceFile* file = d.where.file.get();
    size_t rank = std::find(files.begin(), files.end(), file) - files.begin();
    if (rank == files.size()) files.push_back(file);
    groups.push_back({rank, d.where.begin, i, i + 1});
  }
  std::stable_sort(groups.begin(), groups.end(), [](const Group& a, const Group& b) {
    return a.file_rank != b.file_rank ? a.file_rank < b.file_rank : a.offset < b.offset;
  });
  for (const Group& g : groups) {
    for (size_t i = g.first; i < g.last; ++i) out << format_diagnostic(diagnostics_[i]);
  }
}

std::string Diagnostics::str() const {
  std::ostringstream out;
  print(out);
  return out.str();
}

}  // namespace tessera::dsl
