#include "runtime/wordpiece_tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <limits>

#include "runtime/unicode_tables.h"

namespace tessera::runtime {

namespace {

using unicode::CategoryGroup;

// Decodes strict UTF-8 (RFC 3629). Replacing bad bytes with U+FFFD would be silent here: cleaning drops U+FFFD, so
// corrupt input would tokenize as if the bytes were not there.
std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  size_t i = 0;
  auto fail = [&](const std::string& what) {
    throw TokenizerError(fmt::format("invalid UTF-8 at byte {} of {}: {}", i, text.size(), what));
  };
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i]);
    if (lead < 0x80) {
      out.push_back(lead);
      ++i;
      continue;
    }
    size_t length = 0;
    char32_t cp = 0;
    char32_t min = 0;
    if ((lead & 0xE0) == 0xC0) {
      length = 2, cp = lead & 0x1F, min = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3, cp = lead & 0x0F, min = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4, cp = lead & 0x07, min = 0x10000;
    } else {
      fail(fmt::format("byte 0x{:02X} cannot start a character", lead));
    }
    if (text.size() - i < length) fail("the text ends inside a character");
    for (size_t k = 1; k < length; ++k) {
      auto byte = static_cast<unsigned char>(text[i + k]);
      if ((byte & 0xC0) != 0x80) fail(fmt::format("byte 0x{:02X} is not a continuation byte", byte));
      cp = (cp << 6) | (byte & 0x3F);
    }
    if (cp < min) fail("overlong encoding");
    if (cp >= 0xD800 && cp <= 0xDFFF) fail("a surrogate code point");
    if (cp > 0x10FFFF) fail("a code point above U+10FFFF");
    out.push_back(cp);
    i += length;
  }
  return out;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string encode_utf8(std::u32string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : text) append_utf8(cp, out);
  return out;
}

bool is_tab_or_newline(char32_t cp) { return cp == U'\t' || cp == U'\n' || cp == U'\r'; }

bool is_control(char32_t cp) {
  if (is_tab_or_newline(cp)) return false;  // whitespace, not removed
  switch (unicode::category_group(cp)) {
    case CategoryGroup::Control:
    case CategoryGroup::Format:
    case CategoryGroup::PrivateUse:
    case CategoryGroup::Surrogate: return true;
    default: return false;
  }
}

bool is_whitespace(char32_t cp) {
  if (cp == U' ' || is_tab_or_newline(cp)) return true;
  switch (unicode::category_group(cp)) {
    case CategoryGroup::SpaceSeparator:
    case CategoryGroup::LineSeparator:
    case CategoryGroup::ParagraphSeparator: return true;
    default: return false;
  }
}

// BERT counts all non-alphanumeric ASCII as punctuation ("$", "^", "`", "+" are symbols to Unicode).
bool is_punctuation(char32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
    return true;
  }
  return unicode::category_group(cp) == CategoryGroup::Punctuation;
}

// BERT's "Chinese character" ranges: the CJK Unified Ideographs blocks and the compatibility ideographs. Hangul,
// kana and fullwidth Latin are not in them. Google's BERT starts Extension E at 0x2B820; Hugging Face's tokenizers,
// the reference whose ids this tokenizer reproduces, has 0x2B920, leaving 256 ideographs unsplit. We follow it.
bool is_cjk_ideograph(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// NFD: full decomposition, then a stable sort by combining class inside each run of non-starters.
std::u32string canonical_decomposition(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  for (char32_t cp : text) unicode::append_canonical_decomposition(cp, out);
  for (size_t i = 0; i < out.size();) {
    if (unicode::canonical_combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && unicode::canonical_combining_class(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + static_cast<ptrdiff_t>(i), out.begin() + static_cast<ptrdiff_t>(j),
                     [](char32_t a, char32_t b) {
                       return unicode::canonical_combining_class(a) < unicode::canonical_combining_class(b);
                     });
    i = j;
  }
  return out;
}

}  // namespace

WordPieceTokenizer WordPieceTokenizer::from_vocab_file(const std::string& path, WordPieceOptions options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TokenizerError(fmt::format("{}: cannot open the vocabulary file", path));
  std::vector<std::string> tokens;
  std::string line;
  while (std::getline(in, line)) {
    // A vocabulary written on Windows ends its lines with \r\n; no token ends with \r.
    if (!line.empty() && line.back() == '\r') line.pop_back();
    tokens.push_back(line);
  }
  if (in.bad()) throw TokenizerError(fmt::format("{}: reading the vocabulary failed", path));
  try {
    return from_vocab(tokens, std::move(options));
  } catch (const TokenizerError& e) {
    throw TokenizerError(fmt::format("{}: {}", path, e.what()));
  }
}

WordPieceTokenizer WordPieceTokenizer::from_vocab(const std::vector<std::string>& tokens, WordPieceOptions options) {
  if (tokens.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw TokenizerError(fmt::format("the vocabulary has {} tokens, more than int32 ids can number", tokens.size()));
  }
  WordPieceTokenizer t;
  t.options_ = std::move(options);
  t.tokens_ = tokens;
  t.vocab_.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) t.vocab_[tokens[i]] = static_cast<int32_t>(i);
  t.unk_id_ = t.require_id(t.options_.unk_token, "unknown-word");
  t.cls_id_ = t.require_id(t.options_.cls_token, "classification");
  t.sep_id_ = t.require_id(t.options_.sep_token, "separator");
  for (const auto& special : t.options_.special_tokens) {
    if (special.empty()) throw TokenizerError("a special token is empty");
    t.specials_.emplace_back(decode_utf8(special), t.require_id(special, "special"));
  }
  std::stable_sort(t.specials_.begin(), t.specials_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  return t;
}

int32_t WordPieceTokenizer::require_id(const std::string& token, const char* role) const {
  auto id = token_id(token);
  if (!id) {
    throw TokenizerError(
        fmt::format("the {} token '{}' is not in the vocabulary ({} tokens)", role, token, tokens_.size()));
  }
  return *id;
}

std::optional<int32_t> WordPieceTokenizer::token_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& WordPieceTokenizer::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size()) {
    throw TokenizerError(fmt::format("token id {} is outside the vocabulary [0, {})", id, tokens_.size()));
  }
  return tokens_[static_cast<size_t>(id)];
}

