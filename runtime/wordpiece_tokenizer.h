// BERT's WordPiece tokenizer: text -> token ids, as Hugging Face's tokenizers library does it for an uncased BERT
// (BertNormalizer, BertPreTokenizer, WordPiece, the "[CLS] $A [SEP]" template), which is what all-MiniLM-L6-v2's
// own Python tokenizer runs.
//
// Steps, in order:
//  1. UTF-8 decoding. Invalid UTF-8 (a bad lead or continuation byte, a truncated sequence, an overlong form, a
//     surrogate, a value above U+10FFFF) throws TokenizerError naming the byte offset; nothing is replaced.
//  2. Special tokens ([CLS], [MASK], ... by default) written in the raw text are kept whole and map to their ids,
//     before any normalization, as the reference does; the text between them goes through 3-5 separately.
//  3. Cleaning: NUL, U+FFFD and control characters (Cc, Cf, Co other than \t \n \r) are dropped; \t \n \r and the
//     Unicode separators (Zs, Zl, Zp) become spaces. Unassigned code points are kept (they end as [UNK]), as the
//     reference keeps them. CJK ideographs (BERT's ranges, with the reference's start of Extension E at U+2B920)
//     get spaces around them, so each is its own word.
//     With accent stripping (on when lower_case is, unless set): canonical decomposition (NFD), then every
//     nonspacing mark (Mn) is dropped ("Café" -> "Cafe", "が" -> "か"). With lower_case: each character is
//     lowercased alone (no Greek final-sigma rule, like the reference).
//  4. Splitting: on whitespace (dropped) and around every punctuation character (kept as a word of its own): ASCII
//     33-47, 58-64, 91-96, 123-126 and Unicode's P* categories.
//  5. WordPiece, per word: greedy longest match first from the word's start, continuations looked up with a "##"
//     prefix. A word with a piece that matches nothing, or longer than max_input_chars_per_word code points, is one
//     [UNK].
//
// Unicode facts come from runtime/unicode_tables.h (generated from Python's unicodedata; its version is in that
// file). The reference's category tables are older (Unicode 8.0, judging by which characters differ), so the
// characters added or recategorized since tokenize differently: 503 of them against Unicode 14 tables (384 Mn,
// 104 P*, 13 Cf, U+166D, U+1734), found by comparing every code point; all others give the reference's ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tessera::runtime {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct WordPieceOptions {
  bool lower_case = true;
  std::optional<bool> strip_accents;  // unset: follows lower_case, as BERT's tokenizers do
  bool tokenize_chinese_chars = true;
  size_t max_input_chars_per_word = 100;
  std::string unk_token = "[UNK]";
  std::string cls_token = "[CLS]";
  std::string sep_token = "[SEP]";
  // Matched verbatim in the raw text (leftmost, longest first) and emitted as themselves; each must be in the
  // vocabulary. Empty: special tokens in the text are tokenized like any other text.
  std::vector<std::string> special_tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
};

class WordPieceTokenizer {
 public:
  // One token per line; the line number (from 0) is the id. Throws TokenizerError if the file cannot be read, or
  // if the unk, cls, sep or a special token is missing from it.
  static WordPieceTokenizer from_vocab_file(const std::string& path, WordPieceOptions options = {});
  // tokens[i] has id i. A token listed twice keeps its last id (as BERT's vocabulary loaders do).
  static WordPieceTokenizer from_vocab(const std::vector<std::string>& tokens, WordPieceOptions options = {});

  // [CLS], the text's word pieces, [SEP]. When that is more than max_length ids (which must be at least 2): with
  // `truncate`, the first max_length - 1 ids followed by [SEP]; otherwise TokenizerError naming both lengths.
  std::vector<int32_t> encode(std::string_view text, size_t max_length, bool truncate = false) const;

  // The text's word pieces as strings (no [CLS]/[SEP]); unknown words are the unk token.
  std::vector<std::string> tokenize(std::string_view text) const;
  // The words after steps 1-4, before WordPiece (special tokens appear whole).
  std::vector<std::string> basic_tokenize(std::string_view text) const;

  std::optional<int32_t> token_id(std::string_view token) const;
  const std::string& token(int32_t id) const;  // throws TokenizerError when out of range
  size_t vocab_size() const { return tokens_.size(); }
  const WordPieceOptions& options() const { return options_; }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

  struct Word {
    std::u32string text;
    std::optional<int32_t> special_id;  // set for a special token found in the raw text
  };

  WordPieceTokenizer() = default;
  int32_t require_id(const std::string& token, const char* role) const;
  std::vector<Word> split_words(std::string_view text) const;
  void append_word_pieces(const Word& word, std::vector<int32_t>& ids) const;

  WordPieceOptions options_;
  std::vector<std::string> tokens_;
  Vocab vocab_;
  int32_t unk_id_ = 0, cls_id_ = 0, sep_id_ = 0;
  std::vector<std::pair<std::u32string, int32_t>> specials_;  // longest first
};

}  // namespace tessera::runtime
