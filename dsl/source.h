// Source text and positions: every token, AST node and IR node can say where it came from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tessera::dsl {

// A buffer of spec text with a display name ("examples/sparse.attn", or "<pattern>" for --pattern EXPR).
class SourceFile {
 public:
  SourceFile(std::string name, std::string text);

  const std::string& name() const { return name_; }
  const std::string& text() const { return text_; }

  // 1-based line and column of a byte offset.
  std::pair<int, int> line_col(uint32_t offset) const;
  // The text of the 1-based line, without its newline.
  std::string_view line_text(int line) const;

 private:
  std::string name_;
  std::string text_;
  std::vector<uint32_t> line_starts_;
};

// A half-open byte range [begin, end) in one source file; file == nullptr means "no location" (synthesised).
struct SourceRange {
  std::shared_ptr<const SourceFile> file;
  uint32_t begin = 0;
  uint32_t end = 0;

  bool valid() const { return file != nullptr; }
  static SourceRange merge(const SourceRange& a, const SourceRange& b);
};

}  // namespace tessera::dsl