std::vector<WordPieceTokenizer::Word> WordPieceTokenizer::split_words(std::string_view text) const {
  const std::u32string decoded = decode_utf8(text);
  const bool strip_accents = options_.strip_accents.value_or(options_.lower_case);
  std::vector<Word> words;

  auto split_segment = [&](std::u32string_view segment) {
    std::u32string cleaned;
    cleaned.reserve(segment.size());
    for (char32_t cp : segment) {
      if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
      if (is_whitespace(cp)) {
        cleaned.push_back(U' ');
      } else if (options_.tokenize_chinese_chars && is_cjk_ideograph(cp)) {
        cleaned.append({U' ', cp, U' '});
      } else {
        cleaned.push_back(cp);
      }
    }
    if (strip_accents) {
      std::u32string decomposed = canonical_decomposition(cleaned);
      cleaned.clear();
      for (char32_t cp : decomposed) {
        if (unicode::category_group(cp) != CategoryGroup::NonspacingMark) cleaned.push_back(cp);
      }
    }
    if (options_.lower_case) {
      std::u32string lowered;
      lowered.reserve(cleaned.size());
      for (char32_t cp : cleaned) unicode::append_lowercase(cp, lowered);
      cleaned = std::move(lowered);
    }

    std::u32string current;
    auto flush = [&] {
      if (!current.empty()) words.push_back(Word{std::move(current), std::nullopt});
      current.clear();
    };
    for (char32_t cp : cleaned) {
      if (is_whitespace(cp)) {
        flush();
      } else if (is_punctuation(cp)) {
        flush();
        words.push_back(Word{std::u32string(1, cp), std::nullopt});
      } else {
        current.push_back(cp);
      }
    }
    flush();
  };

  // Leftmost match first; at one position the longest special token wins (specials_ is sorted longest first).
  const std::u32string_view all(decoded);
  size_t segment_start = 0;
  for (size_t i = 0; i < all.size();) {
    const std::pair<std::u32string, int32_t>* match = nullptr;
    for (const auto& special : specials_) {
      if (all.substr(i).starts_with(special.first)) {
        match = &special;
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    split_segment(all.substr(segment_start, i - segment_start));
    words.push_back(Word{match->first, match->second});
    i += match->first.size();
    segment_start = i;
  }
  split_segment(all.substr(segment_start));
  return words;
}

void WordPieceTokenizer::append_word_pieces(const Word& word, std::vector<int32_t>& ids) const {
  if (word.special_id) {
    ids.push_back(*word.special_id);
    return;
  }
  const size_t n = word.text.size();
  if (n > options_.max_input_chars_per_word) {
    ids.push_back(unk_id_);
    return;
  }
  // Byte offset of each character of the word in its UTF-8 form, so pieces are substrings.
  std::string utf8;
  std::vector<size_t> offsets;
  offsets.reserve(n + 1);
  for (char32_t cp : word.text) {
    offsets.push_back(utf8.size());
    append_utf8(cp, utf8);
  }
  offsets.push_back(utf8.size());

  const size_t first_piece = ids.size();
  std::string piece;
  for (size_t start = 0; start < n;) {
    std::optional<int32_t> found;
    size_t end = n;
    for (; end > start; --end) {
      piece.assign(start > 0 ? "##" : "");
      piece.append(utf8, offsets[start], offsets[end] - offsets[start]);
      found = token_id(piece);
      if (found) break;
    }
    if (!found) {
      ids.resize(first_piece);  // the whole word is unknown, not just its tail
      ids.push_back(unk_id_);
      return;
    }
    ids.push_back(*found);
    start = end;
  }
}

std::vector<int32_t> WordPieceTokenizer::encode(std::string_view text, size_t max_length, bool truncate) const {
  if (max_length < 2) {
    throw TokenizerError(
        fmt::format("max_length {} leaves no room for {} and {}", max_length, options_.cls_token, options_.sep_token));
  }
  std::vector<int32_t> ids{cls_id_};
  for (const Word& word : split_words(text)) append_word_pieces(word, ids);
  ids.push_back(sep_id_);
  if (ids.size() > max_length) {
    if (!truncate) {
      throw TokenizerError(fmt::format(
          "the input is {} tokens with {} and {}, more than max_length {}; shorten it or ask for truncation",
          ids.size(), options_.cls_token, options_.sep_token, max_length));
    }
    ids.resize(max_length);
    ids.back() = sep_id_;
  }
  return ids;
}

std::vector<std::string> WordPieceTokenizer::tokenize(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const Word& word : split_words(text)) append_word_pieces(word, ids);
  std::vector<std::string> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) pieces.push_back(token(id));
  return pieces;
}

std::vector<std::string> WordPieceTokenizer::basic_tokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (const Word& word : split_words(text)) out.push_back(encode_utf8(word.text));
  return out;
}

}  // namespace tessera::runtime
